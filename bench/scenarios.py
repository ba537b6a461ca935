"""The four scenarios of `make bench`, run in order against one test bed and one controller:

1. create at scale: N Databases + N Buckets applied at once, against a floor script;
2. steady sweeps: their cloud calls against per-resource polling, and their Kubernetes writes;
3. (grown to BENCH_SCALE_N objects, Buckets on GCS, with RSS checkpoints on the way)
   drift latency: out-of-band changes at random times, until InSync=False;
4. restart at scale: time to the first complete sweep of every scope, and create calls (0).

Each returns the figures it measured plus the evidence behind them (`details` in results.json).
"""

from __future__ import annotations

import copy
import functools
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kumo.controller.core.resources import derived_external_name
from kumo.providers.aws.s3 import BucketReads
from kumo.testbed import emulators
from kumo.testbed.bed import TestBed, install_crds
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.devbed import BED_VARIABLE, DevPaths
from kumo.testbed.probes import probe_for
from kumo.testbed.process import ManagedProcess

from kumo.api import GROUP, PROVIDER_CONFIG, VERSION

from . import observe
from .cloud import KINDS, Clouds, kind_key, run_all
from .params import Params
from .tracker import PLURALS, ObjectTracker

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
CLUSTER_ID = "kumo-bench"
SERVICE_KINDS = {("aws", "rds"): "rds", ("aws", "s3"): "s3", ("gcp", "sqladmin"): "cloudsql", ("gcp", "storage"): "gcs"}
# What S3 needs to read to know a bucket's managed settings (versioning, public access block,
# encryption, lifecycle, tags): the reads kumo's S3 provider makes per bucket.
S3_SETTING_READS = len(BucketReads.__dataclass_fields__)
APPLY_THREADS = 8


class Progress:
    """Timestamped progress lines, throttled while waiting."""

    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, phase: str, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {phase:<8} {message}", flush=True)


@dataclass
class Obj:
    kind: str  # "rds", "s3", "cloudsql", "gcs"
    name: str  # metadata.name
    external: str

    @property
    def cloud(self) -> str:
        return KINDS[self.kind][0]

    @property
    def k8s_kind(self) -> str:
        return KINDS[self.kind][1]


def example(cloud: str, kind: str, name: str) -> dict[str, Any]:
    filename = {"Database": "database.yaml", "Bucket": "bucket.yaml"}[kind]
    manifest = yaml.safe_load((EXAMPLES / cloud / filename).read_text())
    manifest["metadata"]["name"] = name
    return dict(manifest)


def percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


