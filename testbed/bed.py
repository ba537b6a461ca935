"""The whole test bed as one unit: the control plane (etcd, kube-apiserver and
kube-controller-manager, so namespaces really terminate and ownerReferences are garbage
collected), the three emulators, the PostgreSQL server behind their database instances
(`engines.py`), and their env file.

`kumo dev up` starts it in the background and writes its env file (`devbed.py` says where and
how it is found again); `kumo dev down` stops it and removes the temporary work directory; the
pytest fixtures and `make demo` use the same `TestBed` in-process. `TestBed.from_env_file`
reattaches to a bed that is already running, so a developer can keep one up between test runs
(`KUMO_TESTBED_ENV=~/.local/state/kumo/dev/env.json`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from . import emulators, engines
from .cluster import UNPRIVILEGED_USERS, LocalControlPlane, ensure_binaries
from .process import ManagedProcess, pid_alive, stop_process_group

CRD_DIR = Path(__file__).resolve().parent.parent / "crds"


@dataclass
class TestBed:
    """Handles on a running test bed; `env` is what env.json holds."""

    __test__ = False  # not a pytest test class, despite the name

    workdir: Path
    env: dict[str, Any] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)

    @classmethod
    def start(
        cls, *, progress: bool = True, audit_log: bool = False, workdir: Path | None = None, sharder: bool = False
    ) -> TestBed:
        """Start every server; `workdir` (an empty directory the bed then owns and removes on
        `stop`) defaults to a new temporary one. `sharder` adds the sharder of
        timebertt/kubernetes-controller-sharding (`sharding.py`; built on first use), described
        under env["sharder"]."""
        from . import sharding  # imports install_crds from here

        binaries = ensure_binaries(progress=progress)
        if sharder:
            sharding.ensure_sharder(progress)  # a first build takes minutes: before any server runs
        workdir = workdir or Path(tempfile.mkdtemp(prefix="kumo-testbed-"))
        bed = cls(workdir)
        try:
            started = time.monotonic()
            plane = LocalControlPlane(workdir, binaries, audit_log=audit_log).start()
            bed.processes.extend(plane.processes)
            database_server, database_address = engines.start_server(workdir)
            bed.processes.append(database_server)
            emulator_env = {**os.environ, engines.ENV_VARIABLE: database_address.to_json()}
            endpoints = {}
            for spec in emulators.EMULATORS:
                process, endpoint = emulators.start_emulator(spec, workdir, env=emulator_env)
                bed.processes.append(process)
                endpoints[spec.name] = endpoint
            running_sharder = None
            if sharder:
                running_sharder = sharding.start_sharder(
                    str(plane.kubeconfig), workdir, plane.ca_file.parent, progress=progress
                )
                bed.processes.append(running_sharder.process)
            bed.env = bed._describe(plane, endpoints, time.monotonic() - started)
            if running_sharder:
                bed.env["sharder"] = running_sharder.describe()
        except BaseException:
            bed.stop()
            raise
        return bed

    def _describe(self, plane: LocalControlPlane, endpoints: dict[str, str], took: float) -> dict[str, Any]:
        user_kubeconfigs = {
            user: str(plane.write_kubeconfig(self.workdir / f"kubeconfig-{user}", user)) for user in UNPRIVILEGED_USERS
        }
        return {
            "workdir": str(self.workdir),
            "kubeconfig": str(plane.kubeconfig),
            "server": plane.server,
            "user_kubeconfigs": user_kubeconfigs,
            "audit_log": str(plane.audit_log_path) if plane.audit_log else "",
            "aws": {
                "endpoint": endpoints["moto"],
                "region": emulators.AWS_REGION,
                "access_key_id": emulators.AWS_ACCESS_KEY_ID,
                "secret_access_key": emulators.AWS_SECRET_ACCESS_KEY,
            },
            "gcp": {
                "project": emulators.GCP_PROJECT,
                "region": emulators.GCP_REGION,
                "storage_endpoint": endpoints["gcs"],
                "sqladmin_endpoint": endpoints["cloudsql"],
            },
            "processes": [
                {"name": p.name, "pid": p.pid, "address": p.address, "log": str(p.log_path)} for p in self.processes
            ],
            "startup_seconds": round(took, 2),
        }

    @classmethod
    def from_env_file(cls, path: Path) -> TestBed:
        env = json.loads(path.read_text())
        return cls(Path(env["workdir"]), env)

    def write_env_file(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.env, indent=2) + "\n")
        return path

    def stop(self) -> None:
        """Stop every process this bed started (also those only known from env.json)."""
        pids = {p.pid for p in self.processes} | {p["pid"] for p in self.env.get("processes", [])}
        for pid in sorted(pids, reverse=True):  # later-started first: the API server before etcd
            stop_process_group(pid)
        self.processes.clear()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def status(self) -> list[tuple[str, int, bool]]:
        return [(p["name"], p["pid"], pid_alive(p["pid"])) for p in self.env.get("processes", [])]


def load_crd_documents(crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    documents: list[dict[str, Any]] = []
    for path in sorted(crd_dir.glob("*.yaml")):
        documents.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
    return documents


def install_crds(api_client: Any, crd_dir: Path = CRD_DIR, timeout: float = 30.0) -> list[str]:
    """Create or replace every CRD in `crd_dir` and wait until each is Established."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    extensions = client.ApiextensionsV1Api(api_client)
    names = []
    for crd in load_crd_documents(crd_dir):
        name = crd["metadata"]["name"]
        names.append(name)
        try:
            extensions.create_custom_resource_definition(crd)
        except ApiException as error:
            if error.status != 409:
                raise
            current = extensions.read_custom_resource_definition(name)
            crd["metadata"]["resourceVersion"] = current.metadata.resource_version
            extensions.replace_custom_resource_definition(name, crd)
    deadline = time.monotonic() + timeout
    for name in names:
        while not _established(extensions.read_custom_resource_definition(name)):
            if time.monotonic() > deadline:
                raise TimeoutError(f"CRD {name} not Established after {timeout:.0f}s")
            time.sleep(0.1)
    return names


def _established(crd: Any) -> bool:
    conditions = (crd.status and crd.status.conditions) or []
    return any(c.type == "Established" and c.status == "True" for c in conditions)
