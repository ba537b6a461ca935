"""From Kubernetes objects to what providers understand: kinds, keys, external names, specs.

The external name of a cloud resource is derived deterministically from the object (namespace,
name, and a short hash that also covers the cluster id), so a retry after a crash finds what an
earlier attempt created instead of creating a second one, and two clusters sharing one cloud
account never collide. `spec.externalName` overrides it (and is how a user adopts a resource).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from kumo.providers.base import (
    SPEC_KEY,
    SPEC_PARSE,
    SPEC_REQUIRED,
    BucketSpec,
    DatabaseSpec,
    Kind,
    ManagedResource,
    Ownership,
    Terminal,
)
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


class InvalidSpec(Terminal):
    """The spec holds a value kumo does not know, or lacks one it needs; the message names the
    field. Nothing was called: fixing the spec is the only way forward."""


def managed_resource(
    kind: Kind, body: Mapping[str, Any], cluster_id: str, default_options: Mapping[str, Any] | None = None
) -> ManagedResource:
    """The provider's view of an object; `default_options` (the ProviderConfig's providerOptions)
    sit under the object's own, which win key by key. `InvalidSpec` names a field whose value kumo
    does not know."""
    spec = dict(body.get("spec") or {})
    spec["providerOptions"] = {**(default_options or {}), **(spec.get("providerOptions") or {})}
    parsed: DatabaseSpec | BucketSpec = parse_spec(DatabaseSpec if kind is Kind.DATABASE else BucketSpec, spec)
    return ManagedResource(kind, external_name(body, cluster_id), ownership(body, cluster_id), parsed)


SpecT = TypeVar("SpecT", DatabaseSpec, BucketSpec)
_ABSENT = object()


def parse_spec(spec_type: type[SpecT], spec: Mapping[str, Any]) -> SpecT:
    """A spec dataclass from an object's spec, as each field's `spec_field` declares it. Nothing
    is defaulted here: the API server wrote the CRD's defaults into the object, so a key the CRD
    defaults is present, and a value the CRD would refuse is refused here too, naming the field."""
    values: dict[str, Any] = {}
    for spec_field in dataclasses.fields(spec_type):
        key = spec_field.metadata[SPEC_KEY]
        raw = _lookup(spec, key)
        if raw is _ABSENT or raw is None:
            if spec_field.metadata[SPEC_REQUIRED]:
                raise InvalidSpec(f"spec.{key}: required")
            continue
        try:
            values[spec_field.name] = spec_field.metadata[SPEC_PARSE](raw)
        except ValueError as error:
            raise InvalidSpec(f"spec.{key}: {error}") from None
    return spec_type(**values)


def _lookup(spec: Mapping[str, Any], key: str) -> Any:
    """The value at a dotted key (lifecycle.expireAfterDays), `_ABSENT` when any part is missing."""
    value: Any = spec
    for part in key.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def owner_reference(kind: Kind, body: Mapping[str, Any]) -> dict[str, Any]:
    meta = body["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": str(kind),
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
