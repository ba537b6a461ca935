"""kumo and its rivals side by side (issue 16): `python -m bench.sidebyside`, run by `make bench`
after kumo's own scenarios.

Each controller in turn, kumo first, gets a fresh test bed (control plane with its audit log,
moto) and a counting proxy in front of moto (testbed/faultproxy.py with no faults; the operation
of each request is read by bench/cloudops.py). Every controller sees the same N objects, the
same moto and the same bench, at its own defaults:

1. idle RSS: started, nothing to manage yet;
2. create: N S3 buckets (and N RDS instances where the controller manages them) applied at
   once; seconds until all Ready, cloud requests per object by operation, Kubernetes writes
   per object by request (bench/auditwrites.py);
3. steady: a window with nothing changing; cloud requests per resource per minute, Kubernetes
   writes per minute, loaded RSS (the highest VmRSS of the controller's processes);
4. drift: a managed setting changed behind the controller's back on a few objects, straight on
   moto (S3 versioning suspended; RDS backup retention 7 -> 1 day); seconds until each reads
   as before, or "not within the cap";
5. scale: more S3 buckets applied until SCALE_N exist in all; the highest RSS of the
   controller's processes while they come up and for a settling window after, seconds until all
   Ready, or how many were Ready at the cap (a separate last phase: the others are unchanged).

Kubernetes writes per object to Ready are also given per kind (per bucket, per RDS instance) by
the object each write is about, so a bucket compares with a rival's bucket like for like.

The figures go into bench/results.json (BENCH_OUT) under "rivals": one entry per controller and
the ratios kumo/rival. Knobs: BENCH_RIVALS (`auto`: kumo and every rival that builds; `0`: skip;
or a comma list such as `kumo,ack-s3`), BENCH_RIVALS_N, BENCH_RIVALS_RDS_N,
BENCH_RIVALS_STEADY_SECONDS, BENCH_RIVALS_DRIFT_SAMPLES, BENCH_RIVALS_DRIFT_CAP,
BENCH_RIVALS_IDLE_SECONDS, BENCH_RIVALS_TIMEOUT, BENCH_RIVALS_SCALE_N (0: no scale phase),
BENCH_RIVALS_SCALE_CAP, BENCH_RIVALS_SCALE_SETTLE, BENCH_RIVALS_RESYNC (every poll and resync,
each run in turn: `default` for each controller's own, a number of seconds, or a list such as
`default,60`; each run's section has its own key, RESULTS_KEY), and BENCH_QUICK=1 (N=5, 30 s
windows, 20 buckets at scale).

`python -m bench.sidebyside markdown [results.json]` prints, without running anything, the
markdown table of each side-by-side section of a results.json (for docs/comparison.md).
"""

from __future__ import annotations

import copy
import json
import math
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from . import unwind_on_sigterm
from .params import DEFAULT_OUT

SERVICES = ("s3", "rds")  # the kinds compared: S3 buckets and RDS instances
SKIP = ("0", "off", "false", "no", "none")
APPLY_THREADS = 8
POLL_SECONDS = 0.5
SCALE_POLL_SECONDS = 3.0  # listing thousands of objects costs CPU the controller shares
RESULTS_KEY = "rivals"  # results.json: the run at each controller's defaults; others add _resync_<s>
DEFAULT_RESYNC = "default"
RSS_EVERY_SECONDS = 2.0
DRIFT_POLL_SECONDS = 1.0


# ---------------------------------------------------------------------- knobs


@dataclass(frozen=True)
class SideBySideParams:
    contenders: str = "auto"  # BENCH_RIVALS
    n: int = 50  # BENCH_RIVALS_N: S3 buckets
    rds_n: int = 20  # BENCH_RIVALS_RDS_N: RDS instances, where the controller manages them
    steady_seconds: float = 180.0  # BENCH_RIVALS_STEADY_SECONDS
    drift_samples: int = 5  # BENCH_RIVALS_DRIFT_SAMPLES: objects of each kind changed out of band
    drift_cap: float = 300.0  # BENCH_RIVALS_DRIFT_CAP: seconds waited for a correction
    idle_seconds: float = 15.0  # BENCH_RIVALS_IDLE_SECONDS: settling before the idle RSS
    timeout: float = 900.0  # BENCH_RIVALS_TIMEOUT: the longest wait for all Ready
    scale_n: int = 2000  # BENCH_RIVALS_SCALE_N: S3 buckets in all for the scale phase (0: none)
    scale_cap: float = 600.0  # BENCH_RIVALS_SCALE_CAP: the longest wait for all of them Ready
    scale_settle_seconds: float = 60.0  # BENCH_RIVALS_SCALE_SETTLE: RSS still sampled once all Ready
    resync_seconds: int | None = None  # this run's poll/resync (None: each controller's default)
    resyncs: tuple[int | None, ...] = (None,)  # BENCH_RIVALS_RESYNC: one run for each, in turn
    quick: bool = False  # BENCH_QUICK
    out: Path = DEFAULT_OUT  # BENCH_OUT

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SideBySideParams:
        env = os.environ if env is None else env
        quick = env.get("BENCH_QUICK", "") not in ("", "0", "false")
        base = (
            cls(
                n=5,
                rds_n=2,
                steady_seconds=30.0,
                drift_samples=2,
                drift_cap=60.0,
                idle_seconds=5.0,
                timeout=180.0,
                scale_n=20,
                scale_cap=120.0,
                scale_settle_seconds=10.0,
            )
            if quick
            else cls()
        )
        resyncs = parse_resyncs(env.get("BENCH_RIVALS_RESYNC", ""))
        return cls(
            contenders=env.get("BENCH_RIVALS", base.contenders).strip().lower(),
            n=int(env.get("BENCH_RIVALS_N", base.n)),
            rds_n=int(env.get("BENCH_RIVALS_RDS_N", base.rds_n)),
            steady_seconds=float(env.get("BENCH_RIVALS_STEADY_SECONDS", base.steady_seconds)),
            drift_samples=int(env.get("BENCH_RIVALS_DRIFT_SAMPLES", base.drift_samples)),
            drift_cap=float(env.get("BENCH_RIVALS_DRIFT_CAP", base.drift_cap)),
            idle_seconds=float(env.get("BENCH_RIVALS_IDLE_SECONDS", base.idle_seconds)),
            timeout=float(env.get("BENCH_RIVALS_TIMEOUT", base.timeout)),
            scale_n=int(env.get("BENCH_RIVALS_SCALE_N", base.scale_n)),
            scale_cap=float(env.get("BENCH_RIVALS_SCALE_CAP", base.scale_cap)),
            scale_settle_seconds=float(env.get("BENCH_RIVALS_SCALE_SETTLE", base.scale_settle_seconds)),
            resync_seconds=resyncs[0],
            resyncs=resyncs,
            quick=quick,
            out=Path(env.get("BENCH_OUT", str(base.out))),
        )

    @property
    def skipped(self) -> bool:
        return self.contenders in SKIP

    def count(self, service: str) -> int:
        return self.n if service == "s3" else self.rds_n

    def runs(self) -> list[SideBySideParams]:
        """One set of parameters per BENCH_RIVALS_RESYNC entry, in order."""
        return [replace(self, resync_seconds=resync) for resync in self.resyncs]

    @property
    def results_key(self) -> str:
        """Where this run's section goes in results.json: "rivals" at the defaults."""
        return RESULTS_KEY if self.resync_seconds is None else f"{RESULTS_KEY}_resync_{self.resync_seconds}"

    def as_json(self) -> dict[str, Any]:
        values = asdict(self)
        values["out"] = str(self.out)
        values["resyncs"] = list(self.resyncs)
        return values


