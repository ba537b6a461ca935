"""`kumo run` as a child process, for e2e tests, the demo and the benchmarks.

A real process rather than an in-process task, so a test can SIGKILL it and start it again,
exactly as a crashed Pod would be, and read everything it logged.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .process import ManagedProcess, free_port, stop_process_group


@dataclass
class ControllerProcess:
    kubeconfig: str
    log_path: Path
    cluster_id: str = "kumo-testbed"
    controller_namespace: str = "kumo-system"
    extra_env: dict[str, str] = field(default_factory=dict)
    process: ManagedProcess | None = None
    starts: int = 0
    metrics_port: int = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> ControllerProcess:
        port = free_port()
        self.metrics_port = free_port()
        env = {
            **os.environ,
            "KUBECONFIG": self.kubeconfig,
            "KUMO_CLUSTER_ID": self.cluster_id,
            "KUMO_CONTROLLER_NAMESPACE": self.controller_namespace,
            "KUMO_HEALTH_PORT": str(port),
            "KUMO_METRICS_PORT": str(self.metrics_port),
            "KUMO_LOG_LEVEL": "DEBUG",
            **self.extra_env,
        }
        argv = [sys.executable, "-m", "kumo.cli", "run"]
        self.process = ManagedProcess(
            "kumo-controller", argv, self.log_path, ready=lambda: _healthy(port), env=env
        ).start(timeout=60)
        self.starts += 1
        return self

    def stop(self) -> None:
        if self.process:
            self.process.stop()
            self.process = None

    def kill(self) -> None:
        """SIGKILL, no clean-up: what a node failure or OOM kill does."""
        if self.process:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            stop_process_group(self.process.pid, timeout=5)
            self.process = None

    def restart(self) -> ControllerProcess:
        self.stop()
        return self.start()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _healthy(port: int) -> bool:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as response:
        return bool(response.status == 200)
