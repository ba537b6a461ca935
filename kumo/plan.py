"""`kumo plan`: what applying manifests would do in the cloud, field by field, before applying.

Like `terraform plan`, and read-only the same way: no Kubernetes write, no cloud write. Each
Database and Bucket in the files (or in a directory's *.yaml, *.yml and *.json, as with
`kubectl apply -f DIR`) first goes through a server-side dry run with strict field validation,
so a manifest `kubectl apply` would reject (a misspelt field, `size: huge`) is **invalid** with
the API server's own message, and what is judged is the object as it would be stored: the CRD's
defaults, the generation the edit gives it, the live status. Then the provider config is resolved
and the provider's view of the object built exactly as the controller does
(`Reconciler.connect` and `Reconciler.resource_for`, so the external name is the one `kumo run`
uses), the provider validates it, and one `observe()` of the cloud is judged by the controller's
own decisions (controller/core/ownership.py, controller/core/driftverdict.py):

- nothing there yet: **create**, listing every setting (not under ObserveOnly, and not for a
  resource deleted outside kumo under driftPolicy Report, which is only reported Missing);
- there and this object's (tagged, recorded in its status, or under the name derived for it) or
  adoption asked for: **update** with `current -> desired` for each field the controller would
  send, or **no-op**; drifted fields it leaves alone are listed with why (report only under
  Report or ObserveOnly; cannot be corrected, such as a grown disk); Ignore compares nothing,
  and a paused object is not looked at;
- there and owned by another object, or not by kumo at all: **conflict**, with the message the
  controller's refusal shows;
- values the API server or the provider rejects: **invalid**; anything that stops the look
  (provider config unresolved, cloud unreachable, no permission for the dry run): **error**.

Exit codes follow `terraform plan -detailed-exitcode`: 0 no changes, 2 changes to make, 1 when
any manifest cannot be applied as written (invalid, conflict, error) or the plan itself failed.
Used by `kumo.cli`; `judge` and the renderers are pure and unit-tested from plain values, and
tests/unit/test_plan_agrees.py runs `judge` and the reconciler side by side.
"""

from __future__ import annotations

import asyncio
import copy
import enum
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import yaml

from kumo.api import GROUP, MANAGED
from kumo.controller.core import driftverdict, ownership
from kumo.controller.core.drift import DriftPolicy, why_uncorrectable
from kumo.controller.core.driftverdict import Absent, Situation, situation_of
from kumo.controller.core.kubeapi import KubeError, NotFound
from kumo.controller.core.providerconfig import ProviderConfigError
from kumo.controller.core.reconciler import OBSERVE_ONLY_MESSAGE, PAUSED_MESSAGE, Reconciler
from kumo.controller.core.resources import InvalidSpec, external_name
from kumo.controller.runtime.kube import KubeClient, custom_path
from kumo.controller.runtime.kubehttp import Credentials, KubeHTTP, Refusal
from kumo.providers.base import FieldDrift, Kind, Observation, ProviderError, Terminal
from kumo.providers.registry import ProviderRegistry
from kumo.version import kumo_version

EXIT_NO_CHANGES = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

# A new object has no uid until the API server assigns one; the ownership tags it will carry
# are rendered as known after apply.
PLACEHOLDER_UID = "00000000-0000-0000-0000-000000000000"
KNOWN_AFTER_APPLY = "(known after apply)"
SENSITIVE = "(sensitive)"
# No provider renders a secret into desired(); should one ever do, its value still never prints.
_SENSITIVE_FIELD = re.compile(r"password|secret|credential|token|private.?key", re.IGNORECASE)
REQUEST_TIMEOUT = 35.0  # seconds for one read or dry run
DRY_RUN_ATTEMPTS = 3
PLAN_USER_AGENT = f"kumo-plan/{kumo_version()}"
# How a drifted field that applying leaves alone is marked (driftverdict decides which).
REPORT_ONLY = "report only, not changed"
CANNOT_CORRECT = "cannot be corrected"
IGNORED_NOTE = "driftPolicy Ignore: settings are not compared"


