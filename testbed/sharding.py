"""The sharder of timebertt/kubernetes-controller-sharding on the test bed, and kumo's replicas as
the shards of its ring (issue 17; docs/testbed.md, "The sharder").

The sharder (Go module `github.com/timebertt/kubernetes-controller-sharding` v0.11.0, Apache-2.0)
assigns each object of a ControllerRing's resources to one live shard: its mutating webhook labels
an object `shard.alpha.sharding.timebertt.dev/<ring>: <shard>` when it is created, and its
controller moves objects when shards come and go (docs/design.md of the module). It is built
once from the pinned module in `testbed/sharder/` (go.mod, go.sum and a main.go of kumo's own that
keeps every server on loopback) into `<kumo cache>/sharder/`, next to the control plane's
binaries, with the module's ControllerRing CRD copied beside it from the Go module cache, so the
CRD is always the one of the version built. Only a test, bench or demo that asks for the sharder
builds it (`ensure_sharder`); `make test` builds it with the control plane because
tests/e2e/test_sharder.py runs there.

`start_sharder` runs it against a bed's API server: the CRD installed, its webhook serving TLS
on 127.0.0.1 with a certificate signed by the bed's CA (the MutatingWebhookConfigurations it
writes call it by URL with that CA as caBundle), its metrics and health endpoints on 127.0.0.1,
the bed's admin kubeconfig (out of a cluster there is no ServiceAccount, so upstream's RBAC does
not apply). `kumo_ring` is the ControllerRing for kumo's Buckets and Databases with their
connection Secrets, and `start_shards` starts N `kumo run --shard-ring` replicas.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumo.api import API_VERSION, BUCKET, DATABASE, GROUP, LABEL_CONTROLLER_RING, SHARDING_GROUP, shard_label

from .bed import install_crds
from .cluster import BuildProgress, cache_dir, issue_loopback_certificate
from .controllerproc import ControllerProcess
from .process import LOOPBACK, ManagedProcess, free_port

SHARDER_MODULE = "github.com/timebertt/kubernetes-controller-sharding"
SHARDER_VERSION = "v0.11.0"
GO_MODULE_DIR = Path(__file__).parent / "sharder"
# The module's checksum-database entry was not served when this pin was first resolved; the
# committed go.sum pins it since, and this lets a re-resolution of that one module through.
GO_ENV = {
    "CGO_ENABLED": "0",
    "GOFLAGS": "-mod=mod -buildvcs=false",
    "GONOSUMDB": SHARDER_MODULE,
}
CRD_IN_MODULE = "config/crds/sharding.timebertt.dev_controllerrings.yaml"
RING_VERSION = "v1alpha1"
RING_PLURAL = "controllerrings"
DEFAULT_RING = "kumo"
# The webhook configuration the sharder writes for a ring (pkg/controller/controllerring).
WEBHOOK_CONFIG_PREFIX = "controllerring-"
START_TIMEOUT_SECONDS = 60.0
RING_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class SharderBuild:
    binary: Path
    crd_dir: Path  # the ControllerRing CRD of the same module version


def ensure_sharder(progress: bool = True) -> SharderBuild:
    """The sharder binary and its CRD, built from the pinned module on first use (a minute or
    two with a warm Go build cache, several on a cold one). `KUMO_SHARDER_DIR` names a directory
    laid out as the cache's (`sharder`, `crds/`) instead."""
    override = os.environ.get("KUMO_SHARDER_DIR")
    target = Path(override) if override else cache_dir() / "sharder" / f"sharder-{SHARDER_VERSION}-{_pin_digest()}"
    build = SharderBuild(target / "sharder", target / "crds")
    if override or build.binary.exists():
        return build
    target.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time (pytest-xdist workers, a bench beside make test): the next one waits,
    # then finds the binary built.
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not build.binary.exists():
            _build(target, progress)
    return build


