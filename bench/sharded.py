"""`python -m bench.sharded` (run by `make bench` after the other scenarios): kumo as N shards of
one ControllerRing behind the sharder of timebertt/kubernetes-controller-sharding (issue 17).

For each replica count of BENCH_SHARDS (default 1,2,4), on a fresh test bed with the sharder:

1. start N `kumo run --shard-ring` replicas (testbed/sharding.py start_shards) and a ring for the
   bench's namespace; record each replica's RSS before it holds any object;
2. apply BENCH_SHARD_OBJECTS objects at once (mostly GCS Buckets; a fortieth each of RDS, Cloud
   SQL and S3, the mix of the scale scenario of bench/scenarios.py), the sharder's webhook
   labelling each for one shard; time until all are Ready with their Secret;
3. per replica: the objects its shard label gives it, the objects its own `kumo_objects` metric
   counts, and its highest RSS over a sweep interval; over every replica of every count, a
   least-squares fit of RSS against objects held splits a replica's memory into a fixed part
   (interpreter, kopf, cloud SDKs) and a part per object, which alone can fall as 1/N;
4. drift latency with the scale scenario's probe (Bench.drift_latency);
5. with two replicas or more: SIGKILL the replica holding most objects, change a few of its
   resources in the cloud at once, and time until the sharder has moved all its objects (shard
   label, Secrets included) to the replicas left and those changes are put back (read in the
   cloud).

The figures go under "sharding" in bench/results.json (BENCH_OUT), with their targets: objects and
per-replica memory above the fixed part falling as 1/N, <= 250 MB each at 4 replicas for 20,000
objects (projected by the fit when run smaller), drift p99 <= interval + 5 s. BENCH_SHARDS=0
skips it; BENCH_QUICK=1 runs 24 objects at 1 and 2 replicas. The other BENCH_* knobs (interval,
workers, drift samples, seed, timeout) are those of bench/params.py.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import statistics
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client
from kumo.controller.runtime.leader import ElectionTiming
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.sharding import apply_ring, kumo_ring, start_shards, wait_until_assigning

from kumo.api import BUCKET, DATABASE, GROUP, VERSION, shard_label

from . import observe, unwind_on_sigterm
from .cloud import KINDS
from .params import Params
from .scenarios import CLUSTER_ID, Bench, Obj, Progress, _interleave
from .sidebyside import write_results

RESULTS_KEY = "sharding"
RING = "kumo-bench"
DEFAULT_REPLICAS = (1, 2, 4)
DEFAULT_OBJECTS = 20_000
QUICK_REPLICAS = (1, 2)
QUICK_OBJECTS = 24
# The scale scenario's mix: at 10,000 objects it holds 250 each of RDS, Cloud SQL and S3.
MINOR_KIND_SHARE = 40
# Issue 17's memory goal, judged as measured at its size or projected from a smaller run.
RSS_GOAL_MB = 250.0
RSS_GOAL_OBJECTS = 20_000
RSS_GOAL_REPLICAS = 4
# "Falling as 1/N": the memory the objects add to a replica may exceed its 1/N share by this much
# (the sharder's hash ring does not split objects exactly evenly).
SHARE_TOLERANCE = 1.25
KILL_DRIFTS = 4  # resources of the killed replica changed in the cloud right after the kill
MANAGED_PLURALS = (BUCKET.plural, DATABASE.plural)


@dataclass(frozen=True)
class ShardParams:
    replicas: tuple[int, ...] = DEFAULT_REPLICAS  # BENCH_SHARDS: replica counts, one fresh bed each
    objects: int = DEFAULT_OBJECTS  # BENCH_SHARD_OBJECTS
    base: Params = field(default_factory=Params)  # the other BENCH_* knobs

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ShardParams:
        env = os.environ if env is None else env
        base = Params.from_env(env)
        replicas = env.get("BENCH_SHARDS", ",".join(map(str, QUICK_REPLICAS if base.quick else DEFAULT_REPLICAS)))
        counts = tuple(int(r) for r in replicas.split(",") if r.strip())
        if any(count < 0 for count in counts):
            raise ValueError(f"BENCH_SHARDS: replica counts cannot be negative: {replicas!r}")
        objects = int(env.get("BENCH_SHARD_OBJECTS", QUICK_OBJECTS if base.quick else DEFAULT_OBJECTS))
        if objects < 4:
            raise ValueError(f"BENCH_SHARD_OBJECTS: at least one object of each of the four kinds, not {objects}")
        return cls(tuple(count for count in counts if count > 0), objects, base)

    @property
    def skipped(self) -> bool:
        """BENCH_SHARDS=0 (or empty): no sharded run."""
        return not self.replicas

    def run_params(self) -> Params:
        """The Bench's parameters for one replica count: always a bed of its own (it needs the
        sharder), the objects of this scenario as its scale."""
        return dataclasses.replace(self.base, scale_n=self.objects, testbed_env="", keep=False)

    def as_json(self) -> dict[str, Any]:
        return {
            "replicas": list(self.replicas),
            "objects": self.objects,
            "interval": self.base.interval,
            "workers": self.base.workers,
            "drift_samples": self.base.drift_samples,
            "seed": self.base.seed,
            "quick": self.base.quick,
        }


def object_plan(total: int) -> dict[str, int]:
    """How many objects of each bench kind make `total`: a fortieth (at least one) each of RDS,
    Cloud SQL and S3, the rest GCS Buckets."""
    minor = max(1, total // MINOR_KIND_SHARE)
    plan = dict.fromkeys(("rds", "cloudsql", "s3"), minor)
    plan["gcs"] = total - 3 * minor
    return plan


# ---------------------------------------------------------------------- the replicas


@dataclass
class Shards:
    """N kumo replicas as the shards of RING, each with its RSS read from /proc."""

    replicas: list[ControllerProcess]

    @property
    def names(self) -> list[str]:
        return [r.extra_env["KUMO_LEADER_IDENTITY"] for r in self.replicas]

    def pids(self) -> dict[str, int]:
        return {name: r.process.pid for name, r in zip(self.names, self.replicas, strict=True) if r.process is not None}

    def rss(self) -> dict[str, tuple[float, float]]:
        """shard -> (VmRSS, VmHWM) in MiB, of the replicas still running."""
        return {name: observe.rss_mb(pid) for name, pid in self.pids().items()}

    def sample_rss(self, seconds: float) -> dict[str, float]:
        """Each running replica's highest VmRSS over `seconds`, sampled every half second."""
        peak: dict[str, float] = {}
        deadline = time.monotonic() + seconds
        while True:
            for name, (rss, _) in self.rss().items():
                peak[name] = max(peak.get(name, 0.0), rss)
            if time.monotonic() >= deadline:
                return peak
            time.sleep(0.5)

    def metric_objects(self) -> dict[str, int]:
        """shard -> the objects its own `kumo_objects` gauge counts (every kind and Ready state)."""
        counts = {}
        for name, replica in zip(self.names, self.replicas, strict=True):
            if replica.process is None:
                continue
            with urllib.request.urlopen(replica.metrics_url, timeout=5) as response:  # noqa: S310 - loopback
                text = response.read().decode()
            counts[name] = int(
                sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("kumo_objects{"))
            )
        return counts

    def kill(self, name: str) -> None:
        self.replicas[self.names.index(name)].kill()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def keep_logs(self, progress: Progress) -> None:
        """A failed run keeps the replicas' logs: tear-down removes the test bed's folder."""
        for name, replica in zip(self.names, self.replicas, strict=True):
            if replica.log_path.is_file():
                kept = Path(tempfile.gettempdir()) / f"kumo-bench-sharded-{name}.log"
                kept.write_bytes(replica.log_path.read_bytes())
                progress.say("teardown", f"{name} log kept: {kept}")


