"""kumo as shards of a ring, without the sharder: two `kumo run --shard-ring` replicas against the
real API server, with objects labelled to one shard or the other by hand, as the sharder's
webhook would (timebertt/kubernetes-controller-sharding v0.11.0, docs/implement-sharding.md).

What a replica does is read from its own metrics endpoint (its cloud calls by operation) and its
own log, so every cloud call is attributed to the replica that made it. The list calls per sweep
per shard are printed, not asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.testbed.bed import TestBed
from kumo.testbed.controllerproc import ControllerProcess

from kumo import api

from .conftest import Kumo, example, unique
from .test_ha import CONTROLLER_NAMESPACE, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD, ha_namespace, wait_until
from .test_metrics import scrape, total

pytestmark = pytest.mark.e2e

__all__ = ["ha_namespace"]  # the fixture: a fresh namespace with an AWS ProviderConfig `aws`

SWEEP_INTERVAL = 5  # seconds: several sweeps within a test
WRITES = ("CreateBucket", "PutBucketVersioning", "PutBucketTagging", "PutBucketLifecycleConfiguration", "DeleteBucket")


class Replica:
    """One shard: its process, its name, and what its metrics say it asked of the cloud."""

    def __init__(self, process: ControllerProcess, identity: str) -> None:
        self.process, self.identity = process, identity

    def calls(self, operation: str) -> float:
        return total(scrape(self.process.metrics_url), "kumo_cloud_api_calls_total", operation=operation)

    def writes(self) -> dict[str, float]:
        samples = scrape(self.process.metrics_url)
        return {op: total(samples, "kumo_cloud_api_calls_total", operation=op) for op in WRITES}

    def logged(self, text: str) -> bool:
        return text in self.process.log_text()


@pytest.fixture
def shards(testbed: TestBed, kube_api: client.ApiClient, ha_namespace: str, tmp_path: Path) -> Iterator[list[Replica]]:
    """Two replicas of a ring of this test's own, each a shard named by --leader-identity."""
    ring = unique("ring")
    env = {
        "KUMO_SHARD_RING": ring,
        "KUMO_NAMESPACES": ha_namespace,
        "KUMO_LEASE_DURATION": str(LEASE_DURATION),
        "KUMO_RENEW_DEADLINE": str(RENEW_DEADLINE),
        "KUMO_RETRY_PERIOD": str(RETRY_PERIOD),
        "KUMO_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
    }
    replicas = []
    for letter in ("a", "b"):
        identity = unique(f"shard-{letter}")
        process = ControllerProcess(
            kubeconfig=testbed.env["kubeconfig"],
            log_path=tmp_path / f"{identity}.log",
            extra_env={**env, "KUMO_LEADER_IDENTITY": identity},
        )
        replicas.append(Replica(process, identity))
    try:
        for replica in replicas:
            replica.process.start()
        yield replicas
    finally:
        for replica in replicas:
            replica.process.stop()
        leases = client.CoordinationV1Api(kube_api)
        for replica in replicas:
            try:
                leases.delete_namespaced_lease(replica.identity, CONTROLLER_NAMESPACE)
            except ApiException as error:
                if error.status != 404:
                    raise


def ring_of(replicas: list[Replica]) -> str:
    return replicas[0].process.extra_env["KUMO_SHARD_RING"]


def bucket_on(ring: str, name: str, shard: str | None) -> dict:
    manifest = example("aws", "Bucket", name)
    if shard is not None:
        manifest["metadata"].setdefault("labels", {})[api.shard_label(ring)] = shard
    return manifest


def labels_of(kumo: Kumo, name: str) -> dict[str, str]:
    body = kumo.get("Bucket", name) or {}
    return dict((body.get("metadata") or {}).get("labels") or {})


