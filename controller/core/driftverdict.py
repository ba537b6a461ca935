"""Drift verdict: what is done about each difference between the spec and the cloud.

Pure, and called by everything that decides or predicts it: the reconciler (update now, or only
report), the drift sweep (does this object need a full reconcile) and `kumo plan` (what applying
would change), so the three cannot disagree. The rules:

- **paused** (`kumo.dev/paused: "true"`): no cloud call at all, so nothing is compared or changed;
- **ObserveOnly** (`spec.managementPolicy`): never a cloud write; drift is reported as under
  driftPolicy Report, whatever the spec's policy, and a missing resource is never created;
- **a spec edit** is the user's intent and is applied under every policy; drift made behind kumo's
  back is corrected only under **Correct**. An edit of only the fields that steer kumo itself
  (`STEERING_FIELDS`: driftPolicy, deletionPolicy, managementPolicy, the Secret's name) asks
  nothing of the cloud: it is told apart by the digest of the cloud settings last applied
  (`status.settingsDigest`), so switching driftPolicy to Report keeps the drift there is now
  instead of reverting it;
- **Report** leaves the cloud alone and reports every drifted field; **Ignore** compares nothing;
- drift the cloud cannot undo (`FieldDrift.correctable` False: a disk grown beyond the spec) is
  never sent to the cloud, only reported (unless ignored).

The verdict is about a resource that exists and is ready: the reconciler waits for readiness
before any update, and judges ownership (controller/core/ownership.py) before this.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core.drift import DriftPolicy, policy_of
from kumo.providers.base import FieldDrift

from kumo.api import ANNOTATION_PAUSED

OBSERVE_ONLY = "ObserveOnly"
# Spec fields that steer what kumo does, not what the cloud holds: changing only these is no
# request to change the cloud.
STEERING_FIELDS = frozenset({"driftPolicy", "deletionPolicy", "managementPolicy", "writeConnectionSecretToRef"})


@dataclass(frozen=True)
class Situation:
    """What the verdict depends on besides the drift itself, as read from the object."""

    policy: DriftPolicy  # spec.driftPolicy, else the controller's default
    spec_changed: bool  # the cloud settings of the spec changed since they were last applied
    paused: bool = False
    observe_only: bool = False

    @property
    def effective_policy(self) -> DriftPolicy:
        """ObserveOnly reports drift whatever the spec's policy says."""
        return DriftPolicy.REPORT if self.observe_only else self.policy

    @property
    def writes(self) -> bool:
        """Whether kumo may write to the cloud for this object at all."""
        return not (self.paused or self.observe_only)


def settings_digest(spec: Mapping[str, Any]) -> str:
    """A digest of the spec's cloud settings: everything but `STEERING_FIELDS`, in canonical JSON."""
    settings = {name: value for name, value in spec.items() if name not in STEERING_FIELDS}
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def spec_changed(body: Mapping[str, Any]) -> bool:
    """A spec edit not applied yet that asks something of the cloud: a new generation whose
    settings differ from those last applied. Without a recorded digest (written by releases before
    it existed) every new generation counts."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    if int(meta.get("generation", 0)) == status.get("observedGeneration"):
        return False
    applied = status.get("settingsDigest")
    return not applied or applied != settings_digest(body.get("spec") or {})


def situation_of(body: Mapping[str, Any], default_policy: DriftPolicy) -> Situation:
    """The situation of an object as the API server has it (spec, annotations and status)."""
    meta = body.get("metadata") or {}
    return Situation(
        policy=policy_of(body, default_policy),
        spec_changed=spec_changed(body),
        paused=(meta.get("annotations") or {}).get(ANNOTATION_PAUSED) == "true",
        observe_only=(body.get("spec") or {}).get("managementPolicy") == OBSERVE_ONLY,
    )


@dataclass(frozen=True)
class DriftVerdict:
    """The drifted fields of one observation, split by what happens to them.

    `update`: correctable fields sent to the cloud now. `report_only`: correctable fields left as
    they are and reported (status.drift, InSync=False). `uncorrectable`: fields the cloud cannot
    put back; reported unless `ignored`. `ignored`: driftPolicy Ignore, settings not compared
    (status says InSync Unknown, Ignored). `paused`: nothing was looked at.
    """

    update: tuple[FieldDrift, ...] = ()
    report_only: tuple[FieldDrift, ...] = ()
    uncorrectable: tuple[FieldDrift, ...] = ()
    ignored: bool = False
    paused: bool = False

    @property
    def reported(self) -> tuple[FieldDrift, ...]:
        """What status.drift lists once any update has settled."""
        return () if self.ignored or self.paused else self.report_only + self.uncorrectable

    @property
    def needs_update(self) -> bool:
        """A drift sweep hands the object to a full reconcile exactly when this is True."""
        return bool(self.update)


def judge(drift: Iterable[FieldDrift], situation: Situation) -> DriftVerdict:
    """What happens to each drifted field of a ready resource in `situation`."""
    if situation.paused:
        return DriftVerdict(paused=True)
    drift = tuple(drift)
    correctable = tuple(item for item in drift if item.correctable)
    uncorrectable = tuple(item for item in drift if not item.correctable)
    updating = situation.writes and (situation.spec_changed or situation.policy is DriftPolicy.CORRECT)
    ignored = situation.effective_policy is DriftPolicy.IGNORE
    if updating:
        # Every correctable field goes, not only those the edit touched: the update puts the
        # whole spec back, under Ignore too.
        return DriftVerdict(update=correctable, uncorrectable=uncorrectable, ignored=ignored)
    if ignored:
        return DriftVerdict(ignored=True)
    return DriftVerdict(report_only=correctable, uncorrectable=uncorrectable)


class Absent(enum.Enum):
    """What is done when nothing exists in the cloud under the object's external name."""

    CREATE = "create"  # never existed (nothing recorded in status)
    RECREATE = "recreate"  # existed, deleted outside kumo: created again (Warning event)
    REPORT_MISSING = "report-missing"  # existed, driftPolicy Report and no spec edit: reported only
    OBSERVE_ONLY = "observe-only"  # ObserveOnly: reported as not existing, never created
    PAUSED = "paused"  # not looked at


def judge_absent(existed: bool, situation: Situation) -> Absent:
    """`existed`: the object's status records an external name (it was created once)."""
    if situation.paused:
        return Absent.PAUSED
    if situation.observe_only:
        return Absent.OBSERVE_ONLY
    if not existed:
        return Absent.CREATE
    if situation.policy is DriftPolicy.REPORT and not situation.spec_changed:
        return Absent.REPORT_MISSING
    return Absent.RECREATE
