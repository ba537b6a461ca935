"""Specs as the controller sees them: bodies defaulted from crds/*.yaml the way the API server
defaults them, parsed by the controller's own parser. Tests build their specs here instead of
inventing defaults, so a default changes in the CRD and nowhere else."""

from __future__ import annotations

import functools
from dataclasses import replace
from pathlib import Path
from typing import Any

from kumo.controller.core.resources import parse_spec
from kumo.providers.base import BucketSpec, DatabaseSpec, Kind
from kumo.testbed.schemadefaults import apply_defaults, crd_schemas

from kumo.api import VERSION

CRDS = Path(__file__).resolve().parent.parent / "crds"
# The least a Database needs (the CRD requires engine and version); a Bucket needs nothing.
MINIMAL_DATABASE = {"engine": "postgres", "version": "16"}


@functools.cache
def _schemas() -> dict[str, Any]:
    return crd_schemas(CRDS, VERSION)


def crd_schema(kind: Kind) -> dict[str, Any]:
    """The openAPIV3Schema of the kind's CRD in crds/."""
    return dict(_schemas()[str(kind)])


def defaulted_spec(kind: Kind, spec: dict[str, Any]) -> dict[str, Any]:
    """`spec` as the API server stores it: with the CRD's defaults filled in."""
    body = apply_defaults(crd_schema(kind), {"spec": spec})
    return dict(body["spec"])


def defaulted_body(kind: Kind, body: dict[str, Any]) -> dict[str, Any]:
    """A whole object as the API server serves it: with the CRD's defaults filled in."""
    return dict(apply_defaults(crd_schema(kind), body))


def database_spec(**fields: Any) -> DatabaseSpec:
    """A minimal Database's spec after defaulting, with `fields` (dataclass names) replaced."""
    parsed = parse_spec(DatabaseSpec, defaulted_spec(Kind.DATABASE, MINIMAL_DATABASE))
    return replace(parsed, **fields)


def bucket_spec(**fields: Any) -> BucketSpec:
    """A minimal Bucket's spec after defaulting, with `fields` (dataclass names) replaced."""
    return replace(parse_spec(BucketSpec, defaulted_spec(Kind.BUCKET, {})), **fields)
