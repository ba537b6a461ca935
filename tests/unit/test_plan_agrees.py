"""`kumo plan` and the controller agree: each scenario is run through the plan's `judge` and
through the `Reconciler` (the in-memory API server and cloud of test_reconciler.py), from the
very same object and cloud, and what the plan says is what the controller then does:

- plan create            <=> the controller calls create;
- plan conflict          <=> Synced=False OwnedByAnotherResource, and no cloud write at all;
- plan update fields     <=> the fields of the controller's update call (none <=> no update call);
- plan report-only and cannot-be-corrected fields <=> status.drift after the reconcile;
- plan paused / ObserveOnly <=> no cloud write at all.

The agreement table (scenario | plan says | controller does):

| scenario                               | plan says                                   | controller does            |
|----------------------------------------|---------------------------------------------|----------------------------|
| absent                                 | create                                      | creates                    |
| ours, in sync                          | no-op                                       | no cloud write             |
| untagged under our derived name        | update owner (claims it)                    | updates owner              |
| untagged, recorded in status           | update owner (claims it)                    | updates owner              |
| foreign, not managed by kumo           | conflict                                    | refuses (OwnedByAnother)   |
| foreign, another object's              | conflict                                    | refuses (OwnedByAnother)   |
| adoptable (adopt annotation)           | update owner (adopts it)                    | updates owner              |
| drifted under Correct                  | update storageGB                            | updates storageGB          |
| drifted under Report                   | no-op; storageGB report only                | reports storageGB          |
| drifted under Report, spec edited      | update storageGB                            | updates storageGB          |
| drifted, only driftPolicy -> Report    | no-op; storageGB report only                | reports storageGB          |
| drifted under Ignore                   | no-op; not compared                         | no cloud write             |
| uncorrectable drift (grown disk)       | no-op; storageGB cannot be corrected        | reports storageGB          |
| paused                                 | no-op (paused)                              | no cloud call              |
| ObserveOnly, drifted                   | no-op; storageGB report only                | reports storageGB          |
| ObserveOnly, absent                    | no-op                                       | no cloud write             |
| deleted outside kumo, Correct          | create (recreates)                          | creates                    |
| deleted outside kumo, Report           | no-op (reported Missing)                    | no cloud write             |

Each row is also a parametrize id, so a failing row names itself.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from kumo.providers.base import Ownership

from kumo import api
from kumo.plan import Action, Change, Target, judge

from .test_reconciler import CLUSTER, EXTERNAL, NAME, NS, UID, World

CLOUD_WRITES = ("cloud:create", "cloud:update", "cloud:delete", "cloud:set-password")
LEGACY = "orders-legacy"  # a name neither derived for the object nor tagged by kumo


@dataclass(frozen=True)
class Outcome:
    """What the controller did in one reconcile, read from the fakes' journal and status."""

    created: bool
    updated: tuple[str, ...] | None  # the update call's fields; None when there was no update call
    wrote_cloud: bool
    refused: bool  # Synced=False, OwnedByAnotherResource
    reported: tuple[str, ...]  # status.drift fields

    @property
    def summary(self) -> str:
        if self.refused:
            return "refuses (OwnedByAnother)"
        if self.created:
            return "creates"
        if self.updated is not None:
            return "updates " + ", ".join(self.updated)
        if self.reported:
            return "reports " + ", ".join(self.reported)
        return "no cloud write"


def plan_says(change: Change) -> str:
    """The plan's answer in the table's words."""
    updates = [f.field for f in change.fields if not f.note]
    words = str(change.action) + (" " + ", ".join(updates) if updates and change.action is Action.UPDATE else "")
    notes = [f"{f.field} {f.note.split(':')[0]}" for f in change.fields if f.note]
    return "; ".join([words, *notes])


