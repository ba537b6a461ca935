"""The controller's object cache, and what a (re)started controller decides before its watches run."""

from __future__ import annotations

import asyncio
import base64
import json
from types import SimpleNamespace

import pytest
from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache, slim
from kumo.controller.runtime.operator import Controller
from kumo.controller.runtime.scopes import SweepScope
from kumo.providers.base import Kind

from kumo.api import ANNOTATION_ROTATION, FINALIZER, LABEL_MANAGED_BY, LABEL_OWNER_KIND, LABEL_OWNER_NAME

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"


def _bucket(name, *, ready=True, namespace="team", annotations=None, in_sync="True", created=True):
    conditions = [
        {"type": "Ready", "status": "True" if ready else "False", "reason": "Available"},
        {"type": "Synced", "status": "True", "reason": "ReconcileSuccess"},
        {"type": "InSync", "status": in_sync, "reason": "UpToDate"},
    ]
    return {
        "apiVersion": "kumo.dev/v1alpha1",
        "kind": "Bucket",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "generation": 1,
            "resourceVersion": "7",
            "finalizers": [FINALIZER],
            "annotations": {LAST_APPLIED: "x" * 2000, **(annotations or {})},
            "managedFields": [{"manager": "kubectl", "fieldsV1": {"f:spec": {"f:versioning": {}}}}] * 20,
            "creationTimestamp": "2026-11-22T00:00:00Z",
        },
        "spec": {"versioning": True},
        "status": {
            "observedGeneration": 1,
            "conditions": conditions,
            "atProvider": {"externalName": f"team-{name}"} if created else {},
        },
    }


def test_cached_bodies_keep_what_kumo_reads_and_nothing_else():
    """managedFields and kubectl's last-applied copy are dropped; spec, status and the metadata
    the reconciler reads are kept; the stored copy is far smaller than the body."""
    body = _bucket("a", annotations={"kumo.dev/paused": "false"})
    kept = slim(body)
    assert "managedFields" not in kept["metadata"] and "creationTimestamp" not in kept["metadata"]
    assert kept["metadata"]["annotations"] == {"kumo.dev/paused": "false"}
    assert kept["spec"] == body["spec"] and kept["status"] == body["status"]
    assert {"name", "namespace", "uid", "generation", "resourceVersion", "finalizers"} <= set(kept["metadata"])
    cache = ObjectCache()
    cache.put(ObjectKey(Kind.BUCKET, "team", "a"), body)
    stored = cache._bodies[ObjectKey(Kind.BUCKET, "team", "a")]
    assert len(stored) < len(json.dumps(body)) / 4


def test_each_get_is_a_fresh_copy():
    cache = ObjectCache()
    key = ObjectKey(Kind.BUCKET, "team", "a")
    cache.put(key, _bucket("a"))
    first = cache.get(key)
    first["spec"]["versioning"] = False
    assert cache.get(key)["spec"]["versioning"] is True
    assert cache.get(ObjectKey(Kind.BUCKET, "team", "missing")) is None


def test_objects_are_filed_under_their_scope_and_leave_it_when_no_longer_swept():
    """Only created, unpaused, compared objects are swept; pausing, Ignore or removal unfiles them."""
    cache = ObjectCache(DriftPolicy.CORRECT)
    scope = SweepScope("ClusterProviderConfig", "", "default", Kind.BUCKET)
    a, b, c = (ObjectKey(Kind.BUCKET, "team", n) for n in "abc")
    cache.put(a, _bucket("a", annotations={"kumo.dev/sweep-interval": "5m"}))
    cache.put(b, _bucket("b"))
    cache.put(c, _bucket("c", created=False))  # nothing in the cloud yet: nothing to sweep
    assert dict(cache.scopes()) == {scope: {a: 300.0, b: None}}
    assert cache.members(scope) == [a, b]
    cache.put(a, _bucket("a", annotations={"kumo.dev/paused": "true"}))
    ignored = _bucket("b")
    ignored["spec"]["driftPolicy"] = "Ignore"
    cache.put(b, ignored)
    assert dict(cache.scopes()) == {}
    cache.put(b, _bucket("b"))
    cache.pop(b)
    assert dict(cache.scopes()) == {} and b not in cache and len(cache) == 2


