"""Chaos: the controller is SIGKILLed and restarted at random moments while it creates, updates
and deletes Databases and Buckets on both clouds. Afterwards the clouds, listed directly, must
hold exactly one resource per live object, nothing for deleted objects, every database's
password must be the one in its Secret, and every update must be applied.

The sharded variant runs the same workload on `KUMO_CHAOS_SHARDS` (default 3) `kumo run
--shard-ring` replicas and the sharder (issue 17), killing random replicas: each comes back as
itself or is replaced by a new shard, so objects move both ways the sharder moves them (a dead
shard's reassigned directly, a newcomer's share drained).

`KUMO_CHAOS_OBJECTS` (default 40) and `KUMO_CHAOS_KILLS` (default 5) set the size of both; the full
run is `KUMO_CHAOS_OBJECTS=200 KUMO_CHAOS_KILLS=20 pytest tests/e2e/test_chaos.py` (`make chaos`).

RDS/S3 (moto) and Cloud SQL (kumo's emulator) run in this test's own process rather than as the
test bed's servers: that isolates the account listings from other tests, and it is the only way
to read the passwords the instances hold (moto's `/moto-api/data.json` does not serve RDS, and
the Cloud SQL emulator's `password_of` is in-process only). GCS is the test bed's emulator.
"""

from __future__ import annotations

import copy
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from google.cloud import sqladmin_v1beta4 as sqladmin
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.testbed.bed import TestBed
from kumo.testbed.cloudsql_emulator import CloudSQLEmulator
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.probes import AWSProbe, GCPProbe
from kumo.testbed.process import StartupError
from kumo.testbed.sharding import apply_ring, delete_ring, kumo_ring, start_shard, wait_until_assigning_to

from ..conftest import _fresh_namespace
from .conftest import Kumo, condition, ensure_namespace, example, unique
from .test_sharder import sharder

pytestmark = pytest.mark.e2e

__all__ = ["sharder"]  # the fixture: the sharder, for the sharded variant

OBJECTS = int(os.environ.get("KUMO_CHAOS_OBJECTS", "40"))
KILLS = int(os.environ.get("KUMO_CHAOS_KILLS", "5"))
SHARDS = int(os.environ.get("KUMO_CHAOS_SHARDS", "3"))  # the sharded variant's live replicas
SEED = int(os.environ.get("KUMO_CHAOS_SEED", str(random.randrange(1 << 30))))
KINDS = (("aws", "Database"), ("aws", "Bucket"), ("gcp", "Database"), ("gcp", "Bucket"))
UPDATED_STORAGE_GB = 30  # the examples ask for 20
UPDATED_LABEL = ("chaos", "updated")
OWNER_UID, OWNER_NAMESPACE = "kumo.dev/owner-uid", "kumo.dev/owner-namespace"
GCP_OWNER_UID, GCP_OWNER_NAMESPACE = "kumo-owner-uid", "kumo-owner-namespace"
# The sharded variant: short leases (a replaced shard's objects move within 2 x 10 s), quick
# sweeps. An 8 s renew deadline, not test_ha's 4 s: while its event loop works through the start-up
# burst on a loaded machine a replica missed 4 s and exited (losing its Lease, as designed).
SHARD_ENV = {
    "KUMO_CLOUD_RATE": "0",
    "KUMO_SWEEP_INTERVAL": "5",
    "KUMO_LEASE_DURATION": "10",
    "KUMO_RENEW_DEADLINE": "8",
    "KUMO_RETRY_PERIOD": "2",
}
SHARD_START_ATTEMPTS = 3  # a replica that exits while starting is started again, as its Pod's would be


@dataclass(frozen=True)
class Planned:
    cloud: str
    kind: str
    name: str
    updated: bool
    deleted: bool


