"""kumo as a shard of a ring (kumo run --shard-ring): the guard before cloud mutations, the
labels a shard reads and writes, the drain acknowledgement, and the shard's Lease.

Each test is one scenario; its docstring says what it proves.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from kumo.controller.core.assignment import NotAssigned
from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.outcome import Result
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.config import ControllerConfig
from kumo.controller.runtime.leader import LeaseRecord
from kumo.controller.runtime.operator import Controller
from kumo.controller.runtime.sharding import Shard, ShardAssignment, ShardingError, shard_lease_store, shard_of
from kumo.providers.base import Kind, ProviderSettings
from kumo.providers.plumbing import settings_digest, user_agent_suffix

from kumo import api
from kumo.api import LABEL_MANAGED_BY, LABEL_OWNER_KIND, LABEL_OWNER_NAME

from .test_provider_config_status import World as PCWorld
from .test_provider_config_status import config as pc_config
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


# ---------------------------------------------------------------------- the operator's shard


class ShardKube:
    """The KubeClient calls a sharded Controller makes: listings (recording their selectors) and
    the metadata patches of drain acknowledgements."""

    def __init__(self, objects=(), secrets=()) -> None:
        self.objects, self.secrets = list(objects), list(secrets)
        self.selectors: list[str] = []
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.stored: dict[tuple[str, str], dict[str, Any]] = {}  # Secrets a read finds

    async def list_objects(self, kind, namespace, label_selector=""):
        self.selectors.append(label_selector)
        for body in self.objects:
            if body["kind"] == kind.value:
                yield body

    async def list_secret_metadata(self, namespace, label_selector):
        self.selectors.append(label_selector)
        for meta in self.secrets:
            yield meta

    async def patch_object_metadata(self, key, patch):
        self.patches.append((str(key), patch))

    async def patch_secret_metadata(self, namespace, name, patch):
        self.patches.append((f"Secret/{namespace}/{name}", patch))

    async def read_secret(self, namespace, name):
        return self.stored.get((namespace, name))


class RecordingReconciler:
    """Counts reconciles; answers each with `result`."""

    default_drift_policy = DriftPolicy.CORRECT

    def __init__(self, result: Result | None = None) -> None:
        self.result = result or Result()
        self.reconciled: list[ObjectKey] = []

    def forget(self, key):
        pass

    async def reconcile(self, key, body):
        self.reconciled.append(key)
        return self.result


def bucket(name: str, **labels: str) -> dict[str, Any]:
    return {
        "apiVersion": "kumo.dev/v1alpha1",
        "kind": "Bucket",
        "metadata": {"name": name, "namespace": NS, "uid": f"uid-{name}", "generation": 1, "labels": labels},
        "spec": {},
        "status": {},
    }


def sharded_controller(kube: ShardKube, reconciler: RecordingReconciler | None = None) -> Controller:
    return Controller(reconciler or RecordingReconciler(), shard=SHARD, kube=kube)  # type: ignore[arg-type]


async def drain_queue(controller: Controller) -> None:
    """Run one worker until the queue has nothing left to hand out."""
    worker = asyncio.create_task(controller._work())
    for _ in range(1000):  # a bound on event-loop turns, not on time
        if not (controller.queue._queued or controller.queue._processing):
            break
        await asyncio.sleep(0)
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)


def test_the_start_up_listing_asks_only_for_this_shards_objects_and_secrets():
    kube = ShardKube(objects=[bucket("a", **{SHARD_LABEL: "kumo-0"})])
    controller = sharded_controller(kube)
    asyncio.run(controller.prime(kube, []))  # type: ignore[arg-type]
    assert kube.selectors == [SHARD.secret_selector, SHARD.selector, SHARD.selector]


def test_a_drained_object_is_acknowledged_in_one_patch_and_never_reconciled():
    """The drain label arrives on an object this shard works on: its worker removes both labels
    in one patch, makes no reconcile (so no cloud call), and forgets the object."""
    kube = ShardKube()
    reconciler = RecordingReconciler()
    controller = sharded_controller(kube, reconciler)
    key = ObjectKey(Kind.BUCKET, NS, "a")

    async def scenario():
        controller.on_object_event(Kind.BUCKET, "ADDED", bucket("a", **{SHARD_LABEL: "kumo-0"}))
        await drain_queue(controller)
        controller.on_object_event(Kind.BUCKET, "MODIFIED", bucket("a", **{SHARD_LABEL: "kumo-0", DRAIN_LABEL: "true"}))
        await drain_queue(controller)

    asyncio.run(scenario())
    assert reconciler.reconciled == [key]  # only the pass before the drain
    assert kube.patches == [(str(key), SHARD.acknowledgement())]
    assert key not in controller.cache


def test_a_drain_seen_in_the_start_up_listing_is_acknowledged_not_left_to_the_sweep():
    """An object drained while the replica was down counts as work at start, settled or not."""
    kube = ShardKube(objects=[bucket("a", **{SHARD_LABEL: "kumo-0", DRAIN_LABEL: "true"})])
    controller = sharded_controller(kube)

    async def scenario():
        await controller.prime(kube, [])  # type: ignore[arg-type]
        await drain_queue(controller)

    asyncio.run(scenario())
    assert [patch for _, patch in kube.patches] == [SHARD.acknowledgement()]


def test_a_pass_the_guard_stopped_forgets_the_object():
    """A reconcile that ended `dropped` (assigned elsewhere meanwhile) leaves nothing queued or cached."""
    kube = ShardKube()
    controller = sharded_controller(kube, RecordingReconciler(Result(dropped=True)))

    async def scenario():
        controller.on_object_event(Kind.BUCKET, "ADDED", bucket("a", **{SHARD_LABEL: "kumo-0"}))
        await drain_queue(controller)

    asyncio.run(scenario())
    assert len(controller.cache) == 0 and not controller.queue._timers


def test_a_pass_the_guard_stopped_for_a_drain_acknowledges_it():
    """The drain label arrives while the object's reconcile runs and the guard stops that pass:
    the worker acknowledges the drain then, as the drain's one event is consumed by the pass.
    (Found by the sharded chaos test: forgotten instead, the object waited on this shard's
    acknowledgement until the replica restarted.)"""
    kube = ShardKube()
    key = ObjectKey(Kind.BUCKET, NS, "a")

    class DrainedDuringThePass(RecordingReconciler):
        async def reconcile(self, key, body):
            self.reconciled.append(key)
            drained = bucket("a", **{SHARD_LABEL: "kumo-0", DRAIN_LABEL: "true"})
            controller.on_object_event(Kind.BUCKET, "MODIFIED", drained)
            return Result(dropped=True)

    reconciler = DrainedDuringThePass()
    controller = sharded_controller(kube, reconciler)

    async def scenario():
        controller.on_object_event(Kind.BUCKET, "ADDED", bucket("a", **{SHARD_LABEL: "kumo-0"}))
        await drain_queue(controller)

    asyncio.run(scenario())
    assert reconciler.reconciled == [key]
    assert kube.patches == [(str(key), SHARD.acknowledgement())]
    assert key not in controller.cache and not controller.queue._timers


def secret_event(name: str, **labels: str) -> dict[str, Any]:
    base = {LABEL_MANAGED_BY: "kumo", LABEL_OWNER_KIND: "Bucket", LABEL_OWNER_NAME: name}
    return {"metadata": {"name": f"{name}-bucket", "namespace": NS, "labels": {**base, **labels}}}


def test_secrets_of_other_shards_are_as_absent_and_a_drained_one_is_acknowledged():
    """A kumo Secret on another shard or none (a relabel the selected watch has not caught up
    with) is not this replica's; one being drained is acknowledged and dropped."""
    kube = ShardKube()
    controller = sharded_controller(kube)

    async def scenario():
        controller.on_secret_event("ADDED", secret_event("mine", **{SHARD_LABEL: "kumo-0"}))
        controller.on_secret_event("ADDED", secret_event("theirs", **{SHARD_LABEL: "kumo-1"}))
        controller.on_secret_event("ADDED", secret_event("unassigned"))
        controller.on_secret_event("MODIFIED", secret_event("moving", **{SHARD_LABEL: "kumo-0", DRAIN_LABEL: "x"}))
        await asyncio.gather(*controller._releases)

    asyncio.run(scenario())
    assert set(controller.secrets) == {(NS, "mine-bucket")}
    assert kube.patches == [(f"Secret/{NS}/moving-bucket", SHARD.acknowledgement())]


