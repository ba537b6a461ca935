"""The emulated clouds of the test bed, each a separate server process on loopback.

- AWS: moto in server mode (RDS, S3, IAM, STS, Secrets Manager on one port), reached by boto3
  with `endpoint_url`, run by `kumo.testbed.strictaws`, which makes it as strict as AWS where
  controllers break (states over time, pending modifications, regions, S3 defaults).
- GCS: gcp-storage-emulator in memory, run by `kumo.testbed.strictgcs`, which makes it as strict
  as GCS where controllers break (projects and the shared bucket namespace, paged listings,
  settings kept at insert, patch semantics, one metadata update per second per bucket).
- Cloud SQL Admin: kumo's own emulator (`kumo.testbed.cloudsql_emulator`), with asynchronous
  operations and the real REST shapes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .process import LOOPBACK, ManagedProcess, free_port, port_open

# Fixed fake credentials: moto accepts any, and a fixed pair keeps tests and demo simple.
AWS_ACCESS_KEY_ID = "testing"
AWS_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - an emulator credential, not a secret
AWS_REGION = "us-east-1"
GCP_PROJECT = "kumo-dev-project"
GCP_REGION = "europe-west1"


@dataclass(frozen=True)
class EmulatorSpec:
    """How to start one emulator: `argv` with `{port}` filled in."""

    name: str
    argv: tuple[str, ...]


EMULATORS = (
    EmulatorSpec("moto", (sys.executable, "-m", "kumo.testbed.strictaws", "--host", LOOPBACK, "--port", "{port}")),
    EmulatorSpec(
        "gcs",
        (sys.executable, "-m", "kumo.testbed.strictgcs", "--host", LOOPBACK, "--port", "{port}"),
    ),
    EmulatorSpec(
        "cloudsql",
        (sys.executable, "-m", "kumo.testbed.cloudsql_emulator", "--port", "{port}"),
    ),
)


def start_emulator(
    spec: EmulatorSpec, workdir: Path, env: Mapping[str, str] | None = None
) -> tuple[ManagedProcess, str]:
    """Start one emulator on a free port; returns the process and its endpoint URL."""
    port = free_port()
    argv = [part.format(port=port) for part in spec.argv]
    log_path = workdir / f"{spec.name}.log"
    endpoint = f"http://{LOOPBACK}:{port}"
    process = ManagedProcess(
        spec.name,
        argv,
        log_path,
        ready=lambda: port_open(port),
        env=dict(env) if env is not None else None,
        address=endpoint,
    ).start(timeout=60)
    return process, endpoint
