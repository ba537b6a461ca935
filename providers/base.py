"""The contract between kumo's generic reconciler and a cloud provider.

A provider plugin implements, per kind it supports, an `ExternalClient`: four verbs
(observe / create / update / delete) plus the batched `observe_many` used by drift sweeps.
Every verb takes a `ManagedResource` (the desired state already translated out of
Kubernetes) and returns a small dataclass. Providers import neither kopf nor the
kubernetes client; the controller never imports a cloud SDK. That one rule is the whole
separation.

Errors carry meaning by type: `Retryable` (throttling, 5xx, not ready yet: try again
soon) versus `Terminal` (invalid value, access denied, quota: report, retry slowly).
Both keep the cloud's own message so the user sees what the cloud said.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable


class Kind(enum.StrEnum):
    """The managed kinds, named as their Kubernetes kinds."""

    DATABASE = "Database"
    BUCKET = "Bucket"


# ---------------------------------------------------------------------------- errors


class ProviderError(Exception):
    """Base of every error a provider raises on purpose.

    `code` is the cloud's error code (e.g. ``InvalidParameterValue``) when there is one;
    the message is the cloud's own text, never a secret value.
    """

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class Retryable(ProviderError):
    """A temporary condition: throttling, a 5xx, a timeout, a resource not ready yet."""


class NotReady(Retryable):
    """Not a failure: the cloud is still working on an earlier request (an operation running, an
    instance not yet runnable). The controller looks again at its polling pace, without backoff
    and without reporting an error."""


class Terminal(ProviderError):
    """A condition that retrying soon will not fix: bad input, denied access, quota."""


class Unavailable(ProviderError):
    """The provider cannot work here at all (its SDK is missing or broken)."""


# ---------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Ownership:
    """Who a cloud resource belongs to; written as tags / labels on everything created."""

    uid: str
    namespace: str
    name: str
    cluster_id: str

    @property
    def object_ref(self) -> str:
        return f"{self.namespace}/{self.name}"


# The portable vocabulary's closed sets, as the CRDs enumerate them (tests hold the two together):
# the controller refuses any other value instead of guessing, and providers map every one.
ENGINES = ("postgres", "mysql")
SIZES = ("small", "medium", "large")

# Keys of a spec field's metadata (see `spec_field`).
SPEC_KEY = "kumo.spec.key"
SPEC_PARSE = "kumo.spec.parse"
SPEC_REQUIRED = "kumo.spec.required"
NO_OPTIONS: Mapping[str, Any] = MappingProxyType({})  # `absent` of a map field: an empty one


def one_of(*allowed: str) -> Callable[[Any], str]:
    """A parser that accepts only the listed words."""

    def parse(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"{value!r} is not one of {', '.join(allowed)}")
        return str(value)

    return parse


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{value!r} is not true or false")
    return value


def integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


def text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ValueError(f"{value!r} is not a string")
    return str(value)


def mapping(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{value!r} is not a map")
    return dict(value)


DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


@dataclass(frozen=True)
class MaintenanceWindow:
    """The weekly hour (UTC) in which the cloud may restart the server for maintenance."""

    day: str  # one of DAYS
    hour: int  # 0-23, the window's first hour

    @property
    def weekday(self) -> int:
        """Monday = 0 ... Sunday = 6."""
        return DAYS.index(self.day)


def maintenance_window(value: Any) -> MaintenanceWindow:
    window = mapping(value)
    hour = integer(window.get("hour"))
    if not 0 <= hour <= 23:
        raise ValueError(f"hour {hour} is not from 0 to 23")
    return MaintenanceWindow(one_of(*DAYS)(window.get("day")), hour)


def spec_field(key: str, parse: Callable[[Any], Any], *, absent: Any = dataclasses.MISSING) -> Any:
    """A spec dataclass field read from the object's `spec.<key>` (a dotted path for nested keys)
    and checked by `parse`, which raises ValueError for a value it does not know.

    Without `absent` the key is required: the CRD requires or defaults it, and the API server
    writes CRD defaults into every object it serves, so the controller never invents a value
    (defaults live in the CRD only). `absent` is what an optional key's absence means (no
    instanceClass, no databaseName); it is not a default, since the CRD has none for such keys."""
    metadata = {SPEC_KEY: key, SPEC_PARSE: parse, SPEC_REQUIRED: absent is dataclasses.MISSING}
    if isinstance(absent, Mapping):  # an empty map: each spec gets its own
        return field(default_factory=dict, metadata=metadata)
    return field(default=absent, metadata=metadata)


@dataclass(frozen=True)
class DatabaseSpec:
    """The portable Database vocabulary (see crds/database.yaml for the meaning of each)."""

    engine: str = spec_field("engine", one_of(*ENGINES))
    version: str = spec_field("version", text)  # major version, e.g. "16" or "8.0"
    size: str = spec_field("size", one_of(*SIZES))  # mapped by the provider to a class / tier
    storage_gb: int = spec_field("storageGB", integer)
    high_availability: bool = spec_field("highAvailability", boolean)
    backup_retention_days: int = spec_field("backupRetentionDays", integer)
    deletion_protection: bool = spec_field("deletionProtection", boolean)
    publicly_accessible: bool = spec_field("publiclyAccessible", boolean)
    master_username: str = spec_field("masterUsername", text)
    skip_final_snapshot: bool = spec_field("snapshotOnDelete", lambda value: not boolean(value))
    instance_class: str = spec_field("instanceClass", text, absent="")  # explicit override of `size`
    database_name: str = spec_field("databaseName", text, absent="")
    provider_options: Mapping[str, Any] = spec_field("providerOptions", mapping, absent=NO_OPTIONS)
    # Absent: the cloud picks the window, and kumo neither sets nor compares it.
    maintenance_window: MaintenanceWindow | None = spec_field(  # noqa: RUF009 - a dataclasses.field
        "maintenanceWindow", maintenance_window, absent=None
    )


@dataclass(frozen=True)
class BucketSpec:
    """The portable Bucket vocabulary (see crds/bucket.yaml)."""

    versioning: bool = spec_field("versioning", boolean)
    public_access: bool = spec_field("publicAccess", boolean)
    encryption: bool = spec_field("encryption", boolean)
    force_destroy: bool = spec_field("forceDestroy", boolean)
    location: str = spec_field("location", text, absent="")  # absent: the provider config's region
    lifecycle_expire_days: int | None = spec_field("lifecycle.expireAfterDays", integer, absent=None)
    labels: Mapping[str, str] = spec_field("labels", mapping, absent=NO_OPTIONS)
    provider_options: Mapping[str, Any] = spec_field("providerOptions", mapping, absent=NO_OPTIONS)


@dataclass(frozen=True)
class ManagedResource:
    """One desired cloud resource: what the provider is asked to make true."""

    kind: Kind
    external_name: str
    owner: Ownership
    spec: DatabaseSpec | BucketSpec

    @property
    def database(self) -> DatabaseSpec:
        assert isinstance(self.spec, DatabaseSpec), self.kind
        return self.spec

    @property
    def bucket(self) -> BucketSpec:
        assert isinstance(self.spec, BucketSpec), self.kind
        return self.spec


@dataclass(frozen=True)
class ProviderSettings:
    """A resolved ProviderConfig: where and as whom to talk to the cloud.

    `credentials` holds the keys of the referenced credentials Secret, or is empty when the
    environment's default chain (IRSA, Workload Identity, instance roles) is to be used.
    `endpoints` overrides service endpoints by service name (``rds``, ``s3``, ``sqladmin``,
    ``storage``, ...) for emulators and LocalStack.
    """

    provider: str
    region: str = ""
    project: str = ""
    credentials: Mapping[str, str] = field(default_factory=dict)
    endpoints: Mapping[str, str] = field(default_factory=dict)
    # ProviderConfig defaults for each object's providerOptions, by kind plural ("databases", "buckets")
    provider_options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Who makes the calls, when several replicas do (kumo run --shard-ring: the shard's name):
    # providers append it to their SDK clients' User-Agent (plumbing.user_agent_suffix), so the
    # cloud's own request logs (CloudTrail's userAgent, Cloud Audit Logs) attribute each call.
    caller: str = ""

    def scope_key(self) -> tuple[str, str, str]:
        """Identifies one cloud account and region, the unit of rate limiting. Without a key id
        or project to name the account, a digest of the credentials stands in (never the
        credentials themselves); the environment's default chain is one account."""
        account = self.credentials.get("aws_access_key_id", "") or self.project
        if not account and self.credentials:
            text = "\n".join(f"{k}={v}" for k, v in sorted(self.credentials.items()))
            account = "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]
        return (self.provider, account or "default-chain", self.region)


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class FieldDrift:
    """One managed setting whose cloud value differs from the desired one.

    `correctable` is False when the cloud cannot be put back in place: a disk grown beyond the
    spec cannot shrink on RDS or Cloud SQL. Such drift is reported, never "corrected".
    `reason` says why, when it is not that: the condition message quotes it.
    """

    field: str
    desired: Any
    actual: Any
    correctable: bool = True
    reason: str = ""


