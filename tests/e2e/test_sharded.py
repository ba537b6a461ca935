"""kumo sharded for real (issue 17, "Proven"): the sharder of timebertt/kubernetes-controller-sharding
v0.11.0 and three `kumo run --shard-ring` replicas, Buckets and Databases on both clouds.

Every request the replicas send goes through one recording proxy per emulator (a FaultProxy at
rate 0: moto, the GCS emulator, the Cloud SQL emulator), which keeps who sent it (the
`kumo-shard/<name>` token each replica puts in its User-Agent / x-goog-api-client), what it was
and when it started and was answered. A watch records each object's shard label (and the drain
label) as the API server hands it out. The test then holds the two against each other:

- the objects spread over the three shards;
- SIGKILL one replica: its objects are reassigned to the others and back in sync, a drift made
  while they were orphaned corrected; the times from the kill are printed beside the bound: the
  sharder reassigns a dead shard's objects up to two lease durations after its last renewal
  (upstream's Expired, then Uncertain), so the issue's "lease duration plus one sweep" reads
  two lease durations plus one sweep with this sharder;
- a fourth replica: the sharder drains its share from the live shards, each drain acknowledged by
  the old shard before the new one acts; an edit of every object afterwards is applied by the
  object's shard of the moment;
- throughout, each object's calls come from the shards its label named, in that order, one
  shard's calls all answered before the next one's first started (never acted on twice at once);
  one cloud resource per object, each connection Secret on its owner's shard, and after the
  deletes no resource left.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kumo.providers.base import Kind
from kumo.testbed.bed import TestBed
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.faultproxy import FaultProxy
from kumo.testbed.probes import AWSProbe, GCPProbe, probe_for
from kumo.testbed.sharding import (
    Sharder,
    apply_ring,
    delete_ring,
    kumo_ring,
    start_shard,
    start_shards,
    wait_for_available_shards,
    wait_until_assigning_to,
)

from bench.cloudops import operation_of
from kumo.api import GROUP, PLURALS, VERSION, connection_secret_name, drain_label, shard_label

from ..conftest import _fresh_namespace
from .conftest import Kumo, ensure_namespace, example, unique, wait_for
from .test_chaos import (
    UPDATED_LABEL,
    UPDATED_STORAGE_GB,
    OwnClouds,
    Planned,
    _owned_resources,
    _ownership_findings,
    _settled,
    _updates_missing,
)
from .test_ha import CONTROLLER_NAMESPACE
from .test_sharder import sharder

# Alone (tests/README.md): three replicas renew 6 s shard Leases within 4 s; beside another
# pytest-xdist worker's bed on a loaded machine a replica missed a renewal while starting, the
# sharder took its shard away and the spread check failed (2 runs of 2 on two workers, none alone).
pytestmark = [pytest.mark.e2e, pytest.mark.alone]

__all__ = ["sharder"]  # the fixture: the sharder, once for the module

KINDS = (("aws", "Bucket"), ("aws", "Database"), ("gcp", "Bucket"), ("gcp", "Database"))
# 24 objects: by chance none on one of three shards: 3 x (2/3)^24 = 2e-4; none moving to a new
# third of the ring: (2/3)^24 = 6e-5 (the ring's tokens are spread, not exact thirds).
PER_KIND = 6
SWEEP_INTERVAL = 5  # seconds
# Short leases, so a killed shard's objects move within seconds; not test_ha's 6/4/1: on this
# loaded machine a replica's event loop, busy with a burst, can miss a 4 s renew deadline.
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 10, 8, 2
SHARD_ENV = {
    "KUMO_LEASE_DURATION": str(LEASE_DURATION),
    "KUMO_RENEW_DEADLINE": str(RENEW_DEADLINE),
    "KUMO_RETRY_PERIOD": str(RETRY_PERIOD),
    "KUMO_SWEEP_INTERVAL": str(SWEEP_INTERVAL),
    "KUMO_CLOUD_RATE": "0",
}
SETTLE_TIMEOUT = 240.0  # a give-up bound on a loaded machine, not a figure the test asserts
SHARD_AGENT = re.compile(r"kumo-shard/([a-z0-9](?:[-a-z0-9]*[a-z0-9])?)")
AWS_READS = ("Describe", "List", "Get", "Head")


# ------------------------------------------------------------------------------- the call log


@dataclass
class Call:
    """One request as the recording proxy saw it; `text` (path, Host and body, decoded) is only
    searched for external names, never printed (a create's body holds a password)."""

    replica: str
    service: str
    operation: str
    text: str
    started: float
    ended: float = float("inf")  # until answered
    status: int = -1

    @property
    def writes(self) -> bool:
        if self.service in ("gcs", "cloudsql"):
            return self.operation.split(" ", 1)[0] in ("POST", "PUT", "PATCH", "DELETE")
        return not self.operation.startswith(AWS_READS)


class CallLog:
    """Every request of the replicas, through one recording proxy per emulator."""

    def __init__(self, upstreams: dict[str, str]) -> None:
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._in_flight = threading.local()  # the proxy answers a request on the thread it read it
        self.proxies = {
            service: FaultProxy(
                url, failure_rate=0.0, on_request=partial(self._begin, service), on_answered=self._end
            ).start()
            for service, url in upstreams.items()
        }

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()

    def _begin(self, service: str, method: str, target: str, headers: Any, body: bytes) -> None:
        agent = SHARD_AGENT.search(" ".join(str(value) for value in headers.values()))
        if service == "aws":
            service, operation = operation_of(method, target, headers, body)
        else:
            operation = f"{method} {target.split('?', 1)[0]}"
        text = " ".join((unquote_plus(target), str(headers.get("Host", "")), unquote_plus(body.decode("latin-1"))))
        call = Call(agent.group(1) if agent else "", service, operation, text, time.monotonic())
        self._in_flight.call = call
        with self._lock:
            self.calls.append(call)

    def _end(self, status: int) -> None:
        call = getattr(self._in_flight, "call", None)
        if call is not None:
            call.ended, call.status = time.monotonic(), status
            self._in_flight.call = None

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)

    def by_object(self, external_names: dict[str, str]) -> dict[str, list[Call]]:
        """Object name -> the calls that name its cloud resource and no other object's (a listing
        names none of them), by start."""
        owner_of = {external: name for name, external in external_names.items()}
        pattern = re.compile(
            r"(?<![-a-z0-9])(" + "|".join(map(re.escape, sorted(owner_of, key=len, reverse=True))) + r")(?![-a-z0-9])"
        )
        found: dict[str, list[Call]] = {name: [] for name in external_names}
        for call in sorted(self.snapshot(), key=lambda c: c.started):
            named = set(pattern.findall(call.text))
            if len(named) == 1:
                found[owner_of[named.pop()]].append(call)
        return found


