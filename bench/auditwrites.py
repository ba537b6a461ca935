"""A controller's writes to the API server, from the API server's audit log, whatever the
controller is.

The test bed's audit policy logs every write verb at Metadata level (testbed/cluster.py). On a
bed of its own, every write comes from one of three writers: the control plane itself (users
`system:...`: the API server, the controller-manager and the ServiceAccounts it acts as), the
bench (which sets its own user agent, BENCH_AGENT) and the controller under test. So the
controller's writes are the rest: no need to know in advance which user agent a rival's Go
client sends, and the agents seen are kept as evidence.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .observe import WRITE_VERBS, complete_lines

BENCH_AGENT = "kumo-bench-sidebyside"
CONTROL_PLANE_USER_PREFIX = "system:"


@dataclass(frozen=True)
class AuditWrite:
    at: float  # epoch seconds, the API server's stageTimestamp
    user: str
    agent: str
    verb: str
    resource: str  # "buckets/status", "events", "leases", ...
    namespace: str
    name: str
    code: int

    @property
    def request(self) -> str:
        """ "verb resource", the unit writes are broken down by."""
        return f"{self.verb} {self.resource}"


def parse_line(line: bytes | str) -> AuditWrite | None:
    """One audit event as a write, or None when it is not a completed write."""
    entry = json.loads(line)
    if entry.get("stage") != "ResponseComplete" or entry.get("verb") not in WRITE_VERBS:
        return None
    ref = entry.get("objectRef") or {}
    resource = str(ref.get("resource", "")) + (f"/{ref['subresource']}" if ref.get("subresource") else "")
    return AuditWrite(
        at=datetime.fromisoformat(entry["stageTimestamp"]).timestamp(),
        user=str((entry.get("user") or {}).get("username", "")),
        agent=str(entry.get("userAgent", "")),
        verb=str(entry["verb"]),
        resource=resource,
        namespace=str(ref.get("namespace", "")),
        name=str(ref.get("name", "")),
        code=int((entry.get("responseStatus") or {}).get("code", 0)),
    )


def by_controller(writes: Iterable[AuditWrite], bench_agent: str = BENCH_AGENT) -> list[AuditWrite]:
    """The writes neither the control plane nor the bench made."""
    return [
        w for w in writes if not w.user.startswith(CONTROL_PLANE_USER_PREFIX) and not w.agent.startswith(bench_agent)
    ]


def breakdown(writes: Iterable[AuditWrite]) -> dict[str, int]:
    """ "verb resource" -> writes, e.g. {"patch buckets/status": 50, "create events": 50}."""
    return dict(sorted(Counter(w.request for w in writes).items()))


UNATTRIBUTED = "unattributed"
NAME_SEPARATORS = "-."  # how a controller's Secret or Event names extend the object's name
UNNAMED_EVENT_CREATE = "create events"


def owner_of(write_name: str, owners: Mapping[str, str]) -> str | None:
    """The object a write is about: one whose name is the write's name, or the write's name up
    to a "-" or "." (a Secret `<object>-conn`, an Event `<object>.<hash>`); the longest such."""
    end = len(write_name)
    while end > 0:
        found = owners.get(write_name[:end])
        if found is not None:
            return found
        end = max((write_name.rfind(sep, 0, end) for sep in NAME_SEPARATORS), default=-1)
    return None


def by_kind(
    writes: Iterable[AuditWrite], names: Mapping[str, Iterable[str]], unnamed_events: Iterable[str] = ()
) -> dict[str, list[AuditWrite]]:
    """The writes per kind (the keys of `names`, each with the names, or UIDs, of its objects),
    by the object each write is about (`owner_of`); the rest under UNATTRIBUTED: shared objects
    (a ProviderConfig and its Secret), leases.

    An Event created with generateName (kumo's) has no name in the audit log, which logs the
    request: `unnamed_events` are the involved objects of the Events the API holds that the audit
    log did not name, and each unnamed Event create goes to the kind of the next of them."""
    owners = {name: kind for kind, kind_names in names.items() for name in kind_names}
    involved = iter(unnamed_events)
    found: dict[str, list[AuditWrite]] = {kind: [] for kind in names}
    found[UNATTRIBUTED] = []
    for write in writes:
        about = write.name
        if not about and write.request == UNNAMED_EVENT_CREATE:
            about = next(involved, "")
        found[owner_of(about, owners) or UNATTRIBUTED].append(write)
    return found


def unnamed_events(events: Iterable[tuple[str, str]], writes: Iterable[AuditWrite]) -> list[str]:
    """The involved objects of `events` ((event name, involved object name), as the API lists
    them) whose creation the audit log did not name."""
    named = {w.name for w in writes if w.request == UNNAMED_EVENT_CREATE}
    return [involved for name, involved in events if name not in named]


def per_object(writes: list[AuditWrite], objects: int) -> dict[str, object]:
    """Writes per object, in all and by request (rounded to 0.01)."""
    count = max(1, objects)
    return {
        "total": round(len(writes) / count, 2),
        "by_request": {request: round(n / count, 2) for request, n in breakdown(writes).items()},
    }


class AuditTail:
    """The writes of a growing audit log file, read incrementally."""

    flush_delay = 1.5  # the API server writes its audit log in batches of up to a second

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes: list[AuditWrite] = []
        self._offset = 0

    def refresh(self) -> None:
        if not self.path.is_file():
            return
        lines, self._offset = complete_lines(self.path, self._offset)
        for line in lines:
            write = parse_line(line)
            if write is not None:
                self.writes.append(write)

    def between(self, start: float, end: float) -> list[AuditWrite]:
        """The writes in [start, end] (epoch seconds), read once the API server has flushed them."""
        wait = end + self.flush_delay - time.time()
        if wait > 0:
            time.sleep(wait)
        self.refresh()
        return [w for w in self.writes if start <= w.at <= end]
