"""`python -m bench.rivals smoke [NAME ...]`: each rival through one object per kind, to Ready.

Builds the rivals that are not built yet (minutes, once), starts a test bed, then for each rival
in turn: installs its CRDs and configuration in a namespace of its own, starts it, applies one S3
bucket (and one RDS instance where it manages them), prints the seconds until the rival reports
the object Ready, deletes the objects, stops the rival, and finally stops the bed. Nothing is
left running, whatever fails. `python -m bench.rivals build` only builds.

It checks that the rivals run here; the measurements are bench/sidebyside.py's.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kumo.testbed.bed import TestBed

from . import RIVALS, Rival, RivalKind, RivalProcess, by_name

READY_TIMEOUT_SECONDS = 300.0
GONE_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.rivals", description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("smoke", "build"))
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"rivals to run: {', '.join(r.name for r in RIVALS)}")
    args = parser.parse_args(argv)
    rivals = [by_name(name) for name in args.names] if args.names else list(RIVALS)
    for rival in rivals:  # before the bed starts: a build takes minutes and two cores
        rival.build()
    if args.command == "build":
        return 0
    return smoke(rivals)


def smoke(rivals: list[Rival]) -> int:
    failures = 0
    print("starting the test bed", flush=True)
    bed = TestBed.start(progress=True)
    try:
        api = _api_client(bed.env["kubeconfig"])
        for rival in rivals:
            try:
                for kind, seconds in _smoke_one(rival, bed, api):
                    print(f"{rival.name}: {kind} Ready in {seconds:.1f} s", flush=True)
            except Exception as error:  # one rival failing must not hide the next one's result
                failures += 1
                print(f"{rival.name}: FAILED: {error}", flush=True)
    finally:
        bed.stop()
        print("test bed stopped", flush=True)
    return 1 if failures else 0


def _smoke_one(rival: Rival, bed: TestBed, api: client.ApiClient) -> Iterator[tuple[str, float]]:
    namespace = f"rivals-{rival.name}"
    client.CoreV1Api(api).create_namespace({"metadata": {"name": namespace}})
    crds = rival.install(api, bed.env, namespace)
    print(f"{rival.name}: {len(crds)} CRDs installed", flush=True)
    log_path = Path(bed.env["workdir"]) / f"{rival.name}.log"
    with _running(rival, bed.env, log_path, namespace) as process:
        print(f"{rival.name}: pid {process.pid}, metrics {process.metrics_url}", flush=True)
        _check_loopback_only(rival, process)
        suffix = uuid.uuid4().hex[:6]
        created: list[tuple[RivalKind, str]] = []
        try:
            for kind in rival.kinds.values():
                name = f"smoke-{kind.kind.lower()}-{suffix}"
                manifest = rival.manifest(kind.kind, name, namespace, bed.env)
                started = time.monotonic()
                _Objects(api, kind, namespace).create(manifest)
                created.append((kind, name))
                _wait_ready(rival, api, kind, namespace, name, process)
                yield kind.kind, time.monotonic() - started
        finally:
            for kind, name in created:
                _delete(api, kind, namespace, name)


@contextmanager
def _running(rival: Rival, env: dict[str, Any], log_path: Path, namespace: str) -> Iterator[RivalProcess]:
    process = rival.start(env, log_path, namespace=namespace)
    try:
        yield process
    finally:
        process.stop()
        if process.alive():
            raise RuntimeError(f"{rival.name} (pid {process.pid}) still running after stop")
        print(f"{rival.name}: stopped", flush=True)


def _check_loopback_only(rival: Rival, process: RivalProcess) -> None:
    """Every server the rival opens must bind loopback, as every server of the bed does."""
    sockets = process.listening()
    print(f"{rival.name}: listening on {', '.join(f'{host}:{port}' for host, port in sockets)}", flush=True)
    exposed = [(host, port) for host, port in sockets if not ipaddress.ip_address(host).is_loopback]
    if exposed:
        raise RuntimeError(f"{rival.name} listens beyond loopback: {exposed}")


class _Objects:
    """Create, read and delete one kind's objects, namespaced or cluster-scoped alike."""

    def __init__(self, api: client.ApiClient, kind: RivalKind, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.kind = kind
        self.namespace = namespace

    def _where(self) -> tuple[str, ...]:
        kind = self.kind
        if kind.namespaced:
            return (kind.group, kind.version, self.namespace, kind.plural)
        return (kind.group, kind.version, kind.plural)

    def create(self, body: dict[str, Any]) -> None:
        if self.kind.namespaced:
            self.custom.create_namespaced_custom_object(*self._where(), body)
        else:
            self.custom.create_cluster_custom_object(*self._where(), body)

    def get(self, name: str) -> dict[str, Any]:
        if self.kind.namespaced:
            return dict(self.custom.get_namespaced_custom_object(*self._where(), name))
        return dict(self.custom.get_cluster_custom_object(*self._where(), name))

    def delete(self, name: str) -> None:
        if self.kind.namespaced:
            self.custom.delete_namespaced_custom_object(*self._where(), name)
        else:
            self.custom.delete_cluster_custom_object(*self._where(), name)


def _wait_ready(
    rival: Rival, api: client.ApiClient, kind: RivalKind, namespace: str, name: str, process: RivalProcess
) -> None:
    objects = _Objects(api, kind, namespace)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    obj: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = objects.get(name)
        if rival.ready(obj):
            return
        if not process.alive():
            raise RuntimeError(f"{rival.name} exited\n{process.process.log_tail()}")
        time.sleep(POLL_SECONDS)
    conditions = (obj.get("status") or {}).get("conditions")
    raise TimeoutError(
        f"{kind.kind}/{name} not Ready after {READY_TIMEOUT_SECONDS:.0f}s; conditions: {conditions}\n"
        f"{process.process.log_tail()}"
    )


def _delete(api: client.ApiClient, kind: RivalKind, namespace: str, name: str) -> None:
    """Delete and wait until the rival has removed its finalizer (the cloud resource is gone)."""
    objects = _Objects(api, kind, namespace)
    started = time.monotonic()
    try:
        objects.delete(name)
        while time.monotonic() < started + GONE_TIMEOUT_SECONDS:
            objects.get(name)
            time.sleep(POLL_SECONDS)
        print(f"{kind.kind}/{name}: still there {GONE_TIMEOUT_SECONDS:.0f}s after delete", flush=True)
    except ApiException as error:
        if error.status != 404:
            raise
        print(f"{kind.kind}/{name}: deleted in {time.monotonic() - started:.1f} s", flush=True)


def _api_client(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


if __name__ == "__main__":
    sys.exit(main())