def test_state_counts_feed_the_metrics_without_decoding_bodies():
    cache = ObjectCache()
    cache.put(ObjectKey(Kind.BUCKET, "team", "a"), _bucket("a"))
    cache.put(ObjectKey(Kind.BUCKET, "team", "b"), _bucket("b", ready=False, in_sync="False"))
    ready, drifted = cache.state_counts()
    assert ready == {("Bucket", "True"): 1, ("Bucket", "False"): 1}
    assert drifted == {"Bucket": 1}


# ---------------------------------------------------------------------- start-up listing


class ListingKube:
    """What prime() and confirm_primed() read: pages of objects and Secret metadata, and GETs."""

    def __init__(self, objects, secrets, gone=()):
        self.objects, self.secrets, self.gone = objects, secrets, set(gone)
        self.gets: list[str] = []

    async def list_objects(self, kind, namespace, label_selector=""):
        for body in self.objects:
            if body["kind"] == kind.value and namespace in (None, body["metadata"]["namespace"]):
                yield body

    async def list_secret_metadata(self, namespace, label_selector):
        assert label_selector == f"{LABEL_MANAGED_BY}=kumo"
        for meta in self.secrets:
            if namespace in (None, meta["namespace"]):
                yield meta

    async def get_object(self, key):
        self.gets.append(str(key))
        return None if key.name in self.gone else {"metadata": {"name": key.name}}

    async def read_secret(self, namespace, name):
        self.gets.append(f"Secret/{namespace}/{name}")
        return None if name in self.gone else object()


class ForgetfulReconciler:
    default_drift_policy = DriftPolicy.CORRECT

    def forget(self, key):
        pass


def _secret_meta(owner, namespace="team"):
    return {
        "name": f"{owner}-connection",
        "namespace": namespace,
        "labels": {LABEL_MANAGED_BY: "kumo", LABEL_OWNER_KIND: "Bucket", LABEL_OWNER_NAME: owner},
        "annotations": {ANNOTATION_ROTATION: ""},
    }


def test_a_restart_leaves_ready_objects_with_their_secret_to_the_first_sweep():
    """Ready objects whose Secret exists are not reconciled one by one; an object whose Secret is
    missing, or that is not Ready, is. The sweeper may start once the listing is in."""
    kube = ListingKube(
        objects=[_bucket("a"), _bucket("b"), _bucket("c", ready=False), _bucket("d", namespace="other")],
        secrets=[_secret_meta("a"), _secret_meta("c"), _secret_meta("d", namespace="other")],
    )
    controller = Controller(ForgetfulReconciler())  # type: ignore[arg-type]

    async def scenario():
        assert not controller.primed.is_set()
        await controller.prime(kube, ["team"])
        assert controller.primed.is_set()

    asyncio.run(scenario())
    assert len(controller.cache) == 3  # "other" is not watched
    assert sorted(k.name for k in controller.queue._queued) == ["b", "c"]


def test_what_vanished_between_the_start_up_listing_and_the_watches_is_dropped():
    """Objects and Secrets the watches deliver need no lookup; what they never deliver is looked
    up once: a deleted object leaves the cache, a deleted Secret brings its owner back to the queue."""
    kube = ListingKube(
        objects=[_bucket("a"), _bucket("b"), _bucket("ghost")],
        secrets=[_secret_meta("a"), _secret_meta("b"), _secret_meta("ghost")],
        gone={"ghost", "b-connection"},
    )
    controller = Controller(ForgetfulReconciler())  # type: ignore[arg-type]

    async def scenario():
        await controller.prime(kube, [])
        assert not controller.queue._queued  # everything looked settled
        controller.on_object_event(Kind.BUCKET, None, _bucket("a"))  # the watches' own listing
        controller.on_object_event(Kind.BUCKET, None, _bucket("b"))
        controller.on_secret_event(None, {"metadata": _secret_meta("a")})
        await controller.confirm_primed(kube, quiet=0.0)

    asyncio.run(scenario())
    assert kube.gets == ["Bucket/team/ghost", "Secret/team/b-connection", "Secret/team/ghost-connection"]
    assert ObjectKey(Kind.BUCKET, "team", "ghost") not in controller.cache
    assert ("team", "b-connection") not in controller.secrets
    assert [k.name for k in controller.queue._queued] == ["b"]  # not the ghost: it is gone


