"""`python -m bench.run` (what `make bench` runs): every scenario in one run, progress lines while
it works, then the table of figures and targets, and bench/results.json (BENCH_OUT).

Knobs (environment): BENCH_N, BENCH_SCALE_N, BENCH_INTERVAL, BENCH_DRIFT_SAMPLES,
BENCH_STEADY_INTERVALS, BENCH_WORKERS, BENCH_RSS_POINTS, BENCH_TIMEOUT, BENCH_SEED, BENCH_OUT,
BENCH_TESTBED_ENV, BENCH_UNTIL, BENCH_GCS_EMULATOR, and BENCH_QUICK=1 for a run at tiny sizes.
See bench/README.md.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from . import observe, report, unwind_on_sigterm
from .params import Params
from .scenarios import Bench


def run_scenarios(bench: Bench, results: dict[str, Any], details: dict[str, Any]) -> None:
    params = bench.params
    create = bench.create_at_scale()
    details["create"] = create.pop("details")
    results.update(create)
    if not params.runs("steady"):
        return
    steady = bench.steady_sweeps()
    details["steady"] = steady.pop("details")
    series = [steady.pop("rss_at_base")]
    results.update(steady)
    if params.runs("scale"):
        grown = bench.grow()
        details["scale"] = grown
        series += grown["series"]
    small = next((p for p in series if p["objects"] == 1000), series[0])
    results.update({"rss_mb_1k": small["rss_mb"], "rss_objects_1k": small["objects"]})
    if params.runs("scale"):
        results.update({"rss_mb_10k": series[-1]["rss_mb"], "rss_objects_10k": series[-1]["objects"]})
    details["rss_series"] = [{"objects": p["objects"], "rss_mb": p["rss_mb"]} for p in series]
    results["scale_objects"] = len(bench.objects)
    if params.runs("drift"):
        drift = bench.drift_latency()
        details["drift"] = drift.pop("details")
        results.update(drift)
    if params.runs("restart"):
        restart = bench.restart()
        details["restart"] = restart.pop("details")
        results.update(restart)


def main() -> int:
    unwind_on_sigterm()
    params = Params.from_env()
    results: dict[str, Any] = {"machine": observe.machine(), "params": params.as_json()}
    details: dict[str, Any] = {}
    started = time.monotonic()
    print(f"kumo bench: {json.dumps(params.as_json())}", flush=True)
    with Bench(params).running() as bench:
        run_scenarios(bench, results, details)
    results["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    results["objects_stuck_not_ready"] = len(bench.stuck)
    details["stuck_not_ready"] = sorted(bench.stuck)
    results["details"] = details
    results["bench_seconds"] = round(time.monotonic() - started, 1)
    results["targets"] = report.verdicts(results)
    params.out.parent.mkdir(parents=True, exist_ok=True)
    params.out.write_text(json.dumps(results, indent=2) + "\n")
    print("\n" + report.table(results), flush=True)
    print(f"\nresults: {params.out}  ({results['bench_seconds']:.0f}s in all)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
