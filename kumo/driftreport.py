"""`kumo drift`: which Databases and Buckets have drifted from their spec, cluster-wide.

Read from status alone: the controller's drift sweeps already compared every object with the
cloud and wrote condition InSync and `status.drift`, so the report makes no cloud call and no
Kubernetes write, only paged list calls. Used by `kumo.cli`; the reading is one function
(`read_report`), the rest is pure and rendered from plain dataclasses (unit-tested without a
server).

Exit codes follow `terraform plan -detailed-exitcode`: 0 nothing drifted, 2 something drifted
(1, for errors, is the CLI's).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kumo.api import GROUP, IN_SYNC, MANAGED, VERSION
from kumo.controller.core import conditions as cond
from kumo.controller.core.drift import value_text

EXIT_IN_SYNC = 0
EXIT_DRIFTED = 2
PAGE_SIZE = 500
REQUEST_TIMEOUT = (5.0, 60.0)  # connect, read: an unreachable server fails fast

NOT_COMPARED = ""  # no InSync condition yet: the object was never swept or reconciled to Ready


@dataclass(frozen=True)
class DriftEntry:
    """One `status.drift` entry; values are the JSON values the controller stored (the JSON text
    that releases before them stored stays text until the controller's next look rewrites it)."""

    field: str
    desired: Any
    actual: Any
    since: str


@dataclass(frozen=True)
class ObjectDrift:
    """One checked object and what its InSync condition says."""

    kind: str
    namespace: str
    name: str
    external_name: str
    in_sync: str  # "True", "False", "Unknown" (Ignored), or NOT_COMPARED
    reason: str = ""
    message: str = ""
    since: str = ""  # when InSync last changed
    drift: tuple[DriftEntry, ...] = ()

    @property
    def drifted(self) -> bool:
        return self.in_sync == "False"

    @property
    def object_ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DriftReport:
    objects: tuple[ObjectDrift, ...]

    @property
    def drifted(self) -> int:
        return sum(1 for obj in self.objects if obj.drifted)

    @property
    def checked(self) -> int:
        return len(self.objects)

    @property
    def exit_code(self) -> int:
        return EXIT_DRIFTED if self.drifted else EXIT_IN_SYNC


# ---------------------------------------------------------------------- from objects


def object_drift(kind: str, body: Mapping[str, Any]) -> ObjectDrift:
    """What one Database or Bucket's status says about drift."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    in_sync = cond.find(status.get("conditions") or [], IN_SYNC) or {}
    entries = tuple(
        DriftEntry(
            field=str(entry.get("field", "")),
            desired=entry.get("desired"),
            actual=entry.get("actual"),
            since=str(entry.get("since", "")),
        )
        for entry in status.get("drift") or []
    )
    return ObjectDrift(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        external_name=str((status.get("atProvider") or {}).get("externalName", "")),
        in_sync=str(in_sync.get("status", NOT_COMPARED)),
        reason=str(in_sync.get("reason", "")),
        message=str(in_sync.get("message", "")),
        since=str(in_sync.get("lastTransitionTime", "")),
        drift=entries if in_sync.get("status") == "False" else (),
    )


def build_report(objects: Iterable[tuple[str, Mapping[str, Any]]]) -> DriftReport:
    """The report over (kind, body) pairs, ordered by namespace, kind and name."""
    found = [object_drift(kind, body) for kind, body in objects]
    return DriftReport(tuple(sorted(found, key=lambda o: (o.namespace, o.kind, o.name))))


def read_report(api_client: Any, namespace: str | None) -> DriftReport:
    """List every Database and Bucket in `namespace` (None: all namespaces) and report.
    Read-only: list calls only."""
    from kubernetes import client

    objects = client.CustomObjectsApi(api_client)
    listed: list[tuple[str, Mapping[str, Any]]] = []
    for kind, info in MANAGED.items():
        listed += [(str(kind), item) for item in _list_all(objects, info.plural, namespace)]
    return build_report(listed)


def _list_all(objects: Any, plural: str, namespace: str | None) -> Iterator[Mapping[str, Any]]:
    token = ""
    while True:
        paging: dict[str, Any] = {"limit": PAGE_SIZE, "_request_timeout": REQUEST_TIMEOUT}
        if token:
            paging["_continue"] = token
        if namespace is None:
            page = objects.list_cluster_custom_object(GROUP, VERSION, plural, **paging)
        else:
            page = objects.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **paging)
        yield from page.get("items") or []
        token = (page.get("metadata") or {}).get("continue") or ""
        if not token:
            return


# ---------------------------------------------------------------------- rendering


TABLE_HEADER = ("KIND", "OBJECT", "REASON", "FIELD", "DESIRED", "ACTUAL", "SINCE")


def render_table(report: DriftReport) -> str:
    """Drifted objects as an aligned table, one row per drifted field, then the summary line."""
    rows: list[tuple[str, ...]] = []
    for obj in report.objects:
        if not obj.drifted:
            continue
        if not obj.drift:  # Missing: the whole resource is the difference
            rows.append((obj.kind, obj.object_ref, obj.reason, "-", "exists", "missing", obj.since))
            continue
        for index, entry in enumerate(obj.drift):
            lead = (obj.kind, obj.object_ref, obj.reason) if index == 0 else ("", "", "")
            rows.append((*lead, entry.field, value_text(entry.desired), value_text(entry.actual), entry.since))
    lines = aligned([TABLE_HEADER, *rows]) if rows else []
    return "\n".join([*lines, summary_line(report)]) + "\n"


def summary_line(report: DriftReport) -> str:
    line = f"{report.drifted} of {report.checked} objects drifted"
    ignored = sum(1 for obj in report.objects if obj.in_sync == "Unknown")
    pending = sum(1 for obj in report.objects if obj.in_sync == NOT_COMPARED)
    notes = [f"{ignored} ignored"] * bool(ignored) + [f"{pending} not compared yet"] * bool(pending)
    return f"{line} ({', '.join(notes)})" if notes else line


def render_json(report: DriftReport) -> str:
    """`{"objects": [...], "drifted": N, "checked": M}` with every checked object."""
    document = {
        "objects": [
            {
                "kind": obj.kind,
                "namespace": obj.namespace,
                "name": obj.name,
                "externalName": obj.external_name,
                "inSync": obj.in_sync or None,
                "reason": obj.reason,
                "message": obj.message,
                "drift": [
                    {"field": e.field, "desired": e.desired, "actual": e.actual, "since": e.since} for e in obj.drift
                ],
            }
            for obj in report.objects
        ],
        "drifted": report.drifted,
        "checked": report.checked,
    }
    return json.dumps(document, indent=2) + "\n"


def aligned(rows: Sequence[Sequence[str]], gap: int = 2) -> list[str]:
    """Rows as left-aligned columns (the last column is not padded)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "".join(cell.ljust(width + gap) for cell, width in zip(row[:-1], widths, strict=False)) + row[-1]
        for row in rows
    ]
