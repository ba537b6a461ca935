"""The names of kumo's Kubernetes API, declared once.

Everything a user, a script or another controller can see and match on lives here: the API group
and version, the kinds with their plurals and short names, finalizers, annotations and labels,
condition types and reasons, event reasons, and how a connection Secret is named. The controller,
the CLI (`kumo status`, `plan`, `drift`), the demo, the benchmark and the tests import these
names; none of them spells one out again, so they cannot drift apart.

The CRDs under crds/ are the other half of the contract (schemas, defaults, printer columns);
tests/unit/test_crd_schemas.py checks each CRD's group, version, kind, plural, scope and short name
against the names here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.providers.base import Kind

GROUP = "kumo.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


# ---------------------------------------------------------------------- kinds


@dataclass(frozen=True)
class Resource:
    """One kind of the API as `kubectl` names it."""

    kind: str
    plural: str
    short_name: str
    namespaced: bool = True

    @property
    def singular(self) -> str:
        return self.kind.lower()

    def spellings(self) -> tuple[str, ...]:
        """Every way kubectl accepts to name this resource type, qualified with the group or not
        (`database`, `databases`, `kdb`, `database.kumo.dev`, `Database`, ...)."""
        bare = (self.singular, self.plural, self.short_name, self.kind)
        return bare + tuple(f"{name}.{GROUP}" for name in bare)


DATABASE = Resource(Kind.DATABASE, "databases", "kdb")
BUCKET = Resource(Kind.BUCKET, "buckets", "kbk")
PROVIDER_CONFIG = Resource("ProviderConfig", "providerconfigs", "kpc")
CLUSTER_PROVIDER_CONFIG = Resource("ClusterProviderConfig", "clusterproviderconfigs", "kcpc", namespaced=False)

MANAGED: Mapping[Kind, Resource] = {Kind.DATABASE: DATABASE, Kind.BUCKET: BUCKET}
RESOURCES = (DATABASE, BUCKET, PROVIDER_CONFIG, CLUSTER_PROVIDER_CONFIG)
PLURALS: Mapping[str, str] = {resource.kind: resource.plural for resource in RESOURCES}
# The category every kumo kind is in: `kubectl get kumo` lists them all.
CATEGORY = "kumo"


def resource_named(text: str) -> Resource | None:
    """The resource type a kubectl-style name refers to, or None (`kdb`, `databases.kumo.dev`,
    `Database`; case-insensitive like kubectl)."""
    wanted = text.strip().lower()
    return next((r for r in RESOURCES if wanted in (s.lower() for s in r.spellings())), None)


# ---------------------------------------------------------------------- finalizers


# On every managed object: the cloud resource is deleted (or retained) before the object goes.
FINALIZER = f"{GROUP}/cleanup"
# On a namespaced ProviderConfig and its credentials Secret while objects in the namespace use
# them: deleting the namespace must not take kumo's credentials before the cloud is cleaned up.
# On a ClusterProviderConfig in use too (not its Secret, which lives in the controller's namespace).
IN_USE_FINALIZER = f"{GROUP}/in-use"


# ---------------------------------------------------------------------- annotations and labels


# Set by users on a managed object.
ANNOTATION_ADOPT = f"{GROUP}/adopt"  # "true": take over an untagged resource under spec.externalName
ANNOTATION_PAUSED = f"{GROUP}/paused"  # "true": no cloud call at all until removed
ANNOTATION_ROTATE_PASSWORD = f"{GROUP}/rotate-password"  # any new value: rotate the master password
ANNOTATION_SWEEP_INTERVAL = f"{GROUP}/sweep-interval"  # this object's own drift sweep interval

# Written by kumo on connection Secrets (never a secret value).
ANNOTATION_PASSWORD_STATE = f"{GROUP}/password-state"  # pending | applied
ANNOTATION_ROTATION = f"{GROUP}/rotation"  # the rotate-password value the password answers
# A keyed digest of the password kumo last wrote (never the password): a different value in the
# Secret means a user edited it, and kumo then sets the edited value on the instance.
ANNOTATION_PASSWORD_DIGEST = f"{GROUP}/password-digest"

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "kumo"
LABEL_OWNER_KIND = f"{GROUP}/owner-kind"
LABEL_OWNER_NAME = f"{GROUP}/owner-name"

# Sharding (kumo run --shard-ring): the contract of timebertt/kubernetes-controller-sharding
# v0.11.0, docs/implement-sharding.md. Its sharder writes the shard and drain labels; kumo reads
# them, labels its shard Lease, and removes both labels to acknowledge a drain.
SHARDING_GROUP = "sharding.timebertt.dev"
LABEL_CONTROLLER_RING = f"alpha.{SHARDING_GROUP}/controllerring"  # on each shard Lease: its ring
SHARD_LABEL_PREFIX = f"shard.alpha.{SHARDING_GROUP}/"  # + ring: the shard an object is assigned to
DRAIN_LABEL_PREFIX = f"drain.alpha.{SHARDING_GROUP}/"  # + ring: present while the sharder moves it


def shard_label(ring: str) -> str:
    """The label naming the shard an object of `ring` is assigned to."""
    return SHARD_LABEL_PREFIX + ring


def drain_label(ring: str) -> str:
    """The label the sharder adds to take an object of `ring` away from its shard."""
    return DRAIN_LABEL_PREFIX + ring


# ---------------------------------------------------------------------- conditions


# Ready: can the cloud resource be used. Synced: did the last reconcile succeed. InSync: does the
# cloud still match the spec (drift).
READY = "Ready"
SYNCED = "Synced"
IN_SYNC = "InSync"
CONDITION_ORDER = (READY, SYNCED, IN_SYNC)

# Ready reasons
CREATING = "Creating"
AVAILABLE = "Available"
DELETING = "Deleting"
UNAVAILABLE = "Unavailable"

# Synced reasons
RECONCILE_SUCCESS = "ReconcileSuccess"
RECONCILE_ERROR = "ReconcileError"
RECONCILE_PENDING = "ReconcilePending"
OWNED_BY_ANOTHER = "OwnedByAnotherResource"
INVALID_SPEC = "InvalidSpec"
PAUSED = "Paused"

# InSync reasons
UP_TO_DATE = "UpToDate"
DRIFTED = "Drifted"
MISSING = "Missing"
IGNORED = "Ignored"

# Ready reasons of a ProviderConfig or ClusterProviderConfig (controller/core/configstatus.py):
# True when its credentials resolve, its provider plugin is installed and one cheap identity call
# (AWS STS GetCallerIdentity, GCP buckets.list) succeeds; a plugin without an identity check is
# Ready once the credentials resolve, and says so.
IDENTITY_VERIFIED = "IdentityVerified"
CREDENTIALS_RESOLVED = "CredentialsResolved"
CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
PROVIDER_NOT_INSTALLED = "ProviderNotInstalled"
IDENTITY_CHECK_FAILED = "IdentityCheckFailed"


# ---------------------------------------------------------------------- events


NORMAL, WARNING = "Normal", "Warning"

EVENT_CREATED = "CreatedExternalResource"
EVENT_UPDATED = "UpdatedExternalResource"
EVENT_DELETED = "DeletedExternalResource"
EVENT_RETAINED = "RetainedExternalResource"
EVENT_RECONCILE_ERROR = "ReconcileError"
EVENT_DRIFT_DETECTED = "DriftDetected"
EVENT_DRIFT_CORRECTED = "DriftCorrected"
EVENT_MISSING = "ExternalResourceMissing"
EVENT_OWNED_BY_ANOTHER = "OwnedByAnotherResource"
EVENT_PASSWORD_SET = "PasswordSet"
# A failed reconcile step, one reason per step as crossplane-runtime names them, so `kubectl get
# events` says what failed (controller/core/disposition.py decides which).
EVENT_CANNOT_CONNECT = "CannotConnectToProvider"
EVENT_INVALID_SPEC = "InvalidSpec"
EVENT_CANNOT_ADD_FINALIZER = "CannotAddFinalizer"
EVENT_CANNOT_OBSERVE = "CannotObserveExternalResource"
EVENT_CANNOT_CREATE = "CannotCreateExternalResource"
EVENT_CANNOT_UPDATE = "CannotUpdateExternalResource"
EVENT_CANNOT_DELETE = "CannotDeleteExternalResource"
EVENT_CANNOT_PUBLISH = "CannotPublishConnectionDetails"
EVENT_CANNOT_SET_PASSWORD = "CannotSetPassword"
EVENT_CANNOT_UNPUBLISH = "CannotUnpublishConnectionDetails"
EVENT_CANNOT_REMOVE_FINALIZER = "CannotRemoveFinalizer"
# On a provider config being deleted while objects still use it: which ones hold it.
EVENT_CONFIG_IN_USE = "ProviderConfigInUse"


# ---------------------------------------------------------------------- connection Secrets


# Default connection Secret names, per kind. The suffixes end differently, so no Database and
# Bucket in one namespace can default to the same Secret whatever their names (a Database named
# `x-bucket` defaults to `x-bucket-connection`, a Bucket named `x` to `x-bucket`).
DEFAULT_SECRET_SUFFIX: Mapping[Kind, str] = {Kind.DATABASE: "-connection", Kind.BUCKET: "-bucket"}
# Before kumo 0.2 Buckets defaulted to `<name>-connection` too: a Bucket that already published
# there (it has status.atProvider but no status.connectionSecret yet) keeps that Secret.
LEGACY_SECRET_SUFFIX = "-connection"
# The Secret data key holding a rotation's new password until the cloud applies it.
PENDING_PASSWORD_KEY = "pending-password"


def connection_secret_name(kind: Kind, body: Mapping[str, Any]) -> str:
    """The Secret an object publishes to: spec.writeConnectionSecretToRef.name, else the name
    recorded in status.connectionSecret (kept even if the default changes), else the kind's
    default."""
    ref = (body.get("spec") or {}).get("writeConnectionSecretToRef") or {}
    if ref.get("name"):
        return str(ref["name"])
    status = body.get("status") or {}
    if status.get("connectionSecret"):
        return str(status["connectionSecret"])
    name = str(body["metadata"]["name"])
    if kind is Kind.BUCKET and (status.get("atProvider") or {}).get("externalName"):
        return name + LEGACY_SECRET_SUFFIX
    return name + DEFAULT_SECRET_SUFFIX[kind]
