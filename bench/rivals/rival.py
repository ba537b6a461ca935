"""What every rival controller has in common: a pinned Go module built into kumo's cache, its
CRDs, a child process on loopback, and the objects the benchmark applies to it.

A rival's Go module lives in `bench/rivals/<module dir>/` (go.mod and go.sum pin every module;
provider-aws adds a `main.go` of kumo's own). Its binary is built on first use into
`<kumo cache>/rivals/<name>-<version>-<digest of the pins>/`, next to the control plane's
binaries (`testbed.cluster.cache_dir`), so a changed pin rebuilds and everything else reuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from kumo.testbed.bed import install_crds
from kumo.testbed.cluster import cache_dir
from kumo.testbed.process import LOOPBACK, ManagedProcess, free_port, listening_sockets

RIVALS_DIR = Path(__file__).resolve().parent
# The rivals' CRD sets are large (provider-aws has 195): Established takes longer than kumo's.
CRD_TIMEOUT_SECONDS = 180.0
START_TIMEOUT_SECONDS = 120.0
PROGRESS_EVERY_SECONDS = 20.0


@dataclass(frozen=True)
class RivalKind:
    """One kind a rival serves, as the Kubernetes API names it."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}"


@dataclass
class RivalProcess:
    """A running rival controller: its own process group, logging to `log_path`."""

    rival: Rival
    process: ManagedProcess
    metrics_port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.process.log_path

    @property
    def metrics_url(self) -> str:
        return f"http://{LOOPBACK}:{self.metrics_port}/metrics"

    def alive(self) -> bool:
        return self.process.alive()

    def listening(self) -> list[tuple[str, int]]:
        """(address, port) of every TCP socket the process listens on, from /proc (Linux)."""
        return listening_sockets(self.pid)

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if it lingers; returns once it is gone."""
        self.process.stop()


class Rival(ABC):
    """A rival controller the benchmark runs side by side with kumo."""

    name: str  # how results and logs name it: "ack-s3", "crossplane-aws"
    module: str  # the upstream Go module
    version: str  # its pinned version
    module_dir: Path  # bench/rivals/<dir>: go.mod, go.sum (and main.go where kumo wires it)
    package: str  # what `go build` builds, relative to module_dir's module
    binary_name: str
    kinds: ClassVar[dict[str, RivalKind]]  # "Bucket", and "RDSInstance" where the rival manages databases

    # ------------------------------------------------------------------ build

    def pin_digest(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.module_dir.iterdir()):
            if path.suffix in {".mod", ".sum", ".go"}:
                digest.update(path.name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:12]

    def binary_path(self) -> Path:
        """Where the binary is (or will be once built)."""
        override = os.environ.get(f"BENCH_RIVAL_{self.name.upper().replace('-', '_')}")
        if override:
            return Path(override)
        return cache_dir() / "rivals" / f"{self.name}-{self.version}-{self.pin_digest()}" / self.binary_name

    def build(self, progress: bool = True) -> Path:
        """The binary, built from the pinned module on first use (minutes, with progress lines)."""
        binary = self.binary_path()
        if binary.exists():
            return binary
        if shutil.which("go") is None:
            raise RuntimeError(f"building {self.name} needs the Go toolchain (go) on PATH")
        staging = binary.parent.with_name(binary.parent.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        say = _progress_printer(progress)
        say(f"building {self.name}: {self.module} {self.version} (first time only, about 5 minutes on 2 cores)")
        started = time.monotonic()
        done = threading.Event()
        threading.Thread(target=_tick, args=(say, self.name, started, done), daemon=True).start()
        try:
            subprocess.run(
                ["go", "build", "-o", str(staging / self.binary_name), self.package],
                cwd=self.module_dir,
                check=True,
                env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"},
            )
        finally:
            done.set()
        staging.replace(binary.parent)
        size_mb = binary.stat().st_size / 1e6
        say(f"{self.name} built in {time.monotonic() - started:.0f}s ({size_mb:.0f} MB) -> {binary}")
        return binary

    def source_dir(self) -> Path:
        """The upstream module's files in the Go module cache (downloaded if needed): its CRDs."""
        result = subprocess.run(
            ["go", "mod", "download", "-json", f"{self.module}@{self.version}"],
            cwd=self.module_dir,
            check=True,
            capture_output=True,
            text=True,
        )
        return Path(json.loads(result.stdout)["Dir"])

    # ------------------------------------------------------------------ cluster and process

    @abstractmethod
    def crd_dirs(self) -> list[Path]:
        """The directories of the upstream module whose YAML files are the CRDs to install."""

    def install(self, api_client: Any, env: dict[str, Any], namespace: str) -> list[str]:
        """Install the CRDs (waiting until Established) and whatever the rival needs before it
        starts; returns the CRD names."""
        names: list[str] = []
        for directory in self.crd_dirs():
            names += install_crds(api_client, directory, timeout=CRD_TIMEOUT_SECONDS)
        return names

    @abstractmethod
    def command(
        self, binary: Path, env: dict[str, Any], namespace: str, ports: dict[str, int], resync_seconds: int | None
    ) -> list[str]:
        """The rival's argv: every server it opens on `ports` (loopback)."""

    @abstractmethod
    def process_env(self, env: dict[str, Any]) -> dict[str, str]:
        """Environment variables the rival's process gets on top of KUBECONFIG."""

    def ready_url(self, ports: dict[str, int]) -> str:
        """A URL answering 200 once the controller manager runs."""
        return f"http://{LOOPBACK}:{ports['metrics']}/metrics"

    def start(
        self,
        env: dict[str, Any],
        log_path: Path,
        *,
        namespace: str,
        resync_seconds: int | None = None,
    ) -> RivalProcess:
        """Start the rival against the bed that `env` (the bed's env.json) describes, watching
        `namespace` (namespaced rivals), its AWS endpoint `env["aws"]["endpoint"]`; returns once
        its metrics endpoint answers. `resync_seconds` sets every poll and resync it has."""
        binary = self.build()
        ports = {"metrics": free_port(), "health": free_port(), "webhook": free_port()}
        argv = self.command(binary, env, namespace, ports, resync_seconds)
        # The AWS settings of this shell stay out (AWS_CA_BUNDLE, for one, makes the Go SDK refuse
        # the rivals' HTTP clients): a rival gets exactly the AWS settings process_env names.
        inherited = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
        process_env = {**inherited, "KUBECONFIG": env["kubeconfig"], **self.process_env(env)}
        url = self.ready_url(ports)
        process = ManagedProcess(self.name, argv, log_path, ready=lambda: _answers(url), env=process_env)
        process.address = f"{LOOPBACK}:{ports['metrics']}"
        return RivalProcess(self, process.start(timeout=START_TIMEOUT_SECONDS), ports["metrics"])

    # ------------------------------------------------------------------ objects

    @abstractmethod
    def manifest(self, kind: str, name: str, namespace: str, env: dict[str, Any]) -> dict[str, Any]:
        """One object of `kind` named `name` (the cloud resource's name too): an S3 bucket with
        versioning Enabled; an RDS instance with 7 days of backup retention."""

    @abstractmethod
    def ready(self, obj: dict[str, Any]) -> bool:
        """Whether the rival reports `obj` (as read from the API) Ready and in sync."""


def conditions(obj: dict[str, Any]) -> dict[str, str]:
    """type -> status of the object's status.conditions."""
    return {c.get("type", ""): c.get("status", "") for c in (obj.get("status") or {}).get("conditions") or []}


def _answers(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


def _progress_printer(enabled: bool) -> Any:
    def say(message: str) -> None:
        if enabled:
            print(f"[bench rivals] {message}", file=sys.stderr, flush=True)

    return say


def _tick(say: Any, name: str, started: float, done: threading.Event) -> None:
    while not done.wait(PROGRESS_EVERY_SECONDS):
        say(f"... still building {name} ({time.monotonic() - started:.0f}s)")
