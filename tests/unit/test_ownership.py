"""Ownership judgement (controller/core/ownership.py): one scenario per row, each with the reason
it exists. The reconciler and `kumo plan` both call this judgement, so each row is a decision
both make."""

from __future__ import annotations

from typing import Any

import pytest
from kumo.controller.core.ownership import Claim, judge, judge_object
from kumo.controller.core.resources import derived_external_name
from kumo.providers.base import Observation, Ownership

UID, CLUSTER = "uid-1", "cluster-1"
DERIVED = derived_external_name("team-a", "orders", CLUSTER)
OURS = Ownership(UID, "team-a", "orders", CLUSTER)
ANOTHER = Ownership("uid-2", "team-b", "orders", "cluster-2")

# name, observed external name, owner tags, recorded in status, spec.externalName, adopt -> claim
CASES = [
    ("tagged with our uid", DERIVED, OURS, "", "", False, Claim.OURS),
    ("tagged with our uid wins over everything", "custom", OURS, "", "custom", True, Claim.OURS),
    ("untagged, recorded in status", "custom", None, "custom", "custom", False, Claim.OURS_UNTAGGED),
    ("untagged, under our derived name", DERIVED, None, "", "", False, Claim.OURS_UNTAGGED),
    ("untagged, derived name but spec.externalName set", DERIVED, None, "", DERIVED, False, Claim.FOREIGN_UNMANAGED),
    ("untagged, not ours, adoption asked", "legacy", None, "", "legacy", True, Claim.ADOPTABLE),
    ("untagged, not ours, no adoption", "legacy", None, "", "legacy", False, Claim.FOREIGN_UNMANAGED),
    ("untagged, recorded name is another", "legacy", None, "older", "legacy", False, Claim.FOREIGN_UNMANAGED),
    ("tagged for another object", DERIVED, ANOTHER, DERIVED, "", False, Claim.FOREIGN_OWNED),
    ("tagged for another object, adoption asked", "legacy", ANOTHER, "", "legacy", True, Claim.FOREIGN_OWNED),
]


@pytest.mark.parametrize(
    ("external", "owner", "recorded", "spec_name", "adopt", "claim"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_claim(external, owner, recorded, spec_name, adopt, claim):
    verdict = judge(
        external,
        owner,
        uid=UID,
        recorded_external_name=recorded,
        spec_external_name=spec_name,
        derived_name=DERIVED,
        adopt=adopt,
    )
    assert verdict.claim is claim
    assert verdict.conflict == (claim in (Claim.FOREIGN_OWNED, Claim.FOREIGN_UNMANAGED))
    # Deleting an adoptable resource before it is tagged would delete someone else's.
    assert verdict.ours == (claim in (Claim.OURS, Claim.OURS_UNTAGGED))


def test_conflict_messages_say_whose_it_is_and_how_to_adopt():
    """The wording users see in Synced=False and in the plan."""
    owned = judge(
        "db-1", ANOTHER, uid=UID, recorded_external_name="", spec_external_name="", derived_name=DERIVED, adopt=False
    )
    assert owned.message == "db-1 belongs to team-b/orders (uid uid-2, cluster cluster-2); refusing to modify it"
    unmanaged = judge(
        "db-1", None, uid=UID, recorded_external_name="", spec_external_name="db-1", derived_name=DERIVED, adopt=False
    )
    assert unmanaged.message == (
        "db-1 already exists and is not managed by kumo; "
        'to adopt it set spec.externalName and the annotation kumo.dev/adopt: "true"'
    )


def _body(**spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "orders", "namespace": "team-a", "uid": UID, "annotations": {"kumo.dev/adopt": "true"}},
        "spec": spec,
        "status": {"atProvider": {"externalName": "recorded"}},
    }


def test_judge_object_reads_every_input_from_the_object():
    """Status record, spec.externalName and the adopt annotation are read from the object."""
    observed = lambda name: Observation(name, "available", True, None)  # noqa: E731
    assert judge_object(_body(), observed("recorded"), CLUSTER).claim is Claim.OURS_UNTAGGED
    assert judge_object(_body(), observed(DERIVED), CLUSTER).claim is Claim.OURS_UNTAGGED
    assert judge_object(_body(externalName="legacy"), observed("legacy"), CLUSTER).claim is Claim.ADOPTABLE
    unadopted = _body(externalName="legacy")
    unadopted["metadata"]["annotations"] = {}
    assert judge_object(unadopted, observed("legacy"), CLUSTER).claim is Claim.FOREIGN_UNMANAGED