@contextmanager
def running_shards(bench: Bench, count: int) -> Iterator[Shards]:
    """The ring for the bench's namespace and `count` replicas serving it, stopped at the end."""
    assert bench.bed is not None and bench.api is not None
    p = bench.params
    apply_ring(bench.api, kumo_ring(RING, namespaces=[bench.namespace]))
    replicas = start_shards(
        count,
        bench.bed.env["kubeconfig"],
        Path(bench.bed.env["workdir"]),
        ring=RING,
        name_prefix="kumo-shard",
        extra_env={
            "KUMO_CLUSTER_ID": CLUSTER_ID,  # the external names the bench's drift probe expects
            "KUMO_NAMESPACES": bench.namespace,
            "KUMO_SWEEP_INTERVAL": str(p.interval),
            "KUMO_WORKERS": str(p.workers),
            "KUMO_CLOUD_RATE": "0",  # the emulators are the limit here, not a token bucket
        },
    )
    shards = Shards(replicas)
    try:
        yield shards
    except BaseException:
        shards.keep_logs(bench.progress)
        raise
    finally:
        shards.stop()


# ---------------------------------------------------------------------- one replica count


def shard_of_objects(api: client.ApiClient, namespace: str) -> dict[tuple[str, str], str]:
    """(plural, name) -> the shard its label names ("" when unassigned), for every managed object."""
    objects = client.CustomObjectsApi(api)
    label = shard_label(RING)
    found = {}
    for plural in MANAGED_PLURALS:
        for item in objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]:
            found[(plural, item["metadata"]["name"])] = (item["metadata"].get("labels") or {}).get(label, "")
    return found


