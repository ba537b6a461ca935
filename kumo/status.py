"""`kumo status KIND/NAME`: why an object is (not) Ready, in plain words.

Reads the object's conditions, its recent events and its connection Secret (names of keys only,
never values) and explains what is happening and what comes next. Read-only. The explanation is
a pure function of that data, so it is tested without a cluster.

Every name it matches on (kinds, plurals, short names, condition types and reasons, the paused
annotation) comes from kumo/api.py, and every delay it promises from the controller's own
settings (the disposition table's `Timing` and the sweep interval's default), and a failure is
named by the step its message starts with (controller/core/disposition.py): the cloud's answer
to an observe, create, update, delete or password call is the cloud's, anything else is kumo's
own (its provider config, its Kubernetes writes, a bug), so what it says cannot drift from what
the controller does. It gives exactly one "Why" line:
the cause that explains the others (a deletion the cloud refuses explains a Synced=False, a
failed reconcile explains a Ready=False Creating), never two that contradict each other.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo import api
from kumo.controller.core.disposition import Pace, Step, Timing
from kumo.controller.runtime.config import ControllerConfig
from kumo.providers.base import Kind

# `db/NAME` was accepted before kumo/api.py named the short names (`kdb`); it still is.
LEGACY_SHORT_NAMES = {"db": api.DATABASE}
# Words a cloud uses when it refuses to delete a protected resource: RDS ("Cannot delete
# protected DB Instance, please disable deletion protection and try again"), Cloud SQL ("The
# instance is protected").
DELETION_PROTECTION_WORDS = ("deletion protection", "protected")
# How to turn deletion protection off in each cloud, for a Database stuck deleting: the AWS CLI's
# modify-db-instance --no-deletion-protection
# (https://docs.aws.amazon.com/cli/latest/reference/rds/modify-db-instance.html) and gcloud's
# instances patch --no-deletion-protection (https://cloud.google.com/sql/docs/postgres/deletion-protection).
UNPROTECT = {
    "aws": "aws rds modify-db-instance --db-instance-identifier {external} --no-deletion-protection "
    "--apply-immediately",
    "gcp": "gcloud sql instances patch {external} --no-deletion-protection",
}


@dataclass
class Explanation:
    headline: str
    lines: list[str] = field(default_factory=list)
    ready: bool = False


def _minutes(seconds: float) -> str:
    """A delay as a person says it: "30 s", "1 minute", "5 minutes"."""
    if seconds < 60 or seconds % 60:
        return f"{seconds:g} s"
    minutes = seconds / 60
    return f"{minutes:g} minute" + ("" if minutes == 1 else "s")


def _retries() -> dict[str, str]:
    """The controller's retry paces, in words, from its own defaults."""
    timing = Timing()

    def doubling(pace: Pace) -> str:
        retry = timing.retry(pace)
        assert retry is not None
        return f"{_minutes(retry.first)} doubling, at most {_minutes(retry.cap)}"

    return {
        "poll_max": _minutes(timing.poll_max),
        "terminal": _minutes(timing.terminal_retry),
        "backoff": doubling(Pace.BACKOFF),
        "config": doubling(Pace.SOON),
        "sweep": _minutes(float(ControllerConfig.sweep_interval)),
    }


# Steps whose failure carries the cloud's own answer; every other step's failure is kumo's.
CLOUD_STEPS = frozenset({Step.OBSERVE, Step.CREATE, Step.UPDATE, Step.DELETE, Step.SET_PASSWORD})


def _failure(message: str) -> str:
    """A Synced=False ReconcileError message, saying whose error it is."""
    step = next((step for step in Step if message.startswith(f"{step.failure}: ")), None)
    if step is None:  # a controller older than the step names
        return f"the last attempt failed: {message}"
    detail = message[len(step.failure) + 2 :]
    if step in CLOUD_STEPS:
        return f"the cloud refused ({step.failure}): {detail}"
    if step is Step.CONNECT:
        return (
            f"kumo cannot use the provider config ({step.failure}): {detail}. This is kumo's configuration, "
            "not the cloud: check the ProviderConfig, its credentials Secret and the installed provider plugins"
        )
    if step is Step.RECONCILE:
        return f"kumo itself failed ({detail}); this is a bug in kumo, please report it with the controller's log"
    return f"kumo's own step failed ({step.failure}): {detail}"