def test_a_secret_moved_to_another_shard_does_not_send_its_owner_to_a_reconcile_here():
    """The sharder moves a controlled Secret to its owner's next shard at once, before the owner's
    drain is acknowledged here: to this shard the Secret is gone, but its owner is not reconciled
    for it (that pass would write this shard's label back on the new shard's Secret). The
    selected watch tells a move with a DELETED event, as it tells a deletion (an object leaving a
    watch's selection is deleted from its point of view); a read tells them apart. A Secret
    deleted outright still sends its owner to a reconcile (kumo writes it again)."""
    kube = ShardKube()
    reconciler = RecordingReconciler()
    controller = sharded_controller(kube, reconciler)
    key = ObjectKey(Kind.BUCKET, NS, "a")
    ours, theirs = secret_event("a", **{SHARD_LABEL: "kumo-0"}), secret_event("a", **{SHARD_LABEL: "kumo-1"})

    async def added_then_left_the_watch() -> None:
        controller.on_secret_event("ADDED", ours)
        controller.on_secret_event("DELETED", ours)  # the last state it matched in
        await asyncio.gather(*controller._releases)
        await drain_queue(controller)

    async def scenario():
        controller.on_object_event(Kind.BUCKET, "ADDED", bucket("a", **{SHARD_LABEL: "kumo-0"}))
        controller.on_secret_event("ADDED", ours)
        await drain_queue(controller)
        controller.on_secret_event("MODIFIED", theirs)  # a watch not caught up with the relabel
        await drain_queue(controller)
        kube.stored[(NS, "a-bucket")] = theirs
        await added_then_left_the_watch()
        moved = list(reconciler.reconciled)
        kube.stored.clear()
        await added_then_left_the_watch()
        return moved

    moved = asyncio.run(scenario())
    assert moved == [key], "neither move sent a reconcile"
    assert reconciler.reconciled == [key, key], "the deletion did"
    assert (NS, "a-bucket") not in controller.secrets


