"""Ownership: whether a cloud resource found under an object's external name is that object's.

One pure judgement, called by the reconciler before it writes to an existing resource (and
before it deletes one) and by `kumo plan`, so a conflict in the plan is a refusal in the
controller and a claim in one is a claim in the other. Ownership is read from the resource's
kumo tags (`Observation.owner`); an untagged resource is still this object's own when it is
provably so:

- **recorded in status**: `status.atProvider.externalName` names it (someone stripped the tags);
- **under our derived name**: the object has no `spec.externalName` and the resource carries the
  name derived for this very object in this cluster (an earlier attempt died between creating it
  and tagging it: S3 tags in a second call).

Either way the next update writes the tags back, as drift. Any other untagged resource is taken
over only when adoption is asked for (`kumo.dev/adopt: "true"`); one tagged for another object
is never touched.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core.resources import derived_external_name
from kumo.providers.base import Observation, Ownership

from kumo.api import ANNOTATION_ADOPT


class Claim(enum.Enum):
    OURS = "ours"  # tagged with this object's uid
    OURS_UNTAGGED = "ours-untagged"  # untagged, but recorded in status or under our derived name
    ADOPTABLE = "adoptable"  # untagged, not provably ours, adoption asked for
    FOREIGN_UNMANAGED = "foreign-unmanaged"  # untagged, not ours, no adoption: refused
    FOREIGN_OWNED = "foreign-owned"  # tagged for another object: refused


@dataclass(frozen=True)
class OwnershipVerdict:
    """The claim on one observed resource and what to tell the user about it (empty for OURS)."""

    claim: Claim
    message: str = ""

    @property
    def ours(self) -> bool:
        """This object's own resource: it may be updated and, on deletion, deleted. An adoptable
        one is not ours until an update has tagged it, so it is never deleted before that."""
        return self.claim in (Claim.OURS, Claim.OURS_UNTAGGED)

    @property
    def manageable(self) -> bool:
        """The reconciler may write to it (ours, or adoption asked for)."""
        return self.ours or self.claim is Claim.ADOPTABLE

    @property
    def conflict(self) -> bool:
        """The reconciler refuses it: Synced=False, reason OwnedByAnotherResource, no cloud write."""
        return not self.manageable


def judge(
    external_name: str,
    owner: Ownership | None,
    *,
    uid: str,
    recorded_external_name: str,
    spec_external_name: str,
    derived_name: str,
    adopt: bool,
) -> OwnershipVerdict:
    """Judge the resource found under `external_name` for the object with `uid`.

    `owner` is what the resource's tags say (None: no kumo tags); `recorded_external_name` is the
    object's `status.atProvider.externalName` ("" when none); `spec_external_name` its
    `spec.externalName` ("" when none); `derived_name` the name derived for it in this cluster;
    `adopt` whether the adopt annotation is "true".
    """
    if owner is not None:
        if owner.uid == uid:
            return OwnershipVerdict(Claim.OURS)
        return OwnershipVerdict(
            Claim.FOREIGN_OWNED,
            f"{external_name} belongs to {owner.object_ref} (uid {owner.uid}, "
            f"cluster {owner.cluster_id}); refusing to modify it",
        )
    if recorded_external_name == external_name:
        return OwnershipVerdict(
            Claim.OURS_UNTAGGED, f"{external_name} is recorded in status but untagged: the next update tags it"
        )
    if not spec_external_name and external_name == derived_name:
        return OwnershipVerdict(
            Claim.OURS_UNTAGGED,
            f"{external_name} carries the name derived for this object but is untagged: the next update tags it",
        )
    if adopt:
        return OwnershipVerdict(
            Claim.ADOPTABLE, f"adopts the existing {external_name} (the next update writes kumo's ownership tags)"
        )
    return OwnershipVerdict(
        Claim.FOREIGN_UNMANAGED,
        f"{external_name} already exists and is not managed by kumo; "
        f'to adopt it set spec.externalName and the annotation {ANNOTATION_ADOPT}: "true"',
    )


def judge_object(body: Mapping[str, Any], observation: Observation, cluster_id: str) -> OwnershipVerdict:
    """`judge` with every input read from the object as the API server has it."""
    meta = body["metadata"]
    status = body.get("status") or {}
    return judge(
        observation.external_name,
        observation.owner,
        uid=str(meta["uid"]),
        recorded_external_name=str((status.get("atProvider") or {}).get("externalName") or ""),
        spec_external_name=str((body.get("spec") or {}).get("externalName") or ""),
        derived_name=derived_external_name(meta["namespace"], meta["name"], cluster_id),
        adopt=(meta.get("annotations") or {}).get(ANNOTATION_ADOPT) == "true",
    )
