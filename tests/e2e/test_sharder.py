"""The sharder of timebertt/kubernetes-controller-sharding v0.11.0 on the test bed, with shard
Leases made by hand (no kumo replica runs): what kumo's replicas will rely on when they run as
its shards (issue 17, kumo.testbed.sharding).

- Assignment: with two live shards, the webhook labels each new Bucket
  `shard.alpha.sharding.timebertt.dev/kumo: <shard>`, spread over both, and each Secret a Bucket
  controls gets its owner's shard.
- Rebalancing (upstream docs/design.md, "Object Movements and Rebalancing"): a new live shard
  takes over a share; a Bucket on a live shard is drained first (the drain label, its shard label
  kept until the shard acknowledges by removing both), while the Secrets it controls move
  directly, as the owner is the one that synchronises the shards. A shard whose Lease is deleted
  is gone: its objects are reassigned directly, with no drain label to wait on.

The ring covers only the test's namespace (namespaceSelector), which no kumo controller watches,
and is deleted at the end, so no other test's request passes through the webhook.
"""

from __future__ import annotations

import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.controller.core.resources import owner_reference
from kumo.providers.base import Kind
from kumo.testbed.bed import TestBed
from kumo.testbed.process import listening_sockets
from kumo.testbed.sharding import (
    DEFAULT_RING,
    Sharder,
    apply_ring,
    delete_ring,
    kumo_ring,
    ring_lease,
    start_sharder,
    start_shards,
    wait_until_assigning,
)

from kumo.api import GROUP, PLURALS, VERSION, connection_secret_name, drain_label, shard_label

from .conftest import Kumo, example, unique, wait_for
from .test_ha import CONTROLLER_NAMESPACE, ha_namespace

pytestmark = pytest.mark.e2e

__all__ = ["ha_namespace"]  # the fixture: a fresh namespace with an AWS ProviderConfig `aws`

SHARD = shard_label(DEFAULT_RING)
DRAIN = drain_label(DEFAULT_RING)
BUCKETS = 24  # by chance all on one of two shards: 2 x 2^-24; none moving to a third: (2/3)^24, 6e-5
LEASE_SECONDS, RENEW_EVERY = 15, 2.0
TIMEOUT = 30.0  # the sharder reacts to Lease events at once; this is only the give-up bound


@pytest.fixture(scope="module")
def sharder(
    testbed: TestBed, kube_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Sharder]:
    running = start_sharder(
        testbed.env["kubeconfig"],
        tmp_path_factory.mktemp("sharder"),
        Path(testbed.env["workdir"]) / "pki",
        api_client=kube_api,
    )
    yield running
    running.stop()


class HandShards:
    """Shard Leases kept alive by this test in place of kumo replicas: renewed every
    RENEW_EVERY seconds until dropped."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.leases = client.CoordinationV1Api(api)
        self.namespace = namespace
        self.live: set[str] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._renewer = threading.Thread(target=self._renew, name="hand-shards", daemon=True)
        self._renewer.start()

    def add(self, name: str) -> None:
        self.leases.create_namespaced_lease(
            self.namespace, ring_lease(name, self.namespace, duration_seconds=LEASE_SECONDS)
        )
        with self._lock:
            self.live.add(name)

    def delete(self, name: str) -> None:
        """The shard is gone, Lease and all (not a graceful release)."""
        with self._lock:
            self.live.discard(name)
        self.leases.delete_namespaced_lease(name, self.namespace)

    def close(self) -> None:
        self._stop.set()
        self._renewer.join()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_EVERY):
            with self._lock:
                names = sorted(self.live)
            for name in names:
                renewed = ring_lease(name, self.namespace, duration_seconds=LEASE_SECONDS)["spec"]["renewTime"]
                try:
                    self.leases.patch_namespaced_lease(name, self.namespace, {"spec": {"renewTime": renewed}})
                except ApiException as error:
                    if error.status != 404:  # deleted since listed
                        raise


@pytest.fixture
def shards(sharder: Sharder, kube_api: client.ApiClient, unwatched_namespace: str) -> Iterator[HandShards]:
    """Shards shard-a and shard-b live, and the ring `kumo` over the test's namespace assigning."""
    hand = HandShards(kube_api, unwatched_namespace)
    try:
        hand.add("shard-a")
        hand.add("shard-b")
        apply_ring(kube_api, kumo_ring(namespaces=[unwatched_namespace]))
        wait_until_assigning(kube_api, unwatched_namespace)
        yield hand
    finally:
        hand.close()
        delete_ring(kube_api)


