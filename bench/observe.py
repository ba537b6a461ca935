"""What the bench reads to count things: the controller's DEBUG log, the API server's audit log,
the controller's memory, and a description of the machine.

Counting comes from the controller's own words: `cloud call <provider> <service> <operation> ->
<outcome>` for every SDK call, `swept <Kind> of ProviderConfig <ns>/<config>: N listed, ...` for
every sweep, and the audit log (writes only, userAgent `kumo-controller/...`) for every write to
the API server. None of it needs a timer to be right.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

CONTROLLER_AGENT = "kumo-controller"
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
_STAMP = r"(?P<stamp>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})"
SWEPT = re.compile(
    _STAMP + r" \S+\s+\S+: swept (?P<kind>\w+) of (?P<config_kind>\w+) (?P<ns>[\w-]+)/(?P<config>[\w-]+): "
    r"(?P<listed>\d+) listed, (?P<compared>\d+) compared, (?P<drifted>\d+) drifted, (?P<enqueued>\d+) enqueued, "
    r"(?P<calls>\d+) cloud calls in (?P<seconds>[\d.]+)s"
)
CLOUD_CALL = re.compile(
    _STAMP + r" \S+\s+\S+: cloud call (?P<provider>\S+) (?P<service>\S+) (?P<operation>\S+) -> (?P<outcome>\S+)"
)
RECONCILED = re.compile(_STAMP + r" \S+\s+\S+: reconciled ")
FAILED = re.compile(r"reconcile of (?P<key>\S+) failed \((?P<reason>\w+)\): (?P<message>.*)")
# The calls that bring a cloud resource into being; a restart must make none of them.
CREATE_OPERATIONS = frozenset({"CreateDBInstance", "CreateBucket", "instances.insert", "buckets.insert"})


def log_time(stamp: str) -> float:
    """The controller's `asctime` (local time, milliseconds) as epoch seconds."""
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000


@dataclass(frozen=True)
class Sweep:
    at: float  # epoch seconds, when the sweep finished
    kind: str
    config: str
    listed: int
    compared: int
    drifted: int
    enqueued: int
    calls: int
    seconds: float

    @property
    def settled(self) -> bool:
        return self.drifted == 0 and self.enqueued == 0 and self.compared > 0


def sweeps(text: str, namespace: str) -> list[Sweep]:
    found = []
    for m in SWEPT.finditer(text):
        if m["ns"] == namespace:
            found.append(
                Sweep(
                    log_time(m["stamp"]),
                    m["kind"],
                    m["config"],
                    int(m["listed"]),
                    int(m["compared"]),
                    int(m["drifted"]),
                    int(m["enqueued"]),
                    int(m["calls"]),
                    float(m["seconds"]),
                )
            )
    return found


def sweep_news(swept: list[Sweep], sizes: dict[tuple[str, str], int], now: float) -> str:
    """What a wait for complete sweeps has seen so far: when the newest sweep line was written
    (a sweeper that stopped shows as an age that only grows) and, for each scope, the most
    objects one of its sweeps listed against how many it holds."""
    if not swept:
        return "no sweep logged yet"
    most: dict[tuple[str, str], int] = {}
    for sweep in swept:
        scope = (sweep.config, sweep.kind)
        most[scope] = max(most.get(scope, 0), sweep.listed)
    scopes = ", ".join(f"{'/'.join(scope)} {most.get(scope, 0)}/{size}" for scope, size in sizes.items())
    return f"newest sweep logged {now - max(s.at for s in swept):.0f}s ago; most listed: {scopes}"


def cloud_calls(text: str) -> Counter[tuple[str, str, str]]:
    """(provider, service, operation) -> calls, every outcome included."""
    return Counter((m["provider"], m["service"], m["operation"]) for m in CLOUD_CALL.finditer(text))


def failures(text: str) -> dict[str, Any]:
    """Failed reconciles in the log: how many, by reason, and the first few messages."""
    found = list(FAILED.finditer(text))
    return {
        "count": len(found),
        "by_reason": dict(Counter(m["reason"] for m in found)),
        "examples": [f"{m['key']}: {m['message'][:200]}" for m in found[:3]],
    }


def reconciles(text: str) -> int:
    return sum(1 for _ in RECONCILED.finditer(text))


