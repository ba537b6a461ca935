"""In-memory stand-ins for the Kubernetes API and a cloud, for the reconciler's unit tests.

Both record every call in one shared journal, so a test can assert on the order of operations
("the password was stored before the create call") and on the number of writes.
"""

from __future__ import annotations

import base64
import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from kumo.controller.core.kubeapi import Conflict, NamespaceTerminating, NotFound
from kumo.providers.base import (
    CallHooks,
    CloudCall,
    Creation,
    Deletion,
    FieldDrift,
    Kind,
    ManagedResource,
    Observation,
    Ownership,
    PasswordChange,
    ProviderSettings,
    Update,
)

_versions = itertools.count(1)


@dataclass
class FakeKube:
    """The core's `Kube` over dicts; Secrets are kept in the API's JSON shape."""

    journal: list[tuple[str, ...]]
    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    provider_configs: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    statuses: dict[str, dict[str, Any]] = field(default_factory=dict)
    finalizers: dict[str, list[str]] = field(default_factory=dict)
    events: list[tuple[str, str, str]] = field(default_factory=list)
    terminating: set[str] = field(default_factory=set)  # namespaces being deleted: creates refused

    @property
    def writes(self) -> list[tuple[str, ...]]:
        return [entry for entry in self.journal if entry[0].startswith("kube:")]

    async def patch_status(self, key, status, resource_version=None):
        self.journal.append(("kube:status", key.name))
        self.statuses[key.name] = copy.deepcopy(dict(status))

    async def add_finalizer(self, key, current, finalizer):
        self.journal.append(("kube:add-finalizer", key.name))
        self.finalizers[key.name] = [*current, finalizer]

    async def remove_finalizer(self, key, current, finalizer):
        self.journal.append(("kube:remove-finalizer", key.name))
        self.finalizers[key.name] = [f for f in current if f != finalizer]

    async def get_provider_config(self, kind, namespace, name):
        found = self.provider_configs.get((kind, "" if kind == "ClusterProviderConfig" else namespace, name))
        if found is None:
            raise NotFound(f"{kind} {name!r} not found")
        return found

    async def set_provider_config_finalizers(self, namespace, name, current, wanted):
        self.journal.append(("kube:provider-config-finalizers", name))
        found = self.provider_configs.get(("ProviderConfig", namespace, name))
        if found is not None:
            assert list(found["metadata"].get("finalizers") or []) == current, "finalizers changed meanwhile"
            found["metadata"]["finalizers"] = list(wanted)

    async def set_secret_finalizers(self, namespace, name, current, wanted):
        self.journal.append(("kube:secret-finalizers", name))
        found = self.secrets.get((namespace, name))
        if found is not None:
            assert list(found["metadata"].get("finalizers") or []) == current, "finalizers changed meanwhile"
            found["metadata"]["finalizers"] = list(wanted)

    async def read_secret(self, namespace, name):
        return copy.deepcopy(self.secrets.get((namespace, name)))

    async def create_secret(self, namespace, body):
        if namespace in self.terminating:
            raise NamespaceTerminating(f"namespace {namespace} is being terminated")
        self.journal.append(("kube:create-secret", body["metadata"]["name"]))
        created = self.secrets[(namespace, body["metadata"]["name"])] = secret_body(body)
        return created["metadata"]["resourceVersion"]

    async def replace_secret(self, namespace, name, body):
        current = self.secrets.get((namespace, name))
        guard = body["metadata"].get("resourceVersion")
        if current is None:
            raise NotFound(f"Kubernetes API 404 Not Found: secrets {name!r} not found")
        if guard and guard != current["metadata"]["resourceVersion"]:
            # What the API server answers a replace guarded by a version that is no longer current.
            raise Conflict(f"Kubernetes API 409 Conflict: the object {name!r} has been modified")
        self.journal.append(("kube:replace-secret", name))
        replaced = self.secrets[(namespace, name)] = secret_body(body)
        return replaced["metadata"]["resourceVersion"]

    async def delete_secret(self, namespace, name):
        self.journal.append(("kube:delete-secret", name))
        self.secrets.pop((namespace, name), None)

    async def emit_event(self, key, uid, event_type, reason, message):
        self.journal.append(("kube:event", reason))
        self.events.append((event_type, reason, message))

    def secret_value(self, namespace: str, name: str, key: str) -> str:
        return base64.b64decode(self.secrets[(namespace, name)]["data"][key]).decode()


def secret_body(body: dict[str, Any]) -> dict[str, Any]:
    """A Secret as the API server stores it: a copy of what was written, with a new resourceVersion."""
    meta = body["metadata"]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "labels": dict(meta.get("labels") or {}),
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": copy.deepcopy(list(meta.get("ownerReferences") or [])),
            "finalizers": list(meta.get("finalizers") or []),
            "resourceVersion": str(next(_versions)),
        },
        "data": dict(body.get("data") or {}),
    }


@dataclass
class CloudRecord:
    owner: Ownership | None
    settings: dict[str, Any]
    state: str = "available"
    password: str | None = None
    pending_password: str | None = None  # accepted, not applied yet (RDS-style reset)