def parse_resyncs(value: str) -> tuple[int | None, ...]:
    """BENCH_RIVALS_RESYNC: "" or "default" -> (None,); "60" -> (60,); "default,60" -> (None, 60)."""
    entries = [entry.strip().lower() for entry in value.split(",") if entry.strip()] or [DEFAULT_RESYNC]
    resyncs = tuple(None if entry == DEFAULT_RESYNC else int(entry) for entry in entries)
    if any(r is not None and r <= 0 for r in resyncs):
        raise ValueError(f"BENCH_RIVALS_RESYNC: seconds must be positive, not {value!r}")
    return tuple(dict.fromkeys(resyncs))  # each once, in order


# ---------------------------------------------------------------------- the controllers


@dataclass(frozen=True)
class KindRef:
    """Where a controller's objects of one kind live in the Kubernetes API."""

    kind: str
    group: str
    version: str
    plural: str
    namespaced: bool


class Running(Protocol):
    """A started controller."""

    @property
    def pid(self) -> int: ...

    def stop(self) -> None: ...


class Contender(Protocol):
    """What the side-by-side run needs of a controller: kumo (KumoContender) or a rival
    (RivalContender around bench/rivals' `Rival`)."""

    @property
    def name(self) -> str: ...

    def kinds(self) -> dict[str, KindRef]:
        """By service ("s3", "rds"): the kinds it manages."""
        ...

    def install(self, api: Any, env: dict[str, Any], namespace: str) -> None: ...

    def start(self, env: dict[str, Any], log_path: Path, namespace: str, resync_seconds: int | None) -> Running:
        """Started and serving; `resync_seconds` (None: the controller's default) sets every
        poll and resync it has."""
        ...

    def resync_settings(self, env: dict[str, Any], namespace: str, resync_seconds: int | None) -> list[str]:
        """What `start` sets for `resync_seconds` (flags or environment), as recorded in the
        results; [] at the controller's defaults."""
        ...

    def manifest(self, service: str, name: str, namespace: str, env: dict[str, Any]) -> dict[str, Any]: ...

    def ready(self, obj: dict[str, Any]) -> bool: ...

    def cloud_name(self, service: str, name: str, namespace: str) -> str:
        """The cloud resource's name for the object `name`."""
        ...


# ---------------------------------------------------------------------- pure figures


def rate_per_minute(count: float, resources: int, seconds: float) -> float:
    """`count` over `seconds`, per resource, per minute."""
    return round(count / max(1, resources) / (seconds / 60.0), 2) if seconds > 0 else 0.0


def per_object_by_service(counts: Mapping[tuple[str, str], int], objects: Mapping[str, int]) -> dict[str, Any]:
    """Cloud requests per object of each service's kind, with the operations behind them;
    requests to other services (STS, tagging) are per object of every kind."""
    total_objects = max(1, sum(objects.values()))
    figures: dict[str, Any] = {}
    for (service, operation), n in sorted(counts.items()):
        key = service if service in objects else "other"
        divisor = max(1, objects[service]) if service in objects else total_objects
        entry = figures.setdefault(key, {"total": 0.0, "by_operation": {}})
        entry["by_operation"][operation] = round(n / divisor, 2)
    for entry in figures.values():
        entry["total"] = round(sum(entry["by_operation"].values()), 2)
    figures["all"] = round(sum(counts.values()) / total_objects, 2)
    return figures


def ratio(kumo: float | None, rival: float | None) -> float | None:
    """kumo / rival, below 1 where kumo needs less; None where either is missing, or the
    rival's figure is 0 and kumo's is not (no finite ratio); 1.0 where both are 0."""
    if kumo is None or rival is None:
        return None
    if rival == 0:
        return 1.0 if kumo == 0 else None
    return round(kumo / rival, 2)


def ratios(kumo: Mapping[str, Any], rival: Mapping[str, Any]) -> dict[str, float | None]:
    """kumo/rival for every headline figure the rival has."""
    return {
        key: ratio(kumo.get(key), value) for key, value in rival.items() if key in HEADLINES and key not in NO_RATIO
    }


def descendants(pid: int, parents: Mapping[int, int]) -> set[int]:
    """`pid` and every process below it, from a child -> parent map."""
    children: dict[int, list[int]] = {}
    for child, parent in parents.items():
        children.setdefault(parent, []).append(child)
    found, todo = {pid}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _parent_map() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue  # gone meanwhile
    return parents


