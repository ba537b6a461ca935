"""The sharded bench's pure parts (bench/sharded.py): its knobs, its object mix, and how the
measured runs become the "sharding" section of results.json with its targets and table."""

from __future__ import annotations

from typing import Any

import pytest

from bench import sharded


def _params(**env: str) -> sharded.ShardParams:
    return sharded.ShardParams.from_env(env)


def test_defaults_are_issue_17s_sizes() -> None:
    params = _params()
    assert params.replicas == (1, 2, 4)
    assert params.objects == 20_000
    assert not params.skipped


def test_knobs_choose_replica_counts_and_objects() -> None:
    params = _params(BENCH_SHARDS="2,4", BENCH_SHARD_OBJECTS="2000", BENCH_INTERVAL="30")
    assert params.replicas == (2, 4)
    assert params.objects == 2000
    run = params.run_params()
    assert run.scale_n == 2000
    assert run.interval == 30.0
    assert params.as_json()["replicas"] == [2, 4]


def test_zero_replicas_skips_the_scenario() -> None:
    assert _params(BENCH_SHARDS="0").skipped
    assert _params(BENCH_SHARDS="").skipped


def test_quick_is_tiny() -> None:
    params = _params(BENCH_QUICK="1")
    assert params.replicas == (1, 2)
    assert params.objects == sharded.QUICK_OBJECTS
    assert params.base.quick


@pytest.mark.parametrize("env", [{"BENCH_SHARDS": "-1"}, {"BENCH_SHARD_OBJECTS": "3"}])
def test_impossible_knobs_are_refused(env: dict[str, str]) -> None:
    with pytest.raises(ValueError, match="BENCH_SHARD"):
        sharded.ShardParams.from_env(env)


def test_every_run_starts_a_bed_of_its_own() -> None:
    """The sharder must run on the bed: a reused bed (BENCH_TESTBED_ENV) or a kept one is not asked for."""
    params = _params(BENCH_TESTBED_ENV="/some/env.json", BENCH_KEEP="1")
    assert params.run_params().testbed_env == ""
    assert not params.run_params().keep


def test_object_mix_is_the_scale_scenarios() -> None:
    assert sharded.object_plan(10_000) == {"rds": 250, "cloudsql": 250, "s3": 250, "gcs": 9250}
    assert sharded.object_plan(2000) == {"rds": 50, "cloudsql": 50, "s3": 50, "gcs": 1850}
    tiny = sharded.object_plan(24)
    assert sum(tiny.values()) == 24
    assert min(tiny.values()) >= 1


def _run(replicas: int, per_replica_mb: list[float], objects: int = 2000, p99: float = 40.0) -> dict[str, Any]:
    """A measured run: objects split evenly, each replica at the RSS given."""
    per_replica = {
        f"kumo-shard-{i}": {
            "objects_by_label": objects // replicas,
            "objects_by_metric": objects // replicas,
            "rss_mb_at_start": 50.0,
            "rss_mb": rss,
            "peak_mb": rss + 10,
        }
        for i, rss in enumerate(per_replica_mb)
    }
    run: dict[str, Any] = {
        "replicas": replicas,
        "objects": objects,
        "ready_seconds": 100.0,
        "per_replica": per_replica,
        "drift_detect_p50_seconds": 20.0,
        "drift_detect_p99_seconds": p99,
    }
    if replicas > 1:
        run["kill"] = {"reassigned_seconds": 31.0, "converge_seconds": 70.0}
    return run


def _statuses(section: dict[str, Any]) -> dict[str, str]:
    return {row["figure"]: row["status"] for row in section["targets"]}