def plan(count: int) -> list[Planned]:
    """`count` objects over the four (cloud, kind) pairs; a quarter deleted, half the rest updated."""
    planned = []
    for i in range(count):
        cloud, kind = KINDS[i % 4]
        fate = (i // 4) % 4  # 0, 2: updated; 1: deleted; 3: left alone
        planned.append(Planned(cloud, kind, f"{cloud}-{kind[:2].lower()}-{i}", fate in (0, 2), fate == 1))
    return planned


# ------------------------------------------------------------------------------------- fixtures


@dataclass
class OwnClouds:
    """moto and the Cloud SQL emulator in this process; GCS from the test bed."""

    env: dict[str, Any]
    aws: AWSProbe
    gcp: GCPProbe
    cloudsql: CloudSQLEmulator


@pytest.fixture
def own_clouds(testbed: TestBed) -> Iterator[OwnClouds]:
    from moto.server import ThreadedMotoServer

    quiet = logging.getLogger("werkzeug")  # moto's server logs every request at INFO
    level = quiet.level
    quiet.setLevel(logging.WARNING)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    cloudsql = CloudSQLEmulator().start()
    try:
        host, port = moto.get_host_and_port()
        env = copy.deepcopy(testbed.env)
        env["aws"]["endpoint"] = f"http://{host}:{port}"
        env["gcp"]["sqladmin_endpoint"] = cloudsql.endpoint
        yield OwnClouds(env, AWSProbe(env), GCPProbe(env), cloudsql)
    finally:
        cloudsql.stop()
        moto.stop()
        quiet.setLevel(level)


@pytest.fixture
def chaos_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """Not matching the session controller's `t-*`: only this test's controller acts here."""
    yield from _fresh_namespace(kube_api, "chaos")


def own_controller(testbed: TestBed, kube_api: client.ApiClient, namespace: str, log_dir: Any) -> ControllerProcess:
    ensure_namespace(kube_api, "kumo-system")
    env = {"KUMO_NAMESPACES": namespace, "KUMO_CLOUD_RATE": "0", "KUMO_SWEEP_INTERVAL": "5"}
    return ControllerProcess(kubeconfig=testbed.env["kubeconfig"], log_path=log_dir / "controller.log", extra_env=env)


@pytest.fixture
def chaos_controller(testbed, kube_api, chaos_namespace, tmp_path) -> Iterator[ControllerProcess]:
    process = own_controller(testbed, kube_api, chaos_namespace, tmp_path).start()
    yield process
    process.stop()


# ------------------------------------------------------------------------------------- the killer


class KillLoop:
    """Kills `kills` times on a thread, each after 0.5 to 3 s of life, the moments drawn from
    `seed`; a subclass says what one kill is (`_kill_once`)."""

    def __init__(self, kills: int, seed: int) -> None:
        self.kills = kills
        self.seed = seed
        self.survived = 0
        self.errors: list[BaseException] = []
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"chaos-{type(self).__name__}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    def _run(self) -> None:
        rng = random.Random(self.seed)
        try:
            while self.survived < self.kills and not self.stopping.wait(rng.uniform(0.5, 3.0)):
                self._kill_once(rng)
                self.survived += 1
        except BaseException as error:  # reported by the test, not lost in a thread
            self.errors.append(error)

    def _kill_once(self, rng: random.Random) -> None:
        raise NotImplementedError


class Killer(KillLoop):
    """SIGKILLs the controller, restarting it at once."""

    def __init__(self, controller: ControllerProcess, kills: int, seed: int) -> None:
        super().__init__(kills, seed)
        self.controller = controller

    def _kill_once(self, rng: random.Random) -> None:
        self.controller.kill()
        self.controller.start()


class Shards:
    """The sharded controller of the chaos test: its ring, replicas by shard name, and how a new
    one is started. `replicas` changes while the killer runs; `lock` guards it."""

    def __init__(self, testbed: TestBed, namespace: str, log_dir: Path) -> None:
        self.testbed, self.log_dir = testbed, log_dir
        self.ring, self.prefix = unique("ring"), unique("kumo")
        self.env = {**SHARD_ENV, "KUMO_NAMESPACES": namespace}
        self.replicas: dict[str, ControllerProcess] = {}
        self.named: list[str] = []  # every shard ever started, for the Lease clean-up
        self.lock = threading.Lock()

    def start(self) -> ControllerProcess:
        """A new shard."""
        identity = f"{self.prefix}-{len(self.named)}"
        self.named.append(identity)
        return _started(lambda: self._start(identity))

    def restart(self, replica: ControllerProcess) -> None:
        """The same shard again (its container restarted)."""
        _started(replica.start)

    def _start(self, identity: str) -> ControllerProcess:
        replica = start_shard(
            identity, self.testbed.env["kubeconfig"], self.log_dir, ring=self.ring, extra_env=self.env
        )
        with self.lock:
            self.replicas[identity] = replica
        return replica

    def log_text(self) -> str:
        return "\n".join(
            (self.log_dir / f"{identity}.log").read_text(errors="replace")
            for identity in self.named
            if (self.log_dir / f"{identity}.log").exists()
        )

    def describe(self) -> str:
        with self.lock:
            starts = sum(replica.starts for replica in self.replicas.values())
        return f"{len(self.named)} shards over the run, {starts} starts of the {SHARDS} live ones"


def _started(start: Callable[[], ControllerProcess]) -> ControllerProcess:
    """`start()`, again if the replica exits while starting (as a Pod's container would be)."""
    for _ in range(SHARD_START_ATTEMPTS - 1):
        try:
            return start()
        except StartupError:
            continue
    return start()


@pytest.fixture
def chaos_shards(testbed, kube_api, chaos_namespace, sharder, tmp_path) -> Iterator[Shards]:
    """SHARDS replicas of a ring over the chaos namespace, each one the webhook assigns to."""
    ensure_namespace(kube_api, "kumo-system")
    shards = Shards(testbed, chaos_namespace, tmp_path)
    apply_ring(kube_api, kumo_ring(shards.ring, namespaces=[chaos_namespace]))
    try:
        for _ in range(SHARDS):
            shards.start()
        wait_until_assigning_to(kube_api, chaos_namespace, list(shards.replicas), shards.ring, timeout=60)
        yield shards
    finally:
        with shards.lock:
            replicas = list(shards.replicas.values())
        for replica in replicas:
            replica.stop()
        delete_ring(kube_api, shards.ring)
        leases = client.CoordinationV1Api(kube_api)
        for identity in shards.named:
            try:
                leases.delete_namespaced_lease(identity, "kumo-system")
            except ApiException as error:
                if error.status != 404:
                    raise


class ShardKiller(KillLoop):
    """SIGKILLs a random live shard `kills` times, each after 0.5 to 3 s; every other time the
    same shard starts again at once (its container restarted: same name, its own Lease), else a
    new shard takes its place (a new Pod: the dead shard's objects are reassigned when its Lease
    has expired, and the newcomer's share drained to it from the live shards)."""

    def __init__(self, shards: Shards, kills: int, seed: int) -> None:
        super().__init__(kills, seed)
        self.shards = shards

    def _kill_once(self, rng: random.Random) -> None:
        with self.shards.lock:
            identity = rng.choice(sorted(self.shards.replicas))
            victim = self.shards.replicas[identity]
        victim.kill()
        if self.survived % 2 == 0:
            self.shards.restart(victim)
        else:
            with self.shards.lock:
                del self.shards.replicas[identity]
            self.shards.start()


# ------------------------------------------------------------------------------------- the test


def test_controller_killed_at_random_moments_leaves_no_duplicate_leak_or_lost_password(
    kube_api, chaos_namespace, chaos_controller, own_clouds
):
    """SIGKILLs during create/update/delete: afterwards one cloud resource per live object, none
    for deleted ones, every database password equals its Secret's, every update applied."""
    kumo = Kumo(kube_api, chaos_namespace, chaos_controller)
    killer = Killer(chaos_controller, KILLS, SEED)
    starts = lambda: str(chaos_controller.starts)  # noqa: E731 - read after the run
    _run_chaos(kumo, own_clouds, chaos_namespace, killer, chaos_controller.log_text, starts)


def test_shards_killed_at_random_moments_leave_no_duplicate_leak_or_lost_password(
    kube_api, chaos_namespace, own_clouds, chaos_shards
):
    """The same workload on SHARDS `kumo run --shard-ring` replicas and the sharder (issue 17):
    random replicas SIGKILLed, each coming back as itself (a container restart) or replaced by a
    new shard (a new Pod: the sharder reassigns the dead shard's objects and drains the newcomer's
    share), with the same invariants."""
    kumo = Kumo(kube_api, chaos_namespace, next(iter(chaos_shards.replicas.values())))
    killer = ShardKiller(chaos_shards, KILLS, SEED)
    _run_chaos(kumo, own_clouds, chaos_namespace, killer, chaos_shards.log_text, chaos_shards.describe)


def _run_chaos(
    kumo: Kumo,
    own_clouds: OwnClouds,
    namespace: str,
    killer: KillLoop,
    log_text: Callable[[], str],
    starts: Callable[[], str],
) -> None:
    """Create, update and delete the planned objects while `killer` kills, then check."""
    for probe in (own_clouds.aws, own_clouds.gcp):
        secret, config = probe.provider_config(name=probe.cloud)
        kumo.core.create_namespaced_secret(namespace, secret)
        kumo.create(config)
    planned = plan(OBJECTS)
    started = time.monotonic()
    killer.start()

    for item in planned:
        manifest = example(item.cloud, item.kind, item.name)
        manifest["spec"]["deletionPolicy"] = "Delete"
        kumo.create(manifest)
    time.sleep(1.0)  # let some creates start, so updates and deletes race them
    for item in planned:
        if item.updated and item.kind == "Database":
            kumo.patch(item.kind, item.name, {"spec": {"storageGB": UPDATED_STORAGE_GB}})
        elif item.updated:
            kumo.patch(item.kind, item.name, {"spec": {"labels": dict([UPDATED_LABEL])}})
    for item in planned:
        if item.deleted:
            kumo.delete(item.kind, item.name)

    killer.join(timeout=KILLS * 40)
    assert not killer.errors, f"restarting the controller failed: {killer.errors[0]!r}"
    assert killer.survived == KILLS
    chaos_done = time.monotonic()
    listed, stuck = _wait_converged(kumo, planned, timeout=120 + OBJECTS)
    converged = time.monotonic()
    live = {n: obj for n, obj in listed.items() if _settled(obj)}

    duplicates, leaks, missing = _ownership_findings(own_clouds, namespace, listed)
    lost_passwords = _lost_passwords(kumo, own_clouds, planned, live)
    not_updated = _updates_missing(own_clouds, planned, live)
    log = log_text()
    print(
        f"\nchaos seed {SEED}: {len(planned)} objects ({sum(p.deleted for p in planned)} deleted, "
        f"{sum(p.updated for p in planned)} updated), kills survived: {killer.survived}/{KILLS}, "
        f"controller starts: {starts()}\n"
        f"  chaos phase {chaos_done - started:.1f}s, converged {converged - chaos_done:.1f}s after the last kill\n"
        f"  not converged: {len(stuck)} {stuck[:10]}\n"
        f"  duplicates: {len(duplicates)}, leaks: {len(leaks)}, missing: {len(missing)}, "
        f"lost passwords: {len(lost_passwords)}, updates not applied: {len(not_updated)}\n"
        f"  controller log: {log.count('Traceback')} tracebacks, {len(log.splitlines())} lines"
    )
    for finding in [*stuck, *duplicates, *leaks, *missing, *lost_passwords, *not_updated][:30]:
        print(f"  - {finding}")
    for name in [s.split(":")[0] for s in stuck][:3]:
        print(f"  log of {name}:")
        lines = [line[:240] for line in log.splitlines() if f"/{name} " in line or f"-{name}-" in line]
        print("\n".join(f"    {line}" for line in lines[:12]))
    assert stuck == [], f"objects that never converged: {stuck}"
    assert duplicates == [], duplicates
    assert leaks == [], leaks
    assert missing == [], missing
    assert lost_passwords == [], lost_passwords
    assert not_updated == [], not_updated


# ------------------------------------------------------------------------------------- checks


def _wait_converged(kumo: Kumo, planned: list[Planned], timeout: float) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Waits until every kept object is Ready and Synced at its current generation and every
    deleted one is gone, or until only objects refused as OwnedByAnotherResource (which retry
    after 5 minutes only) have been left for 15 s, or until `timeout`. Returns the objects by
    name and what is still pending ("name: Synced reason")."""
    expected = {p.name for p in planned if not p.deleted}
    gone = {p.name for p in planned if p.deleted}
    deadline = time.monotonic() + timeout
    stuck_since: float | None = None
    while True:
        listed = kumo.managed()
        pending = [f"{n}: {_reason(listed.get(n))}" for n in sorted(expected) if not _settled(listed.get(n))]
        pending += [f"{n}: not deleted ({_reason(listed[n])})" for n in sorted(gone & set(listed))]
        if not pending:
            return listed, []
        if all(p.endswith(": OwnedByAnotherResource") for p in pending):
            stuck_since = stuck_since or time.monotonic()
        else:
            stuck_since = None
        if time.monotonic() > deadline or (stuck_since and time.monotonic() - stuck_since > 15):
            return listed, pending
        time.sleep(0.5)


def _reason(obj: dict[str, Any] | None) -> str:
    synced = condition(obj, "Synced") if obj else None
    ready = condition(obj, "Ready") if obj else None
    if synced and synced["status"] == "False":
        return str(synced.get("reason"))
    return f"Ready {ready.get('reason') if ready else 'unknown'}"


def _settled(obj: dict[str, Any] | None) -> bool:
    if obj is None:
        return False
    ready, synced = condition(obj, "Ready"), condition(obj, "Synced")
    return bool(
        ready
        and synced
        and ready["status"] == "True"
        and synced["status"] == "True"
        and obj.get("status", {}).get("observedGeneration") == obj["metadata"]["generation"]
    )


def _owned_resources(clouds: OwnClouds, namespace: str) -> list[tuple[str, str, str]]:
    """(kind/cloud, external name, owner uid) of every cloud resource tagged for `namespace`, and
    with owner uid "untagged", every untagged one named like kumo names them in `namespace`."""
    found = []
    label_namespace = namespace.replace(".", "_")
    paginator = clouds.aws.rds.get_paginator("describe_db_instances")
    for page in paginator.paginate():
        for instance in page["DBInstances"]:
            tags = {t["Key"]: t["Value"] for t in instance.get("TagList", [])}
            name = instance["DBInstanceIdentifier"]
            if tags.get(OWNER_NAMESPACE) == namespace or (not tags and name.startswith(f"{namespace}-")):
                found.append(("aws/Database", name, tags.get(OWNER_UID, "untagged")))
    for bucket in clouds.aws.s3.list_buckets()["Buckets"]:
        described = clouds.aws.bucket(bucket["Name"]) or {"labels": {}}
        tags = described["labels"]
        if tags.get(OWNER_NAMESPACE) == namespace or (not tags and bucket["Name"].startswith(f"{namespace}-")):
            found.append(("aws/Bucket", bucket["Name"], tags.get(OWNER_UID, "untagged")))
    request = sqladmin.SqlInstancesListRequest(project=clouds.gcp.project)
    for page in clouds.gcp.instances.list(request=request).pages:
        for item in page.items:
            labels = dict(item.settings.user_labels)
            if labels.get(GCP_OWNER_NAMESPACE) == label_namespace or (
                not labels and item.name.startswith(f"{namespace}-")
            ):
                found.append(("gcp/Database", item.name, labels.get(GCP_OWNER_UID, "untagged")))
    for gcs_bucket in clouds.gcp.gcs.list_buckets():
        labels = dict(gcs_bucket.labels or {})
        if labels.get(GCP_OWNER_NAMESPACE) == label_namespace or (
            not labels and gcs_bucket.name.startswith(f"{namespace}-")
        ):
            found.append(("gcp/Bucket", gcs_bucket.name, labels.get(GCP_OWNER_UID, "untagged")))
    return found


def _ownership_findings(
    clouds: OwnClouds, namespace: str, live: dict[str, dict[str, Any]]
) -> tuple[list[str], list[str], list[str]]:
    """Duplicates (an object owning more than one resource), leaks (a resource whose owner is not
    a live object) and missing (a live object without its resource under its external name)."""
    by_uid = {obj["metadata"]["uid"]: obj for obj in live.values()}
    owned: dict[str, list[str]] = {}
    leaks = []
    for where, name, uid in _owned_resources(clouds, namespace):
        if uid in by_uid:
            owned.setdefault(uid, []).append(f"{where}:{name}")
        else:
            leaks.append(f"{where}:{name} (owner uid {uid or 'none'})")
    duplicates = [f"{by_uid[uid]['metadata']['name']}: {names}" for uid, names in owned.items() if len(names) > 1]
    missing = []
    for uid, obj in by_uid.items():
        external = (obj.get("status", {}).get("atProvider") or {}).get("externalName")
        names = [n.split(":", 1)[1] for n in owned.get(uid, [])]
        if names != [external] and len(names) <= 1:
            missing.append(f"{obj['metadata']['name']}: status says {external}, cloud has {names}")
    return duplicates, leaks, missing


def _lost_passwords(
    kumo: Kumo, clouds: OwnClouds, planned: list[Planned], live: dict[str, dict[str, Any]]
) -> list[str]:
    """Databases whose instance does not take the password their Secret holds."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.rds.models import rds_backends

    rds = rds_backends[DEFAULT_ACCOUNT_ID][clouds.env["aws"]["region"]]
    lost = []
    for item in planned:
        if item.deleted or item.kind != "Database" or item.name not in live:
            continue  # never converged: reported as such
        external = live[item.name]["status"]["atProvider"]["externalName"]
        secret = kumo.secret(f"{item.name}-connection") or {}
        if item.cloud == "aws":
            instance = rds.databases.get(external)
            actual = getattr(instance, "_master_user_password", None)  # moto hides it behind a property
        else:
            actual = clouds.cloudsql.password_of(clouds.gcp.project, external, secret.get("username", ""))
        if not secret.get("password") or actual != secret["password"]:
            lost.append(f"{item.cloud} {item.name} ({external}): secret has {'a' if secret.get('password') else 'no'} "
                        f"password, instance has {'a different one' if actual else 'none'}")  # fmt: skip
    return lost


def _updates_missing(clouds: OwnClouds, planned: list[Planned], live: dict[str, dict[str, Any]]) -> list[str]:
    missing = []
    for item in planned:
        if item.deleted or not item.updated or item.name not in live:
            continue  # never converged: reported as such
        external = live[item.name]["status"]["atProvider"]["externalName"]
        probe = clouds.aws if item.cloud == "aws" else clouds.gcp
        if item.kind == "Database":
            found = probe.database(external) or {}
            if found.get("storageGB") != UPDATED_STORAGE_GB:
                missing.append(f"{item.name}: storageGB {found.get('storageGB')}")
        else:
            labels = (probe.bucket(external) or {}).get("labels", {})
            if labels.get(UPDATED_LABEL[0]) != UPDATED_LABEL[1]:
                missing.append(f"{item.name}: labels {labels}")
    return missing