def test_each_shard_acts_only_on_its_own_objects(kube_api, ha_namespace, shards):
    """Each replica holds a Lease named after itself, labelled with the ring; each creates only the
    bucket labelled for it (its own metrics count one CreateBucket); an object labelled for no
    shard is left alone; the connection Secret follows its owner's shard label."""
    a, b = shards
    ring = ring_of(shards)
    kumo = Kumo(kube_api, ha_namespace, a.process)
    names = {"a": unique("shard-a-bucket"), "b": unique("shard-b-bucket"), "none": unique("unassigned")}
    kumo.create(bucket_on(ring, names["a"], a.identity))
    kumo.create(bucket_on(ring, names["b"], b.identity))
    kumo.create(bucket_on(ring, names["none"], None))
    kumo.wait_ready("Bucket", names["a"], timeout=90)
    kumo.wait_ready("Bucket", names["b"], timeout=90)

    for replica in shards:
        lease = client.CoordinationV1Api(kube_api).read_namespaced_lease(replica.identity, CONTROLLER_NAMESPACE)
        assert lease.spec.holder_identity == replica.identity
        assert lease.metadata.labels == {api.LABEL_CONTROLLER_RING: ring}
    assert (a.calls("CreateBucket"), b.calls("CreateBucket")) == (1, 1)
    assert a.logged(f"created Bucket {ha_namespace}/{names['a']}") and not a.logged(names["b"])
    assert b.logged(f"created Bucket {ha_namespace}/{names['b']}") and not b.logged(names["a"])
    unassigned = kumo.get("Bucket", names["none"]) or {}
    assert not unassigned.get("status") and not unassigned["metadata"].get("finalizers")
    secret = kumo.core.read_namespaced_secret(f"{names['a']}-bucket", ha_namespace)
    assert secret.metadata.labels[api.shard_label(ring)] == a.identity

    # Listing cost: each shard's sweep lists the account's buckets (ListBuckets) and reads the
    # settings of its own only: two shards make two ListBuckets per interval where one made one.
    before = [replica.calls("ListBuckets") for replica in shards]
    started = time.monotonic()
    wait_until(
        "two sweeps by each shard",
        lambda: all(r.calls("ListBuckets") >= was + 2 for r, was in zip(shards, before, strict=True)),
        [a.process, b.process],
    )
    took = time.monotonic() - started
    listed = [r.calls("ListBuckets") - was for r, was in zip(shards, before, strict=True)]
    print(f"\nListBuckets per shard in {took:.1f}s (sweep interval {SWEEP_INTERVAL}s): {listed}")


def test_a_drained_object_is_acknowledged_and_left_to_its_next_shard(kube_api, ha_namespace, shards):
    """The drain label on a's bucket: a removes the drain and shard label in one patch and makes
    no further cloud write for it; labelled for b, b takes it over and b alone applies the next
    spec edit."""
    a, b = shards
    ring = ring_of(shards)
    kumo = Kumo(kube_api, ha_namespace, a.process)
    name = unique("moving")
    kumo.create(bucket_on(ring, name, a.identity))
    kumo.wait_ready("Bucket", name, timeout=90)
    a_writes_before = a.writes()

    kumo.patch("Bucket", name, {"metadata": {"labels": {api.drain_label(ring): "true"}}})
    wait_until(
        "both labels removed by a",
        lambda: not {api.shard_label(ring), api.drain_label(ring)} & set(labels_of(kumo, name)),
        [a.process, b.process],
    )
    assert a.logged(f"{name}: drain acknowledged")

    # Unassigned, nobody acts on a spec edit; assigned to b, b applies it.
    kumo.patch("Bucket", name, {"spec": {"lifecycle": {"expireAfterDays": 30}}})
    kumo.patch("Bucket", name, {"metadata": {"labels": {api.shard_label(ring): b.identity}}})
    wait_until("b updates it", lambda: b.logged(f"updated Bucket {ha_namespace}/{name}"), [a.process, b.process], 90)
    assert a.writes() == a_writes_before, "a made a cloud write after acknowledging the drain"
    assert not b.logged(f"created Bucket {ha_namespace}/{name}"), "b found the bucket a created"