# ---------------------------------------------------------------------- provider configs


class ConfigKube:
    def __init__(self):
        self.reads: list[tuple[str, str, str]] = []
        self.missing = False

    async def get_provider_config(self, kind, namespace, name):
        from kumo.controller.core.kubeapi import NotFound

        self.reads.append((kind, namespace, name))
        if self.missing:
            raise NotFound(name)
        return {"spec": {"provider": "aws", "region": namespace or "eu-west-1"}}


def test_provider_configs_are_reused_for_a_few_seconds_and_failures_never():
    """A burst of objects on one config reads it once; after the ttl it is read again; a
    namespaced config is resolved per namespace; a failed lookup is not remembered."""
    from kumo.controller.core.providerconfig import ProviderConfigError, RecentConfigs

    now = [0.0]
    configs, kube = RecentConfigs(ttl=10.0, clock=lambda: now[0]), ConfigKube()

    def body(namespace, ref=None):
        return {"metadata": {"namespace": namespace}, "spec": {"providerConfigRef": ref} if ref else {}}

    async def scenario():
        for namespace in ("a", "b", "a"):
            await configs.resolve(kube, body(namespace), "kumo-system")
        team = {"kind": "ProviderConfig", "name": "team"}
        assert (await configs.resolve(kube, body("a", team), "kumo-system")).region == "a"
        assert (await configs.resolve(kube, body("b", team), "kumo-system")).region == "b"
        now[0] = 10.5
        await configs.resolve(kube, body("a"), "kumo-system")
        kube.missing = True
        for _ in range(2):
            with pytest.raises(ProviderConfigError):
                await configs.resolve(kube, body("c", {"kind": "ProviderConfig", "name": "new"}), "kumo-system")

    asyncio.run(scenario())
    assert kube.reads == [
        ("ClusterProviderConfig", "a", "default"),
        ("ProviderConfig", "a", "team"),
        ("ProviderConfig", "b", "team"),
        ("ClusterProviderConfig", "a", "default"),
        # each failure also looks for a config of the other kind, to say which kind to set
        ("ProviderConfig", "c", "new"),
        ("ClusterProviderConfig", "c", "new"),
        ("ProviderConfig", "c", "new"),
        ("ClusterProviderConfig", "c", "new"),
    ]


def test_the_lookup_waits_for_the_watches_to_start_delivering():
    """Watches that start late are waited for, not replaced by one GET per listed object."""
    kube = ListingKube(objects=[_bucket("a"), _bucket("b")], secrets=[_secret_meta("a"), _secret_meta("b")])
    controller = Controller(ForgetfulReconciler())  # type: ignore[arg-type]

    async def watches_start_late():
        await asyncio.sleep(0.3)
        for name in ("a", "b"):
            controller.on_object_event(Kind.BUCKET, None, _bucket(name))
            controller.on_secret_event(None, {"metadata": _secret_meta(name)})

    async def scenario():
        await controller.prime(kube, [])
        await asyncio.gather(controller.confirm_primed(kube, quiet=0.1, patience=10.0), watches_start_late())

    asyncio.run(scenario())
    assert kube.gets == []


# ---------------------------------------------------------------------- sweeps over the cache


class ListingClient:
    def __init__(self, cache, changed_meanwhile):
        self.cache, self.changed_meanwhile = cache, changed_meanwhile

    async def observe_many(self, resources):
        for key, body in self.changed_meanwhile:  # a reconcile writes status during the listing
            self.cache.put(key, body)
        return {r.external_name: SimpleNamespace(drift=()) for r in resources}


class JudgingReconciler(ForgetfulReconciler):
    def __init__(self, client):
        self.client, self.judged = client, []

    async def connect(self, kind, body):
        return None, self.client, None

    def resource_for(self, kind, body, settings):
        return SimpleNamespace(external_name=body["status"]["atProvider"]["externalName"])

    async def assess_sweep(self, key, body, observation):
        self.judged.append((key.name, body["metadata"]["resourceVersion"]))
        return False