# ------------------------------------------------------------------------------- assignments


class Assignments:
    """Each object's shard over time as watches deliver it: a run of (shard, draining) states."""

    def __init__(self, api: client.ApiClient, namespace: str, ring: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.shard, self.drain = shard_label(ring), drain_label(ring)
        self.history: dict[str, list[tuple[str, bool]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(kind,), name=f"assignments-{kind}", daemon=True)
            for kind in ("Bucket", "Database", "Secret")
        ]
        for thread in self._threads:
            thread.start()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def shards(self, name: str) -> list[str]:
        """The shards `name` was on, in order, each once per stay."""
        with self._lock:
            states = list(self.history.get(name, []))
        stays: list[str] = []
        for shard, _ in states:
            if shard and (not stays or stays[-1] != shard):
                stays.append(shard)
        return stays

    def drained_into(self, name: str, shard: str) -> bool:
        """`name` came to `shard` through the drain handshake: its last state before it was
        first on `shard` was on another shard with the drain label."""
        with self._lock:
            held = [state for state in self.history.get(name, []) if state[0]]
        arrived = next((index for index, (on, _) in enumerate(held) if on == shard), 0)
        return arrived > 0 and held[arrived - 1][1] and held[arrived - 1][0] != shard

    def _watch(self, kind: str) -> None:
        """Objects by name; connection Secrets as `Secret/<name>`."""
        version = ""
        while not self._stop.is_set():
            if kind == "Secret":
                listing: Callable[..., Any] = partial(self.core.list_namespaced_secret, self.namespace)
            else:
                listing = partial(
                    self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace, PLURALS[kind]
                )
            stream = watch.Watch().stream(listing, resource_version=version, timeout_seconds=5)
            try:
                for event in stream:
                    meta = event["raw_object"]["metadata"]
                    if kind == "Secret" and not meta.get("ownerReferences"):
                        continue  # not a connection Secret
                    version = meta["resourceVersion"]
                    labels = meta.get("labels") or {}
                    state = (labels.get(self.shard, ""), self.drain in labels)
                    with self._lock:
                        states = self.history.setdefault(
                            f"{kind}/{meta['name']}" if kind == "Secret" else meta["name"], []
                        )
                        if not states or states[-1] != state:
                            states.append(state)
            except ApiException as error:
                if error.status != 410:  # expired: list again from now
                    raise
                version = ""


# ------------------------------------------------------------------------------- fixtures


@dataclass
class Ring:
    """The sharded set-up of one test: its namespace, ring, replicas, call log and assignments."""

    api: client.ApiClient
    testbed: TestBed
    namespace: str
    name: str
    log_dir: Path
    calls: CallLog
    clouds: OwnClouds
    replicas: dict[str, ControllerProcess] = field(default_factory=dict)
    assignments: Assignments | None = None

    def start(self, identity: str) -> ControllerProcess:
        replica = start_shard(
            identity, self.testbed.env["kubeconfig"], self.log_dir, ring=self.name, extra_env=self.env
        )
        self.replicas[identity] = replica
        return replica

    @property
    def env(self) -> dict[str, str]:
        return {**SHARD_ENV, "KUMO_NAMESPACES": self.namespace}

    def logs(self) -> str:
        return "\n".join(
            f"--- {identity}:\n" + "\n".join(replica.log_text().splitlines()[-15:])
            for identity, replica in self.replicas.items()
        )

    def leadership(self) -> list[str]:
        """Each replica's Lease lines and whether it runs, for a failure's message."""
        lines = []
        for identity, replica in self.replicas.items():
            running = replica.process is not None and replica.process.alive()
            logged = [line[:160] for line in replica.log_text().splitlines() if "leader" in line]
            lines.append(f"{identity} running={running}: {logged[-3:]}")
        return lines

    def wait(self, what: str, check: Callable[[], Any], timeout: float = SETTLE_TIMEOUT) -> Any:
        return wait_for(what, check, self.logs, timeout, every=0.5)


@pytest.fixture
def ring(testbed: TestBed, kube_api: client.ApiClient, sharder: Sharder, tmp_path: Path) -> Iterator[Ring]:
    """A fresh namespace whose ProviderConfigs reach the emulators through the recording proxies,
    a ring of its own over it, and three replicas of that ring, all available to the sharder."""
    core = client.CoreV1Api(kube_api)
    ensure_namespace(kube_api, CONTROLLER_NAMESPACE)
    calls = CallLog(
        {
            "aws": testbed.env["aws"]["endpoint"],
            "gcs": testbed.env["gcp"]["storage_endpoint"],
            "cloudsql": testbed.env["gcp"]["sqladmin_endpoint"],
        }
    )
    name = unique("ring")
    set_up: Ring | None = None
    try:
        for namespace in _fresh_namespace(kube_api, "sharded"):
            env = {**testbed.env, "aws": dict(testbed.env["aws"]), "gcp": dict(testbed.env["gcp"])}
            env["aws"]["endpoint"] = calls.proxies["aws"].endpoint
            env["gcp"]["storage_endpoint"] = calls.proxies["gcs"].endpoint
            env["gcp"]["sqladmin_endpoint"] = calls.proxies["cloudsql"].endpoint
            for cloud in ("aws", "gcp"):
                secret, config = probe_for(cloud, env).provider_config(name=cloud)
                core.create_namespaced_secret(namespace, secret)
                client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
                    GROUP, VERSION, namespace, "providerconfigs", config
                )
            # The checks read the clouds directly, not through the proxies: the log is kumo's alone.
            direct = OwnClouds(testbed.env, AWSProbe(testbed.env), GCPProbe(testbed.env), None)  # type: ignore[arg-type]
            set_up = Ring(kube_api, testbed, namespace, name, tmp_path, calls, direct)
            apply_ring(kube_api, kumo_ring(name, namespaces=[namespace]))
            prefix = unique("kumo")
            for replica in start_shards(
                3, testbed.env["kubeconfig"], tmp_path, ring=name, name_prefix=prefix, extra_env=set_up.env
            ):
                set_up.replicas[replica.extra_env["KUMO_LEADER_IDENTITY"]] = replica
            wait_for_available_shards(kube_api, 3, name, timeout=60)
            wait_until_assigning_to(kube_api, namespace, list(set_up.replicas), name)
            set_up.assignments = Assignments(kube_api, namespace, name)
            yield set_up
    finally:
        if set_up is not None:
            if set_up.assignments is not None:
                set_up.assignments.close()
            for replica in set_up.replicas.values():
                replica.stop()
        delete_ring(kube_api, name)
        calls.stop()
        leases = client.CoordinationV1Api(kube_api)
        for identity in set_up.replicas if set_up else ():
            try:
                leases.delete_namespaced_lease(identity, CONTROLLER_NAMESPACE)
            except ApiException as error:
                if error.status != 404:
                    raise