class FakeCloudClient:
    """A database-capable client over a dict; `settings` are compared key by key."""

    def __init__(self, cloud: FakeCloud) -> None:
        self.cloud = cloud

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        spec = resource.spec
        return {
            "storageGB": getattr(spec, "storage_gb", None),
            "versioning": getattr(spec, "versioning", None),
            "owner": resource.owner,
        }

    async def observe(self, resource):
        self.cloud.journal.append(("cloud:observe", resource.external_name))
        self.cloud.raise_if_failing("observe")
        return self._described(resource)

    def _described(self, resource):
        record = self.cloud.records.get(resource.external_name)
        if record is None:
            return None
        actual = {**record.settings, "owner": record.owner}
        drift = tuple(
            FieldDrift(k, v, actual.get(k), correctable=not (k in self.cloud.grow_only and (actual.get(k) or 0) > v))
            for k, v in self.desired(resource).items()
            if actual.get(k) != v
        )
        return Observation(
            external_name=resource.external_name,
            state=record.state,
            ready=record.state == "available",
            owner=record.owner,
            settings=dict(record.settings),
            drift=drift,
            connection={
                "host": f"{resource.external_name}.db.example",
                "port": "5432",
                "engine": "postgres",
                "database": "app",
            }
            if resource.kind is Kind.DATABASE
            else {"bucket": resource.external_name},
            at_provider={"provider": "fake"},
            password_pending=record.pending_password is not None,
        )

    async def observe_many(self, resources):
        return {}

    async def create(self, resource, password):
        self.cloud.journal.append(("cloud:create", resource.external_name))
        self.cloud.raise_if_failing("create")
        settings = {k: v for k, v in self.desired(resource).items() if k != "owner"}
        record = CloudRecord(resource.owner, settings, self.cloud.initial_state, password)
        self.cloud.records[resource.external_name] = record
        applied = password is not None and self.cloud.create_sets_password
        if not applied:
            record.password = None  # like Cloud SQL: the user is created later, by set_password
        described = self._described(resource) if self.cloud.create_describes else None
        return Creation(
            resource.external_name, self.cloud.initial_state, password_applied=applied, observation=described
        )

    async def update(self, resource, drift):
        self.cloud.journal.append(("cloud:update", resource.external_name, ",".join(d.field for d in drift)))
        record = self.cloud.records[resource.external_name]
        record.settings.update({k: v for k, v in self.desired(resource).items() if k != "owner"})
        record.owner = resource.owner
        return Update(changed=tuple(d.field for d in drift))

    async def delete(self, resource):
        self.cloud.journal.append(("cloud:delete", resource.external_name))
        record = self.cloud.records.get(resource.external_name)
        if record is None:
            return Deletion(gone=True)
        if self.cloud.slow_delete and record.state != "deleting":
            record.state = "deleting"
            return Deletion(gone=False, state="deleting")
        del self.cloud.records[resource.external_name]
        return Deletion(gone=True)

    async def set_password(self, resource, password):
        self.cloud.journal.append(("cloud:set-password", resource.external_name))
        self.cloud.raise_if_failing("set_password")
        record = self.cloud.records[resource.external_name]
        if self.cloud.password_reset_later:
            record.pending_password = password
            return PasswordChange(applied=False)
        record.password = password
        return PasswordChange(applied=True)


@dataclass
class FakeCloud:
    """The provider object the registry hands out, plus the cloud's state."""

    journal: list[tuple[str, ...]]
    records: dict[str, CloudRecord] = field(default_factory=dict)
    initial_state: str = "available"
    slow_delete: bool = False
    create_sets_password: bool = True  # RDS-style; False is Cloud SQL-style
    password_reset_later: bool = False  # RDS-style: a new password waits until `finish_password_reset`
    create_describes: bool = False  # the create's answer describes the resource (RDS, S3, GCS)
    grow_only: set[str] = field(default_factory=set)  # fields the cloud cannot decrease
    failing: dict[str, Exception] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    name: str = "fake"
    kinds: frozenset[Kind] = frozenset({Kind.DATABASE, Kind.BUCKET})

    def client(self, kind: Kind, settings: ProviderSettings, hooks=None) -> FakeCloudClient:
        return FakeCloudClient(self)

    def validate(self, resource: ManagedResource) -> list[str]:
        return list(self.problems)

    def finish_password_reset(self, external_name: str) -> None:
        """The cloud applies the password it was holding (RDS leaves resetting-master-credentials)."""
        record = self.records[external_name]
        if record.pending_password is not None:
            record.password, record.pending_password = record.pending_password, None

    def raise_if_failing(self, verb: str) -> None:
        if verb in self.failing:
            raise self.failing[verb]


@dataclass
class HookRecorder:
    """The controller's call hooks, recording what they see in order: a "before" per call made
    and an "after" with its outcome, plus the CloudCall each after-hook received."""

    events: list[str] = field(default_factory=list)
    calls: list[CloudCall] = field(default_factory=list)

    def hooks(self) -> CallHooks:
        async def before(service: str, operation: str) -> None:
            self.events.append(f"before {service} {operation}")

        def after(call: CloudCall) -> None:
            self.events.append(f"after {call.outcome}")
            self.calls.append(call)

        return CallHooks(before=before, after=after)