def test_an_unsharded_controller_is_unchanged_by_shard_labels():
    """Without --shard-ring, labels of a ring mean nothing: no acknowledgement, every Secret counts."""
    controller = Controller(RecordingReconciler())  # type: ignore[arg-type]
    controller.on_secret_event("ADDED", secret_event("theirs", **{SHARD_LABEL: "kumo-1", DRAIN_LABEL: "x"}))
    assert set(controller.secrets) == {(NS, "theirs-bucket")}


# ---------------------------------------------------------------------- provider configs, sharded


def provider_configs_world(cluster_users: list[dict[str, Any]]) -> PCWorld:
    """ProviderConfigs as a shard runs it; a listing of the whole cluster finds `cluster_users`."""
    world = PCWorld()
    world.configs.sharded = True

    async def list_objects(kind, namespace, label_selector=""):
        assert not label_selector, "the usage check must see every shard's objects"
        for body in cluster_users:
            if kind is Kind.DATABASE:
                yield body

    world.kube.list_objects = list_objects  # type: ignore[method-assign]
    return world


def test_a_shard_writes_provider_config_status_without_a_user_count():
    """Every shard writes the config's Ready condition (they agree), never its own partial user
    count, which the others would overwrite with theirs."""

    async def scenario() -> None:
        world = provider_configs_world([])
        world.use("orders", {"kind": "ProviderConfig", "name": "aws"})
        world.configs.on_config_event("ProviderConfig", None, pc_config())
        await world.run_pass()
        [(what, (*_, status))] = world.kube.writes
        assert what == "status" and "users" not in status
        assert status["conditions"][0]["reason"] == api.IDENTITY_VERIFIED

    asyncio.run(scenario())


