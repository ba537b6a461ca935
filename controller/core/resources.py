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
from kumo.providers.naming import GOOGLE_LIKE, RESERVED_PREFIXES

from kumo.api import API_VERSION

MAX_EXTERNAL_NAME = 63  # RDS identifiers and bucket names: the strictest of our clouds


@dataclass(frozen=True, order=True)
class ObjectKey:
    kind: Kind
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind}/{self.namespace}/{self.name}"


def derived_external_name(namespace: str, name: str, cluster_id: str) -> str:
    """The cloud name of an object without spec.externalName: `{namespace}-{name}-{hash8}`.

    One name for every cloud kumo supports, valid on each for every valid namespace and name:
    - S3 buckets ("General purpose bucket naming rules",
      https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html): 3-63
      lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit;
      no "xn--", "sthree-" or "amzn-s3-demo-" prefix; no "-s3alias", "--ol-s3", ".mrap",
      "--x-s3" or "--table-s3" suffix; not an IP address.
    - GCS buckets ("Bucket naming", https://cloud.google.com/storage/docs/buckets#naming): 3-63
      characters of the same kind; no "goog" prefix; no "google" or a close misspelling such
      as "g00gle" anywhere; not an IP address.
    - RDS DB instance identifiers (CreateDBInstance API reference): 1-63 letters, digits and
      hyphens, first a letter, no "--", no trailing hyphen.
    - Cloud SQL instance IDs (Cloud SQL Admin API reference, instances): lowercase letters,
      digits and hyphens, first a letter, at most 98 characters with the project ID (6-30).

    So: the lowercased namespace and name joined by "-", every other character run turned
    into one "-" (no dots, so never an IP address; no "--", so never "xn--"), "k-" in front of
    a digit, cut to 54 characters, then "-" and 8 hex digits of a hash of cluster id,
    namespace and name (so the name ends with a letter or digit and never with a reserved
    suffix, and two clusters or two objects never share a name). Only when that stem carries
    a reserved word (providers/naming.py) is it changed: each "google"-like word becomes
    "ggl", and a reserved prefix ("sthree-", "amzn-s3-demo-", "goog") gets "k-" in front.
    Every other name derives exactly as before these two steps existed, as it must: a name
    that changed would orphan the cloud resource created under the old one (the name recorded
    in status also wins over the derivation, see `external_name`).
    """
    digest = hashlib.sha256(f"{cluster_id}/{namespace}/{name}".encode()).hexdigest()[:8]
    longest_stem = MAX_EXTERNAL_NAME - len(digest) - 1
    stem = re.sub(r"[^a-z0-9-]+", "-", f"{namespace}-{name}".lower())
    stem = re.sub(r"-{2,}", "-", stem).strip("-")
    if not stem or not stem[0].isalpha():
        stem = f"k-{stem}".rstrip("-")
    stem = stem[:longest_stem].rstrip("-")
    while GOOGLE_LIKE.search(stem):  # each pass shortens the stem; "ggl" cannot form a new match
        stem = GOOGLE_LIKE.sub("ggl", stem)
    if f"{stem}-".startswith(RESERVED_PREFIXES):  # the "-" before the hash counts: "sthree" + "-..."
        stem = f"k-{stem}"[:longest_stem].rstrip("-")
    return f"{stem}-{digest}"


def external_name(body: Mapping[str, Any], cluster_id: str) -> str:
    """spec.externalName, else the name recorded in status.atProvider.externalName (an object
    keeps the name its resource was created under even if the derivation changes), else the
    derived name."""
    explicit = (body.get("spec") or {}).get("externalName")
    if explicit:
        return str(explicit)
    recorded = ((body.get("status") or {}).get("atProvider") or {}).get("externalName")
    if recorded:
        return str(recorded)
    meta = body["metadata"]
    return derived_external_name(meta["namespace"], meta["name"], cluster_id)


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
        "apiVersion": API_VERSION,
        "kind": str(kind),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