def _pin_digest() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update(name.encode() + b"\0" + (GO_MODULE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def _build(target: Path, progress: bool) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("building the sharder needs the Go toolchain (go) on PATH")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "crds").mkdir(parents=True)
    env = {**os.environ, **GO_ENV}
    with BuildProgress(progress) as build:
        build.say(f"building the sharder: {SHARDER_MODULE} {SHARDER_VERSION} (first time only, a few minutes)")
        subprocess.run(["go", "build", "-o", str(staging / "sharder"), "."], cwd=GO_MODULE_DIR, check=True, env=env)
        module = subprocess.run(
            ["go", "mod", "download", "-json", f"{SHARDER_MODULE}@{SHARDER_VERSION}"],
            cwd=GO_MODULE_DIR,
            check=True,
            capture_output=True,
            text=True,
            env=env,
        )
    crd = Path(json.loads(module.stdout)["Dir"]) / CRD_IN_MODULE
    shutil.copyfile(crd, staging / "crds" / crd.name)
    staging.replace(target)
    size_mb = (target / "sharder").stat().st_size / 1e6
    build.say(f"sharder built in {build.elapsed():.0f}s ({size_mb:.0f} MB) -> {target}")


# ---------------------------------------------------------------------------- the process


@dataclass
class Sharder:
    """A running sharder; `stop()` ends it (the rings and their webhook configurations stay)."""

    process: ManagedProcess
    webhook_url: str
    metrics_port: int
    health_port: int
    ca_file: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process.alive()

    def stop(self) -> None:
        self.process.stop()

    def describe(self) -> dict[str, Any]:
        """What the bed's env.json records about it."""
        return {
            "webhook_url": self.webhook_url,
            "metrics_url": self.metrics_url,
            "ca_file": str(self.ca_file),
            "log": str(self.process.log_path),
        }


def start_sharder(
    kubeconfig: str,
    workdir: Path,
    pki: Path,
    *,
    api_client: Any = None,
    sync_period_seconds: float | None = None,
    progress: bool = True,
) -> Sharder:
    """Build (first time) and start the sharder against the API server of `kubeconfig`, its
    files in `workdir`, its webhook's certificate signed by the bed's CA in `pki` (the bed's
    `<workdir>/pki`), the ControllerRing CRD installed; returns once it is ready (its caches
    synced). `sync_period_seconds` changes upstream's periodic check of every assignment (5 min)."""
    build = ensure_sharder(progress)
    with _api(kubeconfig, api_client) as api:
        install_crds(api, build.crd_dir)
    directory = workdir / "sharder"
    certs = directory / "certs"
    certs.mkdir(parents=True, exist_ok=True)
    ca_file = issue_loopback_certificate(pki, certs, "kumo-testbed-sharder")
    webhook_port, metrics_port, health_port = free_port(), free_port(), free_port()
    webhook_url = f"https://{LOOPBACK}:{webhook_port}"
    argv = [
        str(build.binary),
        f"--webhook-bind-address={LOOPBACK}:{webhook_port}",
        f"--webhook-url={webhook_url}",
        f"--webhook-ca-file={ca_file}",
        f"--cert-dir={certs}",
        f"--metrics-bind-address={LOOPBACK}:{metrics_port}",
        f"--health-probe-bind-address={LOOPBACK}:{health_port}",
    ]
    if sync_period_seconds is not None:
        argv.append(f"--sync-period={sync_period_seconds}s")
    process = ManagedProcess(
        "sharder",
        argv,
        directory / "sharder.log",
        ready=lambda: _answers(f"http://{LOOPBACK}:{health_port}/readyz"),
        env={**os.environ, "KUBECONFIG": kubeconfig, "GOMAXPROCS": "2"},
        address=webhook_url,
    ).start(timeout=START_TIMEOUT_SECONDS)
    return Sharder(process, webhook_url, metrics_port, health_port, ca_file)


@contextlib.contextmanager
def _api(kubeconfig: str, api_client: Any) -> Any:
    if api_client is not None:
        yield api_client
        return
    from kubernetes import client, config

    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        yield api


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


# ---------------------------------------------------------------------------- rings and shards


def kumo_ring(name: str = DEFAULT_RING, namespaces: Sequence[str] = ()) -> dict[str, Any]:
    """The ControllerRing of kumo's replicas: Buckets and Databases, each with the connection
    Secrets it controls (ownerReference controller=true: controller/core/secrets.py), which the
    sharder assigns to their owner's shard. `namespaces` limits the ring to those namespaces
    (default: upstream's, every namespace but kube-system and sharding-system)."""
    secrets = [{"group": "", "resource": "secrets"}]
    spec: dict[str, Any] = {
        "resources": [
            {"group": GROUP, "resource": resource.plural, "controlledResources": secrets}
            for resource in (BUCKET, DATABASE)
        ]
    }
    if namespaces:
        spec["namespaceSelector"] = {
            "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": sorted(namespaces)}]
        }
    return {
        "apiVersion": f"{SHARDING_GROUP}/{RING_VERSION}",
        "kind": "ControllerRing",
        "metadata": {"name": name},
        "spec": spec,
    }


