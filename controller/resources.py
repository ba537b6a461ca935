"""From Kubernetes objects to what providers understand: kinds, keys, external names, specs.

The external name of a cloud resource is derived deterministically from the object (namespace,
name, and a short hash that also covers the cluster id), so a retry after a crash finds what an
earlier attempt created instead of creating a second one, and two clusters sharing one cloud
account never collide. `spec.externalName` overrides it (and is how a user adopts a resource).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.providers.base import BucketSpec, DatabaseSpec, Kind, ManagedResource, Ownership

from kumo import API_GROUP, API_VERSION

FINALIZER = "kumo.dev/cleanup"
# On a namespaced ProviderConfig and its credentials Secret while objects in the namespace use
# them: deleting the namespace must not take kumo's credentials before the cloud is cleaned up.
IN_USE_FINALIZER = "kumo.dev/in-use"
MAX_EXTERNAL_NAME = 63  # RDS identifiers and bucket names: the strictest of our clouds


@dataclass(frozen=True)
class KindInfo:
    kind: Kind
    plural: str


KINDS = {
    Kind.DATABASE: KindInfo(Kind.DATABASE, "databases"),
    Kind.BUCKET: KindInfo(Kind.BUCKET, "buckets"),
}
API_VERSION_FULL = f"{API_GROUP}/{API_VERSION}"


@dataclass(frozen=True, order=True)
class ObjectKey:
    kind: Kind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def derived_external_name(namespace: str, name: str, cluster_id: str) -> str:
    digest = hashlib.sha256(f"{cluster_id}/{namespace}/{name}".encode()).hexdigest()[:8]
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{namespace}-{name}".lower())
    stem = re.sub(r"-{2,}", "-", stem).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"k-{stem}".rstrip("-")
    stem = stem[: MAX_EXTERNAL_NAME - len(digest) - 1].rstrip("-")
    return f"{stem}-{digest}"


def external_name(body: Mapping[str, Any], cluster_id: str) -> str:
    explicit = body.get("spec", {}).get("externalName")
    if explicit:
        return str(explicit)
    meta = body["metadata"]
    return derived_external_name(meta["namespace"], meta["name"], cluster_id)


# Default connection Secret names, per kind. The suffixes end differently, so no Database and
# Bucket in one namespace can default to the same Secret whatever their names (a Database named
# `x-bucket` defaults to `x-bucket-connection`, a Bucket named `x` to `x-bucket`).
DEFAULT_SECRET_SUFFIX = {Kind.DATABASE: "-connection", Kind.BUCKET: "-bucket"}
# Before kumo 0.2 Buckets defaulted to `<name>-connection` too: a Bucket that already published
# there (it has status.atProvider but no status.connectionSecret yet) keeps that Secret.
LEGACY_SECRET_SUFFIX = "-connection"  # noqa: S105 (a name, not a password)


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


def ownership(body: Mapping[str, Any], cluster_id: str) -> Ownership:
    meta = body["metadata"]
    return Ownership(uid=meta["uid"], namespace=meta["namespace"], name=meta["name"], cluster_id=cluster_id)


def managed_resource(
    kind: Kind, body: Mapping[str, Any], cluster_id: str, default_options: Mapping[str, Any] | None = None
) -> ManagedResource:
    """The provider's view of an object; `default_options` (the ProviderConfig's providerOptions)
    sit under the object's own, which win key by key."""
    spec = dict(body.get("spec", {}))
    spec["providerOptions"] = {**(default_options or {}), **(spec.get("providerOptions") or {})}
    parsed: DatabaseSpec | BucketSpec = _database_spec(spec) if kind is Kind.DATABASE else _bucket_spec(spec)
    return ManagedResource(kind, external_name(body, cluster_id), ownership(body, cluster_id), parsed)


def _database_spec(spec: Mapping[str, Any]) -> DatabaseSpec:
    return DatabaseSpec(
        engine=spec["engine"],
        version=str(spec["version"]),
        size=spec.get("size", "small"),
        instance_class=spec.get("instanceClass", ""),
        storage_gb=int(spec.get("storageGB", 20)),
        high_availability=bool(spec.get("highAvailability", False)),
        backup_retention_days=int(spec.get("backupRetentionDays", 7)),
        deletion_protection=bool(spec.get("deletionProtection", False)),
        publicly_accessible=bool(spec.get("publiclyAccessible", False)),
        database_name=spec.get("databaseName", ""),
        master_username=spec.get("masterUsername", "kumo"),
        skip_final_snapshot=not spec.get("snapshotOnDelete", False),
        provider_options=dict(spec.get("providerOptions") or {}),
    )


def _bucket_spec(spec: Mapping[str, Any]) -> BucketSpec:
    lifecycle = spec.get("lifecycle") or {}
    return BucketSpec(
        location=spec.get("location", ""),
        versioning=bool(spec.get("versioning", False)),
        public_access=bool(spec.get("publicAccess", False)),
        encryption=bool(spec.get("encryption", True)),
        lifecycle_expire_days=lifecycle.get("expireAfterDays"),
        labels=dict(spec.get("labels") or {}),
        force_destroy=bool(spec.get("forceDestroy", False)),
        provider_options=dict(spec.get("providerOptions") or {}),
    )


def owner_reference(kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION_FULL,
        "kind": str(kind),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