def test_a_shard_keeps_a_cluster_configs_protection_while_another_shard_uses_it():
    """A ClusterProviderConfig being deleted: the shard without users of its own still holds it
    while an object on another shard uses it, and releases it once none in the cluster does."""
    elsewhere = {"metadata": {"name": "billing", "namespace": "shop"}, "spec": {"providerConfigRef": {"name": "aws"}}}

    async def scenario() -> None:
        users = [elsewhere]
        world = provider_configs_world(users)
        deleting = pc_config(
            "ClusterProviderConfig", deletionTimestamp="2026-01-01T00:00:00Z", finalizers=[api.IN_USE_FINALIZER]
        )
        world.configs.on_config_event("ClusterProviderConfig", None, deleting)
        await world.run_pass()
        assert [what for what, _ in world.kube.writes if what == "finalizers"] == []
        users.clear()
        await world.run_pass()
        released = [args for what, args in world.kube.writes if what == "finalizers"]
        assert released and released[0][1][-1] == {"op": "replace", "path": "/metadata/finalizers", "value": []}

    asyncio.run(scenario())


# ---------------------------------------------------------------------- the replica in the User-Agent


def test_each_shards_cloud_calls_name_it_in_the_user_agent():
    """A shard's name reaches every SDK client it builds: AWS's user_agent_extra after kumo's own
    token, Google's ClientInfo for the SQL Admin and Storage clients; unsharded, nothing is added."""
    import boto3
    from kumo.providers.aws.session import _make_client
    from kumo.providers.gcp.session import _make_sqladmin, _make_storage

    aws = ProviderSettings("aws", region="us-east-1", endpoints={"s3": "http://127.0.0.1:1"}, caller="kumo-0")
    session = boto3.Session(region_name="us-east-1", aws_access_key_id="k", aws_secret_access_key="s")
    assert _make_client(session, aws, "s3").meta.config.user_agent_extra == "kumo kumo-shard/kumo-0"
    assert _make_client(session, replace(aws, caller=""), "s3").meta.config.user_agent_extra == "kumo"

    gcp = ProviderSettings(
        "gcp",
        project="p",
        endpoints={"storage": "http://127.0.0.1:1", "sqladmin": "http://127.0.0.1:2"},
        caller="kumo-0",
    )
    assert _make_storage(gcp)._connection._client_info.user_agent.startswith("kumo-shard/kumo-0 ")
    sent = next(iter(_make_sqladmin(gcp).instances._transport._wrapped_methods.values()))._default_metadata
    assert dict(sent)["x-goog-api-client"].startswith("kumo-shard/kumo-0 ")
    assert user_agent_suffix(replace(gcp, caller="")) == ""


def test_the_reconciler_hands_its_name_to_the_provider_with_the_settings():
    """The settings a provider client is built with carry the replica's name (and the client
    cache keys on it, so a named and an unnamed client are never shared)."""
    world = World(Kind.BUCKET)
    seen: list[ProviderSettings] = []
    make = world.cloud.client
    world.cloud.client = lambda kind, settings, hooks=None: seen.append(settings) or make(kind, settings, hooks)  # type: ignore[method-assign]
    world.reconciler.caller = "kumo-0"
    world.reconcile()
    assert seen and {s.caller for s in seen} == {"kumo-0"}
    assert settings_digest(seen[0]) != settings_digest(replace(seen[0], caller=""))