def tree_rss_mb(pid: int) -> float:
    """VmRSS of a process and all its children, MiB (/proc/<pid>/status)."""
    total_kb = 0
    for member in descendants(pid, _parent_map()):
        try:
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
        except OSError:
            continue
    return round(total_kb / 1024, 1)


# The figures of the table, in order: key -> label. Each is a number or None (not measured, or
# for drift: not corrected within the cap).
HEADLINES = {
    "s3_ready_seconds": "N buckets to Ready (s)",
    "rds_ready_seconds": "N RDS instances to Ready (s)",
    "s3_cloud_requests_per_object": "S3 requests per bucket to Ready",
    "rds_cloud_requests_per_object": "RDS requests per instance to Ready",
    "cloud_requests_per_object": "cloud requests per object to Ready (all)",
    "k8s_writes_per_object": "K8s writes per object to Ready",
    "s3_k8s_writes_per_object": "K8s writes per bucket to Ready",
    "rds_k8s_writes_per_object": "K8s writes per RDS instance to Ready",
    "unattributed_k8s_writes_per_object": "K8s writes to Ready about no one object, per object",
    "s3_steady_requests_per_resource_per_minute": "steady S3 requests/bucket/min",
    "rds_steady_requests_per_resource_per_minute": "steady RDS requests/instance/min",
    "steady_requests_per_resource_per_minute": "steady cloud requests/object/min (all)",
    "steady_k8s_writes_per_minute": "steady K8s writes/min",
    "rss_mb_idle": "RSS idle (MiB)",
    "rss_mb_loaded": "RSS loaded (MiB)",
    "s3_drift_corrected_seconds": "S3 versioning drift corrected (median s)",
    "rds_drift_corrected_seconds": "RDS backup retention drift corrected (median s)",
    "scale_rss_mb": "RSS with {scale_n} buckets applied (MiB, highest)",
    "scale_ready_seconds": "{scale_n} buckets to Ready (s)",
    "scale_ready": "buckets Ready when that RSS was measured",
}
DRIFT_SUFFIX = "_drift_corrected_seconds"
SCALE_READY_SECONDS = "scale_ready_seconds"
NO_RATIO = ("scale_ready",)  # a count of what was measured, not a cost to compare
# Rows of the table that are not figures: each controller's run as recorded, never a ratio.
CONDITIONS = {
    "resync": "poll/resync set",
    "load_start": "load average at start (1/5/15 min)",
    "load_end": "load average at end (1/5/15 min)",
}


def conditions_of(controller: Mapping[str, Any]) -> dict[str, str]:
    """The CONDITIONS cells of one controller's run."""
    loads = controller.get("load_average", {})
    resync = controller.get("resync")
    return {
        "resync": "defaults" if not resync else " ".join(resync),
        "load_start": "/".join(str(x) for x in loads.get("start", [])) or "-",
        "load_end": "/".join(str(x) for x in loads.get("end", [])) or "-",
    }


def rows(section: Mapping[str, Any]) -> list[list[str]]:
    """The table's rows, header first: one column per controller, then kumo/rival per rival."""
    controllers: dict[str, Any] = section["controllers"]
    names = list(controllers)
    with_ratio = [name for name in names if name != "kumo" and name in section.get("ratios", {})]
    found = [["figure", *names, *(f"kumo/{name}" for name in with_ratio)]]
    for key, label in HEADLINES.items():
        figures = [controllers[name].get("figures", {}) for name in names]
        if all(key not in f for f in figures):
            continue
        row = [
            _label(key, label, section),
            *(_cell(key, f, controllers[name]) for name, f in zip(names, figures, strict=True)),
        ]
        row += [_number(section["ratios"][name].get(key)) if key not in NO_RATIO else "" for name in with_ratio]
        found.append(row)
    for key, label in CONDITIONS.items():
        cells = [conditions_of(controllers[name])[key] for name in names]
        found.append([label, *cells, *([""] * len(with_ratio))])
    return found


def title(section: Mapping[str, Any]) -> str:
    params = section["params"]
    resync = params.get("resync_seconds")
    return (
        f"side by side: N={params['n']} buckets, {params['rds_n']} RDS instances (where managed), steady window "
        f"{params['steady_seconds']:.0f}s, drift cap {params['drift_cap']:.0f}s"
        + (f", {params['scale_n']} buckets at scale (cap {params['scale_cap']:.0f}s)" if params.get("scale_n") else "")
        + (f", every poll/resync {resync}s" if resync else ", each controller's own poll/resync")
        + (" (QUICK)" if params["quick"] else "")
    )


def table(section: Mapping[str, Any]) -> str:
    """The side-by-side table for the terminal."""
    found = rows(section)
    widths = [max(len(row[i]) for row in found) for i in range(len(found[0]))]
    lines = ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in found]
    return "\n".join([title(section), *lines])


def markdown(section: Mapping[str, Any]) -> str:
    """The same table in markdown (docs/comparison.md), regenerable from results.json."""
    found = rows(section)
    lines = [f"| {' | '.join(row)} |" for row in found]
    lines.insert(1, "|" + " --- |" * len(found[0]))
    return "\n".join([title(section), "", *lines])


def _label(key: str, label: str, section: Mapping[str, Any]) -> str:
    return label.format(scale_n=section["params"].get("scale_n", "?"))


def _cell(key: str, figures: Mapping[str, Any], controller: Mapping[str, Any]) -> str:
    if controller.get("error"):
        return "error"
    if key not in figures:
        return "-"
    if key.endswith(DRIFT_SUFFIX) and figures[key] is None:
        cap = controller.get("drift", {}).get(key.removesuffix(DRIFT_SUFFIX), {}).get("cap_seconds", 0)
        return f"not within {cap:.0f}s"
    if key == SCALE_READY_SECONDS and figures[key] is None:
        return f"not within {controller.get('scale', {}).get('cap_seconds', 0):.0f}s"
    if key == "scale_ready":
        return f"{figures[key]} of {controller.get('scale', {}).get('applied', '?')}"
    return _number(figures[key])