@dataclass(frozen=True)
class Observation:
    """What a read of the cloud found for one resource.

    `settings` are the managed settings as the cloud has them, keyed like `desired()`;
    `drift` lists those that differ from the spec. `ready` says the resource can be used;
    `state` is the cloud's own word for its status. `connection` holds the non-secret
    connection details (host, port, bucket, endpoint, url, ...). `owner` is read from the
    resource's tags: None when it carries no kumo ownership tags. `message` is the cloud's word
    on a state worth telling (why it is not ready, or what a ready resource is going through,
    such as maintenance); the Ready condition shows it.
    """

    external_name: str
    state: str
    ready: bool
    owner: Ownership | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    drift: tuple[FieldDrift, ...] = ()
    connection: Mapping[str, str] = field(default_factory=dict)
    at_provider: Mapping[str, Any] = field(default_factory=dict)
    message: str = ""
    # Databases: the cloud holds a new master password it has not applied yet (RDS lists it in
    # PendingModifiedValues while resetting credentials); apps must keep the old one until then.
    password_pending: bool = False


@dataclass(frozen=True)
class Creation:
    """A create call was accepted; the resource may still be provisioning.

    `password_applied` is True only when this call itself set the given master password (RDS
    takes it in CreateDBInstance). When False (Cloud SQL creates users separately, or the
    resource already existed) the reconciler calls `set_password` once the resource is ready.

    `observation` is the resource as the create left it, when the provider knows that without
    another read (the cloud's answer to the last call, or settings every call of which
    succeeded); the reconciler then skips the observe it would make next. None: observe.
    """

    external_name: str
    state: str
    password_applied: bool = False
    observation: Observation | None = None