def left_on(api: client.ApiClient, namespace: str, shard: str) -> int:
    """Objects (managed kinds and Secrets) still labelled for `shard`: a server-side selection."""
    selector = f"{shard_label(RING)}={shard}"
    objects = client.CustomObjectsApi(api)
    count = sum(
        len(objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, label_selector=selector)["items"])
        for plural in MANAGED_PLURALS
    )
    return count + len(client.CoreV1Api(api).list_namespaced_secret(namespace, label_selector=selector).items)


def bed_footprint(bench: Bench) -> dict[str, dict[str, float]]:
    """RSS (MiB) of the test bed's servers: the API server, etcd, the sharder, the emulators."""
    assert bench.bed is not None
    footprint = {}
    for process in bench.bed.processes:
        try:
            rss, peak = observe.rss_mb(process.pid)
        except (OSError, KeyError):
            continue
        footprint[process.name] = {"rss_mb": rss, "peak_mb": peak}
    return footprint


def measure(count: int, sp: ShardParams, progress: Progress) -> dict[str, Any]:
    """Every figure for `count` replicas, on a test bed of their own."""
    bench = Bench(sp.run_params(), progress=progress, sharder=True)
    with bench.running(), running_shards(bench, count) as shards:
        return _measure(bench, shards, sp)


def _measure(bench: Bench, shards: Shards, sp: ShardParams) -> dict[str, Any]:
    assert bench.api is not None and bench.tracker is not None and bench.bed is not None
    p, say, count = bench.params, bench.progress.say, len(shards.replicas)
    wait_until_assigning(bench.api, bench.namespace, RING, timeout=60)
    at_start = {name: rss for name, (rss, _) in shards.rss().items()}
    say("shards", f"{count} replica(s) holding their shard Leases; RSS before any object {at_start} MiB")

    plan: list[Obj] = []
    for kind, n in object_plan(sp.objects).items():
        plan += bench.new_objects(kind, n, kind)
    plan = _interleave(plan)
    cpu_names = {p.name: p.pid for p in bench.bed.processes} | shards.pids() | {"bench": os.getpid()}
    meter = observe.CpuMeter(cpu_names)
    cpu = meter.snapshot()
    started = time.monotonic()
    say("create", f"applying {len(plan)} objects at once to {count} replica(s)")
    applied = bench.apply(plan)
    say("create", f"applied in {applied:.1f}s; waiting for Ready with Secret")
    bench.wait("create", bench.ready_check(len(plan)), p.timeout)
    ready_seconds = bench.tracker.last_ready_at() - started
    create_cpu = meter.since(cpu)

    say("memory", "sampling every replica's RSS over one sweep interval")
    loaded = shards.sample_rss(min(p.interval * 1.2, 75.0))
    peaks = {name: peak for name, (_, peak) in shards.rss().items()}
    assigned = shard_of_objects(bench.api, bench.namespace)
    by_label = Counter(assigned.values())
    by_metric = shards.metric_objects()
    per_replica = {
        name: {
            "objects_by_label": by_label.get(name, 0),
            "objects_by_metric": by_metric.get(name),
            "rss_mb_at_start": at_start[name],
            "rss_mb": loaded[name],
            "peak_mb": peaks[name],
        }
        for name in shards.names
    }
    say("memory", ", ".join(f"{n}: {v['objects_by_label']} objects, {v['rss_mb']} MiB" for n, v in per_replica.items()))
    drift = bench.drift_latency()
    result: dict[str, Any] = {
        "replicas": count,
        "objects": len(plan),
        "unassigned_objects": by_label.get("", 0),
        "ready_seconds": round(ready_seconds, 1),
        "apply_seconds": round(applied, 1),
        "per_replica": per_replica,
        "drift_detect_p50_seconds": drift["drift_detect_p50_seconds"],
        "drift_detect_p99_seconds": drift["drift_detect_p99_seconds"],
        "drift": drift["details"],
        "create_cpu_seconds": create_cpu,
        "bed_rss_mb": bed_footprint(bench),
        "objects_stuck_not_ready": len(bench.stuck),
    }
    if count >= 2:
        result["kill"] = _kill_one(bench, shards, assigned)
    return result