# ------------------------------------------------------------------------------- the test


def test_three_shards_then_one_killed_then_a_fourth_each_call_from_the_objects_shard_of_the_moment(
    ring: Ring, kube_api: client.ApiClient
) -> None:
    assert ring.assignments is not None
    kumo = Kumo(kube_api, ring.namespace, next(iter(ring.replicas.values())))
    planned = [
        Planned(cloud, kind, f"{cloud}-{kind[:2].lower()}-{index:02d}", updated=True, deleted=False)
        for index in range(PER_KIND)
        for cloud, kind in KINDS
    ]
    kinds = {item.name: item.kind for item in planned}
    started = time.monotonic()
    for item in planned:
        kumo.create(example(item.cloud, item.kind, item.name))
    listed = ring.wait("every object Ready and Synced", partial(_all_settled, kumo, planned))
    ready_seconds = time.monotonic() - started
    external = {name: obj["status"]["atProvider"]["externalName"] for name, obj in listed.items()}

    # Spread: every replica holds objects, and each connection Secret is on its owner's shard.
    first = _shards(listed, ring)
    assert set(first.values()) == set(ring.replicas), (_count(first), ring.leadership())
    ring.wait("every Secret on its owner's shard", partial(_secrets_on_their_owners_shard, kumo, ring))

    # SIGKILL the replica that holds aws-bu-00, then drift that bucket while it has no live shard.
    victim = first["aws-bu-00"]
    orphans = sorted(name for name, shard in first.items() if shard == victim)
    killed_at = time.monotonic()
    ring.replicas[victim].kill()
    probe = ring.clouds.aws
    probe.s3.put_bucket_versioning(Bucket=external["aws-bu-00"], VersioningConfiguration={"Status": "Suspended"})

    def reassigned() -> bool:
        return all(_shards(kumo.managed(), ring).get(name) not in ("", victim) for name in orphans)

    # The sharder declares a shard dead once its Lease has been expired for a further lease
    # duration (upstream pkg/sharding/leases/state.go: Expired, then Uncertain, then Dead when it
    # acquires the Lease itself), and only then reassigns: up to 2 x lease after the last renewal.
    ring.wait(f"{victim}'s {len(orphans)} objects reassigned", reassigned)
    reassign_seconds = time.monotonic() - killed_at

    def back_in_sync() -> dict[str, dict[str, Any]] | None:
        now = kumo.managed()
        moved = all(_shards(now, ring).get(name) not in ("", victim) for name in orphans)
        corrected = (probe.bucket(external["aws-bu-00"]) or {}).get("versioning") is True
        return now if moved and corrected and all(_settled(now.get(name)) for name in orphans) else None

    after_kill = _shards(
        ring.wait(f"{victim}'s {len(orphans)} objects reassigned, in sync, drift corrected", back_in_sync), ring
    )
    resync_seconds = time.monotonic() - killed_at
    survivors = set(ring.replicas) - {victim}
    assert set(after_kill.values()) <= survivors, after_kill

    # A fourth replica: the sharder drains its share from the live shards.
    newcomer = f"{victim.rsplit('-', 1)[0]}-3"
    joined_at = time.monotonic()
    ring.start(newcomer)

    def rebalanced() -> dict[str, dict[str, Any]] | None:
        now = kumo.managed()
        shards = _shards(now, ring)
        draining = any(drain_label(ring.name) in (obj["metadata"].get("labels") or {}) for obj in now.values())
        settled = all(_settled(obj) for obj in now.values())
        return now if newcomer in shards.values() and not draining and settled else None

    after_join = _shards(ring.wait(f"objects moved to {newcomer} and in sync", rebalanced), ring)
    move_seconds = time.monotonic() - joined_at
    # The sharder moves a controlled Secret at once and its owner only once the old shard
    # acknowledges; a pass of the old shard meanwhile writes its own label back on the Secret (the
    # owner's, still), and the new shard's first pass writes the new one (see
    # tests/unit/test_connection_secret_steps.py). Counted at first look, then waited on.
    behind = _secrets_off_their_owners_shard(kumo, ring)
    secrets_behind = len(behind)
    for name in behind:
        secret = connection_secret_name(Kind(kinds[name]), {"metadata": {"name": name}})
        history = ring.assignments.history
        print(f"  {name}: object {history.get(name)}, Secret {history.get('Secret/' + secret)}")
    ring.wait("every Secret on its owner's shard", partial(_secrets_on_their_owners_shard, kumo, ring))
    moved = sorted(name for name, shard in after_join.items() if shard == newcomer)
    for name in moved:
        assert ring.assignments.drained_into(name, newcomer), (name, ring.assignments.history.get(name))
        old = after_kill[name]
        assert f"{kinds[name]}/{ring.namespace}/{name}: " in _acknowledged(ring.replicas[old].log_text()), (name, old)
    assert {name: shard for name, shard in after_join.items() if name not in moved} == {
        name: shard for name, shard in after_kill.items() if name not in moved
    }, "only the new shard's share moved"

    # Every object edited: each edit applied by the object's shard of the moment.
    for item in planned:
        change = {"storageGB": UPDATED_STORAGE_GB} if item.kind == "Database" else {"labels": dict([UPDATED_LABEL])}
        kumo.patch(item.kind, item.name, {"spec": change})
    edited = ring.wait("every edit applied", partial(_all_settled, kumo, planned))
    # The strict bed holds an RDS modification pending a moment, as RDS does (testbed/strictaws/rds.py).
    ring.wait("every edit in the clouds", lambda: not _updates_missing(ring.clouds, planned, edited))
    ring.wait("every Secret on its owner's shard", partial(_secrets_on_their_owners_shard, kumo, ring))
    duplicates, leaks, missing = _ownership_findings(ring.clouds, ring.namespace, edited)
    assert (duplicates, leaks, missing) == ([], [], []), (duplicates, leaks, missing)

    # Deleted: nothing left in either cloud.
    for item in planned:
        kumo.delete(item.kind, item.name)
    ring.wait("every object deleted", lambda: not kumo.managed())
    assert _owned_resources(ring.clouds, ring.namespace) == []

    # The call log against the assignments.
    calls = ring.calls.snapshot()
    unattributed = [f"{call.service} {call.operation}" for call in calls if call.replica not in ring.replicas]
    assert unattributed == [], f"calls without a known replica's token: {unattributed[:10]}"
    per_object = ring.calls.by_object(external)
    for name, made in per_object.items():
        assert made, f"no call names {name}'s resource {external[name]}"
        runs = _runs(made)
        assert _is_subsequence([replica for replica, _ in runs], ring.assignments.shards(name)), (
            name,
            [replica for replica, _ in runs],
            ring.assignments.shards(name),
        )
        for (before, earlier), (after, later) in itertools.pairwise(runs):
            last_answer = max(call.ended for call in earlier)
            first_start = min(call.started for call in later)
            assert last_answer <= first_start, f"{name}: {before}'s calls still open when {after}'s began"
    moved_or_orphaned = sorted(set(orphans) | set(moved))
    writes_per_replica = {
        identity: sum(call.writes for call in calls if call.replica == identity) for identity in ring.replicas
    }
    print(
        f"\n{len(planned)} objects on 3 shards: all Ready in {ready_seconds:.1f}s, spread {_count(first)}\n"
        f"SIGKILL {victim} ({len(orphans)} objects): reassigned {reassign_seconds:.1f}s after the kill "
        f"(upstream: at most 2 x lease = {2 * LEASE_DURATION}s after the last renewal), in sync and drift "
        f"corrected {resync_seconds:.1f}s after the kill (bound: 2 x lease + sweep {SWEEP_INTERVAL}s = "
        f"{2 * LEASE_DURATION + SWEEP_INTERVAL}s)\n"
        f"{newcomer} joined: {len(moved)} objects drained and moved, all in sync {move_seconds:.1f}s after its start "
        f"({secrets_behind} Secrets not yet on their owner's new shard then)\n"
        f"{len(calls)} cloud calls, {sum(len(made) for made in per_object.values())} naming one object; "
        f"writes per replica {writes_per_replica}; objects that changed shard: {len(moved_or_orphaned)}"
    )