@dataclass(frozen=True)
class PasswordChange:
    """What `set_password` left behind. `applied` is True once the instance takes the new password
    (Cloud SQL: the users operation is DONE); False when the cloud accepted it but applies it
    later (RDS: until MasterUserPassword leaves PendingModifiedValues, see
    `Observation.password_pending`), and the old password still works meanwhile."""

    applied: bool


@dataclass(frozen=True)
class Update:
    """The settings an update call changed (portable field names)."""

    changed: tuple[str, ...]
    pending: tuple[str, ...] = ()  # accepted but applied later by the cloud


@dataclass(frozen=True)
class Deletion:
    """`gone` is True once nothing is left in the cloud."""

    gone: bool
    state: str = ""


@dataclass(frozen=True)
class CloudCall:
    """One SDK call as it happened, for metrics and call counting."""

    provider: str
    service: str  # rds, s3, sqladmin, storage, ...
    operation: str  # the cloud's operation name, e.g. DescribeDBInstances
    outcome: str  # "ok", or the error code / HTTP status the cloud answered with
    seconds: float


@dataclass(frozen=True)
class CallHooks:
    """What the controller wraps around every SDK call a client makes.

    `before` is awaited before each call (the shared token bucket per account and region: it
    may wait); `after` is told how each call went (metrics, counters). Providers must route
    every cloud call through both, which `kumo.providers.plumbing.InstrumentedCaller` does.
    """

    before: Callable[[str, str], Awaitable[None]] | None = None
    after: Callable[[CloudCall], None] | None = None


# ---------------------------------------------------------------------------- the verbs


