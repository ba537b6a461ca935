"""The bench's knobs, read from BENCH_* environment variables.

`BENCH_QUICK=1` shrinks every scenario to a few objects and a 5 s sweep interval, so the whole
program runs in well under a minute; the smoke test uses it to keep the bench working.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"
SCENARIOS = ("create", "steady", "scale", "drift", "restart")


@dataclass(frozen=True)
class Params:
    n: int = 500  # BENCH_N: Databases, and as many Buckets, split evenly between AWS and GCP
    scale_n: int = 10_000  # BENCH_SCALE_N: objects managed for memory, drift and restart
    interval: float = 60.0  # BENCH_INTERVAL: the controller's sweep interval, seconds
    drift_samples: int = 20  # BENCH_DRIFT_SAMPLES: out-of-band changes injected
    steady_intervals: float = 2.0  # BENCH_STEADY_INTERVALS: length of the steady window
    workers: int = 16  # BENCH_WORKERS: KUMO_WORKERS, and the floor script's concurrency
    rss_points: tuple[int, ...] = (1_000, 2_000, 5_000)  # BENCH_RSS_POINTS: RSS checkpoints below scale_n
    timeout: float = 1_800.0  # BENCH_TIMEOUT: the longest any single wait may take, seconds
    seed: int = 1  # BENCH_SEED: which resources drift, and when
    out: Path = DEFAULT_OUT  # BENCH_OUT
    testbed_env: str = ""  # BENCH_TESTBED_ENV: reuse a running test bed (`kumo dev up --audit-log`)
    until: str = "restart"  # BENCH_UNTIL: the last scenario to run (create, steady, scale, drift, restart)
    keep: bool = False  # BENCH_KEEP=1: leave the test bed running at the end, for a closer look
    gcs_emulator: str = "testbed"  # BENCH_GCS_EMULATOR: "testbed" (strict) or "bench" (bench/gcs_emulator.py)
    quick: bool = False  # BENCH_QUICK

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Params:
        env = os.environ if env is None else env
        quick = env.get("BENCH_QUICK", "") not in ("", "0", "false")
        base = cls.quick_defaults() if quick else cls()
        points = env.get("BENCH_RSS_POINTS")
        return cls(
            n=int(env.get("BENCH_N", base.n)),
            scale_n=int(env.get("BENCH_SCALE_N", base.scale_n)),
            interval=float(env.get("BENCH_INTERVAL", base.interval)),
            drift_samples=int(env.get("BENCH_DRIFT_SAMPLES", base.drift_samples)),
            steady_intervals=float(env.get("BENCH_STEADY_INTERVALS", base.steady_intervals)),
            workers=int(env.get("BENCH_WORKERS", base.workers)),
            rss_points=tuple(int(p) for p in points.split(",") if p) if points is not None else base.rss_points,
            timeout=float(env.get("BENCH_TIMEOUT", base.timeout)),
            seed=int(env.get("BENCH_SEED", base.seed)),
            out=Path(env.get("BENCH_OUT", str(base.out))),
            testbed_env=env.get("BENCH_TESTBED_ENV", ""),
            until=env.get("BENCH_UNTIL", base.until),
            keep=env.get("BENCH_KEEP", "") not in ("", "0", "false"),
            gcs_emulator=env.get("BENCH_GCS_EMULATOR", base.gcs_emulator),
            quick=quick,
        )

    @classmethod
    def quick_defaults(cls) -> Params:
        return cls(
            n=4,
            scale_n=20,
            interval=5.0,
            drift_samples=4,
            steady_intervals=2.0,
            rss_points=(),
            timeout=120.0,
            quick=True,
        )

    def runs(self, scenario: str) -> bool:
        """Whether `scenario` is within BENCH_UNTIL (each scenario builds on the ones before)."""
        return SCENARIOS.index(scenario) <= SCENARIOS.index(self.until)

    @property
    def base_objects(self) -> int:
        """Objects of the create scenario: n Databases and n Buckets."""
        return 2 * self.n

    def per_cloud(self, total: int) -> dict[str, int]:
        """`total` objects of one kind split between the clouds (AWS takes the odd one)."""
        return {"aws": total - total // 2, "gcp": total // 2}

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = str(self.out)
        values["rss_points"] = list(self.rss_points)
        return values