def _all_settled(kumo: Kumo, planned: list[Planned]) -> dict[str, dict[str, Any]] | None:
    listed = kumo.managed()
    return listed if all(_settled(listed.get(item.name)) for item in planned) else None


def _shards(listed: dict[str, dict[str, Any]], ring: Ring) -> dict[str, str]:
    label = shard_label(ring.name)
    return {name: (obj["metadata"].get("labels") or {}).get(label, "") for name, obj in listed.items()}


def _count(shards: dict[str, str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for shard in shards.values():
        counts[shard] = counts.get(shard, 0) + 1
    return dict(sorted(counts.items()))


def _secrets_off_their_owners_shard(kumo: Kumo, ring: Ring) -> list[str]:
    """Objects whose connection Secret is not (yet) on the object's shard."""
    label = shard_label(ring.name)
    off = []
    for name, obj in kumo.managed().items():
        secret = kumo.core.read_namespaced_secret(connection_secret_name(Kind(obj["kind"]), obj), ring.namespace)
        if (secret.metadata.labels or {}).get(label) != obj["metadata"]["labels"][label]:
            off.append(name)
    return off


def _secrets_on_their_owners_shard(kumo: Kumo, ring: Ring) -> bool:
    return not _secrets_off_their_owners_shard(kumo, ring)


def _acknowledged(log: str) -> str:
    """The drain acknowledgements a replica logged (controller/runtime/operator.py)."""
    return "\n".join(line for line in log.splitlines() if "drain acknowledged" in line)


def _runs(calls: list[Call]) -> list[tuple[str, list[Call]]]:
    """Calls by start, grouped into runs of one replica."""
    runs: list[tuple[str, list[Call]]] = []
    for call in calls:
        if runs and runs[-1][0] == call.replica:
            runs[-1][1].append(call)
        else:
            runs.append((call.replica, [call]))
    return runs


def _is_subsequence(wanted: list[str], sequence: list[str]) -> bool:
    remaining = iter(sequence)
    return all(item in remaining for item in wanted)
