"""`make bench`: kumo's benchmark on the local test bed (control plane + emulated clouds).

Run it from the repository root with `python -m bench.run`. It measures create at scale against a
no-Kubernetes floor, the cloud calls of steady drift sweeps against per-resource polling, drift
detection latency, and memory and restart at scale; docs/performance.md explains every figure.
Every headline figure is a ratio or a count taken in the same run, because absolute times on a
shared 2-core machine are noisy.
"""

import signal
from typing import Any


def unwind_on_sigterm() -> None:
    """Make SIGTERM raise SystemExit, so a bench program stopped from outside unwinds through its
    clean-up (test beds, controllers, rivals) instead of leaving them running."""
    signal.signal(signal.SIGTERM, _terminated)


def _terminated(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)