def test_a_sweep_judges_only_bodies_unchanged_since_its_listing():
    """An object whose body changed while the cloud was being listed is left to the next sweep:
    its listing was asked for on the old body. The others are judged on the body they were
    listed with, decoded one at a time."""
    from kumo.controller.runtime.sweeps import Sweeper
    from kumo.controller.runtime.workqueue import WorkQueue

    cache = ObjectCache()
    keys = [ObjectKey(Kind.BUCKET, "team", name) for name in ("a", "b")]
    for key in keys:
        cache.put(key, _bucket(key.name))
    newer = _bucket("b")
    newer["metadata"]["resourceVersion"] = "8"
    client = ListingClient(cache, [(keys[1], newer)])
    reconciler = JudgingReconciler(client)
    sweeper = Sweeper(reconciler, cache, WorkQueue(), lambda namespace, name: True)  # type: ignore[arg-type]
    scope = SweepScope("ClusterProviderConfig", "", "default", Kind.BUCKET)
    stats = asyncio.run(sweeper.sweep(scope, cache.members(scope)))
    assert reconciler.judged == [("a", "7")]
    assert (stats.listed, stats.compared) == (2, 1)


def _database_secret(password: str, digest_of: str, uid: str = "uid-db") -> dict:
    from kumo.controller.core.connection import password_digest

    from kumo.api import ANNOTATION_PASSWORD_DIGEST

    return {
        "metadata": {
            "name": "orders-connection",
            "namespace": "team",
            "labels": {LABEL_MANAGED_BY: "kumo", LABEL_OWNER_KIND: "Database", LABEL_OWNER_NAME: "orders"},
            "annotations": {ANNOTATION_ROTATION: "", ANNOTATION_PASSWORD_DIGEST: password_digest(uid, digest_of)},
            "ownerReferences": [{"kind": "Database", "name": "orders", "uid": uid}],
        },
        "data": {"password": base64.b64encode(password.encode()).decode()},
    }


def test_a_password_edited_in_the_secret_sends_its_database_to_a_reconcile_at_once():
    """The Secret watch tells kumo's own write (the digest matches) from a user's edit; an edit
    enqueues the Database now, and until it is handled the sweep sees the Secret as missing (the
    backstop if the watch event was lost)."""
    controller = Controller(ForgetfulReconciler())  # type: ignore[arg-type]
    key = ObjectKey(Kind.DATABASE, "team", "orders")
    controller.cache.put(key, {"metadata": {"name": "orders", "namespace": "team", "uid": "uid-db"}})
    controller.on_secret_event("MODIFIED", _database_secret("kumo-wrote-this", digest_of="kumo-wrote-this"))
    assert len(controller.queue) == 0 and controller.secret_exists("team", "orders-connection")
    controller.on_secret_event("MODIFIED", _database_secret("a-user-wrote-this", digest_of="kumo-wrote-this"))
    assert len(controller.queue) == 1 and not controller.secret_exists("team", "orders-connection")
    controller.on_secret_event("MODIFIED", _database_secret("a-user-wrote-this", digest_of="a-user-wrote-this"))
    assert controller.secret_exists("team", "orders-connection")


def test_a_sweep_leaves_objects_a_reconcile_has_out_of_the_cloud_read():
    """Objects queued or being reconciled (new ones being created) are not read by the sweep:
    their reconcile observes them; a scope with nothing else makes no cloud call at all."""
    from kumo.controller.runtime.sweeps import Sweeper
    from kumo.controller.runtime.workqueue import WorkQueue

    class CountingClient(ListingClient):
        def __init__(self, cache):
            super().__init__(cache, [])
            self.read: list[list[str]] = []

        async def observe_many(self, resources):
            self.read.append(sorted(r.external_name for r in resources))
            return await super().observe_many(resources)

    cache, queue = ObjectCache(), WorkQueue()
    keys = [ObjectKey(Kind.BUCKET, "team", name) for name in ("a", "b")]
    for key in keys:
        cache.put(key, _bucket(key.name))
    client = CountingClient(cache)
    reconciler = JudgingReconciler(client)
    sweeper = Sweeper(reconciler, cache, queue, lambda namespace, name: True)  # type: ignore[arg-type]
    scope = SweepScope("ClusterProviderConfig", "", "default", Kind.BUCKET)

    queue.add(keys[1])
    stats = asyncio.run(sweeper.sweep(scope, cache.members(scope)))
    assert client.read == [[_bucket("a")["status"]["atProvider"]["externalName"]]]
    assert reconciler.judged == [("a", "7")] and stats.listed == 1

    queue.add(keys[0])
    assert asyncio.run(sweeper.sweep(scope, cache.members(scope))).listed == 0
    assert len(client.read) == 1