def _kill_one(bench: Bench, shards: Shards, assigned: dict[tuple[str, str], str]) -> dict[str, Any]:
    """SIGKILL the replica holding most objects and change a few of its resources in the cloud at
    once: how long until the sharder moved every object of it, and until the replicas left put
    those changes back (each InSync=False, then True again)."""
    assert bench.api is not None and bench.tracker is not None and bench.clouds is not None
    p, tracker, clouds, say = bench.params, bench.tracker, bench.clouds, bench.progress.say
    victim = max(shards.names, key=lambda name: sum(1 for shard in assigned.values() if shard == name))
    theirs = sorted(name for (_, name), shard in assigned.items() if shard == victim)
    by_name = {o.name: o for o in bench.objects}
    rng = random.Random(p.seed)  # noqa: S311 - reproducible sampling, not cryptography
    picked = [by_name[name] for name in rng.sample(theirs, min(KILL_DRIFTS, len(theirs)))]
    say("kill", f"SIGKILL {victim} ({len(theirs)} objects); {len(picked)} of its resources changed in the cloud")
    shards.kill(victim)
    killed = time.monotonic()
    injected = []
    for obj in picked:
        clouds.drift(obj.kind, obj.external)
        injected.append((obj, time.monotonic()))

    def moved() -> tuple[bool, str]:
        left = left_on(bench.api, bench.namespace, victim)
        return left == 0, f"{left} objects and Secrets still labelled for {victim}"

    reassigned = bench.wait("kill", _throttled(moved, 2.0), p.timeout)

    # Read in the cloud: a replica taking an object over reconciles it at once and puts a change
    # back in that pass, never reporting InSync=False (the drift scenario's sign of detection).
    def corrected() -> tuple[bool, str]:
        done = sum(clouds.drift_put_back(obj.kind, obj.external) for obj, _ in injected)
        return done == len(injected), f"{done}/{len(injected)} changes put back by the replicas left"

    bench.wait("kill", _throttled(corrected, 1.0), 3 * p.interval + 120)
    converged = time.monotonic() - killed
    reported = sum(tracker.out_of_sync_since(KINDS[obj.kind][1], obj.name, at) is not None for obj, at in injected)
    after = shard_of_objects(bench.api, bench.namespace)
    new_owners = Counter(after[key] for key, shard in assigned.items() if shard == victim)
    ready = sum(tracker.ready_with_secret().values())
    say("kill", f"all reassigned {reassigned:.1f}s after the kill, changes put back at {converged:.1f}s")
    return {
        "killed": victim,
        "killed_objects": len(theirs),
        "reassigned_seconds": round(reassigned, 1),
        "converge_seconds": round(converged, 1),
        "moved_to": dict(sorted(new_owners.items())),
        "changed": [obj.name for obj, _ in injected],
        "changes_reported_out_of_sync": reported,
        "ready_with_secret_after": ready,
        "lease_duration_seconds": ElectionTiming().lease_duration,  # the replicas run with the default
    }


def _throttled(check: Callable[[], tuple[bool, str]], every: float) -> Callable[[], tuple[bool, str]]:
    """`check` asked at most once per `every` seconds (Bench.wait polls 5 times a second; a list
    of thousands of objects is too heavy for that), its last answer repeated in between."""
    last: dict[str, Any] = {"at": 0.0, "answer": (False, "")}

    def throttled() -> tuple[bool, str]:
        if time.monotonic() - last["at"] >= every:
            last.update(at=time.monotonic(), answer=check())
        answer: tuple[bool, str] = last["answer"]
        return answer

    return throttled


# ---------------------------------------------------------------------- shaping the results