@dataclass
class Bench:
    params: Params
    progress: Progress = field(default_factory=Progress)
    bed: TestBed | None = None
    owns_bed: bool = False
    namespace: str = ""
    controller: ControllerProcess | None = None
    tracker: ObjectTracker | None = None
    clouds: Clouds | None = None
    audit: observe.AuditLog | None = None
    log: observe.LogReader | None = None
    objects: list[Obj] = field(default_factory=list)
    api: client.ApiClient | None = None
    env: dict[str, Any] = field(default_factory=dict)  # the bed's env.json, with the bench's GCS endpoint
    processes: list[ManagedProcess] = field(default_factory=list)
    stuck: set[str] = field(default_factory=set)  # "Kind/name" of objects left at Ready=False
    sharder: bool = False  # start the bed with the sharder (bench/sharded.py)

    # ------------------------------------------------------------------ set-up and tear-down

    @contextmanager
    def running(self) -> Iterator[Bench]:
        try:
            self._set_up()
            yield self
        except BaseException:
            self._keep_controller_log()
            raise
        finally:
            self._tear_down()

    def _keep_controller_log(self) -> None:
        """A failed run keeps the controller's log: tear-down removes the test bed's folder."""
        if self.controller is None or not self.controller.log_path.is_file():
            return
        kept = Path(tempfile.gettempdir()) / f"kumo-bench-{self.namespace}-controller.log"
        shutil.copyfile(self.controller.log_path, kept)
        self.progress.say("teardown", f"controller log kept: {kept}")

    @property
    def kept_env_file(self) -> Path:
        """Where BENCH_KEEP=1 leaves the state of the test bed it keeps running."""
        return Path(tempfile.gettempdir()) / f"kumo-bench-{self.namespace}.json"

    def _set_up(self) -> None:
        self.namespace = f"bench-{uuid.uuid4().hex[:6]}"
        if self.params.testbed_env:
            self.bed = TestBed.from_env_file(Path(self.params.testbed_env))
            self.progress.say("setup", f"reusing the test bed of {self.params.testbed_env}")
        else:
            if self.params.keep:
                # `kumo dev down` knows a bed's servers by this marker in their environment; the
                # servers started below inherit it, so that command can stop the bed kept.
                os.environ[BED_VARIABLE] = DevPaths.at(self.kept_env_file).marker
            self.progress.say("setup", "starting the test bed (control plane + emulators, audit log on)")
            self.bed = TestBed.start(progress=True, audit_log=True, sharder=self.sharder)
            self.owns_bed = True
            self.progress.say("setup", f"test bed up in {self.bed.env['startup_seconds']}s")
        self.env = copy.deepcopy(self.bed.env)
        if self.params.gcs_emulator == "bench":
            spec = emulators.EmulatorSpec("gcs-bench", (sys.executable, "-m", "bench.gcs_emulator", "--port", "{port}"))
            process, endpoint = emulators.start_emulator(spec, Path(self.bed.workdir))
            self.processes.append(process)
            self.env["gcp"]["storage_endpoint"] = endpoint
            self.progress.say("setup", f"GCS emulator without per-write snapshots at {endpoint}")
        env = self.env
        self.api = self.new_api()
        install_crds(self.api)
        core = client.CoreV1Api(self.api)
        for name in ("kumo-system", self.namespace):
            try:
                core.create_namespace({"metadata": {"name": name}})
            except ApiException as error:
                if error.status != 409:
                    raise
        objects = client.CustomObjectsApi(self.api)
        gcp_options: dict[str, Any] = {}
        for cloud in ("aws", "gcp"):
            secret, provider_config = probe_for(cloud, env).provider_config(name=cloud)
            core.create_namespaced_secret(self.namespace, secret)
            objects.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PROVIDER_CONFIG.plural, provider_config
            )
            if cloud == "gcp":
                gcp_options = provider_config["spec"].get("providerOptions") or {}
        self.clouds = Clouds(env, gcp_options, CLUSTER_ID, self.params.workers)
        self.clouds.warm_up()
        self.audit = observe.AuditLog(Path(env.get("audit_log") or ""), self.namespace)
        if not self.audit.available:
            self.progress.say("setup", "no audit log on this test bed: Kubernetes writes will not be counted")
        self.tracker = ObjectTracker(self.new_api, self.namespace).start()
        self.progress.say("setup", f"namespace {self.namespace}; provider configs aws and gcp")

    def _tear_down(self) -> None:
        if self.tracker is not None:
            self.tracker.stop()
        if self.controller is not None:
            self.controller.stop()
        if self.bed is not None and self.params.keep:
            self.bed.env["processes"] += [
                {"name": p.name, "pid": p.pid, "log": str(p.log_path)} for p in self.processes
            ]
            env_file = self.bed.write_env_file(self.kept_env_file)
            self.progress.say("teardown", f"test bed left running: kumo dev down --env-file {env_file}")
            return
        for process in self.processes:
            process.stop()
        if self.bed is not None and self.owns_bed:
            self.progress.say("teardown", "stopping the test bed")
            self.bed.stop()

    def new_api(self) -> client.ApiClient:
        assert self.bed is not None
        configuration = client.Configuration()
        config.load_kube_config(config_file=self.bed.env["kubeconfig"], client_configuration=configuration)
        configuration.connection_pool_maxsize = 2 * APPLY_THREADS
        return client.ApiClient(configuration)

    def start_controller(self) -> ControllerProcess:
        assert self.bed is not None
        log_path = Path(self.bed.env["workdir"]) / f"bench-controller-{self.namespace}.log"
        self.controller = ControllerProcess(
            kubeconfig=self.bed.env["kubeconfig"],
            log_path=log_path,
            cluster_id=CLUSTER_ID,
            extra_env={
                "KUMO_NAMESPACES": self.namespace,
                "KUMO_SWEEP_INTERVAL": str(self.params.interval),
                "KUMO_WORKERS": str(self.params.workers),
                "KUMO_CLOUD_RATE": "0",  # the emulators are the limit here, not a token bucket
            },
        ).start()
        self.log = observe.LogReader(log_path)
        self.progress.say("setup", f"controller pid {self.pid} (log: {log_path})")
        return self.controller

    @property
    def pid(self) -> int:
        assert self.controller is not None and self.controller.process is not None
        return self.controller.process.pid

    # ------------------------------------------------------------------ helpers

    def wait(self, phase: str, check: Callable[[], tuple[bool, str]], timeout: float, every: float = 5.0) -> float:
        """Poll `check` (done?, progress line) until done; returns the seconds waited."""
        started = time.monotonic()
        said = started
        while True:
            done, line = check()
            now = time.monotonic()
            if done:
                return now - started
            if now - said >= every:
                self.progress.say(phase, f"{line} ({now - started:.0f}s)")
                said = now
            if now - started > timeout:
                raise TimeoutError(f"{phase}: gave up after {timeout:.0f}s: {line}")
            time.sleep(0.2)

    def new_objects(self, kind: str, count: int, prefix: str) -> list[Obj]:
        start = sum(1 for o in self.objects if o.kind == kind and o.name.startswith(prefix))
        made = []
        for i in range(start, start + count):
            name = f"{prefix}-{i:05d}"
            made.append(Obj(kind, name, derived_external_name(self.namespace, name, CLUSTER_ID)))
        return made

    def apply(self, objs: list[Obj]) -> float:
        """Create the objects through the API server, APPLY_THREADS at a time."""
        objects = client.CustomObjectsApi(self.api)

        def create(obj: Obj) -> Callable[[], None]:
            manifest = example(obj.cloud, obj.k8s_kind, obj.name)
            plural = PLURALS[obj.k8s_kind]
            return lambda: objects.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, manifest)

        seconds, _ = run_all([create(o) for o in objs], APPLY_THREADS)
        self.objects.extend(objs)
        return seconds

    def ready_check(self, total: int) -> Callable[[], tuple[bool, str]]:
        """Done when `total` objects are Ready with their Secret. Gives up, naming the stuck
        objects and their Synced condition, when none became Ready for a long while."""
        assert self.tracker is not None
        tracker = self.tracker
        stall = max(180.0, 3 * self.params.interval)
        quiet = max(15.0, min(45.0, 3 * self.params.interval))
        progress = {"ready": -1, "since": time.monotonic()}

        def check() -> tuple[bool, str]:
            counts = tracker.ready_with_secret()
            ready = sum(counts.values())
            if ready != progress["ready"]:
                progress.update(ready=ready, since=time.monotonic())
            elif time.monotonic() - progress["since"] > stall:
                waiting = "\n  ".join(tracker.not_ready())
                raise RuntimeError(f"no object became Ready for {stall:.0f}s; {total - ready} are not:\n  {waiting}")
            stuck = tracker.stuck(quiet) if ready < total else []
            self.stuck.update(stuck)
            by_kind = ", ".join(f"{k} {v}" for k, v in counts.items())
            line = f"{ready}/{total} Ready with Secret ({by_kind})"
            if stuck:
                line += f"; {len(stuck)} usable in the cloud but stuck at Ready=False: {', '.join(stuck[:5])}"
            return ready + len(stuck) >= total, line

        return check

    def scope_sizes(self) -> dict[tuple[str, str], int]:
        """(provider config, kind) -> objects in that sweep scope."""
        sizes: Counter[tuple[str, str]] = Counter((o.cloud, o.k8s_kind) for o in self.objects)
        return dict(sizes)

    def complete_sweeps(self, swept: list[observe.Sweep], settled: bool) -> dict[tuple[str, str], observe.Sweep]:
        """The first sweep of each scope that covered all its objects (and, if asked, found
        nothing to do)."""
        sizes = self.scope_sizes()
        first: dict[tuple[str, str], observe.Sweep] = {}
        for sweep in swept:
            scope = (sweep.config, sweep.kind)
            if scope not in first and sweep.listed >= sizes.get(scope, 0) and (sweep.settled or not settled):
                first[scope] = sweep
        return first

    def wait_sweeps(self, phase: str, mark: int, timeout: float, settled: bool = True) -> dict:
        assert self.log is not None
        log, sizes = self.log, self.scope_sizes()
        found: dict[tuple[str, str], observe.Sweep] = {}

        def check() -> tuple[bool, str]:
            swept = observe.sweeps(log.since(mark), self.namespace)
            found.update(self.complete_sweeps(swept, settled))
            line = f"{len(found)}/{len(sizes)} scopes swept completely"
            if len(found) < len(sizes):
                line += f"; {observe.sweep_news(swept, sizes, time.time())}"
            return len(found) >= len(sizes), line

        self.wait(phase, check, timeout)
        return found

    def cpu_meter(self) -> observe.CpuMeter:
        """CPU use of every process of the run: the bench itself, the test bed, the controller."""
        processes = {p["name"]: int(p["pid"]) for p in self.env.get("processes", [])}
        processes.update({p.name: p.pid for p in self.processes})
        processes["bench (this script)"] = os.getpid()
        if self.controller is not None and self.controller.process is not None:
            processes["kumo controller"] = self.controller.process.pid
        return observe.CpuMeter(processes)

    def rss(self) -> tuple[float, float]:
        return observe.rss_mb(self.pid)

    def sample_rss(self, seconds: float) -> float:
        """The highest VmRSS over `seconds`, sampled every half second."""
        peak = 0.0
        deadline = time.monotonic() + seconds
        while True:
            peak = max(peak, self.rss()[0])
            if time.monotonic() >= deadline:
                return peak
            time.sleep(0.5)

    # ------------------------------------------------------------------ 1. create at scale

    def create_at_scale(self) -> dict[str, Any]:
        assert self.clouds is not None and self.audit is not None and self.tracker is not None
        p = self.params
        plan: list[Obj] = []
        for kind_name, count in (("Database", p.n), ("Bucket", p.n)):
            for cloud, share in p.per_cloud(count).items():
                plan += self.new_objects(kind_key(cloud, kind_name), share, f"{kind_key(cloud, kind_name)}")
        plan = _interleave(plan)
        floor = self._floor(plan)

        self.start_controller()
        assert self.log is not None
        meter = self.cpu_meter()
        cpu = meter.snapshot()
        requests_before = observe.apiserver_requests(self.api)
        mark, started, started_at = self.log.mark(), time.monotonic(), time.time()
        self.progress.say("create", f"applying {len(plan)} objects at once")
        applied = self.apply(plan)
        self.progress.say("create", f"applied in {applied:.1f}s; waiting for Ready with Secret")
        self.wait("create", self.ready_check(len(plan)), p.timeout)
        ready_seconds = self.tracker.last_ready_at() - started
        if self.stuck:
            self.progress.say("create", f"WARNING: never Ready although usable: {', '.join(sorted(self.stuck))}")
        cpu_seconds = meter.since(cpu)
        requests = observe.apiserver_requests(self.api) - requests_before
        reads = {f"{verb} {resource}": n for (verb, resource), n in sorted(requests.items()) if verb == "GET"}
        writes = self.audit.between(started_at, time.time())
        # Events are created with generateName, so the audit log does not say whose they are.
        by_kind = observe.breakdown_by(writes, lambda w: "events" if w.resource == "events" else w.name.split("-")[0])
        objects = len(plan)
        text = self.log.since(mark)
        calls = _calls_by_kind(text)
        sweep_calls: Counter[str] = Counter()
        for sweep in observe.sweeps(text, self.namespace):
            sweep_calls[kind_key(sweep.config, sweep.kind)] += sweep.calls
        result = {
            "ready_seconds": round(ready_seconds, 1),
            "floor_seconds": round(floor["seconds"], 1),
            "ready_ratio_to_floor": round(ready_seconds / floor["seconds"], 2),
            "k8s_writes_per_object": round(len(writes) / objects, 2) if self.audit.available else None,
            "details": {
                "objects": dict(Counter(o.kind for o in plan)),
                "apply_seconds": round(applied, 1),
                "k8s_writes": len(writes),
                "k8s_writes_by_request": observe.breakdown(writes),
                "k8s_writes_failed": sum(1 for w in writes if w.code >= 400),
                "k8s_writes_per_object_by_kind": {
                    kind: round(sum(found.values()) / _count(plan, kind), 2)
                    for kind, found in by_kind.items()
                    if kind in KINDS
                },
                "k8s_events_per_object": round(len([w for w in writes if w.resource == "events"]) / objects, 2),
                "k8s_writes_by_kind": by_kind,
                # GETs answered by the API server meanwhile (the bench itself only lists and watches)
                "k8s_reads_per_object": round(sum(reads.values()) / objects, 2),
                "k8s_reads": reads,
                # reconciles only; the sweeps that ran meanwhile are listed apart
                "kumo_cloud_calls_per_object": {
                    k: round((n - sweep_calls[k]) / _count(plan, k), 2) for k, n in calls.items()
                },
                "kumo_sweep_calls_meanwhile": dict(sorted(sweep_calls.items())),
                "kumo_cloud_calls_by_operation": _calls_by_operation(text),
                "reconcile_failures": observe.failures(text),
                "cpu_seconds": cpu_seconds,
                "floor": floor,
            },
        }
        self.progress.say(
            "create",
            f"{objects - len(self.stuck)} of {objects} objects Ready in {ready_seconds:.1f}s; "
            f"floor {floor['seconds']:.1f}s; {len(writes)} Kubernetes writes",
        )
        return result

    def _floor(self, plan: list[Obj]) -> dict[str, Any]:
        """The same objects' minimum cloud calls from a plain script, then deleted again."""
        assert self.clouds is not None
        clouds = self.clouds
        before = Counter(clouds.counter.calls)
        floor_ns = f"{self.namespace}-floor"
        jobs: list[Callable[[], None]] = []
        doomed: list[tuple[str, str]] = []
        for obj in plan:
            resource = clouds.resource(obj.kind, example(obj.cloud, obj.k8s_kind, obj.name), floor_ns)
            jobs.append(functools.partial(clouds.create, obj.kind, resource))
            doomed.append((obj.kind, resource.external_name))
        self.progress.say("floor", f"creating {len(plan)} resources without Kubernetes, {self.params.workers} at once")
        meter = self.cpu_meter()
        cpu = meter.snapshot()
        seconds, _ = run_all(jobs, self.params.workers)
        cpu_seconds = meter.since(cpu)
        calls = clouds.counter.calls - before
        per_kind: Counter[str] = Counter()
        for (kind, _), n in calls.items():
            per_kind[kind] += n
        self.progress.say("floor", f"done in {seconds:.1f}s; deleting the floor's resources")
        _, deleted = run_all([functools.partial(clouds.delete, kind, n) for kind, n in doomed], self.params.workers)
        if not all(deleted):
            self.progress.say("floor", f"{deleted.count(False)} of the floor's resources could not be deleted")
        return {
            "seconds": seconds,
            "concurrency": self.params.workers,
            "cloud_calls_per_object": {k: round(n / _count(plan, k), 2) for k, n in sorted(per_kind.items())},
            "cloud_calls_by_operation": {f"{k} {op}": n for (k, op), n in sorted(calls.items())},
            "cpu_seconds": cpu_seconds,
            "left_behind": deleted.count(False),
        }

    # ------------------------------------------------------------------ 2. steady sweeps

    def steady_sweeps(self) -> dict[str, Any]:
        assert self.log is not None and self.audit is not None and self.clouds is not None
        p = self.params
        self.progress.say("steady", "waiting until every scope had a complete sweep with nothing to do")
        self.wait_sweeps("steady", self.log.mark(), 3 * p.interval + 120)
        window = p.steady_intervals * p.interval
        rounds = max(1, int(p.steady_intervals))
        mark, started_at = self.log.mark(), time.time()
        meter = self.cpu_meter()
        cpu = meter.snapshot()
        self.progress.say(
            "steady", f"{window:.0f}s window; baseline polls every resource {rounds}x, once per {p.interval:.0f}s"
        )
        baseline = self._baseline(rounds)
        remaining = started_at + window - time.time()
        if remaining > 0:
            time.sleep(remaining)
        ended_at = time.time()
        cpu_seconds = meter.since(cpu)
        text = self.log.since(mark)
        writes = self.audit.between(started_at, ended_at)
        # Whole sweeps only: begun and finished inside the window.
        steady = [
            s for s in observe.sweeps(text, self.namespace) if s.at - s.seconds >= started_at and s.at <= ended_at
        ]
        kumo: dict[str, float] = {}
        per_scope: dict[str, Any] = {}
        for kind, (cloud, k8s_kind) in KINDS.items():
            mine = [s for s in steady if (s.config, s.kind) == (cloud, k8s_kind)]
            if not mine:
                raise RuntimeError(f"no sweep of {kind} in the {window:.0f}s steady window")
            kumo[kind] = round(statistics.mean(s.calls / max(1, s.listed) for s in mine), 4)
            per_scope[kind] = {
                "sweeps": len(mine),
                "resources": mine[0].listed,
                "calls_per_sweep": [s.calls for s in mine],
                "sweep_seconds": [s.seconds for s in mine],
                "calls_by_operation": _sweep_calls_by_operation(text, kind, mine),
            }
        reduction = {k: round(baseline["per_resource"][k] / kumo[k], 1) for k in KINDS}
        s3 = per_scope["s3"]
        s3_reads = sum(n for op, n in s3["calls_by_operation"].items() if op != "ListBuckets")
        s3["setting_reads_per_bucket"] = round(s3_reads / s3["sweeps"] / s3["resources"], 3)
        s3["managed_setting_reads"] = S3_SETTING_READS
        rss, peak = self.rss()
        result = {
            "sweep_cloud_calls_per_resource": kumo,
            "baseline_cloud_calls_per_resource": baseline["per_resource"],
            "sweep_call_reduction": reduction,
            "steady_sweep_k8s_writes": len(writes) if self.audit.available else None,
            "rss_at_base": {"objects": len(self.objects), "rss_mb": rss, "peak_mb": peak},
            "details": {
                "window_seconds": round(ended_at - started_at, 1),
                "sweeps": per_scope,
                "k8s_writes_by_request": observe.breakdown(writes),
                "cpu_seconds": cpu_seconds,  # the bench's own share is mostly the baseline poller
                "baseline": baseline,
            },
        }
        summary = ", ".join(f"{k} {kumo[k]} vs {baseline['per_resource'][k]} (x{reduction[k]})" for k in KINDS)
        self.progress.say("steady", f"calls per resource per interval, kumo vs polling: {summary}")
        self.progress.say("steady", f"Kubernetes writes in the window: {len(writes)}")
        return result

    def _baseline(self, rounds: int) -> dict[str, Any]:
        """One read (S3: the reads of every managed setting) per resource per interval, each
        resource on its own timer, spread evenly over the interval, as per-object pollers do."""
        assert self.clouds is not None
        clouds, interval = self.clouds, self.params.interval
        targets = [(o.kind, o.external) for o in _interleave(list(self.objects))]
        before = Counter(clouds.counter.calls)
        started = time.monotonic()
        lag = 0.0
        with ThreadPoolExecutor(self.params.workers, thread_name_prefix="bench-poll") as pool:
            futures = []
            for round_ in range(rounds):
                for i, (kind, name) in enumerate(targets):
                    due = started + round_ * interval + i * interval / len(targets)
                    delay = due - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        lag = max(lag, -delay)
                    futures.append(pool.submit(clouds.poll, kind, name))
            for future in futures:
                future.result()
        calls = clouds.counter.calls - before
        per_kind: Counter[str] = Counter()
        for (kind, _), n in calls.items():
            per_kind[kind] += n
        resources = Counter(kind for kind, _ in targets)
        return {
            "rounds": rounds,
            "seconds": round(time.monotonic() - started, 1),
            "max_lag_seconds": round(lag, 2),
            "resources": dict(resources),
            "per_resource": {k: round(per_kind[k] / resources[k] / rounds, 4) for k in KINDS},
            "calls_by_operation": {f"{k} {op}": n for (k, op), n in sorted(calls.items())},
        }

    # ------------------------------------------------------------------ grow, with RSS on the way

    def grow(self) -> dict[str, Any]:
        """Add GCS Buckets up to BENCH_SCALE_N objects, measuring RSS at each checkpoint."""
        assert self.log is not None
        p = self.params
        checkpoints = sorted({c for c in p.rss_points if len(self.objects) < c < p.scale_n} | {p.scale_n})
        series = []
        started = time.monotonic()
        for checkpoint in checkpoints:
            add = checkpoint - len(self.objects)
            if add <= 0:
                continue
            self.progress.say("scale", f"adding {add} GCS Buckets to reach {checkpoint} objects")
            mark, step_started = self.log.mark(), time.monotonic()
            self.apply(self.new_objects("gcs", add, "gcs-scale"))
            self.wait("scale", self.ready_check(checkpoint), p.timeout)
            ready_in = round(time.monotonic() - step_started, 1)
            if checkpoint == p.scale_n:
                self.progress.say("scale", "all Ready; waiting for a complete sweep of every scope")
                found = self.wait_sweeps("scale", mark, 3 * p.interval + 120, settled=False)
                last = max(s.at for s in found.values())
                # the sweep's own peak counts: sample through the next one as well
                rss = self.sample_rss(min(p.interval * 1.2, 75.0))
                sweep = found[("gcp", "Bucket")]
                extra: dict[str, Any] = {"gcs_sweep_seconds": sweep.seconds, "gcs_sweep_calls": sweep.calls}
                extra["swept_at"] = last
            else:
                rss, extra = self.sample_rss(3.0), {}
            extra["added"], extra["ready_seconds"] = add, ready_in
            current, peak = self.rss()
            extra["reconcile_failures"] = observe.failures(self.log.since(mark))
            series.append({"objects": len(self.objects), "rss_mb": rss, "now_mb": current, "peak_mb": peak, **extra})
            self.progress.say("scale", f"{len(self.objects)} objects: RSS {rss} MiB (peak so far {peak} MiB)")
        return {"seconds": round(time.monotonic() - started, 1), "series": series}

    # ------------------------------------------------------------------ 3. drift latency

    def drift_latency(self) -> dict[str, Any]:
        assert self.clouds is not None and self.tracker is not None
        p, clouds, tracker = self.params, self.clouds, self.tracker
        rng = random.Random(p.seed)  # noqa: S311 - reproducible sampling, not cryptography
        pools = {kind: [o for o in self.objects if o.kind == kind] for kind in KINDS}
        kinds = [k for k in KINDS if pools[k]]
        picked: list[Obj] = []
        for i in range(min(p.drift_samples, len(self.objects))):
            pool = [o for o in pools[kinds[i % len(kinds)]] if o not in picked]
            picked.append(rng.choice(pool))
        offsets = sorted(rng.uniform(0, p.interval) for _ in picked)
        self.progress.say(
            "drift",
            f"{len(picked)} out-of-band changes at random times over {p.interval:.0f}s, {len(self.objects)} objects",
        )
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        for obj, offset in zip(picked, offsets, strict=True):
            delay = started + offset - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            change = clouds.drift(obj.kind, obj.external)
            samples.append({"kind": obj.kind, "name": obj.name, "change": change, "injected": time.monotonic()})

        def detected() -> tuple[bool, str]:
            seen = 0
            for sample in samples:
                if "seconds" not in sample:
                    at = tracker.out_of_sync_since(KINDS[sample["kind"]][1], sample["name"], sample["injected"])
                    if at is not None:
                        sample["seconds"] = round(at - sample["injected"], 2)
                seen += "seconds" in sample
            return seen == len(samples), f"{seen}/{len(samples)} drifts seen as InSync=False"

        self.wait("drift", detected, 2 * p.interval + 60)
        latencies = [s["seconds"] for s in samples]

        def corrected() -> tuple[bool, str]:
            done = sum(tracker.in_sync(KINDS[s["kind"]][1], s["name"]) for s in samples)
            return done == len(samples), f"{done}/{len(samples)} put back to the spec (InSync=True)"

        corrected_in = self.wait("drift", corrected, 2 * p.interval + 60)
        result = {
            "drift_detect_p50_seconds": round(percentile(latencies, 50), 1),
            "drift_detect_p99_seconds": round(percentile(latencies, 99), 1),
            "drift_interval_seconds": p.interval,
            "details": {
                "objects": len(self.objects),
                "max_seconds": max(latencies),
                "by_kind": {k: sorted(s["seconds"] for s in samples if s["kind"] == k) for k in KINDS if k in kinds},
                "all_corrected_seconds_after_last_detection": round(corrected_in, 1),
                "samples": [{k: v for k, v in s.items() if k != "injected"} for s in samples],
            },
        }
        self.progress.say(
            "drift",
            f"detected after p50 {result['drift_detect_p50_seconds']}s, p99 {result['drift_detect_p99_seconds']}s "
            f"(interval {p.interval:.0f}s); all corrected",
        )
        return result

    # ------------------------------------------------------------------ 4. restart at scale

    def restart(self) -> dict[str, Any]:
        assert self.controller is not None and self.log is not None and self.audit is not None
        p = self.params
        self.progress.say("restart", f"killing the controller (SIGKILL) with {len(self.objects)} objects, starting it")
        mark = self.log.mark()
        self.controller.kill()
        started_at = time.time()
        self.controller.start()
        healthy = time.time() - started_at
        found = self.wait_sweeps("restart", mark, 3 * p.interval + 180, settled=False)
        done_at = max(s.at for s in found.values())
        resume_seconds = done_at - started_at
        text = self.log.since(mark)
        creates = sum(n for (_, _, op), n in observe.cloud_calls(text).items() if op in observe.CREATE_OPERATIONS)
        until = "\n".join(line for line in text.splitlines() if _stamp_before(line, done_at))
        writes = self.audit.between(started_at, done_at + 5)
        rss, peak = self.rss()
        swept = observe.sweeps(text, self.namespace)
        result = {
            "resume_seconds": round(resume_seconds, 1),
            "resume_create_calls": creates,
            "details": {
                "objects": len(self.objects),
                "healthy_after_seconds": round(healthy, 1),
                "first_complete_sweep_seconds": {
                    f"{cfg}/{kind}": round(s.at - started_at, 1) for (cfg, kind), s in sorted(found.items())
                },
                "sweeps_until_resumed": [
                    {"scope": f"{s.config}/{s.kind}", "listed": s.listed, "calls": s.calls, "seconds": s.seconds}
                    for s in swept
                    if s.at <= done_at
                ],
                "cloud_calls_until_resumed": _calls_by_operation(until),
                "reconciles_until_resumed": observe.reconciles(until),
                "k8s_writes_until_resumed": len(writes),
                "k8s_writes_by_request": observe.breakdown(writes),
                "rss_mb_after_resume": rss,
                "peak_mb_after_resume": peak,
            },
        }
        self.progress.say(
            "restart", f"every scope swept completely {resume_seconds:.1f}s after the start; {creates} create calls"
        )
        return result