EXPLANATIONS = {
    (api.READY, api.CREATING): "the cloud is still creating it{state}; kumo looks again after a few seconds, "
    "backing off to every {poll_max}, with no thread waiting",
    (api.READY, api.DELETING): "it is being deleted{state}; the finalizer is released once the cloud resource is gone",
    (api.READY, api.UNAVAILABLE): "the cloud resource exists but cannot be used{state}; see the cloud console or the "
    "provider's events for why",
    (api.SYNCED, api.RECONCILE_ERROR): "{failure}",
    (api.SYNCED, api.INVALID_SPEC): "the provider refused the spec before calling the cloud: {message}. Fix that "
    "field and apply again; nothing was created",
    (api.SYNCED, api.OWNED_BY_ANOTHER): "{message}. kumo never modifies or deletes what another object owns; "
    "choose another spec.externalName, or adopt an unowned resource explicitly",
    (api.SYNCED, api.PAUSED): "{message}",
    (api.IN_SYNC, api.DRIFTED): "the cloud no longer matches the spec: {message}",
    (api.IN_SYNC, api.MISSING): "{message}; under driftPolicy Report kumo does not recreate it",
}


def _conditions(obj: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def explain(obj: dict[str, Any], events: list[dict[str, str]], secret_keys: list[str] | None) -> Explanation:
    """What `kumo status` says about one object (pure: no I/O)."""
    meta, status = obj["metadata"], obj.get("status") or {}
    at = status.get("atProvider") or {}
    where = f"{obj['kind']} {meta['namespace']}/{meta['name']}"
    conditions = _conditions(obj)
    ready = conditions.get(api.READY, {}).get("status") == "True"
    deleting = bool(meta.get("deletionTimestamp"))
    facts = ", ".join(f"{k}: {at[k]}" for k in ("provider", "externalName", "state") if at.get(k))
    verdict = "being deleted" if deleting else ("Ready" if ready else "not Ready")
    result = Explanation(f"{where} is {verdict}" + (f" ({facts})" if facts else ""), ready=ready and not deleting)
    if not conditions and not deleting:
        result.lines.append(
            "Why: kumo has not reported on it yet. Is the controller running and watching this namespace? "
            "(kubectl -n kumo-system get deploy kumo-controller; its logs say what it watches)"
        )
    for type_ in api.CONDITION_ORDER:
        if type_ in conditions:
            result.lines.append(_condition_line(conditions[type_]))
    result.lines += _deleting(obj, conditions) if deleting else _why(conditions, at)
    if meta.get("generation") != status.get("observedGeneration") and conditions and not deleting:
        result.lines.append(
            f"Note: spec generation {meta.get('generation')} is not applied yet "
            f"(last applied: {status.get('observedGeneration', 'none')})."
        )
    if not deleting:
        result.lines.append(_next_step(conditions, ready))
    result.lines.append(_secret_line(obj, secret_keys))
    if events:
        result.lines.append("Recent events:")
        result.lines += [f"  {e['type']:7} {e['reason']:26} {e['message']}" for e in events[-5:]]
    return result


def _condition_line(condition: Mapping[str, Any]) -> str:
    since = _age(condition.get("lastTransitionTime", ""))
    message = f"  {condition['message']}" if condition.get("message") else ""
    return f"{condition['type']:7} {condition['status']:7} {condition.get('reason', ''):24} since {since}{message}"


def _why(conditions: Mapping[str, Mapping[str, Any]], at: Mapping[str, Any]) -> list[str]:
    """The one condition that explains the others, in words (none when all is well)."""
    cause = _cause(conditions)
    if cause is None:
        return []
    template = EXPLANATIONS.get((cause["type"], cause.get("reason", "")))
    if template is None:
        return [f"Why: {cause['type']} is {cause['status']} ({cause.get('reason', '')}): {cause.get('message', '')}"]
    state = f" (cloud state: {at['state']})" if at.get("state") else ""
    message = cause.get("message", "")
    return ["Why: " + template.format(state=state, message=message, failure=_failure(message), **_retries())]


def _cause(conditions: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """A failed reconcile explains a Ready=False (the Creating it leaves behind is a consequence);
    a resource missing in the cloud explains a Ready=False Unavailable; otherwise Ready's own
    reason, then drift."""
    synced, ready, in_sync = (conditions.get(t) or {} for t in (api.SYNCED, api.READY, api.IN_SYNC))
    if synced.get("status") == "False":
        return synced
    if in_sync.get("status") == "False" and in_sync.get("reason") == api.MISSING:
        return in_sync
    if ready and ready.get("status") != "True":
        return ready
    if in_sync.get("status") == "False":
        return in_sync
    return None


def _deleting(obj: Mapping[str, Any], conditions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """An object with a deletionTimestamp: what the deletion waits for, and what unblocks it."""
    synced = conditions.get(api.SYNCED) or {}
    external = ((obj.get("status") or {}).get("atProvider") or {}).get("externalName") or "the cloud resource"
    if synced.get("status") != "False":
        return [
            f"Why: it is being deleted; kumo deletes {external} (or keeps it, under deletionPolicy Retain), "
            "then releases its finalizer and the object goes."
        ]
    message = synced.get("message", "")
    lines = [f"Why: it is stuck deleting: the cloud refuses to delete {external}: {message}"]
    plural, meta = api.MANAGED[Kind(obj["kind"])].plural, obj["metadata"]
    retain = (
        f"kubectl -n {meta['namespace']} patch {plural}.{api.GROUP} {meta['name']} --type merge "
        """-p '{"spec":{"deletionPolicy":"Retain"}}'"""
    )
    retry = f"kumo retries the delete (about every {_retries()['terminal']} for an error only a person fixes)"
    if any(word in message.lower() for word in DELETION_PROTECTION_WORDS):
        provider = ((obj.get("status") or {}).get("atProvider") or {}).get("provider", "")
        commands = {name: command.format(external=external) for name, command in UNPROTECT.items()}
        shown = commands.get(provider) or "; ".join(f"{name.upper()}: {command}" for name, command in commands.items())
        lines.append(
            "Fix: deletion protection is on in the cloud. Once an object is being deleted kumo applies no spec "
            f"change, so turn it off in the cloud itself ({shown}); {retry}. To keep the resource and let the "
            f"object go instead: {retain}"
        )
    else:
        lines.append(f"Fix: {retry}; to keep the resource and let the object go instead: {retain}")
    return lines


def _next_step(conditions: Mapping[str, Mapping[str, Any]], ready: bool) -> str:
    synced, timings = conditions.get(api.SYNCED, {}), _retries()
    if synced.get("status") == "False":
        if synced.get("reason") in (api.INVALID_SPEC, api.OWNED_BY_ANOTHER):
            return f"Next: kumo retries about every {timings['terminal']}, and at once when the spec changes."
        if synced.get("reason") == api.PAUSED:
            return f"Next: nothing until the {api.ANNOTATION_PAUSED} annotation is removed."
        if str(synced.get("message", "")).startswith(f"{Step.CONNECT.failure}: "):
            return (
                f"Next: a missing ProviderConfig or credentials Secret is looked for again within seconds "
                f"({timings['config']}) and at once when it is applied; a provider plugin that is not "
                f"installed about every {timings['terminal']}."
            )
        return (
            "Next: kumo retries at once on a spec change; otherwise errors that may pass by themselves "
            f"(throttling, 5xx) with backoff ({timings['backoff']}), and errors only a person fixes "
            f"(access denied, quota, bad input) about every {timings['terminal']}."
        )
    if ready:
        return (
            f"Next: drift sweeps compare it with the cloud (every {timings['sweep']} by default, "
            f"see {api.ANNOTATION_SWEEP_INTERVAL})."
        )
    return "Next: kumo keeps checking until it is ready."


def _secret_line(obj: Mapping[str, Any], keys: list[str] | None) -> str:
    name = api.connection_secret_name(Kind(obj["kind"]), obj)
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
    """KIND/NAME in every form `kubectl get kumo` prints or kubectl accepts -> (kind, plural, name):
    the kind, its plural or short name, each bare or qualified with the group
    (`database.kumo.dev/orders-db`, `databases/orders-db`, `databases.kumo.dev/orders-db`,
    `kdb/orders-db`, `Database/orders-db`). Raises ValueError with a usable message."""
    text, _, name = target.strip().partition("/")
    resource = api.resource_named(text) or LEGACY_SHORT_NAMES.get(text.strip().lower())
    if resource is not None and resource not in api.MANAGED.values():
        raise ValueError(
            f"kumo status explains Databases and Buckets; for a {resource.kind}: "
            f"kubectl describe {resource.plural}.{api.GROUP}/{name or 'NAME'}"
        )
    if resource is None or not name or "/" in name:
        forms = ", ".join(f"{r.singular}/NAME" for r in api.MANAGED.values())
        raise ValueError(
            f"expected KIND/NAME as kubectl prints it ({forms}, or database.{api.GROUP}/NAME), got {target!r}"
        )
    return resource.kind, resource.plural, name


def render(explanation: Explanation) -> str:
    return "\n".join([explanation.headline, *(f"  {line}" for line in explanation.lines)])