def as_seen(world: World) -> dict[str, Any]:
    """The object as the API server has it now (what the reconciler and the dry run both see)."""
    body = copy.deepcopy(world.body)
    body["metadata"]["finalizers"] = world.kube.finalizers.get(NAME, [])
    body["status"] = copy.deepcopy(world.kube.statuses.get(NAME, {}))
    return body


def plan(world: World) -> Change:
    """What `kumo plan` decides, through the same steps as its Planner after the dry run."""
    body = as_seen(world)

    async def planned() -> Change:
        _, client, settings = await world.reconciler.connect(world.kind, body)
        resource = world.reconciler.resource_for(world.kind, body, settings)
        observation = await client.observe(resource)
        target = Target(str(world.kind), NS, NAME, resource.external_name, settings.provider)
        return judge(target, client.desired(resource), observation, body=body, cluster_id=CLUSTER)

    return asyncio.run(planned())


def reconcile(world: World) -> Outcome:
    start = len(world.journal)
    world.reconcile()
    journal = world.journal[start:]
    updates = [entry for entry in journal if entry[0] == "cloud:update"]
    status = world.kube.statuses.get(NAME, {})
    synced = next((c for c in status.get("conditions") or [] if c["type"] == api.SYNCED), {})
    return Outcome(
        created=any(entry[0] == "cloud:create" for entry in journal),
        updated=tuple(updates[0][2].split(",")) if updates else None,
        wrote_cloud=any(entry[0] in CLOUD_WRITES for entry in journal),
        refused=synced.get("reason") == api.OWNED_BY_ANOTHER,
        reported=tuple(entry["field"] for entry in status.get("drift") or []),
    )


# ---------------------------------------------------------------------- the scenarios


def _steady(world: World) -> None:
    """Created and Ready, status recorded: the next reconcile starts from a settled object."""
    world.reconcile()


def _untagged(name: str) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.cloud.records[name] = world.ours()
        world.cloud.records[name].owner = None

    return arrange


def _recorded_in_status(world: World) -> None:
    _untagged(LEGACY)(world)
    world.kube.statuses[NAME] = {"atProvider": {"externalName": LEGACY}, "observedGeneration": 1}


def _foreign(adopt: bool) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.body["spec"]["externalName"] = LEGACY
        if adopt:
            world.body["metadata"]["annotations"][api.ANNOTATION_ADOPT] = "true"
        _untagged(LEGACY)(world)

    return arrange


def _owned_by_another(world: World) -> None:
    world.cloud.records[EXTERNAL] = world.ours()
    world.cloud.records[EXTERNAL].owner = Ownership("uid-2", "team-b", "orders", "cluster-2")


def _drifted(policy: str = "Correct", spec_edit: bool = False, grow_only: bool = False) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.body["spec"]["driftPolicy"] = policy
        _steady(world)
        world.cloud.records[EXTERNAL].settings["storageGB"] = 50
        if grow_only:
            world.cloud.grow_only = {"storageGB"}
        if spec_edit:
            world.body["spec"]["storageGB"] = 40
            world.body["metadata"]["generation"] = 2

    return arrange


def _switched_to_report(world: World) -> None:
    """Drift appears under Correct, and before kumo puts it back the user switches driftPolicy to
    Report to keep it: an edit of kumo's own steering asks nothing of the cloud."""
    _steady(world)
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    world.body["spec"]["driftPolicy"] = "Report"
    world.body["metadata"]["generation"] = 2


def _paused(world: World) -> None:
    _drifted()(world)
    world.body["metadata"]["annotations"][api.ANNOTATION_PAUSED] = "true"


def _observe_only(drifted: bool) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.body["spec"]["managementPolicy"] = "ObserveOnly"
        if drifted:
            world.cloud.records[EXTERNAL] = world.ours()
            world.cloud.records[EXTERNAL].settings["storageGB"] = 50

    return arrange


def _deleted_outside(policy: str) -> Callable[[World], None]:
    def arrange(world: World) -> None:
        world.body["spec"]["driftPolicy"] = policy
        _steady(world)
        world.cloud.records.clear()

    return arrange