class Objects:
    """The test's Buckets and the Secrets they control, by their labels."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create_bucket(self, name: str) -> dict[str, Any]:
        manifest = example("aws", "Bucket", name)
        return self.custom.create_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS["Bucket"], manifest)

    def create_secret(self, bucket: dict[str, Any]) -> client.V1Secret:
        """The Bucket's connection Secret as kumo writes it: its controller is the Bucket."""
        name = connection_secret_name(Kind.BUCKET, bucket)
        body = {"metadata": {"name": name, "ownerReferences": [owner_reference(Kind.BUCKET, bucket)]}}
        return self.core.create_namespaced_secret(self.namespace, body)

    def buckets(self) -> dict[str, dict[str, str]]:
        """name -> labels of every Bucket."""
        items = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS["Bucket"])["items"]
        return {item["metadata"]["name"]: item["metadata"].get("labels") or {} for item in items}

    def secrets(self) -> dict[str, dict[str, str]]:
        """owner Bucket's name -> labels of every Secret a Bucket controls."""
        found = {}
        for secret in self.core.list_namespaced_secret(self.namespace).items:
            owners = [ref for ref in secret.metadata.owner_references or [] if ref.controller]
            if owners:
                found[owners[0].name] = secret.metadata.labels or {}
        return found

    def remove_labels(self, bucket: str) -> None:
        """Acknowledge a drain as a shard does: remove the drain and the shard label at once."""
        patch = {"metadata": {"labels": {SHARD: None, DRAIN: None}}}
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            PLURALS["Bucket"],
            bucket,
            patch,
            _content_type="application/merge-patch+json",
        )


def _shards_of(labels: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: found.get(SHARD, "") for name, found in labels.items()}


def _wait(what: str, check: Callable[[], Any], sharder: Sharder) -> Any:
    def log() -> str:
        return "sharder log:\n" + sharder.process.log_tail(30)

    return wait_for(what, check, log, TIMEOUT, every=0.2)