def summarize(runs: Mapping[int, Mapping[str, Any]], sp: ShardParams) -> dict[str, Any]:
    """The "sharding" section of results.json: per replica count the headline figures; the
    memory fit over every replica of every run (what a replica costs holding nothing, and per
    object held); against it, each replica count's memory above that fixed cost as a share of one
    replica's, and a projection to issue 17's size; the targets."""
    section: dict[str, Any] = {"params": sp.as_json(), "runs": {str(n): dict(r) for n, r in sorted(runs.items())}}
    headline = {str(n): headline_of(r) for n, r in sorted(runs.items())}
    fit = memory_fit(runs.values())
    one = headline.get("1")
    for figures in headline.values():
        if fit is None:
            continue
        figures["rss_above_fixed_mb_max"] = round(figures["rss_mb_max"] - fit["fixed_mb"], 1)
        figures["projected_rss_mb_at_goal"] = projected_rss(figures, fit, sp.objects)
        if one is not None and one["rss_mb_max"] > fit["fixed_mb"]:
            share = figures["rss_above_fixed_mb_max"] / one["rss_above_fixed_mb_max"]
            figures["rss_above_fixed_share_of_one"] = round(share, 3)
            figures["rss_ideal_share"] = round(1 / figures["replicas"], 3)
    section["memory_fit"] = fit
    section["headline"] = headline
    section["targets"] = sharding_verdicts(headline, sp)
    return section


def headline_of(run: Mapping[str, Any]) -> dict[str, Any]:
    """One replica count's figures from its run: the largest replica counts (the ring is uneven)."""
    replicas = run["per_replica"].values()
    kill = run.get("kill") or {}
    return {
        "replicas": run["replicas"],
        "objects": run["objects"],
        "objects_per_replica_max": max(r["objects_by_label"] for r in replicas),
        "objects_per_replica_min": min(r["objects_by_label"] for r in replicas),
        "rss_mb_max": max(r["rss_mb"] for r in replicas),
        "ready_seconds": run["ready_seconds"],
        "drift_detect_p50_seconds": run["drift_detect_p50_seconds"],
        "drift_detect_p99_seconds": run["drift_detect_p99_seconds"],
        "reassigned_seconds": kill.get("reassigned_seconds"),
        "converge_seconds": kill.get("converge_seconds"),
    }


def memory_fit(runs: Iterable[Mapping[str, Any]]) -> dict[str, Any] | None:
    """RSS = fixed + per-object x objects held, least squares over every replica of every run
    (None without two different object counts). The fixed part (interpreter, kopf, the cloud
    SDKs) does not shrink with more replicas; only the part above it can fall as 1/N. A replica's
    RSS right after start is no measure of it: the SDKs are imported at the first cloud call."""
    points = [(float(r["objects_by_label"]), float(r["rss_mb"])) for run in runs for r in run["per_replica"].values()]
    if len({x for x, _ in points}) < 2:
        return None
    slope, intercept = statistics.linear_regression([x for x, _ in points], [y for _, y in points])
    return {
        "fixed_mb": round(intercept, 1),
        "mb_per_1000_objects": round(1000 * slope, 2),
        "points": [{"objects": int(x), "rss_mb": y} for x, y in sorted(points)],
    }


def projected_rss(figures: Mapping[str, Any], fit: Mapping[str, Any], objects: int) -> float:
    """The largest replica's RSS at RSS_GOAL_OBJECTS over the same replicas, by the fit: its
    share of the objects (as uneven as measured) scaled to the goal's size."""
    held = figures["objects_per_replica_max"] * RSS_GOAL_OBJECTS / objects
    return round(fit["fixed_mb"] + fit["mb_per_1000_objects"] * held / 1000, 1)


def sharding_verdicts(headline: Mapping[str, Mapping[str, Any]], sp: ShardParams) -> list[dict[str, Any]]:
    rows = []
    limit = sp.base.interval + 5
    for key, figures in headline.items():
        rows.append(
            _row(
                f"drift_detect_p99_seconds at {key}",
                figures["drift_detect_p99_seconds"],
                "<= interval + 5 s",
                figures["drift_detect_p99_seconds"] <= limit,
            )
        )
        replicas = figures["replicas"]
        if replicas == 1:
            continue
        even = figures["objects"] / replicas
        rows.append(
            _row(
                f"objects on the fullest replica at {key}",
                figures["objects_per_replica_max"],
                f"<= {SHARE_TOLERANCE} x {figures['objects']}/{replicas}",
                figures["objects_per_replica_max"] <= SHARE_TOLERANCE * even,
            )
        )
        if "rss_above_fixed_share_of_one" in figures:
            share = figures["rss_above_fixed_share_of_one"]
            rows.append(
                _row(
                    f"RSS above the fixed part at {key}, share of 1 replica's",
                    share,
                    f"<= {SHARE_TOLERANCE} x 1/{replicas}",
                    share <= SHARE_TOLERANCE / replicas,
                )
            )
    at_goal = headline.get(str(RSS_GOAL_REPLICAS))
    if at_goal is not None:
        measured = sp.objects >= RSS_GOAL_OBJECTS
        value = at_goal["rss_mb_max"] if measured else at_goal.get("projected_rss_mb_at_goal")
        figure = f"RSS per replica at {RSS_GOAL_REPLICAS}, {RSS_GOAL_OBJECTS} objects" + (
            "" if measured else f" (projected from {sp.objects})"
        )
        if value is not None:
            rows.append(_row(figure, value, f"<= {RSS_GOAL_MB:.0f}", value <= RSS_GOAL_MB))
    return rows