def apply_ring(api_client: Any, ring: Mapping[str, Any], timeout: float = RING_TIMEOUT_SECONDS) -> None:
    """Create or replace `ring`; returns once the sharder has written its webhook configuration."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    objects = client.CustomObjectsApi(api_client)
    name = ring["metadata"]["name"]
    try:
        objects.create_cluster_custom_object(SHARDING_GROUP, RING_VERSION, RING_PLURAL, dict(ring))
    except ApiException as error:
        if error.status != 409:
            raise
        current = objects.get_cluster_custom_object(SHARDING_GROUP, RING_VERSION, RING_PLURAL, name)
        replacement = {
            **ring,
            "metadata": {**ring["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        }
        objects.replace_cluster_custom_object(SHARDING_GROUP, RING_VERSION, RING_PLURAL, name, replacement)
    admission = client.AdmissionregistrationV1Api(api_client)
    deadline = time.monotonic() + timeout
    while True:
        try:
            admission.read_mutating_webhook_configuration(WEBHOOK_CONFIG_PREFIX + name)
            return
        except ApiException as error:
            if error.status != 404:
                raise
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"the sharder wrote no webhook configuration for ControllerRing {name} in {timeout:.0f}s"
            )
        time.sleep(0.2)


def wait_until_assigning(
    api_client: Any, namespace: str, ring: str = DEFAULT_RING, timeout: float = RING_TIMEOUT_SECONDS
) -> str:
    """Wait until the API server calls the ring's webhook and it assigns: a dry-run create of a
    Secret controlled by a Bucket in `namespace` comes back with the shard label (so at least one
    shard of the ring must hold its Lease). The API server picks up a new webhook configuration
    a moment after it is written; an object created in between stays unassigned until the
    sharder's next periodic check. Returns the shard the probe was given."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    owner = {"apiVersion": API_VERSION, "kind": BUCKET.kind, "name": "probe", "uid": "0", "controller": True}
    probe = {"metadata": {"name": "kumo-sharder-probe", "ownerReferences": [owner]}}
    deadline = time.monotonic() + timeout
    while True:
        created = core.create_namespaced_secret(namespace, probe, dry_run="All")
        shard = (created.metadata.labels or {}).get(shard_label(ring))
        if shard:
            return str(shard)
        if time.monotonic() > deadline:
            raise TimeoutError(f"ControllerRing {ring} assigned no object in {namespace} within {timeout:.0f}s")
        time.sleep(0.2)