def test_memory_fit_splits_fixed_and_per_object_memory() -> None:
    """150 MiB fixed + 10 MiB per 1000 objects held, exactly: 2000, 1000 and 500 per replica."""
    sp = _params(BENCH_SHARD_OBJECTS="2000")
    runs = {1: _run(1, [170.0]), 2: _run(2, [160.0, 160.0]), 4: _run(4, [155.0] * 4)}
    section = sharded.summarize(runs, sp)
    assert section["memory_fit"]["fixed_mb"] == pytest.approx(150.0)
    assert section["memory_fit"]["mb_per_1000_objects"] == pytest.approx(10.0)
    assert len(section["memory_fit"]["points"]) == 7
    four = section["headline"]["4"]
    assert four["rss_above_fixed_share_of_one"] == 0.25
    assert four["rss_ideal_share"] == 0.25
    # at 20,000 objects over 4 replicas: 5000 held, 150 + 50
    assert four["projected_rss_mb_at_goal"] == 200.0
    statuses = _statuses(section)
    assert statuses["RSS above the fixed part at 4, share of 1 replica's"] == "PASS"
    assert statuses["objects on the fullest replica at 4"] == "PASS"
    assert statuses["RSS per replica at 4, 20000 objects (projected from 2000)"] == "PASS"
    assert statuses["drift_detect_p99_seconds at 1"] == "PASS"


def test_memory_that_does_not_follow_the_objects_held_misses() -> None:
    """Every replica as big as the single one (say, each caching every object): no 1/N."""
    sp = _params(BENCH_SHARD_OBJECTS="2000")
    runs = {1: _run(1, [170.0]), 2: _run(2, [150.0, 172.0]), 4: _run(4, [150.0, 150.0, 150.0, 172.0])}
    statuses = _statuses(sharded.summarize(runs, sp))
    assert statuses["RSS above the fixed part at 2, share of 1 replica's"] == "MISS"
    assert statuses["RSS above the fixed part at 4, share of 1 replica's"] == "MISS"


def test_uneven_split_and_slow_drift_miss() -> None:
    sp = _params(BENCH_SHARD_OBJECTS="2000", BENCH_INTERVAL="60")
    run = _run(2, [160.0, 160.0], p99=70.0)
    run["per_replica"]["kumo-shard-0"]["objects_by_label"] = 1600
    run["per_replica"]["kumo-shard-1"]["objects_by_label"] = 400
    statuses = _statuses(sharded.summarize({2: run}, sp))
    assert statuses["objects on the fullest replica at 2"] == "MISS"
    assert statuses["drift_detect_p99_seconds at 2"] == "MISS"
    assert not any("RSS per replica at 4" in figure for figure in statuses)  # no 4-replica run


def test_goal_is_judged_as_measured_at_its_size() -> None:
    sp = _params(BENCH_SHARD_OBJECTS="20000")
    section = sharded.summarize({4: _run(4, [230.0, 220.0, 225.0, 221.0], 20_000)}, sp)
    row = next(row for row in section["targets"] if row["figure"].startswith("RSS per replica at 4"))
    assert row == {
        "figure": "RSS per replica at 4, 20000 objects",
        "value": 230.0,
        "target": "<= 250",
        "status": "PASS",
    }
    # one object count only: no fit, so no share to judge
    assert section["memory_fit"] is None
    assert "rss_above_fixed_share_of_one" not in section["headline"]["4"]


def test_table_has_a_line_per_replica_count_the_fit_and_the_targets() -> None:
    sp = _params(BENCH_SHARD_OBJECTS="2000")
    section = sharded.summarize({1: _run(1, [170.0]), 2: _run(2, [160.0, 160.0])}, sp)
    text = sharded.table(section)
    assert "kumo sharded: 2000 objects" in text
    assert "1000/1000" in text  # objects per replica at 2
    assert "50->160/50->160" in text
    assert "10.0 (0.5)" in text  # above the fixed part, share of one replica's
    assert "31.0" in text and "70.0" in text  # reassigned, converged after the kill
    assert "RSS = 150.0 MiB fixed + 10.0 MiB per 1000 objects held" in text
    assert text.count("PASS") == 4