def test_scopes_of_start_up_are_swept_at_once_and_later_ones_an_interval_after_they_appear():
    """The first sweep verifies what was Ready before a restart, so it starts at once; a scope
    that appears afterwards holds objects just created (each observed by its reconcile), so its
    first sweep comes an interval later, not in the middle of their creates."""
    from kumo.controller.runtime.sweeps import Sweeper
    from kumo.controller.runtime.workqueue import WorkQueue

    cache = ObjectCache()
    cache.put(ObjectKey(Kind.BUCKET, "team", "old"), _bucket("old"))
    reconciler = ForgetfulReconciler()
    sweeper = Sweeper(reconciler, cache, WorkQueue(), lambda namespace, name: True, interval=60.0)  # type: ignore[arg-type]
    swept: list[str] = []

    async def sweep_bounded(semaphore, scope):
        swept.append(scope.config_namespace or "cluster")

    sweeper._sweep_bounded = sweep_bounded  # type: ignore[method-assign]

    async def scenario():
        semaphore = asyncio.Semaphore(1)
        sweeper._start_due(0.0, semaphore)  # start-up
        await asyncio.sleep(0)
        config = {"kind": "ProviderConfig", "name": "aws"}
        later = _bucket("new", namespace="other")
        later["spec"]["providerConfigRef"] = config
        cache.put(ObjectKey(Kind.BUCKET, "other", "new"), later)
        sweeper._start_due(1.0, semaphore)  # the new scope's objects were just created
        await asyncio.sleep(0)
        assert len(swept) == 1
        sweeper._start_due(61.0, semaphore)  # an interval later: both are due
        await asyncio.sleep(0)

    asyncio.run(scenario())
    assert swept[0] == "cluster" and sorted(swept) == ["cluster", "cluster", "other"]


def test_bodies_read_back_exactly_before_and_after_their_kind_has_a_compression_dictionary():
    """The first Bucket stored with conditions becomes the Buckets' preset dictionary. A body
    stored before it (a new object's, no status yet), the settled ones after it, another kind's
    (its own dictionary) and one far larger than the dictionary all read back as slim() kept
    them; a settled body is held compressed, in a fraction of its JSON."""
    fresh = _bucket("fresh")
    fresh["status"] = {}
    database = {**_bucket("orders"), "kind": "Database", "spec": {"engine": "postgres", "size": "small"}}
    stored = [
        (Kind.BUCKET, fresh),
        (Kind.BUCKET, _bucket("a")),
        (Kind.BUCKET, _bucket("b", ready=False, in_sync="False")),
        (Kind.DATABASE, database),
        (Kind.BUCKET, _bucket("large", annotations={"team.example/notes": "y" * 20_000})),
    ]
    cache = ObjectCache()
    for kind, body in stored:
        cache.put(ObjectKey(kind, "team", body["metadata"]["name"]), body)
    for kind, body in stored:
        assert cache.get(ObjectKey(kind, "team", body["metadata"]["name"])) == slim(body), body["metadata"]["name"]
    settled = ObjectKey(Kind.BUCKET, "team", "b")
    assert len(cache._bodies[settled]) < len(json.dumps(slim(_bucket("b")))) / 4
    cache.put(ObjectKey(Kind.BUCKET, "team", "fresh"), _bucket("fresh"))  # its first status written
    assert cache.get(ObjectKey(Kind.BUCKET, "team", "fresh")) == slim(_bucket("fresh"))