def _counter(sharder: Sharder, name: str, resource: str) -> float:
    """A counter of the sharder's for ring `kumo` and `resource`, from its metrics endpoint."""
    with urllib.request.urlopen(sharder.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    wanted = (f'controllerring="{DEFAULT_RING}"', f'resource="{resource}"')
    samples = [line for line in text.splitlines() if line.startswith(f"controller_sharding_{name}{{")]
    return sum(float(line.rsplit(" ", 1)[1]) for line in samples if all(label in line for label in wanted))


def test_new_objects_spread_over_live_shards_and_secrets_follow_their_owner(
    sharder: Sharder, shards: HandShards, kube_api: client.ApiClient, unwatched_namespace: str
) -> None:
    objects = Objects(kube_api, unwatched_namespace)
    # Assigned in admission: the create's own response carries the label.
    created = [objects.create_bucket(f"spread-{index}") for index in range(BUCKETS)]
    assigned = {bucket["metadata"]["name"]: (bucket["metadata"].get("labels") or {}).get(SHARD) for bucket in created}
    assert set(assigned.values()) == {"shard-a", "shard-b"}, assigned
    for bucket in created:
        secret = objects.create_secret(bucket)
        assert (secret.metadata.labels or {}).get(SHARD) == assigned[bucket["metadata"]["name"]]
    assert _counter(sharder, "assignments_total", "buckets") >= BUCKETS
    assert _counter(sharder, "assignments_total", "secrets") >= BUCKETS
    # Every server of the sharder (webhook, metrics, health) listens on loopback only.
    sockets = listening_sockets(sharder.pid)
    assert len(sockets) == 3 and {address for address, _ in sockets} == {"127.0.0.1"}, sockets


def test_a_new_shard_drains_its_share_and_a_deleted_shard_is_reassigned_directly(
    sharder: Sharder, shards: HandShards, kube_api: client.ApiClient, unwatched_namespace: str
) -> None:
    objects = Objects(kube_api, unwatched_namespace)
    for index in range(BUCKETS):
        objects.create_secret(objects.create_bucket(f"move-{index}"))
    before = _shards_of(objects.buckets())
    drains_before = _counter(sharder, "drains_total", "buckets")

    # A third live shard: the Buckets it should now hold are drained from their live shard (the
    # drain label, the old shard label kept); the Secrets they control move to it directly. One
    # pass of the sharder does every Bucket, then every Secret: once the drained Buckets are
    # exactly those whose Secrets are on shard-c, the pass is through.
    shards.add("shard-c")

    def drained() -> set[str] | None:
        marked = {name for name, found in objects.buckets().items() if DRAIN in found}
        followed = {name for name, shard in _shards_of(objects.secrets()).items() if shard == "shard-c"}
        return marked if marked and marked == followed else None

    draining = _wait("some Buckets drained for shard-c, their Secrets on it", drained, sharder)
    labels = objects.buckets()
    for name in draining:
        assert labels[name][SHARD] == before[name], f"{name} lost its shard before acknowledging the drain"
    assert _counter(sharder, "drains_total", "buckets") >= drains_before + len(draining)
    # The shard acknowledges: the webhook assigns each Bucket to shard-c.
    for name in draining:
        objects.remove_labels(name)
    after = _shards_of(objects.buckets())
    assert {after[name] for name in draining} == {"shard-c"}, after
    assert not any(DRAIN in found for found in objects.buckets().values())
    assert {name: shard for name, shard in after.items() if name not in draining} == {
        name: shard for name, shard in before.items() if name not in draining
    }, "only the drained Buckets moved"

    # shard-a is gone: its Buckets and Secrets go to the shards left, with no drain to wait on.
    on_a = sorted(name for name, shard in after.items() if shard == "shard-a")
    assert on_a, after
    moved_before = _counter(sharder, "movements_total", "buckets")
    shards.delete("shard-a")

    def reassigned() -> dict[str, str] | None:
        buckets, secrets = _shards_of(objects.buckets()), _shards_of(objects.secrets())
        if all(buckets[name] in {"shard-b", "shard-c"} and secrets[name] == buckets[name] for name in on_a):
            return buckets
        return None

    final = _wait("shard-a's objects reassigned", reassigned, sharder)
    assert _counter(sharder, "movements_total", "buckets") >= moved_before + len(on_a)
    assert not any(DRAIN in found for found in objects.buckets().values())
    assert {name: shard for name, shard in final.items() if name not in on_a} == {
        name: shard for name, shard in after.items() if name not in on_a
    }, "only shard-a's Buckets moved"


def test_kumo_replicas_started_as_shards_act_on_what_the_sharder_assigns_them(
    sharder: Sharder, kube_api: client.ApiClient, testbed: TestBed, ha_namespace: str, tmp_path: Path
) -> None:
    """Two `kumo run --shard-ring` replicas (start_shards) and the sharder: each Bucket is
    assigned in admission, created in the cloud by the replica its label names and by no other,
    and its connection Secret carries the same shard."""
    ring = unique("ring")
    apply_ring(kube_api, kumo_ring(ring, namespaces=[ha_namespace]))
    replicas = start_shards(
        2,
        testbed.env["kubeconfig"],
        tmp_path,
        ring=ring,
        name_prefix=unique("kumo"),
        extra_env={"KUMO_NAMESPACES": ha_namespace},
    )
    identities = {replica.extra_env["KUMO_LEADER_IDENTITY"]: replica for replica in replicas}
    try:
        wait_until_assigning(kube_api, ha_namespace, ring)
        kumo = Kumo(kube_api, ha_namespace, replicas[0])
        names = [f"sharded-{index}" for index in range(6)]
        for name in names:
            kumo.create(example("aws", "Bucket", name))
        for name in names:
            bucket = kumo.wait_ready("Bucket", name, timeout=90)
            shard = bucket["metadata"]["labels"][shard_label(ring)]
            assert shard in identities, shard
            for identity, replica in identities.items():
                created = f"created Bucket {ha_namespace}/{name}" in replica.log_text()
                assert created == (identity == shard), f"{name} on {shard}, created by {identity}: {created}"
            secret = kumo.core.read_namespaced_secret(connection_secret_name(Kind.BUCKET, bucket), ha_namespace)
            assert secret.metadata.labels[shard_label(ring)] == shard
    finally:
        for replica in replicas:
            replica.stop()
        delete_ring(kube_api, ring)
        leases = client.CoordinationV1Api(kube_api)
        for identity in identities:
            try:
                leases.delete_namespaced_lease(identity, CONTROLLER_NAMESPACE)
            except ApiException as error:
                if error.status != 404:
                    raise
