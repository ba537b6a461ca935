"""`make bench` keeps working: the whole benchmark at tiny sizes (BENCH_QUICK=1), on a test bed of
its own, as a subprocess exactly as `make bench` runs it.

The bench is a program, not a test, and its timings mean nothing at this size; what is checked
are the counts it reports, which hold at any size: steady sweeps write nothing to Kubernetes, a
restart creates nothing, and a batched sweep never costs more calls than polling every resource.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
KINDS = ("rds", "s3", "cloudsql", "gcs")
HEADLINE_KEYS = (
    "ready_seconds",
    "floor_seconds",
    "ready_ratio_to_floor",
    "k8s_writes_per_object",
    "sweep_cloud_calls_per_resource",
    "baseline_cloud_calls_per_resource",
    "sweep_call_reduction",
    "steady_sweep_k8s_writes",
    "drift_detect_p50_seconds",
    "drift_detect_p99_seconds",
    "drift_interval_seconds",
    "rss_mb_1k",
    "rss_mb_10k",
    "resume_seconds",
    "resume_create_calls",
    "machine",
    "params",
    "targets",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "results.json"
    env = {**os.environ, "BENCH_QUICK": "1", "BENCH_OUT": str(out)}
    env.pop("BENCH_TESTBED_ENV", None)
    run = subprocess.run(
        [sys.executable, "-m", "bench.run"], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, f"bench failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert "PASS" in run.stdout  # the final table was printed
    return json.loads(out.read_text())


def test_results_name_every_figure_of_the_spec(results):
    """results.json carries every headline figure, the machine and the parameters."""
    missing = [key for key in HEADLINE_KEYS if results.get(key) is None]
    assert missing == []
    assert results["params"]["quick"] is True
    assert results["machine"]["cores"] >= 1
    for key in ("sweep_cloud_calls_per_resource", "baseline_cloud_calls_per_resource", "sweep_call_reduction"):
        assert set(results[key]) == set(KINDS), key


def test_steady_sweeps_write_nothing_and_a_restart_creates_nothing(results):
    """The two counts that must be zero at any scale."""
    assert results["steady_sweep_k8s_writes"] == 0
    assert results["resume_create_calls"] == 0


def test_a_sweep_never_costs_more_than_polling(results):
    """Per resource per interval, a batched sweep makes no more cloud calls than one poll each,
    and S3 reads no more than its five managed settings per bucket."""
    assert all(results["sweep_call_reduction"][kind] >= 1 for kind in KINDS), results["sweep_call_reduction"]
    assert results["baseline_cloud_calls_per_resource"]["rds"] == 1
    assert results["baseline_cloud_calls_per_resource"]["s3"] == 6  # HeadBucket + five setting reads
    s3 = results["details"]["steady"]["sweeps"]["s3"]
    assert s3["setting_reads_per_bucket"] <= s3["managed_setting_reads"] == 5


def test_every_object_was_created_and_every_drift_seen(results):
    """Counts, not times: every object reached Ready with its Secret and every injected drift
    was seen as InSync=False."""
    create = results["details"]["create"]
    assert sum(create["objects"].values()) == 2 * results["params"]["n"]
    assert create["k8s_writes"] > 0 and create["floor"]["left_behind"] == 0
    assert len(results["details"]["drift"]["samples"]) == results["params"]["drift_samples"]
    assert results["scale_objects"] == results["params"]["scale_n"]
    assert {row["status"] for row in results["targets"]} <= {"PASS", "MISS", "n/a"}