class LogReader:
    """A growing log file, read from marks: `mark()` now, `since(mark)` later."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def mark(self) -> int:
        try:
            return self.path.stat().st_size
        except OSError:
            return 0

    def since(self, mark: int) -> str:
        try:
            with self.path.open("rb") as log:
                log.seek(mark)
                return log.read().decode(errors="replace")
        except OSError:
            return ""


@dataclass(frozen=True)
class Write:
    at: float  # epoch seconds (the API server's stageTimestamp)
    verb: str
    resource: str  # "databases/status", "secrets", "events", ...
    code: int
    name: str  # the object written: "rds-00001", "rds-00001-connection", "rds-00001.1a2b3c" (an event)


def complete_lines(path: Path, offset: int) -> tuple[list[bytes], int]:
    """The whole lines a growing file gained since `offset`, and the offset after them: a
    half-written last line waits for the next read."""
    with path.open("rb") as log:
        log.seek(offset)
        chunk = log.read()
    end = chunk.rfind(b"\n") + 1
    return chunk[:end].splitlines(), offset + end


class AuditLog:
    """The controller's writes in one namespace, read incrementally from the API server's audit
    log (policy: Metadata level for write verbs only; see testbed/cluster.py)."""

    flush_delay = 1.5  # the API server writes its audit log in batches of up to a second

    def __init__(self, path: Path, namespace: str) -> None:
        self.path = path
        self.namespace = namespace
        self.writes: list[Write] = []
        self._offset = 0

    @property
    def available(self) -> bool:
        return bool(str(self.path)) and self.path.is_file()

    def refresh(self) -> None:
        if not self.available:
            return
        lines, self._offset = complete_lines(self.path, self._offset)
        for line in lines:
            entry = json.loads(line)
            ref = entry.get("objectRef") or {}
            if (
                entry.get("stage") == "ResponseComplete"
                and entry.get("verb") in WRITE_VERBS
                and str(entry.get("userAgent", "")).startswith(CONTROLLER_AGENT)
                and ref.get("namespace") == self.namespace
            ):
                resource = ref.get("resource", "") + (f"/{ref['subresource']}" if ref.get("subresource") else "")
                stamp = datetime.fromisoformat(entry["stageTimestamp"]).timestamp()
                code = int((entry.get("responseStatus") or {}).get("code", 0))
                self.writes.append(Write(stamp, entry["verb"], resource, code, str(ref.get("name", ""))))

    def between(self, start: float, end: float) -> list[Write]:
        """Writes in [start, end] (epoch seconds); waits for the batch flush first."""
        wait = end + self.flush_delay - time.time()
        if wait > 0:
            time.sleep(wait)
        self.refresh()
        return [w for w in self.writes if start <= w.at <= end]


def breakdown(writes: list[Write]) -> dict[str, int]:
    """ "verb resource" -> count, e.g. {"patch databases/status": 1000, "create events": 1000}."""
    return dict(sorted(Counter(f"{w.verb} {w.resource}" for w in writes).items()))


def breakdown_by(writes: list[Write], group: Callable[[Write], str]) -> dict[str, dict[str, int]]:
    """Writes by a group (e.g. the kind of the object written), then by request."""
    grouped: dict[str, list[Write]] = {}
    for write in writes:
        grouped.setdefault(group(write), []).append(write)
    return {key: breakdown(found) for key, found in sorted(grouped.items())}


def apiserver_requests(api_client: Any) -> Counter[tuple[str, str]]:
    """(verb, resource) -> requests the API server has answered since it started, from its own
    /metrics (`apiserver_request_total`); reads included, which the audit log leaves out."""
    request = api_client.param_serialize("GET", "/metrics", auth_settings=["BearerToken"])
    response = api_client.call_api(*request)
    response.read()
    counts: Counter[tuple[str, str]] = Counter()
    for line in response.data.decode().splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
            counts[(labels.get("verb", ""), labels.get("resource", ""))] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB, from /proc/<pid>/status."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return round(values["VmRSS"], 1), round(values["VmHWM"], 1)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (threads included)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per named process over a phase: where a phase's time went on a 2-core box."""

    def __init__(self, processes: dict[str, int]) -> None:
        self.processes = processes

    def snapshot(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) for name, pid in self.processes.items()}

    def since(self, before: dict[str, float]) -> dict[str, float]:
        now = self.snapshot()
        return {name: round(now[name] - before.get(name, 0.0), 1) for name in now}


def machine() -> dict[str, Any]:
    """What the figures ran on."""
    memory_kb = 0
    cpu_model = ""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "cpu_model": cpu_model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