@runtime_checkable
class ExternalClient(Protocol):
    """One kind's client for one provider config. Every method is a coroutine that never
    blocks the event loop, and every method is idempotent: calling it again after a crash
    finds and continues what an earlier attempt did."""

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        """The cloud settings the spec renders to, keyed by portable field name. Pure: no
        cloud call. Used by `kumo plan` and to compute drift. Must include the ownership tags,
        so that an adopted (untagged) resource shows drift until `update` has tagged it."""
        ...

    async def observe(self, resource: ManagedResource) -> Observation | None:
        """Read the resource. Must not modify anything. None when it does not exist."""
        ...

    async def observe_many(self, resources: list[ManagedResource]) -> dict[str, Observation]:
        """Read many resources with the fewest paged list calls the cloud allows.
        Keys are external names; resources absent from the cloud are absent from the result."""
        ...

    async def create(self, resource: ManagedResource, password: str | None) -> Creation:
        """Start creating the resource with ownership tags. `password` is the master password
        for databases (already stored by the caller), None for buckets. A resource that
        already exists under this name is not an error when it is ours."""
        ...

    async def update(self, resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> Update:
        """Bring the drifted settings back to the spec. Ownership tags included."""
        ...

    async def delete(self, resource: ManagedResource) -> Deletion:
        """Start or continue deleting. A resource already gone is a success (`gone=True`)."""
        ...


@runtime_checkable
class DatabaseClient(ExternalClient, Protocol):
    """Databases also have a master password that can be set after creation."""

    async def set_password(self, resource: ManagedResource, password: str) -> PasswordChange:
        """Set the master user's password on an existing instance (idempotent: sending the same
        password again is safe). Says whether the instance already uses it; when not, later
        observations report `password_pending` until it does."""
        ...


class Provider(Protocol):
    """The object a `kumo.providers` entry point resolves to (a class or an instance)."""

    name: str
    kinds: frozenset[Kind]

    def client(self, kind: Kind, settings: ProviderSettings, hooks: CallHooks | None = None) -> ExternalClient:
        """A client for one kind under one provider config. Cheap to call repeatedly; may
        cache SDK clients per settings."""
        ...

    def validate(self, resource: ManagedResource) -> list[str]:
        """Problems with the spec that only this provider can judge (an unknown instance
        class, a bad providerOptions key), each naming the field. Empty when fine."""
        ...


@dataclass(frozen=True)
class Identity:
    """Who a provider config's credentials act as, from one cheap identity call: `account` is the
    cloud's name for the principal (an AWS ARN, a GCP service account or project), `message` what
    the call showed, for the config's Ready condition."""

    account: str
    message: str


@runtime_checkable
class IdentityCheck(Protocol):
    """An optional capability of a `Provider`: proving that a provider config works.

    The controller calls it when a ProviderConfig or ClusterProviderConfig appears or changes and
    every few minutes after, and shows the outcome in the config's Ready condition. It must make
    at most one or two cheap read calls through `hooks` (paced and counted like every other call),
    must not modify anything, and raises `ProviderError` with the cloud's own message when the
    cloud refuses. A provider without it is Ready once its credentials resolve."""

    async def check(self, settings: ProviderSettings, hooks: CallHooks | None = None) -> Identity:
        """The identity the settings' credentials act as."""
        ...


# ---------------------------------------------------------------------------- helpers


def diff_settings(
    desired: Mapping[str, Any], actual: Mapping[str, Any], *, grow_only: Iterable[str] = ()
) -> tuple[FieldDrift, ...]:
    """The generic comparison: every desired key whose actual value differs.

    Mappings (tags, labels) are compared on the desired keys only, so tags added by someone
    else (cost allocation, AWS-managed tags) are not drift. Fields in `grow_only` can only
    increase in the cloud; an actual value above the desired one is drift that is not correctable.
    """
    grow_only = set(grow_only)
    drift: list[FieldDrift] = []
    for name, want in desired.items():
        have = actual.get(name)
        if isinstance(want, Mapping):
            have_map = have if isinstance(have, Mapping) else {}
            if any(have_map.get(k) != v for k, v in want.items()):
                subset = {k: have_map.get(k) for k in want}
                drift.append(FieldDrift(name, dict(want), subset))
        elif have != want:
            shrink = (
                name in grow_only and isinstance(have, int | float) and isinstance(want, int | float) and have > want
            )
            drift.append(FieldDrift(name, want, have, correctable=not shrink))
    return tuple(drift)
