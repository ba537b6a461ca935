"""kumo as a shard of a ring (kumo run --shard-ring): the guard before cloud mutations, the
labels a shard reads and writes, the drain acknowledgement, and the shard's Lease.

Each test is one scenario; its docstring says what it proves.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kumo.controller.core.assignment import NotAssigned
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.config import ControllerConfig
from kumo.controller.runtime.leader import LeaseRecord
from kumo.controller.runtime.sharding import Shard, ShardAssignment, ShardingError, shard_lease_store, shard_of
from kumo.providers.base import Kind

from kumo import api

from .test_reconciler import EXTERNAL, NAME, NS, World, entries

RING = "kumo"
SHARD = Shard(RING, "kumo-0")
SHARD_LABEL = api.shard_label(RING)
DRAIN_LABEL = api.drain_label(RING)
BUCKET_SECRET = f"{NAME}-bucket"


class Refusing:
    """An Assignment that says no from the n-th question on (0: always)."""

    def __init__(self, allowed: int = 0) -> None:
        self.allowed = allowed
        self.asked: list[ObjectKey] = []

    async def confirm(self, key: ObjectKey) -> None:
        self.asked.append(key)
        if len(self.asked) > self.allowed:
            raise NotAssigned("assigned to kumo-1, not kumo-0")


def cloud_mutations(world: World) -> list[tuple[str, ...]]:
    return [e for e in world.journal if e[0] in ("cloud:create", "cloud:update", "cloud:delete", "cloud:set-password")]


# ---------------------------------------------------------------------- the guard in the core


def test_a_create_not_confirmed_is_never_sent_and_the_object_is_dropped():
    """A new object whose assignment is not confirmed gets no cloud create, no event, no status:
    the pass ends with `dropped`, so the runtime forgets it for the shard that has it now."""
    world = World(Kind.BUCKET)
    world.reconciler.assignment = Refusing()
    result = world.reconcile()
    assert result.dropped
    assert cloud_mutations(world) == []
    assert entries(world.journal, "kube:event") == []
    assert NAME not in world.kube.statuses


def test_a_drift_correction_not_confirmed_is_never_sent():
    """Under Correct, drift found while the object is no longer ours is left to its new shard:
    no update and no DriftDetected event from this replica."""
    world = World(Kind.BUCKET)
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    events_before = len(entries(world.journal, "kube:event"))
    world.reconciler.assignment = Refusing()
    assert world.reconcile().dropped
    assert entries(world.journal, "cloud:update") == []
    assert len(entries(world.journal, "kube:event")) == events_before


def test_a_delete_not_confirmed_is_never_sent_and_the_finalizer_stays():
    """A deletion whose assignment is not confirmed deletes nothing in the cloud and keeps the
    finalizer: the shard that holds the object now finishes the deletion."""
    world = World(Kind.BUCKET)
    world.reconcile()
    world.body["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    world.reconciler.assignment = Refusing()
    assert world.reconcile().dropped
    assert entries(world.journal, "cloud:delete") == []
    assert world.kube.finalizers[NAME] == [api.FINALIZER]
    assert EXTERNAL in world.cloud.records


def test_a_password_change_not_confirmed_is_never_sent():
    """A Database whose create was confirmed but whose later password set is not: the create went
    out, the set-password did not."""
    world = World(Kind.DATABASE, create_sets_password=False)
    world.reconciler.assignment = Refusing(allowed=1)
    world.reconcile()
    assert [e[0] for e in cloud_mutations(world)] == ["cloud:create"]


def test_a_confirmed_object_is_reconciled_as_before_and_asked_once_per_mutation():
    """With every question answered yes, the pass is exactly the unsharded one; the guard is asked
    before the create and never for reads."""
    world = World(Kind.BUCKET)
    asked = Refusing(allowed=100)
    world.reconciler.assignment = asked
    result = world.reconcile()
    assert not result.dropped and result.error is None
    assert asked.asked == [world.key]
    world.reconcile()  # steady: observe only
    assert asked.asked == [world.key]


def test_a_secret_follows_its_owner_onto_its_shard():
    """The connection Secret carries its owner's shard label (the sharder's rule for controlled
    objects), so it stays in the shard's Secret watch whoever writes it; a drain label is not
    copied."""
    world = World(Kind.BUCKET)
    world.body["metadata"]["labels"] = {SHARD_LABEL: "kumo-0", DRAIN_LABEL: "true", "team": "a"}
    world.reconcile()
    labels = world.kube.secrets[(NS, BUCKET_SECRET)]["metadata"]["labels"]
    assert labels[SHARD_LABEL] == "kumo-0"
    assert DRAIN_LABEL not in labels and "team" not in labels


def test_an_unsharded_secret_has_no_shard_label():
    """Without sharding nothing changes in what kumo writes."""
    world = World(Kind.BUCKET)
    world.reconcile()
    labels = world.kube.secrets[(NS, BUCKET_SECRET)]["metadata"]["labels"]
    assert not [key for key in labels if key.startswith(api.SHARD_LABEL_PREFIX)]


# ---------------------------------------------------------------------- the shard's labels


def labelled(**labels: str) -> dict[str, Any]:
    return {"metadata": {"name": NAME, "namespace": NS, "labels": labels}, "spec": {}, "status": {}}


def test_the_watch_selector_names_the_ring_and_this_replica():
    """Watches and listings ask the API server for this replica's objects only, in the label the
    sharder writes (shard.alpha.sharding.timebertt.dev/<ring>=<shard>)."""
    assert SHARD.selector == "shard.alpha.sharding.timebertt.dev/kumo=kumo-0"
    assert SHARD.secret_selector == "app.kubernetes.io/managed-by=kumo,shard.alpha.sharding.timebertt.dev/kumo=kumo-0"
    assert SHARD.lease_labels == {"alpha.sharding.timebertt.dev/controllerring": "kumo"}


@pytest.mark.parametrize(
    ("labels", "owns", "draining", "reason"),
    [
        ({SHARD_LABEL: "kumo-0"}, True, False, "assigned here"),
        ({SHARD_LABEL: "kumo-1"}, False, False, "assigned to another shard"),
        ({}, False, False, "not assigned yet"),
        (
            {SHARD_LABEL: "kumo-0", DRAIN_LABEL: ""},
            True,
            True,
            "a drain label counts whatever its value",
        ),
        ({api.shard_label("other"): "kumo-0"}, False, False, "another ring's label is not ours"),
    ],
)
def test_an_object_is_ours_by_this_rings_label(labels, owns, draining, reason):
    body = labelled(**labels)
    assert (SHARD.owns(body), SHARD.draining(body)) == (owns, draining), reason


def test_the_drain_acknowledgement_removes_both_labels_in_one_patch():
    """The contract's acknowledgement: a single merge patch that removes the shard and the drain
    label (null removes a key), touching nothing else."""
    assert SHARD.acknowledgement() == {"metadata": {"labels": {SHARD_LABEL: None, DRAIN_LABEL: None}}}


@pytest.mark.parametrize(
    ("settings", "hostname", "expected"),
    [
        ({}, "kumo-7c9-abcde", None),
        ({"shard_ring": "kumo"}, "kumo-7c9-abcde", Shard("kumo", "kumo-7c9-abcde")),
        ({"shard_ring": "kumo", "leader_identity": "replica-a"}, "host", Shard("kumo", "replica-a")),
    ],
)
def test_the_shard_is_named_by_its_identity_else_the_pod_name(settings, hostname, expected):
    assert shard_of(ControllerConfig(**settings), hostname=lambda: hostname) == expected


@pytest.mark.parametrize(
    "settings",
    [{"shard_ring": "kumo", "leader_identity": "Replica_A"}, {"shard_ring": "Kumo Ring", "leader_identity": "a"}],
)
def test_names_that_cannot_name_a_lease_or_a_label_are_refused_at_start(settings):
    with pytest.raises(ShardingError):
        shard_of(ControllerConfig(**settings))


# ---------------------------------------------------------------------- the runtime's guard


def guard(body: dict[str, Any] | None, *, lease: bool = True) -> ShardAssignment:
    cache = ObjectCache()
    if body is not None:
        cache.put(ObjectKey(Kind.BUCKET, NS, NAME), body)
    return ShardAssignment(SHARD, cache, holds_lease=lambda: lease)


@pytest.mark.parametrize(
    ("body", "lease", "refusal"),
    [
        (labelled(**{SHARD_LABEL: "kumo-0"}), False, "does not hold its Lease"),
        (None, True, "no longer in this shard's watch"),
        (labelled(**{SHARD_LABEL: "kumo-1"}), True, "assigned to kumo-1"),
        (labelled(**{SHARD_LABEL: "kumo-0", DRAIN_LABEL: "true"}), True, "being drained"),
    ],
)
def test_the_guard_refuses_without_the_lease_or_the_label_or_while_draining(body, lease, refusal):
    with pytest.raises(NotAssigned, match=refusal):
        asyncio.run(guard(body, lease=lease).confirm(ObjectKey(Kind.BUCKET, NS, NAME)))


def test_the_guard_allows_an_object_labelled_for_this_replica_while_the_lease_is_held():
    assert asyncio.run(guard(labelled(**{SHARD_LABEL: "kumo-0"})).confirm(ObjectKey(Kind.BUCKET, NS, NAME))) is None


def test_the_shard_lease_is_named_by_the_shard_and_labelled_with_its_ring():
    """What the sharder looks for: a Lease named as its holder, labelled with the ring."""
    store = shard_lease_store(SHARD, None, "kumo-system", SHARD.identity, request_timeout=2.0)
    body = store._body(LeaseRecord(holder=SHARD.identity))
    assert body["metadata"]["name"] == body["spec"]["holderIdentity"] == "kumo-0"
    assert body["metadata"]["labels"] == {api.LABEL_CONTROLLER_RING: RING}