def _row(figure: str, value: Any, target: str, met: bool) -> dict[str, Any]:
    return {"figure": figure, "value": value, "target": target, "status": "PASS" if met else "MISS"}


COLUMNS = (
    ("replicas", "replicas"),
    ("objects/replica", "objects_per_replica"),
    ("RSS MiB at start->loaded", "rss"),
    ("above fixed MiB (share of 1)", "above_fixed"),
    ("Ready s", "ready_seconds"),
    ("drift p50/p99 s", "drift"),
    ("reassigned s", "reassigned_seconds"),
    ("converged s", "converge_seconds"),
)


def table(section: Mapping[str, Any]) -> str:
    """One line per replica count, then the targets with PASS / MISS."""
    params = section["params"]
    lines = [
        f"kumo sharded: {params['objects']} objects, sweep interval {params['interval']:.0f}s, "
        f"replicas {','.join(map(str, params['replicas']))}"
        + (" (QUICK: sizes too small for the targets)" if params["quick"] else ""),
        "",
    ]
    rows = [{key: title for title, key in COLUMNS}] + [
        _cells(section["runs"][key], figures) for key, figures in section["headline"].items()
    ]
    widths = {key: max(len(str(row[key])) for row in rows) for _, key in COLUMNS}
    lines += ["  " + "  ".join(str(row[key]).ljust(widths[key]) for _, key in COLUMNS) for row in rows]
    fit = section.get("memory_fit")
    if fit is not None:
        lines.append(
            f"  memory fit over {len(fit['points'])} replicas: RSS = {fit['fixed_mb']} MiB fixed "
            f"+ {fit['mb_per_1000_objects']} MiB per 1000 objects held"
        )
    lines.append("")
    targets = section["targets"]
    header = {"figure": "figure", "value": "value", "target": "target", "status": "status"}
    target_widths = {key: max(len(str(row[key])) for row in [header, *targets]) for key in header}
    lines += ["  " + "  ".join(str(row[k]).ljust(target_widths[k]) for k in header) for row in [header, *targets]]
    return "\n".join(lines)


def _cells(run: Mapping[str, Any], figures: Mapping[str, Any]) -> dict[str, str]:
    replicas = run["per_replica"].values()
    share = figures.get("rss_above_fixed_share_of_one")
    above = figures.get("rss_above_fixed_mb_max")
    return {
        "replicas": str(figures["replicas"]),
        "objects_per_replica": "/".join(str(r["objects_by_label"]) for r in replicas),
        "rss": "/".join(f"{r['rss_mb_at_start']:.0f}->{r['rss_mb']:.0f}" for r in replicas),
        "above_fixed": _or_dash(above) + (f" ({share})" if share is not None else ""),
        "ready_seconds": str(figures["ready_seconds"]),
        "drift": f"{figures['drift_detect_p50_seconds']}/{figures['drift_detect_p99_seconds']}",
        "reassigned_seconds": _or_dash(figures["reassigned_seconds"]),
        "converge_seconds": _or_dash(figures["converge_seconds"]),
    }


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


# ---------------------------------------------------------------------- the program


def main() -> int:
    unwind_on_sigterm()
    sp = ShardParams.from_env()
    if sp.skipped:
        print("sharded: skipped (BENCH_SHARDS=0)", flush=True)
        return 0
    print(f"kumo sharded bench: {json.dumps(sp.as_json())}", flush=True)
    progress = Progress()
    started = time.monotonic()
    runs = {}
    for count in sp.replicas:
        progress.say("shards", f"--- {count} replica(s), a fresh test bed with the sharder")
        runs[count] = measure(count, sp, progress)
    section = summarize(runs, sp)
    section["machine"] = observe.machine()
    section["bench_seconds"] = round(time.monotonic() - started, 1)
    write_results(sp.base.out, section, RESULTS_KEY)
    print("\n" + table(section), flush=True)
    print(f'\nresults: {sp.base.out} (under "{RESULTS_KEY}")', flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