def _number(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.2f}".rstrip("0").rstrip(".") if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------- the run


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def say(self, who: str, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {who:<14} {message}", flush=True)


@dataclass
class Trial:
    """One controller on its own fresh bed."""

    contender: Contender
    params: SideBySideParams
    progress: Progress
    bed: Any = None
    env: dict[str, Any] = field(default_factory=dict)  # the bed's env with the proxy as AWS endpoint
    moto: dict[str, Any] = field(default_factory=dict)  # the bed's own "aws" section: straight to moto
    namespace: str = "sbs"
    counter: Any = None
    audit: Any = None
    api: Any = None
    running: Running | None = None
    names: dict[str, list[str]] = field(default_factory=dict)  # service -> object names

    def say(self, message: str) -> None:
        self.progress.say(self.contender.name, message)

    @contextmanager
    def bed_up(self) -> Iterator[Trial]:
        from kubernetes import client, config
        from kumo.testbed.bed import TestBed
        from kumo.testbed.faultproxy import FaultProxy

        from .auditwrites import BENCH_AGENT, AuditTail
        from .cloudops import OperationCounter

        self.say("starting a fresh test bed (control plane with audit log, emulators)")
        self.bed = TestBed.start(progress=False, audit_log=True)
        proxy = None
        try:
            self.moto = dict(self.bed.env["aws"])
            self.counter = OperationCounter()
            proxy = FaultProxy(self.moto["endpoint"], failure_rate=0.0, on_request=self.counter.record).start()
            self.env = copy.deepcopy(self.bed.env)
            self.env["aws"]["endpoint"] = proxy.endpoint
            self.audit = AuditTail(Path(self.bed.env["audit_log"]))
            configuration = client.Configuration()
            config.load_kube_config(config_file=self.bed.env["kubeconfig"], client_configuration=configuration)
            configuration.connection_pool_maxsize = 2 * APPLY_THREADS
            self.api = client.ApiClient(configuration)
            self.api.user_agent = BENCH_AGENT  # the audit log tells the bench's writes from the controller's
            client.CoreV1Api(self.api).create_namespace({"metadata": {"name": self.namespace}})
            self._warm_up()
            yield self
        finally:
            if self.running is not None:
                self.running.stop()
            if proxy is not None:
                proxy.stop()
            self.bed.stop()

    def _warm_up(self) -> None:
        """One read per service straight on moto, so no controller pays its first-call cost."""
        self.boto("s3").list_buckets()
        self.boto("rds").describe_db_instances(MaxRecords=20)

    def boto(self, service: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.client(
            service,
            region_name=self.moto["region"],
            aws_access_key_id=self.moto["access_key_id"],
            aws_secret_access_key=self.moto["secret_access_key"],
            endpoint_url=self.moto["endpoint"],  # moto itself: the bench's own calls are not counted
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"}),
        )

    # ------------------------------------------------------------------ phases

    def run(self) -> dict[str, Any]:
        result: dict[str, Any] = {"load_average": {"start": _load()}}
        contender = self.contender
        kinds = contender.kinds()
        self.say(f"installing CRDs and configuration ({', '.join(k.kind for k in kinds.values())})")
        contender.install(self.api, self.env, self.namespace)
        log_path = Path(self.bed.env["workdir"]) / f"{contender.name}.log"
        result["resync"] = contender.resync_settings(self.env, self.namespace, self.params.resync_seconds)
        self.running = contender.start(self.env, log_path, self.namespace, self.params.resync_seconds)
        time.sleep(self.params.idle_seconds)
        result["rss_mb_idle"] = tree_rss_mb(self.running.pid)
        self.say(f"pid {self.running.pid}, idle RSS {result['rss_mb_idle']} MiB")
        result["create"] = self.create(kinds)
        result["steady"] = self.steady(kinds)
        result["drift"] = self.drift(list(kinds))
        if self.params.scale_n > 0 and "s3" in kinds:
            result["scale"] = self.scale(kinds["s3"])
        result["load_average"]["end"] = _load()
        return result

    def create(self, kinds: dict[str, KindRef]) -> dict[str, Any]:
        from .auditwrites import UNATTRIBUTED, by_controller, by_kind, per_object, unnamed_events
        from .cloudops import by_service

        self.names = {
            service: [f"sbs-{service}-{i:04d}" for i in range(self.params.count(service))] for service in kinds
        }
        manifests = [
            (kinds[service], self.contender.manifest(service, name, self.namespace, self.env))
            for service, names in self.names.items()
            for name in names
        ]
        first_of_each = {kind.kind: manifest for kind, manifest in reversed(manifests)}
        before, started = self.counter.snapshot(), time.time()
        self.say(f"applying {', '.join(f'{len(v)} {k}' for k, v in self.names.items())}")
        with ThreadPoolExecutor(APPLY_THREADS) as pool:
            list(pool.map(lambda pair: self.create_object(*pair), manifests))
        ready_at = self.wait_ready(kinds, started)
        ended = max((t for t in ready_at.values() if t is not None), default=time.time())
        calls = self.counter.since(before)
        writes = by_controller(self.audit.between(started, ended))
        objects = {service: len(names) for service, names in self.names.items()}
        not_ready = sorted(f"{s}/{n}" for (s, n), t in ready_at.items() if t is None)
        kind_writes = by_kind(
            writes, self.owner_keys(kinds), unnamed_events(self.events_between(started, ended), writes)
        )
        return {
            "ready_seconds": {
                service: (
                    None
                    if any(ready_at[(service, n)] is None for n in names)
                    else round(max(ready_at[(service, n)] or 0 for n in names) - started, 1)
                )
                for service, names in self.names.items()
            },
            "objects": objects,
            "not_ready": not_ready,
            "cloud_requests_per_object": per_object_by_service(calls, objects),
            "cloud_requests": by_service(calls),
            "k8s_writes_per_object": per_object(writes, sum(objects.values())),
            # per bucket and per RDS instance; writes about no one object over every object
            "k8s_writes_per_object_by_kind": {
                kind: per_object(found, objects.get(kind, sum(objects.values())))
                for kind, found in kind_writes.items()
                if kind != UNATTRIBUTED or found
            },
            "k8s_writes_unattributed": dict(
                sorted(Counter(f"{w.request} {w.name or '(unnamed)'}" for w in kind_writes[UNATTRIBUTED]).items())
            ),
            "k8s_writers": sorted({f"{w.user} {w.agent}" for w in writes}),
            "manifests": first_of_each,  # what each controller was asked for, one of each kind
        }

    def scale(self, kind: KindRef) -> dict[str, Any]:
        """More buckets, up to SCALE_N in all, applied at once: the highest RSS of the
        controller's processes from then until all are Ready and a settling window after, or
        until the cap; seconds to all Ready (to within the poll), and how many were Ready."""
        from .auditwrites import breakdown, by_controller
        from .cloudops import by_service

        assert self.running is not None
        pid = self.running.pid
        names = list(self.names["s3"])
        added = [f"sbs-s3-{i:04d}" for i in range(len(names), self.params.scale_n)]
        names += added
        cap, settle = self.params.scale_cap, self.params.scale_settle_seconds
        before, started = self.counter.snapshot(), time.time()
        peak = tree_rss_mb(pid)
        self.say(f"scale: applying {len(added)} more buckets ({len(names)} in all); waiting up to {cap:.0f}s")
        with ThreadPoolExecutor(APPLY_THREADS) as pool:
            manifests = [self.contender.manifest("s3", name, self.namespace, self.env) for name in added]
            pending = [pool.submit(self.create_object, kind, manifest) for manifest in manifests]
            while not all(future.done() for future in pending):
                peak = max(peak, tree_rss_mb(pid))
                time.sleep(RSS_EVERY_SECONDS)
            for future in pending:
                future.result()  # a refused create fails the phase rather than counting as not Ready
        applied_seconds = time.time() - started
        wanted, ready, all_ready_at, said = set(names), 0, None, time.monotonic()
        while time.time() - started < cap:
            peak = max(peak, tree_rss_mb(pid))
            ready = sum(
                1 for obj in self.list_objects(kind) if obj["metadata"]["name"] in wanted and self.contender.ready(obj)
            )
            if ready == len(names):
                all_ready_at = time.time()
                break
            if time.monotonic() - said > 30:
                self.say(f"scale: {ready}/{len(names)} Ready ({time.time() - started:.0f}s), RSS so far {peak} MiB")
                said = time.monotonic()
            time.sleep(SCALE_POLL_SECONDS)
        # All Ready: the first sweeps or polls at full size. At the cap: measured then, so the
        # count of Ready buckets is of the same moment as the RSS.
        settle_until = time.time() + (settle if all_ready_at is not None else 0.0)
        while time.time() < settle_until:
            peak = max(peak, tree_rss_mb(pid))
            time.sleep(RSS_EVERY_SECONDS)
        ended = time.time()
        writes = by_controller(self.audit.between(started, ended))
        ready_seconds = None if all_ready_at is None else round(all_ready_at - started, 1)
        self.say(
            f"scale: RSS {peak} MiB with {len(names)} applied, {ready} Ready "
            + (f"after {ready_seconds}s" if ready_seconds is not None else f"at the {cap:.0f}s cap")
        )
        return {
            "applied": len(names),
            "added": len(added),
            "apply_seconds": round(applied_seconds, 1),
            "cap_seconds": cap,
            "settle_seconds": settle if all_ready_at is not None else 0.0,
            "ready": ready,
            "ready_seconds": ready_seconds,
            "rss_mb_peak": peak,
            "rss_mb_at_end": tree_rss_mb(pid),
            "seconds": round(ended - started, 1),
            "cloud_requests": by_service(self.counter.since(before)),
            "k8s_writes": breakdown(writes),
        }

    def owner_keys(self, kinds: dict[str, KindRef]) -> dict[str, list[str]]:
        """By service: the names of this trial's objects and their UIDs, which name what a
        controller keeps per object under the UID (Crossplane's ProviderConfigUsage)."""
        found: dict[str, list[str]] = {}
        for service, kind in kinds.items():
            mine = set(self.names.get(service, []))
            uids = [obj["metadata"]["uid"] for obj in self.list_objects(kind) if obj["metadata"]["name"] in mine]
            found[service] = [*self.names.get(service, []), *uids]
        return found

    def events_between(self, start: float, end: float) -> list[tuple[str, str]]:
        """(name, involved object's name) of every Event created in [start, end] (to the second
        the API keeps), in every namespace (cluster-scoped objects' Events go to `default`)."""
        from kubernetes import client

        events = client.CoreV1Api(self.api).list_event_for_all_namespaces().items
        return [
            (event.metadata.name, event.involved_object.name or "")
            for event in events
            if math.floor(start) <= event.metadata.creation_timestamp.timestamp() <= end + 1
        ]

    def create_object(self, kind: KindRef, manifest: dict[str, Any]) -> None:
        from kubernetes import client

        objects = client.CustomObjectsApi(self.api)
        if kind.namespaced:
            objects.create_namespaced_custom_object(kind.group, kind.version, self.namespace, kind.plural, manifest)
        else:
            objects.create_cluster_custom_object(kind.group, kind.version, kind.plural, manifest)

    def list_objects(self, kind: KindRef) -> list[dict[str, Any]]:
        from kubernetes import client

        objects = client.CustomObjectsApi(self.api)
        if kind.namespaced:
            listed = objects.list_namespaced_custom_object(kind.group, kind.version, self.namespace, kind.plural)
        else:
            listed = objects.list_cluster_custom_object(kind.group, kind.version, kind.plural)
        return list(listed.get("items") or [])

    def wait_ready(self, kinds: dict[str, KindRef], started: float) -> dict[tuple[str, str], float | None]:
        """When each object was first seen Ready (epoch seconds; None: not within the timeout)."""
        ready_at: dict[tuple[str, str], float | None] = {
            (service, name): None for service, names in self.names.items() for name in names
        }
        said = time.monotonic()
        while time.time() - started < self.params.timeout:
            for service, kind in kinds.items():
                for obj in self.list_objects(kind):
                    key = (service, obj["metadata"]["name"])
                    if key in ready_at and ready_at[key] is None and self.contender.ready(obj):
                        ready_at[key] = time.time()
            done = sum(1 for t in ready_at.values() if t is not None)
            if done == len(ready_at):
                break
            if time.monotonic() - said > 10:
                self.say(f"{done}/{len(ready_at)} Ready ({time.time() - started:.0f}s)")
                said = time.monotonic()
            time.sleep(POLL_SECONDS)
        done = sum(1 for t in ready_at.values() if t is not None)
        self.say(f"{done}/{len(ready_at)} Ready after {time.time() - started:.1f}s")
        return ready_at

    def steady(self, kinds: dict[str, KindRef]) -> dict[str, Any]:
        from .auditwrites import breakdown, by_controller
        from .cloudops import by_service

        assert self.running is not None
        seconds = self.params.steady_seconds
        self.say(f"steady window of {seconds:.0f}s")
        before, started = self.counter.snapshot(), time.time()
        peak = 0.0
        while time.time() - started < seconds:
            peak = max(peak, tree_rss_mb(self.running.pid))
            time.sleep(min(RSS_EVERY_SECONDS, max(0.0, seconds - (time.time() - started))))
        ended = time.time()
        calls = self.counter.since(before)
        writes = by_controller(self.audit.between(started, ended))
        per_service = {
            service: rate_per_minute(
                sum(n for (s, _), n in calls.items() if s == service), len(self.names.get(service, [])), ended - started
            )
            for service in kinds
        }
        return {
            "seconds": round(ended - started, 1),
            "cloud_requests_per_resource_per_minute": per_service,
            "cloud_requests": by_service(calls),
            "k8s_writes_per_minute": round(len(writes) / ((ended - started) / 60), 2),
            "k8s_writes": breakdown(writes),
            "rss_mb_loaded": peak,
        }

    def drift(self, services: list[str]) -> dict[str, Any]:
        """Change one managed setting behind the controller's back, straight on moto, on a few
        objects of each kind at once (S3: versioning suspended; RDS: backup retention 7 -> 1 day);
        wait, up to the cap, for each to read as the controller set it again."""
        cap = self.params.drift_cap
        drifts = {service: DRIFTS[service](self.boto(service)) for service in services if service in DRIFTS}
        targets: dict[tuple[str, str], str] = {}  # (service, object name) -> cloud name
        skipped: dict[str, list[str]] = {service: [] for service in drifts}
        for service, drift in drifts.items():
            for name in self.names[service][: self.params.drift_samples]:
                cloud_name = self.contender.cloud_name(service, name, self.namespace)
                if drift.read(cloud_name) != drift.expected or not _inject(drift, cloud_name):
                    skipped[service].append(name)  # never set by the controller, or the cloud refused
                    continue
                targets[(service, name)] = cloud_name
        watch = DriftWatch(list(targets))
        injected = time.time()
        self.say(f"drift injected on {len(targets)} objects; waiting up to {cap:.0f}s for corrections")
        while time.time() - injected < cap and not watch.done:
            for key, cloud_name in targets.items():
                if not watch.finished(key):
                    watch.observe(key, drifts[key[0]].read(cloud_name) == drifts[key[0]].expected, time.time())
            time.sleep(DRIFT_POLL_SECONDS)
        self.say(f"{watch.corrected_count}/{len(targets)} corrected within {cap:.0f}s")
        return {
            service: {"change": drift.change, **watch.summary(service, cap), "skipped": skipped[service]}
            for service, drift in drifts.items()
        }


def _inject(drift: Drift, cloud_name: str, attempts: int = 30) -> bool:
    """Make the change, trying again for a while: RDS refuses a modify while the instance is busy
    (its first backup right after creation)."""
    for _ in range(attempts):
        try:
            drift.inject(cloud_name)
            return True
        except Exception:  # any refusal: the instance may just be busy
            time.sleep(1.0)
    return False


class DriftWatch:
    """Each out-of-band change from when it is first seen in the cloud (RDS applies a modify
    asynchronously) to when the setting reads as the controller set it again; to within the
    poll interval."""

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        self.seen_at: dict[tuple[str, str], float | None] = dict.fromkeys(keys)
        self.seconds: dict[tuple[str, str], float | None] = dict.fromkeys(keys)

    def observe(self, key: tuple[str, str], as_set: bool, now: float) -> None:
        seen = self.seen_at[key]
        if seen is None:
            if not as_set:
                self.seen_at[key] = now
        elif as_set and self.seconds[key] is None:
            self.seconds[key] = round(now - seen, 1)

    def finished(self, key: tuple[str, str]) -> bool:
        return self.seconds[key] is not None

    @property
    def done(self) -> bool:
        return all(v is not None for v in self.seconds.values())

    @property
    def corrected_count(self) -> int:
        return sum(1 for v in self.seconds.values() if v is not None)

    def summary(self, service: str, cap: float) -> dict[str, Any]:
        """One kind's samples: seconds to corrected (None: not within the cap), and those whose
        change never showed in the cloud within the cap (left out of the median)."""
        mine = [key for key in self.seconds if key[0] == service]
        shown = [key for key in mine if self.seen_at[key] is not None]
        return {
            "cap_seconds": cap,
            "samples": {name: self.seconds[(s, name)] for s, name in shown},
            "not_within_cap": sum(1 for key in shown if self.seconds[key] is None),
            "change_never_seen": [name for s, name in mine if self.seen_at[(s, name)] is None],
        }


@dataclass(frozen=True)
class Drift:
    """One out-of-band change: how to read the setting, the value the controller set, and how
    to change it behind its back."""

    change: str
    expected: Any
    read: Callable[[str], Any]
    inject: Callable[[str], None]


def _s3_drift(s3: Any) -> Drift:
    return Drift(
        "versioning Enabled -> Suspended",
        "Enabled",
        lambda bucket: s3.get_bucket_versioning(Bucket=bucket).get("Status"),
        lambda bucket: s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Suspended"}),
    )


def _rds_drift(rds: Any) -> Drift:
    return Drift(
        "backup retention 7 -> 1 days",
        7,
        lambda name: rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["BackupRetentionPeriod"],
        lambda name: rds.modify_db_instance(DBInstanceIdentifier=name, BackupRetentionPeriod=1, ApplyImmediately=True),
    )


DRIFTS: dict[str, Callable[[Any], Drift]] = {"s3": _s3_drift, "rds": _rds_drift}


def capped_median(samples: list[float | None]) -> float | None:
    """The median correction time, a sample not corrected within the cap counting as longer than
    any; None when the median itself is not within the cap (or there are no samples)."""
    values = sorted(math.inf if v is None else v for v in samples)
    if not values:
        return None
    middle = statistics.median(values)
    return None if math.isinf(middle) else round(middle, 1)


def figures_of(result: Mapping[str, Any]) -> dict[str, Any]:
    """The headline figures (HEADLINES) of one controller's trial."""
    create, steady, drift = result["create"], result["steady"], result.get("drift") or {}
    figures: dict[str, Any] = {}
    for service in create["ready_seconds"]:
        figures[f"{service}_ready_seconds"] = create["ready_seconds"][service]
        figures[f"{service}_cloud_requests_per_object"] = (
            create["cloud_requests_per_object"].get(service, {}).get("total", 0.0)
        )
        figures[f"{service}_steady_requests_per_resource_per_minute"] = steady[
            "cloud_requests_per_resource_per_minute"
        ][service]
    figures["cloud_requests_per_object"] = create["cloud_requests_per_object"]["all"]
    figures["k8s_writes_per_object"] = create["k8s_writes_per_object"]["total"]
    for kind, writes in create.get("k8s_writes_per_object_by_kind", {}).items():
        figures[f"{kind}_k8s_writes_per_object"] = writes["total"]
    # Every steady request, whatever service it went to (kumo reads S3 tags through the Resource
    # Groups Tagging API, which a per-service figure would leave out), per object of every kind.
    steady_requests = sum(n for operations in steady["cloud_requests"].values() for n in operations.values())
    figures["steady_requests_per_resource_per_minute"] = rate_per_minute(
        steady_requests, sum(create["objects"].values()), steady["seconds"]
    )
    figures["steady_k8s_writes_per_minute"] = steady["k8s_writes_per_minute"]
    figures["rss_mb_idle"] = result["rss_mb_idle"]
    figures["rss_mb_loaded"] = steady["rss_mb_loaded"]
    for service, found in drift.items():
        if found["samples"]:
            figures[f"{service}_drift_corrected_seconds"] = capped_median(list(found["samples"].values()))
    scale = result.get("scale")
    if scale:
        figures["scale_rss_mb"] = scale["rss_mb_peak"]
        figures[SCALE_READY_SECONDS] = scale["ready_seconds"]
        figures["scale_ready"] = scale["ready"]
    return figures


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# ---------------------------------------------------------------------- kumo


class KumoContender:
    """kumo's own controller (`kumo run` as a child process) at its defaults, one ProviderConfig
    aimed at the counting proxy."""

    name = "kumo"
    cluster_id = "kumo-sidebyside"

    def kinds(self) -> dict[str, KindRef]:
        from kumo.api import BUCKET, DATABASE, GROUP, VERSION

        return {
            "s3": KindRef(str(BUCKET.kind), GROUP, VERSION, BUCKET.plural, True),
            "rds": KindRef(str(DATABASE.kind), GROUP, VERSION, DATABASE.plural, True),
        }

    def install(self, api: Any, env: dict[str, Any], namespace: str) -> None:
        from kubernetes import client
        from kumo.testbed.bed import install_crds
        from kumo.testbed.providerconfigs import aws_provider_config

        from kumo.api import GROUP, PROVIDER_CONFIG, VERSION

        install_crds(api)
        client.CoreV1Api(api).create_namespace({"metadata": {"name": "kumo-system"}})
        secret, provider_config = aws_provider_config(env["aws"], "aws")
        client.CoreV1Api(api).create_namespaced_secret(namespace, secret)
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PROVIDER_CONFIG.plural, provider_config
        )

    def start(self, env: dict[str, Any], log_path: Path, namespace: str, resync_seconds: int | None) -> Running:
        from kumo.testbed.controllerproc import ControllerProcess

        extra_env = {"KUMO_NAMESPACES": namespace, "KUMO_LOG_LEVEL": "INFO"}  # INFO: kumo's default
        extra_env.update(self._resync_env(resync_seconds))
        process = ControllerProcess(
            kubeconfig=env["kubeconfig"], log_path=log_path, cluster_id=self.cluster_id, extra_env=extra_env
        ).start()
        return _KumoRunning(process)

    def resync_settings(self, env: dict[str, Any], namespace: str, resync_seconds: int | None) -> list[str]:
        return [f"{key}={value}" for key, value in self._resync_env(resync_seconds).items()]

    @staticmethod
    def _resync_env(resync_seconds: int | None) -> dict[str, str]:
        # kumo's only poll is the drift sweep (controller/runtime/config.py: sweep_interval)
        return {} if resync_seconds is None else {"KUMO_SWEEP_INTERVAL": str(resync_seconds)}

    def manifest(self, service: str, name: str, namespace: str, env: dict[str, Any]) -> dict[str, Any]:
        """The examples' Bucket and Database, the Bucket asking what the rivals' buckets ask
        (versioning and one tag: no lifecycle rule) and the Database 7 days of backups."""
        import yaml
        from kumo.testbed.providerconfigs import EXAMPLES

        filename = {"s3": "bucket.yaml", "rds": "database.yaml"}[service]
        manifest: dict[str, Any] = yaml.safe_load((EXAMPLES / "aws" / filename).read_text())
        manifest["metadata"]["name"] = name
        if service == "s3":
            manifest["spec"].pop("lifecycle", None)
            manifest["spec"]["labels"] = {"bench": "rivals"}
        return manifest

    def ready(self, obj: dict[str, Any]) -> bool:
        from kumo.api import READY

        return any(
            c.get("type") == READY and c.get("status") == "True"
            for c in (obj.get("status") or {}).get("conditions") or []
        )

    def cloud_name(self, service: str, name: str, namespace: str) -> str:
        from kumo.controller.core.resources import derived_external_name

        return derived_external_name(namespace, name, self.cluster_id)


@dataclass
class _KumoRunning:
    process: Any  # kumo.testbed.controllerproc.ControllerProcess

    @property
    def pid(self) -> int:
        return int(self.process.process.pid)

    def stop(self) -> None:
        self.process.stop()


# ---------------------------------------------------------------------- the rivals


def rival_contenders() -> list[Contender]:
    """Every rival bench/rivals offers (none until it is there)."""
    try:
        from .rivals import RIVALS
    except ImportError:
        return []
    return [RivalContender(rival) for rival in RIVALS]


@dataclass
class RivalContender:
    """A bench/rivals `Rival` as a contender: its Bucket kind, and its first other kind as RDS."""

    rival: Any  # bench.rivals.rival.Rival

    @property
    def name(self) -> str:
        return str(self.rival.name)

    def buildable(self) -> str:
        """ "" when the binary is there or can be built; else why not."""
        import shutil

        if self.rival.binary_path().exists() or shutil.which("go"):
            return ""
        return "no binary and no Go toolchain to build it"

    def kinds(self) -> dict[str, KindRef]:
        found: dict[str, KindRef] = {}
        for kind_name, kind in self.rival.kinds.items():
            service = "s3" if kind_name == "Bucket" else "rds"
            found.setdefault(service, KindRef(kind.kind, kind.group, kind.version, kind.plural, kind.namespaced))
        return found

    def install(self, api: Any, env: dict[str, Any], namespace: str) -> None:
        self.rival.install(api, env, namespace)

    def start(self, env: dict[str, Any], log_path: Path, namespace: str, resync_seconds: int | None) -> Running:
        self.rival.build()
        return self.rival.start(env, log_path, namespace=namespace, resync_seconds=resync_seconds)

    def resync_settings(self, env: dict[str, Any], namespace: str, resync_seconds: int | None) -> list[str]:
        """The flags the rival's argv gains for `resync_seconds` (ACK: its default resync;
        provider-aws: --poll and --sync)."""
        ports = {"metrics": 0, "health": 0, "webhook": 0}
        binary = self.rival.binary_path()
        default = self.rival.command(binary, env, namespace, ports, None)
        return [
            flag for flag in self.rival.command(binary, env, namespace, ports, resync_seconds) if flag not in default
        ]

    def manifest(self, service: str, name: str, namespace: str, env: dict[str, Any]) -> dict[str, Any]:
        kind = self.kinds()[service].kind
        return self.rival.manifest(kind, name, namespace, env)

    def ready(self, obj: dict[str, Any]) -> bool:
        return bool(self.rival.ready(obj))

    def cloud_name(self, service: str, name: str, namespace: str) -> str:
        return name  # a rival's manifest names the cloud resource after the object


def choose(params: SideBySideParams, progress: Progress) -> list[Contender]:
    """kumo first, then the rivals BENCH_RIVALS names (all for `auto`) that can run here."""
    available: list[Contender] = [KumoContender(), *rival_contenders()]
    wanted = None if params.contenders == "auto" else set(params.contenders.split(","))
    chosen = []
    for contender in available:
        if wanted is not None and contender.name not in wanted:
            continue
        why_not = contender.buildable() if isinstance(contender, RivalContender) else ""
        if why_not:
            progress.say(contender.name, f"left out: {why_not}")
            continue
        chosen.append(contender)
    return chosen


def measure(params: SideBySideParams, progress: Progress | None = None) -> dict[str, Any]:
    """Every chosen controller in turn, each on a fresh bed; the "rivals" section of results.json."""
    progress = progress or Progress()
    section: dict[str, Any] = {"params": params.as_json(), "controllers": {}, "ratios": {}}
    for contender in choose(params, progress):
        trial = Trial(contender, params, progress)
        try:
            with trial.bed_up():
                section["controllers"][contender.name] = trial.run()
        except Exception as error:  # one controller failing must not lose the others' figures
            progress.say(contender.name, f"failed: {error!r}")
            section["controllers"][contender.name] = {"error": repr(error)[:500]}
    return summarise(section)


def summarise(section: dict[str, Any]) -> dict[str, Any]:
    """Each controller's headline figures from the counts it keeps, and kumo/rival for each
    rival: the figures can be computed again from a results.json."""
    for entry in section["controllers"].values():
        if "create" in entry:
            entry["figures"] = figures_of(entry)
    kumo = section["controllers"].get("kumo", {}).get("figures", {})
    section["ratios"] = {
        name: ratios(kumo, entry["figures"])
        for name, entry in section["controllers"].items()
        if name != "kumo" and kumo and entry.get("figures")
    }
    return section


def write_results(out: Path, section: dict[str, Any], key: str = RESULTS_KEY) -> None:
    """Put the section under `key` in results.json, keeping everything else in it."""
    results = json.loads(out.read_text()) if out.is_file() else {}
    results[key] = section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")


def main() -> int:
    unwind_on_sigterm()
    params = SideBySideParams.from_env()
    if params.skipped:
        print("side by side: skipped (BENCH_RIVALS=0)", flush=True)
        return 0
    for run in params.runs():
        print(f"side by side: {json.dumps(run.as_json())}", flush=True)
        section = measure(run)
        write_results(run.out, section, run.results_key)
        print("\n" + table(section), flush=True)
        print(f'\nresults: {run.out} (under "{run.results_key}")', flush=True)
    return 0


def print_markdown(path: Path) -> int:
    """The markdown table of every side-by-side section of a results.json, figures computed
    again from the counts kept."""
    results = json.loads(path.read_text())
    keys = [key for key in results if key == RESULTS_KEY or key.startswith(f"{RESULTS_KEY}_resync_")]
    if not keys:
        print(f"{path}: no side-by-side section ({RESULTS_KEY}...)", file=sys.stderr)
        return 1
    for key in keys:
        print(f"<!-- {path.name}, key {key} -->\n{markdown(summarise(results[key]))}\n")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["markdown"]:
        sys.exit(print_markdown(Path(sys.argv[2]) if len(sys.argv) > 2 else DEFAULT_OUT))
    sys.exit(main())