REPORTED = ("no-op; storageGB report only, not changed", "reports storageGB")
# scenario, arrange, plan says, controller does
SCENARIOS: list[tuple[str, Callable[[World], None], str, str]] = [
    ("absent", lambda world: None, "create", "creates"),
    ("ours, in sync", _steady, "no-op", "no cloud write"),
    ("untagged under our derived name", _untagged(EXTERNAL), "update owner", "updates owner"),
    ("untagged, recorded in status", _recorded_in_status, "update owner", "updates owner"),
    ("foreign, not managed by kumo", _foreign(adopt=False), "conflict", "refuses (OwnedByAnother)"),
    ("foreign, another object's", _owned_by_another, "conflict", "refuses (OwnedByAnother)"),
    ("adoptable", _foreign(adopt=True), "update owner", "updates owner"),
    ("drifted under Correct", _drifted(), "update storageGB", "updates storageGB"),
    ("drifted under Report", _drifted("Report"), "no-op; storageGB report only, not changed", "reports storageGB"),
    ("drifted under Report, spec edited", _drifted("Report", spec_edit=True), "update storageGB", "updates storageGB"),
    ("drifted, then only driftPolicy switched to Report", _switched_to_report, *REPORTED),
    ("drifted under Ignore", _drifted("Ignore"), "no-op", "no cloud write"),
    ("uncorrectable drift", _drifted(grow_only=True), "no-op; storageGB cannot be corrected", "reports storageGB"),
    ("paused", _paused, "no-op", "no cloud write"),
    ("ObserveOnly, drifted", _observe_only(True), "no-op; storageGB report only, not changed", "reports storageGB"),
    ("ObserveOnly, absent", _observe_only(False), "no-op", "no cloud write"),
    ("deleted outside kumo, Correct", _deleted_outside("Correct"), "create", "creates"),
    ("deleted outside kumo, Report", _deleted_outside("Report"), "no-op", "no cloud write"),
]


@pytest.mark.parametrize(
    ("arrange", "plan_expected", "controller_expected"),
    [row[1:] for row in SCENARIOS],
    ids=[f"{row[0]} | plan: {row[2]} | controller: {row[3]}" for row in SCENARIOS],
)
def test_plan_says_what_the_controller_does(arrange, plan_expected, controller_expected):
    world = World()
    arrange(world)
    change = plan(world)
    outcome = reconcile(world)

    assert (plan_says(change), outcome.summary) == (plan_expected, controller_expected)
    assert (change.action is Action.CREATE) == outcome.created
    assert (change.action is Action.CONFLICT) == outcome.refused
    if outcome.refused:
        assert not outcome.wrote_cloud
    planned_updates = tuple(f.field for f in change.fields if not f.note) if change.action is Action.UPDATE else ()
    assert planned_updates == (outcome.updated or ())
    if change.action is not Action.CONFLICT:
        assert tuple(f.field for f in change.fields if f.note) == outcome.reported
    if "paused" in " ".join(change.messages) or "ObserveOnly" in " ".join(change.messages):
        assert not outcome.wrote_cloud


def test_every_claim_the_plan_makes_is_named():
    """An update of a resource the object claims or adopts says so, so a user sees why it is no
    conflict; the controller's own conflict wording is what the plan shows."""
    claimed = World()
    _untagged(EXTERNAL)(claimed)
    assert "untagged: the next update tags it" in " ".join(plan(claimed).messages)
    foreign = World()
    _foreign(adopt=False)(foreign)
    change = plan(foreign)
    reconcile(foreign)
    synced = next(c for c in foreign.kube.statuses[NAME]["conditions"] if c["type"] == api.SYNCED)
    # The controller's message names its failing step first; the judgement's words are the same.
    (message,) = change.messages
    assert synced["message"].endswith(message)
    assert UID not in message
