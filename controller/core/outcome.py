"""The values one reconcile pass passes around: what it works on, what each step found, what's next.

Nothing here is mutable. A pass starts from a `Subject` (the object as read, with the facts every
step asks about); each step returns an `Outcome` (conditions, atProvider, drift, ...) and the
reconciler adds them up in order, the later step winning where both say something; the sum is
written as status once, at the end (`status_patch`: only what changed, nothing in a steady
state). `Result` tells the worker what to do with the key next.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core import conditions as cond
from kumo.controller.core import driftverdict
from kumo.controller.core.disposition import RetryPace
from kumo.controller.core.driftverdict import OBSERVE_ONLY
from kumo.controller.core.resources import ObjectKey
from kumo.controller.core.secrets import SecretOwner

from kumo import api


@dataclass(frozen=True)
class Result:
    """What the worker does next with the key."""

    requeue_after: float | None = None  # look again after this long (not an error)
    error: Exception | None = None
    terminal: bool = False  # retried only at the slow pace (a person must act)
    retry: RetryPace | None = None  # the pace of retries after `error` (None: the queue's backoff)
    dropped: bool = False  # no longer this replica's object (controller/core/assignment.py): forget it


@dataclass(frozen=True)
class Event:
    """An event to post once the status is written (news about the state the status shows)."""

    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Outcome:
    """What one step contributes to the status write, and (the last step to say) what is next."""

    conditions: tuple[cond.Condition, ...] = ()
    at_provider: Mapping[str, Any] | None = None
    drift: list[dict[str, Any]] | None = None  # new status.drift, when it changed
    published: bool = False  # the connection Secret was checked or written
    # False while the cloud cannot have taken the spec yet (still provisioning): observedGeneration
    # must not move then, or an edit made meanwhile would look like drift instead of intent.
    spec_applied: bool = True
    events: tuple[Event, ...] = ()  # posted after the status write
    done: bool = False  # the object is fully handled (finalizer released): no status write
    result: Result | None = None

    def __add__(self, later: Outcome) -> Outcome:
        return Outcome(
            conditions=self.conditions + later.conditions,
            at_provider=later.at_provider if later.at_provider is not None else self.at_provider,
            drift=later.drift if later.drift is not None else self.drift,
            published=self.published or later.published,
            spec_applied=self.spec_applied and later.spec_applied,
            events=self.events + later.events,
            done=self.done or later.done,
            result=later.result if later.result is not None else self.result,
        )


@dataclass(frozen=True)
class Subject:
    """The object one pass works on, as read when the pass began, and the facts steps ask about."""

    key: ObjectKey
    body: Mapping[str, Any]
    # A sweep judges a cached copy that a reconcile may have overtaken: its status write is
    # guarded by the resourceVersion it read, so it can never overwrite newer conditions.
    guard_version: str | None = None

    @property
    def meta(self) -> Mapping[str, Any]:
        return self.body["metadata"]

    @property
    def uid(self) -> str:
        return str(self.meta["uid"])

    @property
    def generation(self) -> int:
        return int(self.meta.get("generation", 0))

    @property
    def status(self) -> Mapping[str, Any]:
        return self.body.get("status") or {}

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.meta.get("annotations") or {}

    @property
    def paused(self) -> bool:
        return self.annotations.get(api.ANNOTATION_PAUSED) == "true"

    @property
    def deleting(self) -> bool:
        return bool(self.meta.get("deletionTimestamp"))

    @property
    def observe_only(self) -> bool:
        return (self.body.get("spec") or {}).get("managementPolicy") == OBSERVE_ONLY

    @property
    def recorded_external_name(self) -> str:
        """The external name status recorded: it was created (or found) once."""
        return str((self.status.get("atProvider") or {}).get("externalName") or "")

    @property
    def rotation(self) -> str:
        return self.annotations.get(api.ANNOTATION_ROTATE_PASSWORD, "")

    @property
    def owner(self) -> SecretOwner:
        return SecretOwner(self.key, self.body)

    def condition(self, type_: str) -> Mapping[str, Any] | None:
        """A condition as status has it now."""
        return cond.find(self.status.get("conditions") or [], type_)

    @property
    def was_usable(self) -> bool:
        """Ready was True at some point (Available, or Unavailable since)."""
        ready = self.condition(api.READY)
        return ready is not None and ready.get("reason") in (api.AVAILABLE, api.UNAVAILABLE)


def status_patch(s: Subject, report: Outcome) -> dict[str, Any] | None:
    """The status to write after a pass (merged into what is there), or None when it would change
    nothing: a steady state costs no write."""
    current = s.status
    new: dict[str, Any] = {"conditions": cond.merge(current.get("conditions") or [], report.conditions, s.generation)}
    synced = not any(c.type == api.SYNCED and not c.status for c in report.conditions)
    applied = synced and report.spec_applied
    new["observedGeneration"] = s.generation if applied else current.get("observedGeneration", 0)
    if applied:
        # What was applied, so a later edit of only kumo's own steering fields is told apart.
        new["settingsDigest"] = driftverdict.settings_digest(s.body.get("spec") or {})
    if report.at_provider is not None:
        new["atProvider"] = dict(report.at_provider)
    if report.drift is not None:
        new["drift"] = report.drift
    if (report.published or report.at_provider is not None) and not s.observe_only:
        # Recorded, so a later change of the default name never moves an existing Secret.
        new["connectionSecret"] = api.connection_secret_name(s.key.kind, s.body)
    if all(current.get(k) == v for k, v in new.items()):
        return None
    return new