def wait_until_assigning_to(
    api_client: Any,
    namespace: str,
    shards: Sequence[str],
    ring: str = DEFAULT_RING,
    timeout: float = RING_TIMEOUT_SECONDS,
) -> None:
    """Wait until the ring's webhook assigns objects in `namespace` to every one of `shards`:
    dry-run creates of Secrets controlled by Buckets of varied names (each hashed on its owner)
    until each shard has been given one. The ring's status can count a shard before the webhook
    hashes onto it, so a test that needs objects on every shard waits on this."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    wanted, seen = set(shards), set[str]()
    deadline = time.monotonic() + timeout
    attempt = 0
    while not wanted <= seen:
        owner = {
            "apiVersion": API_VERSION,
            "kind": BUCKET.kind,
            "name": f"probe-{attempt % 64}",
            "uid": "0",
            "controller": True,
        }
        probe = {"metadata": {"name": "kumo-sharder-probe", "ownerReferences": [owner]}}
        created = core.create_namespaced_secret(namespace, probe, dry_run="All")
        seen.add((created.metadata.labels or {}).get(shard_label(ring), ""))
        attempt += 1
        if attempt % 64 == 0:  # every name tried once: start again on a fresh view of the ring
            if time.monotonic() > deadline:
                raise TimeoutError(f"ControllerRing {ring} assigned to {sorted(seen)}, not all of {sorted(wanted)}")
            seen.clear()
            time.sleep(0.2)


def wait_for_available_shards(
    api_client: Any, count: int, ring: str = DEFAULT_RING, timeout: float = RING_TIMEOUT_SECONDS
) -> None:
    """Wait until the ring's status counts `count` available shards (the sharder's view of the
    shard Leases: a replica started is not yet one it assigns to, nor is a killed one gone from
    it until its Lease expires)."""
    from kubernetes import client

    objects = client.CustomObjectsApi(api_client)
    deadline = time.monotonic() + timeout
    while True:
        found = objects.get_cluster_custom_object(SHARDING_GROUP, RING_VERSION, RING_PLURAL, ring)
        available = (found.get("status") or {}).get("availableShards")
        if available == count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"ControllerRing {ring} has {available} available shards, not {count}, after {timeout:.0f}s"
            )
        time.sleep(0.2)


def delete_ring(api_client: Any, name: str = DEFAULT_RING) -> None:
    """Delete the ring and its webhook configuration now (the garbage collector would remove the
    latter later, through its ownerReference): no later API request waits on a webhook call."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    for delete in (
        lambda: client.CustomObjectsApi(api_client).delete_cluster_custom_object(
            SHARDING_GROUP, RING_VERSION, RING_PLURAL, name
        ),
        lambda: client.AdmissionregistrationV1Api(api_client).delete_mutating_webhook_configuration(
            WEBHOOK_CONFIG_PREFIX + name
        ),
    ):
        try:
            delete()
        except ApiException as error:
            if error.status != 404:
                raise


def ring_lease(name: str, namespace: str, ring: str = DEFAULT_RING, duration_seconds: int = 15) -> dict[str, Any]:
    """A shard Lease as docs/implement-sharding.md asks: named by its holder, labelled with its
    ring, renewed now."""
    now = _micro_time()
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_CONTROLLER_RING: ring}},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": duration_seconds,
            "acquireTime": now,
            "renewTime": now,
        },
    }


def _micro_time() -> str:
    """Now as a Lease's MicroTime (RFC 3339, microseconds, UTC)."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def start_shards(
    count: int,
    kubeconfig: str,
    log_dir: Path,
    *,
    ring: str = DEFAULT_RING,
    name_prefix: str = "kumo-shard",
    extra_env: Mapping[str, str] | None = None,
) -> list[ControllerProcess]:
    """Start `count` replicas of `kumo run --shard-ring <ring>` (KUMO_SHARD_RING), named
    `<name_prefix>-0` ... (KUMO_LEADER_IDENTITY: each its own shard Lease and shard name);
    `extra_env` as for one ControllerProcess (KUMO_NAMESPACES, cloud settings). Every replica
    started so far is stopped if one fails to start."""
    replicas: list[ControllerProcess] = []
    try:
        for index in range(count):
            replicas.append(start_shard(f"{name_prefix}-{index}", kubeconfig, log_dir, ring=ring, extra_env=extra_env))
    except BaseException:
        for replica in replicas:
            replica.stop()
        raise
    return replicas


def start_shard(
    name: str, kubeconfig: str, log_dir: Path, *, ring: str = DEFAULT_RING, extra_env: Mapping[str, str] | None = None
) -> ControllerProcess:
    """One `kumo run --shard-ring <ring>` replica whose shard (and Lease) is `name`."""
    env = {**(extra_env or {}), "KUMO_SHARD_RING": ring, "KUMO_LEADER_IDENTITY": name}
    return ControllerProcess(kubeconfig=kubeconfig, log_path=log_dir / f"{name}.log", extra_env=env).start()