class PlanInputError(Exception):
    """A manifest file cannot be read or parsed: nothing was planned."""


class ApiRefusal(Exception):
    """The API server refused the server-side dry run of a manifest."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    @classmethod
    def of(cls, error: KubeError) -> ApiRefusal:
        """From the client's error; its cause is the server's answer, with the status."""
        refusal = error.__cause__
        return cls(refusal.status if isinstance(refusal, Refusal) else 0, str(error))

    @property
    def action(self) -> Action:
        """400 (unknown or duplicate field under strict validation, malformed) and 422 (the CRD
        schema: enum, pattern, CEL rules) mean `kubectl apply` would reject the manifest as written;
        anything else (403, the CRD not installed, a webhook down) stops the look."""
        return Action.INVALID if self.status in (400, 422) else Action.ERROR


class Action(enum.StrEnum):
    CREATE = "create"
    UPDATE = "update"
    NOOP = "no-op"
    CONFLICT = "conflict"
    INVALID = "invalid"
    ERROR = "error"


SYMBOLS = {
    Action.CREATE: "+",
    Action.UPDATE: "~",
    Action.NOOP: "=",
    Action.CONFLICT: "!",
    Action.INVALID: "x",
    Action.ERROR: "?",
}
CHANGES = (Action.CREATE, Action.UPDATE)
PROBLEMS = (Action.INVALID, Action.CONFLICT, Action.ERROR)
PROBLEM_WORDS = {Action.INVALID: "is invalid", Action.CONFLICT: "conflicts", Action.ERROR: "could not be planned"}


@dataclass(frozen=True)
class Target:
    """The object a change is about, and where it lives in the cloud (when known)."""

    kind: str
    namespace: str
    name: str
    external_name: str = ""
    provider: str = ""

    @property
    def object_ref(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class FieldChange:
    """One setting: `current` is None for a create. `note` is empty for a value applying writes;
    otherwise it says why a drifted value stays as it is (report only, cannot be corrected)."""

    field: str
    current: Any
    desired: Any
    note: str = ""


@dataclass(frozen=True)
class Change:
    target: Target
    action: Action
    fields: tuple[FieldChange, ...] = ()
    messages: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    skipped: tuple[str, ...] = ()  # documents of other kinds, each with why

    def count(self, action: Action) -> int:
        return sum(1 for change in self.changes if change.action is action)

    @property
    def summary(self) -> dict[str, int]:
        return {
            "create": self.count(Action.CREATE),
            "update": self.count(Action.UPDATE),
            "unchanged": self.count(Action.NOOP),
            "invalid": self.count(Action.INVALID),
            "conflict": self.count(Action.CONFLICT),
            "error": self.count(Action.ERROR),
        }

    @property
    def exit_code(self) -> int:
        if any(change.action in PROBLEMS for change in self.changes):
            return EXIT_ERROR
        if any(change.action in CHANGES for change in self.changes):
            return EXIT_CHANGES
        return EXIT_NO_CHANGES

    def problem_line(self) -> str:
        """One line naming the first manifest that cannot be applied as written."""
        problems = [change for change in self.changes if change.action in PROBLEMS]
        if not problems:
            return ""
        first = problems[0]
        detail = f": {first.messages[0]}" if first.messages else ""
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return f"{first.target.kind} {first.target.object_ref} {PROBLEM_WORDS[first.action]}{detail}{more}"


# ---------------------------------------------------------------------- the decision (pure)


def judge(
    target: Target,
    desired: Mapping[str, Any],
    observation: Observation | None,
    *,
    body: Mapping[str, Any],
    cluster_id: str,
    default_policy: DriftPolicy = DriftPolicy.CORRECT,
) -> Change:
    """What applying would do, given the settings the spec renders to and what the cloud holds.

    `body` is the object as the controller will see it once applied (the API server's dry-run
    answer: defaults, generation, the live status and uid; a new object carries PLACEHOLDER_UID).
    Every decision is the controller's own function: ownership (controller/core/ownership.py) and
    what happens to each drifted field or to a missing resource (controller/core/driftverdict.py),
    so a conflict here is a refusal there and an update here is an update call there.
    """
    situation = situation_of(body, default_policy)
    if situation.paused:
        return Change(target, Action.NOOP, messages=(f"paused: no change ({PAUSED_MESSAGE})",))
    if observation is None:
        return _judge_absent(target, desired, body, situation)
    messages: list[str] = []
    if situation.observe_only:
        # ObserveOnly reads whatever is there and never writes: ownership is not judged.
        messages.append(OBSERVE_ONLY_MESSAGE)
    else:
        claim = ownership.judge_object(body, observation, cluster_id)
        if claim.conflict:
            return Change(target, Action.CONFLICT, messages=(claim.message,))
        if claim.message:
            messages.append(claim.message)
        if not observation.ready:
            messages.append(f"not ready yet in the cloud (state {observation.state}): changes wait until it is")
    verdict = driftverdict.judge(observation.drift, situation)
    fields = _field_changes(verdict.update, "")
    if verdict.ignored:
        messages.append(IGNORED_NOTE)  # drift is not compared, so none is shown
    else:
        fields += _field_changes(verdict.report_only, REPORT_ONLY) + _field_changes(verdict.uncorrectable, "")
    return Change(target, Action.UPDATE if verdict.update else Action.NOOP, fields, tuple(messages))


def _judge_absent(target: Target, desired: Mapping[str, Any], body: Mapping[str, Any], situation: Situation) -> Change:
    existed = bool(((body.get("status") or {}).get("atProvider") or {}).get("externalName"))
    absent = driftverdict.judge_absent(existed, situation)
    if absent is Absent.OBSERVE_ONLY:
        return Change(target, Action.NOOP, messages=(f"{OBSERVE_ONLY_MESSAGE}; it does not exist",))
    if absent is Absent.REPORT_MISSING:
        note = "deleted outside kumo; driftPolicy Report: reported Missing, not recreated"
        return Change(target, Action.NOOP, messages=(note,))
    fields = tuple(FieldChange(name, None, _shown(name, value)) for name, value in desired.items())
    messages = ("recreates it: it was deleted outside kumo",) if absent is Absent.RECREATE else ()
    return Change(target, Action.CREATE, fields, messages)


def _field_changes(drift: tuple[FieldDrift, ...], note: str) -> tuple[FieldChange, ...]:
    """Drifted fields as the plan shows them; each one the cloud cannot undo says why."""
    return tuple(
        FieldChange(
            item.field,
            _shown(item.field, item.actual),
            _shown(item.field, item.desired),
            note if item.correctable else f"{CANNOT_CORRECT}: {why_uncorrectable(item)}",
        )
        for item in drift
    )


def _shown(name: str, value: Any) -> Any:
    """A value as the plan may show it: never a secret, placeholders as known after apply."""
    if _SENSITIVE_FIELD.search(name):
        return SENSITIVE
    if isinstance(value, Mapping):
        return {key: _shown(str(key), item) for key, item in value.items()}
    if value == PLACEHOLDER_UID:
        return KNOWN_AFTER_APPLY
    return value


# ---------------------------------------------------------------------- rendering


def render_table(plan: Plan) -> str:
    """terraform-style: one header line per object, then its fields or messages, then the summary."""
    lines: list[str] = []
    for change in plan.changes:
        target = change.target
        header = f"{SYMBOLS[change.action]} {change.action} {target.kind} {target.object_ref}"
        if target.external_name:
            header += f" ({target.provider or '?'}: {target.external_name})"
        lines.append(header)
        for item in change.fields:
            if change.action is Action.CREATE:
                lines.append(f"    {item.field}: {value_text(item.desired)}")
            else:
                note = f"  ({item.note})" if item.note else ""
                lines.append(f"    {item.field}: {value_text(item.current)} -> {value_text(item.desired)}{note}")
        lines += [f"    {message}" for message in change.messages]
    lines += [f"- skipped {reason}" for reason in plan.skipped]
    if lines:
        lines.append("")
    lines.append(summary_line(plan))
    return "\n".join(lines) + "\n"


def summary_line(plan: Plan) -> str:
    counts = plan.summary
    text = (
        f"Plan: {counts['create']} to create, {counts['update']} to update, {counts['unchanged']} unchanged, "
        f"{counts['invalid']} invalid, {counts['conflict']} conflicts"
    )
    if counts["error"]:
        text += f", {counts['error']} failed"
    return text + "."


def _field_json(item: FieldChange) -> dict[str, Any]:
    shown = {"field": item.field, "current": item.current, "desired": item.desired}
    return {**shown, "note": item.note} if item.note else shown


def value_text(value: Any) -> str:
    if value in (KNOWN_AFTER_APPLY, SENSITIVE):
        return str(value)
    return json.dumps(value, sort_keys=True, default=str)


def render_json(plan: Plan) -> str:
    document = {
        "changes": [
            {
                "kind": change.target.kind,
                "namespace": change.target.namespace,
                "name": change.target.name,
                "externalName": change.target.external_name,
                "provider": change.target.provider,
                "action": str(change.action),
                "fields": [_field_json(f) for f in change.fields],
                "messages": list(change.messages),
            }
            for change in plan.changes
        ],
        "summary": plan.summary,
        "skipped": list(plan.skipped),
    }
    return json.dumps(document, indent=2, default=str) + "\n"


# ---------------------------------------------------------------------- reading manifests


@dataclass(frozen=True)
class Document:
    source: str  # "file.yaml#2", for messages
    body: Mapping[str, Any]


# What kubectl reads from a directory given to -f (not recursively), in name order.
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")


def load_documents(paths: Sequence[str]) -> list[Document]:
    """Every YAML document in the files ("-" is stdin; a directory stands for its *.yaml, *.yml
    and *.json files, sorted, as with `kubectl apply -f DIR`); empty documents are dropped."""
    documents: list[Document] = []
    for path in _manifest_files(paths):
        try:
            text = sys.stdin.read() if path == "-" else Path(path).read_text()
            loaded = list(yaml.safe_load_all(text))
        except OSError as error:
            raise PlanInputError(f"{path}: {error.strerror or error}") from None
        except yaml.YAMLError as error:
            where = getattr(error, "problem_mark", None)
            line = f" (line {where.line + 1})" if where is not None else ""
            raise PlanInputError(f"{path}: not valid YAML{line}: {getattr(error, 'problem', error)}") from None
        for index, body in enumerate(loaded, start=1):
            if body is None:
                continue
            if not isinstance(body, Mapping):
                raise PlanInputError(f"{path}: document {index} is not a mapping")
            documents.append(Document(f"{path}#{index}", body))
    return documents


def _manifest_files(paths: Sequence[str]) -> list[str]:
    files: list[str] = []
    for path in paths:
        if path != "-" and Path(path).is_dir():
            found = sorted(str(p) for p in Path(path).iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
            if not found:
                raise PlanInputError(f"{path}: no {', '.join(MANIFEST_SUFFIXES)} files in this directory")
            files += found
        else:
            files.append(path)
    return files


def managed_kind(body: Mapping[str, Any]) -> Kind | None:
    """The kumo kind of a document, None for anything else."""
    group = str(body.get("apiVersion", "")).split("/")[0]
    kind = body.get("kind")
    if group != GROUP or kind not in {str(k) for k in MANAGED}:
        return None
    return Kind(kind)


# ---------------------------------------------------------------------- planning (reads only)


class PlanKube(KubeClient):
    """The controller's Kubernetes client with the only writes on the plan's path turned off.
    Resolving a provider config as the controller does puts the in-use finalizer on a namespaced
    ProviderConfig and its credentials Secret (controller/core/providerconfig.py); that is the
    controller's to do when an object really uses them, and nothing would release it after a plan.
    """

    async def set_provider_config_finalizers(
        self, namespace: str, name: str, current: list[str], wanted: list[str]
    ) -> None:
        return None

    async def set_secret_finalizers(self, namespace: str, name: str, current: list[str], wanted: list[str]) -> None:
        return None


@dataclass
class Planner:
    """Plans documents against one cluster and its clouds; reads only."""

    kube: KubeClient
    providers: ProviderRegistry
    cluster_id: str
    controller_namespace: str
    default_namespace: str
    default_drift_policy: DriftPolicy = DriftPolicy.CORRECT  # `kumo run --drift-policy`
    _reconciler: Reconciler = field(init=False)

    def __post_init__(self) -> None:
        # The controller's own code for provider config resolution and the provider's view of
        # an object, so the plan names what the controller would create.
        self._reconciler = Reconciler(
            self.kube, self.providers, cluster_id=self.cluster_id, controller_namespace=self.controller_namespace
        )

    async def plan(self, documents: Sequence[Document]) -> Plan:
        changes, skipped = [], []
        for document in documents:
            kind = managed_kind(document.body)
            if kind is None:
                meta = document.body.get("metadata") or {}
                what = f"{document.body.get('kind', 'document')} {meta.get('name', '')}".strip()
                skipped.append(f"{what} ({document.source}): kumo plan covers {GROUP} Databases and Buckets only")
                continue
            changes.append(await self.plan_one(kind, document.body))
        return Plan(tuple(changes), tuple(skipped))

    async def plan_one(self, kind: Kind, manifest: Mapping[str, Any]) -> Change:
        meta = manifest.get("metadata") or {}
        namespace = str(meta.get("namespace") or self.default_namespace)
        target = Target(str(kind), namespace, str(meta.get("name") or ""))
        if not target.name:
            return Change(target, Action.INVALID, messages=("metadata.name: required",))
        for attempt in range(1, DRY_RUN_ATTEMPTS + 1):
            live = await self._live(kind, namespace, target.name)
            try:
                body = await self._dry_run(kind, namespace, manifest, live)
                break
            except ApiRefusal as refusal:
                # 409: the object changed between the read and the dry run (the controller
                # writes its status): read it again.
                if refusal.status != 409 or attempt == DRY_RUN_ATTEMPTS:
                    return Change(target, refusal.action, messages=(refusal.message,))
        judged = partial(judge, body=body, cluster_id=self.cluster_id, default_policy=self.default_drift_policy)
        if situation_of(body, self.default_drift_policy).paused:
            # The controller does nothing at all for a paused object, not even resolve its config.
            paused = Target(target.kind, namespace, target.name, external_name(body, self.cluster_id))
            return judged(paused, {}, None)
        try:
            provider, client, settings = await self._reconciler.connect(kind, body)
        except Terminal as error:  # the provider does not manage this kind
            return Change(target, Action.INVALID, messages=(_line(error),))
        except (ProviderConfigError, ProviderError) as error:
            return Change(target, Action.ERROR, messages=(_line(error),))
        target = Target(target.kind, namespace, target.name, provider=settings.provider)
        try:
            resource = self._reconciler.resource_for(kind, body, settings)
        except InvalidSpec as error:  # a value the controller does not know, named by its field
            return Change(target, Action.INVALID, messages=(_line(error),))
        target = Target(target.kind, namespace, target.name, resource.external_name, settings.provider)
        problems = provider.validate(resource)
        if problems:
            return Change(target, Action.INVALID, messages=tuple(problems))
        try:
            observation = await client.observe(resource)
        except ProviderError as error:
            return Change(target, Action.ERROR, messages=(_line(error),))
        return judged(target, client.desired(resource), observation)

    async def _dry_run(
        self, kind: Kind, namespace: str, manifest: Mapping[str, Any], live: Mapping[str, Any] | None
    ) -> dict[str, Any]:
        """The object as the API server would store it, from a server-side dry run with strict
        field validation (what `kubectl apply --dry-run=server` checks): CRD schema and defaults,
        admission, and the generation it would get. A new object is created, an existing one
        replaced by its live self with the manifest's spec (and every other top-level field)
        and the manifest's annotations and labels over the live ones. A new object's uid is not
        known until it is created: PLACEHOLDER_UID stands for it."""
        plural = MANAGED[kind].plural
        options = {"dryRun": "All", "fieldValidation": "Strict"}
        wanted = dry_run_body(manifest, live, namespace)
        try:
            if live is None:
                path, method = custom_path(plural, namespace), "POST"
            else:
                path, method = custom_path(plural, namespace, str(live["metadata"]["name"])), "PUT"
            stored = await self.kube.http.request(method, path, params=options, body=wanted, timeout=REQUEST_TIMEOUT)
        except KubeError as error:
            raise ApiRefusal.of(error) from None
        body = copy.deepcopy(dict(stored))
        if live is None:
            body["metadata"]["uid"] = PLACEHOLDER_UID
        else:
            body["status"] = copy.deepcopy(live.get("status") or {})  # the controller reads it as it is
        return body

    async def _live(self, kind: Kind, namespace: str, name: str) -> Mapping[str, Any] | None:
        path = custom_path(MANAGED[kind].plural, namespace, name)
        try:
            return await self.kube.http.request("GET", path, timeout=REQUEST_TIMEOUT)
        except NotFound:
            return None


def plan_documents(
    credentials: Credentials,
    documents: Sequence[Document],
    *,
    default_namespace: str,
    cluster_id: str = "",
    controller_namespace: str = "kumo-system",
    default_drift_policy: DriftPolicy = DriftPolicy.CORRECT,
) -> Plan:
    """The plan for `documents` against the cluster `credentials` reach; cluster id defaults,
    as in `kumo run`, to the kube-system namespace's UID."""

    async def planned() -> Plan:
        http = KubeHTTP(lambda: credentials, user_agent=PLAN_USER_AGENT, pool_size=4, timeout=REQUEST_TIMEOUT)
        kube = PlanKube(http, component="kumo-plan")
        try:
            planner = Planner(
                kube,
                ProviderRegistry.discover(),
                cluster_id=cluster_id or await kube.namespace_uid("kube-system"),
                controller_namespace=controller_namespace,
                default_namespace=default_namespace,
                default_drift_policy=default_drift_policy,
            )
            return await planner.plan(documents)
        finally:
            await http.close()

    return asyncio.run(planned())


def dry_run_body(manifest: Mapping[str, Any], live: Mapping[str, Any] | None, namespace: str) -> dict[str, Any]:
    """The body a dry run sends: the manifest (every top-level field, so a misspelt one is
    refused too), for an existing object over its live metadata, with annotations and labels
    merged as `kubectl apply` merges them (the manifest's win, others stay) and guarded by the
    live resourceVersion."""
    body = {key: copy.deepcopy(value) for key, value in manifest.items() if key != "status"}
    meta = dict(copy.deepcopy(manifest.get("metadata") or {}))
    if live is not None:
        current = {key: value for key, value in live["metadata"].items() if key != "managedFields"}
        for key in ("annotations", "labels"):
            merged = {**(current.get(key) or {}), **(meta.get(key) or {})}
            if merged:
                meta[key] = merged
        meta = {**copy.deepcopy(current), **meta, "resourceVersion": current["resourceVersion"]}
    meta["namespace"] = namespace
    body["metadata"] = meta
    return body


def _line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