# ---------------------------------------------------------------------- small helpers


def _interleave(objs: list[Obj]) -> list[Obj]:
    """Round-robin over kinds, so every kind is in flight all along (as a real apply would be)."""
    by_kind: dict[str, list[Obj]] = {}
    for obj in objs:
        by_kind.setdefault(obj.kind, []).append(obj)
    out: list[Obj] = []
    queues = [copy.copy(v) for v in by_kind.values()]
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


def _count(objs: list[Obj], kind: str) -> int:
    return max(1, sum(1 for o in objs if o.kind == kind))


def _calls_by_kind(text: str) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for (provider, service, _), n in observe.cloud_calls(text).items():
        counts[SERVICE_KINDS.get((provider, service), service)] += n
    return dict(sorted(counts.items()))


def _calls_by_operation(text: str) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter[str]] = {}
    for (provider, service, operation), n in observe.cloud_calls(text).items():
        counts.setdefault(SERVICE_KINDS.get((provider, service), service), Counter())[operation] += n
    return {k: dict(sorted(v.items())) for k, v in counts.items()}


def _sweep_calls_by_operation(text: str, kind: str, swept: list[observe.Sweep]) -> dict[str, int]:
    """The calls of one scope's sweeps by operation: those of its service made while one of
    them ran (a scope's sweeps never overlap, and a steady window has no reconciles)."""
    service = next(pair for pair, k in SERVICE_KINDS.items() if k == kind)
    spans = [(s.at - s.seconds - 0.005, s.at + 0.005) for s in swept]
    counts: Counter[str] = Counter()
    for m in observe.CLOUD_CALL.finditer(text):
        if (m["provider"], m["service"]) == service:
            at = observe.log_time(m["stamp"])
            if any(start <= at <= end for start, end in spans):
                counts[m["operation"]] += 1
    return dict(sorted(counts.items()))


def _stamp_before(line: str, epoch: float) -> bool:
    match = observe.CLOUD_CALL.match(line) or observe.RECONCILED.match(line)
    return match is not None and observe.log_time(match["stamp"]) <= epoch
