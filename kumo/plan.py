"""`kumo plan`: what applying manifests would do in the cloud, field by field, before applying.

Like `terraform plan`, and read-only the same way: no Kubernetes write, no cloud write. For each
Database and Bucket in the files it resolves the provider config and builds the provider's view
of the object exactly as the controller does (`Reconciler.connect` and `Reconciler.resource_for`,
so the external name is the one `kumo run` would derive), asks the provider to validate it, and
compares `desired()` with one `observe()` of the cloud:

- nothing there yet: **create**, listing every setting;
- there and owned by this object (or adoption asked for): **update** with `current -> desired`
  per drifted field, or **no-op**;
- there and owned by another object, or not by kumo at all: **conflict**, as the controller
  would refuse it;
- values the provider rejects: **invalid**, naming the fields; anything that stops the look
  (provider config unresolved, cloud unreachable): **error**.

Exit codes follow `terraform plan -detailed-exitcode`: 0 no changes, 2 changes to make, 1 when
any manifest cannot be applied as written (invalid, conflict, error) or the plan itself failed.
Used by `kumo.cli`; `judge` and the renderers are pure and unit-tested from plain values.
"""

from __future__ import annotations

import asyncio
import enum
import json
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kumo.api import ANNOTATION_ADOPT, GROUP, MANAGED, VERSION
from kumo.controller.core.providerconfig import ProviderConfigError
from kumo.controller.core.reconciler import Reconciler
from kumo.controller.runtime.kube import KubeClient
from kumo.providers.base import Kind, Observation, ProviderError, Terminal
from kumo.providers.registry import ProviderRegistry

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
REQUEST_TIMEOUT = (5.0, 30.0)


class PlanInputError(Exception):
    """A manifest file cannot be read or parsed: nothing was planned."""


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
    """One setting: `current` is None for a create."""

    field: str
    current: Any
    desired: Any


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
    live_uid: str | None,
    adopt: bool = False,
) -> Change:
    """What applying would do, given the settings the spec renders to and what the cloud holds.

    `live_uid` is the uid of the object already in the cluster, None for a new one; ownership is
    judged as the reconciler judges it, so a conflict here is a refusal there.
    """
    if observation is None:
        fields = tuple(FieldChange(name, None, _shown(name, value)) for name, value in desired.items())
        return Change(target, Action.CREATE, fields)
    owner = observation.owner
    if owner is not None and owner.uid != live_uid:
        message = (
            f"{observation.external_name} belongs to {owner.object_ref} (uid {owner.uid}, "
            f"cluster {owner.cluster_id}); the controller would refuse to modify it"
        )
        return Change(target, Action.CONFLICT, messages=(message,))
    messages: list[str] = []
    if owner is None:
        if not adopt:
            message = (
                f"{observation.external_name} already exists and is not managed by kumo; to adopt it "
                f'set the annotation {ANNOTATION_ADOPT}: "true"'
            )
            return Change(target, Action.CONFLICT, messages=(message,))
        messages.append(f"adopts the existing {observation.external_name} (writes kumo's ownership tags)")
    if not observation.ready:
        messages.append(f"not ready yet in the cloud (state {observation.state})")
    fields = tuple(
        FieldChange(drift.field, _shown(drift.field, drift.actual), _shown(drift.field, drift.desired))
        for drift in observation.drift
    )
    return Change(target, Action.UPDATE if fields else Action.NOOP, fields, tuple(messages))


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
                lines.append(f"    {item.field}: {value_text(item.current)} -> {value_text(item.desired)}")
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
                "fields": [{"field": f.field, "current": f.current, "desired": f.desired} for f in change.fields],
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


def load_documents(paths: Sequence[str]) -> list[Document]:
    """Every YAML document in the files ("-" is stdin); empty documents are dropped."""
    documents: list[Document] = []
    for path in paths:
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


def managed_kind(body: Mapping[str, Any]) -> Kind | None:
    """The kumo kind of a document, None for anything else."""
    group = str(body.get("apiVersion", "")).split("/")[0]
    kind = body.get("kind")
    if group != GROUP or kind not in {str(k) for k in MANAGED}:
        return None
    return Kind(kind)


# ---------------------------------------------------------------------- planning (reads only)


@dataclass
class Planner:
    """Plans documents against one cluster and its clouds; reads only."""

    kube: KubeClient
    providers: ProviderRegistry
    cluster_id: str
    controller_namespace: str
    default_namespace: str
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
        live = await self._live(kind, namespace, target.name)
        live_uid = str(live["metadata"]["uid"]) if live else None
        body = {
            "metadata": {
                "name": target.name,
                "namespace": namespace,
                "uid": live_uid or PLACEHOLDER_UID,
                "annotations": dict(meta.get("annotations") or {}),
            },
            "spec": dict(manifest.get("spec") or {}),
        }
        try:
            provider, client, settings = await self._reconciler.connect(kind, body)
        except Terminal as error:  # the provider does not manage this kind
            return Change(target, Action.INVALID, messages=(_line(error),))
        except (ProviderConfigError, ProviderError) as error:
            return Change(target, Action.ERROR, messages=(_line(error),))
        target = Target(target.kind, namespace, target.name, provider=settings.provider)
        try:
            resource = self._reconciler.resource_for(kind, body, settings)
        except KeyError as error:
            return Change(target, Action.INVALID, messages=(f"spec.{error.args[0]}: required",))
        except (TypeError, ValueError) as error:
            return Change(target, Action.INVALID, messages=(f"spec: {_line(error)}",))
        target = Target(target.kind, namespace, target.name, resource.external_name, settings.provider)
        problems = provider.validate(resource)
        if problems:
            return Change(target, Action.INVALID, messages=tuple(problems))
        try:
            observation = await client.observe(resource)
        except ProviderError as error:
            return Change(target, Action.ERROR, messages=(_line(error),))
        adopt = body["metadata"]["annotations"].get(ANNOTATION_ADOPT) == "true"
        return judge(target, client.desired(resource), observation, live_uid=live_uid, adopt=adopt)

    async def _live(self, kind: Kind, namespace: str, name: str) -> Mapping[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            found: Mapping[str, Any] = await asyncio.to_thread(
                self.kube.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                MANAGED[kind].plural,
                name,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found


def plan_documents(
    api_client: Any,
    documents: Sequence[Document],
    *,
    default_namespace: str,
    cluster_id: str = "",
    controller_namespace: str = "kumo-system",
) -> Plan:
    """The plan for `documents` against the cluster behind `api_client`; cluster id defaults,
    as in `kumo run`, to the kube-system namespace's UID."""

    async def planned() -> Plan:
        kube = KubeClient(api_client, component="kumo-plan")
        planner = Planner(
            kube,
            ProviderRegistry.discover(),
            cluster_id=cluster_id or await kube.namespace_uid("kube-system"),
            controller_namespace=controller_namespace,
            default_namespace=default_namespace,
        )
        return await planner.plan(documents)

    return asyncio.run(planned())


def _line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
