"""`kumo status KIND/NAME`: why an object is (not) Ready, in plain words.

Reads the object's conditions, its recent events and its connection Secret (names of keys only,
never values) and explains what is happening and what comes next. Read-only. The explanation is
a pure function of that data, so it is tested without a cluster.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from kumo.api import connection_secret_name
from kumo.providers.base import Kind

KINDS = {"database": ("Database", "databases"), "bucket": ("Bucket", "buckets")}
ALIASES = {"databases": "database", "db": "database", "kdb": "database", "buckets": "bucket", "kbk": "bucket"}

EXPLANATIONS = {
    ("Ready", "Creating"): "the cloud is still creating it{state}; kumo looks again after a few seconds, "
    "backing off to every 30 s, with no thread waiting",
    ("Ready", "Deleting"): "it is being deleted{state}; the finalizer is released once the cloud resource is gone",
    ("Ready", "Unavailable"): "the cloud resource exists but cannot be used{state}; see the cloud console or the "
    "provider's events for why",
    ("Synced", "ReconcileError"): "the last attempt failed with the cloud's message: {message}",
    ("Synced", "InvalidSpec"): "the provider refused the spec before calling the cloud: {message}. Fix that field "
    "and apply again; nothing was created",
    ("Synced", "OwnedByAnotherResource"): "{message}. kumo never modifies or deletes what another object owns; "
    "choose another spec.externalName, or adopt an unowned resource explicitly",
    ("InSync", "Drifted"): "the cloud no longer matches the spec: {message}",
    ("InSync", "Missing"): "{message}; under driftPolicy Report kumo does not recreate it",
}


@dataclass
class Explanation:
    headline: str
    lines: list[str] = field(default_factory=list)
    ready: bool = False


def _conditions(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}


def explain(obj: dict[str, Any], events: list[dict[str, str]], secret_keys: list[str] | None) -> Explanation:
    """What `kumo status` says about one object (pure: no I/O)."""
    meta, status = obj["metadata"], obj.get("status") or {}
    at = status.get("atProvider") or {}
    where = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
    conditions = _conditions(obj)
    ready = conditions.get("Ready", {}).get("status") == "True"
    facts = ", ".join(f"{k}: {at[k]}" for k in ("provider", "externalName", "state") if at.get(k))
    result = Explanation(
        f"{where} is {'Ready' if ready else 'not Ready'}" + (f" ({facts})" if facts else ""), ready=ready
    )
    if not conditions:
        result.lines.append(
            "Why: kumo has not reported on it yet. Is the controller running and watching this namespace? "
            "(kubectl -n kumo-system get deploy kumo-controller; its logs say what it watches)"
        )
    for type_ in ("Ready", "Synced", "InSync"):
        if type_ in conditions:
            result.lines.append(_condition_line(conditions[type_]))
    result.lines += _why(conditions, at)
    if meta.get("generation") != status.get("observedGeneration") and conditions:
        result.lines.append(
            f"Note: spec generation {meta.get('generation')} is not applied yet "
            f"(last applied: {status.get('observedGeneration', 'none')})."
        )
    result.lines.append(_next_step(conditions, ready))
    result.lines.append(_secret_line(obj, secret_keys))
    if events:
        result.lines.append("Recent events:")
        result.lines += [f"  {e['type']:7} {e['reason']:26} {e['message']}" for e in events[-5:]]
    return result


def _condition_line(condition: dict[str, Any]) -> str:
    since = _age(condition.get("lastTransitionTime", ""))
    message = f"  {condition['message']}" if condition.get("message") else ""
    return f"{condition['type']:7} {condition['status']:7} {condition.get('reason', ''):24} since {since}{message}"


def _why(conditions: dict[str, dict[str, Any]], at: dict[str, Any]) -> list[str]:
    state = f" (cloud state: {at['state']})" if at.get("state") else ""
    lines = []
    for type_ in ("Synced", "Ready", "InSync"):
        condition = conditions.get(type_)
        if not condition or condition.get("status") == "True":
            continue
        template = EXPLANATIONS.get((type_, condition.get("reason", "")))
        if template:
            lines.append("Why: " + template.format(state=state, message=condition.get("message", "")))
    return lines


def _next_step(conditions: dict[str, dict[str, Any]], ready: bool) -> str:
    synced = conditions.get("Synced", {})
    if synced.get("status") == "False":
        if synced.get("reason") in ("InvalidSpec", "OwnedByAnotherResource"):
            return "Next: kumo retries about every 5 minutes, and at once when the spec changes."
        if synced.get("reason") == "Paused":
            return "Next: nothing until the kumo.dev/paused annotation is removed."
        return (
            "Next: kumo retries at once on a spec change; otherwise transient cloud errors are retried with "
            "exponential backoff (1 s doubling, at most 5 minutes) and configuration, permission or quota "
            "errors about every 5 minutes."
        )
    if ready:
        return "Next: drift sweeps compare it with the cloud (every 60 s by default, see kumo.dev/sweep-interval)."
    return "Next: kumo keeps checking until it is ready."


def _secret_line(obj: dict[str, Any], keys: list[str] | None) -> str:
    name = connection_secret_name(Kind(obj["kind"]), obj)
    if keys is None:
        return f"Connection Secret {name}: not written yet"
    return f"Connection Secret {name}: keys {', '.join(sorted(keys))}"


def _age(stamp: str) -> str:
    try:
        then = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "?"
    seconds = int((datetime.datetime.now(datetime.UTC) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def parse_target(target: str) -> tuple[str, str, str]:
    """'database/orders-db' -> (kind, plural, name); raises ValueError with a usable message."""
    kind, _, name = target.partition("/")
    kind = ALIASES.get(kind.lower(), kind.lower())
    if kind not in KINDS or not name:
        raise ValueError(f"expected KIND/NAME with KIND database or bucket, got {target!r}")
    return (*KINDS[kind], name)


def render(explanation: Explanation) -> str:
    return "\n".join([explanation.headline, *(f"  {line}" for line in explanation.lines)])
