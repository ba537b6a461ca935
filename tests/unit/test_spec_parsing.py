"""How the controller reads a spec: the CRD holds every default (the API server writes them in),
and a value kumo does not know is refused naming its field, never mapped to something else."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from kumo.controller.core.resources import InvalidSpec, managed_resource, parse_spec
from kumo.providers.aws import rds
from kumo.providers.base import ENGINES, SIZES, SPEC_KEY, SPEC_REQUIRED, BucketSpec, DatabaseSpec, Kind
from kumo.providers.gcp import cloudsql
from kumo.testbed.schemadefaults import apply_defaults

from ..specs import crd_schema, defaulted_body, defaulted_spec

BODY = {"metadata": {"name": "orders", "namespace": "team-a", "uid": "u-1"}}


def _property(kind: Kind, key: str) -> dict[str, Any]:
    schema = crd_schema(kind)["properties"]["spec"]
    for part in key.split("."):
        schema = schema["properties"][part]
    return dict(schema)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        pytest.param({"size": "huge"}, "spec.size: 'huge' is not one of small, medium, large", id="unknown-size"),
        pytest.param({"engine": "oracle"}, "spec.engine: 'oracle' is not one of postgres, mysql", id="unknown-engine"),
        pytest.param({"storageGB": "lots"}, "spec.storageGB: 'lots' is not an integer", id="not-a-number"),
        pytest.param({"highAvailability": "yes"}, "spec.highAvailability: 'yes' is not true or false", id="not-bool"),
        pytest.param(
            {"maintenanceWindow": {"day": "Funday", "hour": 3}},
            "spec.maintenanceWindow: 'Funday' is not one of Monday, Tuesday, Wednesday, Thursday, Friday, "
            "Saturday, Sunday",
            id="unknown-day",
        ),
        pytest.param(
            {"maintenanceWindow": {"day": "Monday", "hour": 24}},
            "spec.maintenanceWindow: hour 24 is not from 0 to 23",
            id="hour-out-of-range",
        ),
    ],
)
def test_a_value_kumo_does_not_know_is_refused_naming_the_field(spec: dict[str, Any], message: str) -> None:
    body = {**BODY, "spec": {**defaulted_spec(Kind.DATABASE, {"engine": "postgres", "version": "16"}), **spec}}
    with pytest.raises(InvalidSpec) as raised:
        managed_resource(Kind.DATABASE, body, "c-1")
    assert str(raised.value) == message


def test_a_spec_that_skipped_the_api_server_is_refused_rather_than_defaulted() -> None:
    """Without the CRD's defaults (a manifest never sent to the API server) the controller does
    not make one up: it says which field is missing."""
    with pytest.raises(InvalidSpec, match=r"^spec\.size: required$"):
        managed_resource(Kind.DATABASE, {**BODY, "spec": {"engine": "postgres", "version": "16"}}, "c-1")


def test_an_old_stored_object_reads_with_the_crd_defaults() -> None:
    """An object stored before a field existed is served with the field's default (the API server
    defaults on read), and parses to what a new object with that default would."""
    old = defaulted_body(Kind.DATABASE, {**BODY, "spec": {"engine": "mysql", "version": "8.0"}})
    spec = managed_resource(Kind.DATABASE, old, "c-1").database
    read = (spec.size, spec.storage_gb, spec.backup_retention_days, spec.master_username, spec.skip_final_snapshot)
    assert read == ("small", 20, 7, "kumo", True)


def test_optional_keys_mean_absence_not_a_default() -> None:
    bucket = managed_resource(Kind.BUCKET, defaulted_body(Kind.BUCKET, {**BODY, "spec": {}}), "c-1").bucket
    assert (bucket.location, bucket.lifecycle_expire_days, dict(bucket.labels)) == ("", None, {})
    assert bucket.encryption is True  # the CRD's default, written by the API server


@pytest.mark.parametrize("spec_type", [DatabaseSpec, BucketSpec])
def test_every_required_spec_field_is_required_or_defaulted_by_the_crd(spec_type: type[Any]) -> None:
    """The controller may require only what the API server guarantees to be there."""
    kind = Kind.DATABASE if spec_type is DatabaseSpec else Kind.BUCKET
    required = set(crd_schema(kind)["properties"]["spec"].get("required", []))
    for spec_field in dataclasses.fields(spec_type):
        key = spec_field.metadata[SPEC_KEY]
        declared = _property(kind, key)  # every field's key is in the CRD
        if spec_field.metadata[SPEC_REQUIRED]:
            assert key in required or "default" in declared, key
        else:
            assert "default" not in declared, f"{key}: a CRD default makes absence impossible"


def test_the_closed_sets_are_the_crds_enums_and_every_provider_maps_each_size() -> None:
    assert tuple(_property(Kind.DATABASE, "size")["enum"]) == SIZES
    assert tuple(_property(Kind.DATABASE, "engine")["enum"]) == ENGINES
    for size in SIZES:
        assert rds.instance_class(parse_spec(DatabaseSpec, defaulted_spec(Kind.DATABASE, _db(size=size))))
        assert cloudsql.tier(parse_spec(DatabaseSpec, defaulted_spec(Kind.DATABASE, _db(size=size))))


def _db(**spec: Any) -> dict[str, Any]:
    return {"engine": "postgres", "version": "16", **spec}


def test_defaults_fill_nested_objects_and_leave_given_values() -> None:
    schema = {
        "properties": {
            "ref": {"type": "object", "default": {"name": "default"}, "properties": {"kind": {"default": "K"}}},
            "size": {"default": "small"},
            "items": {"type": "array", "items": {"properties": {"on": {"default": True}}}},
        }
    }
    assert apply_defaults(schema, {"size": "large", "items": [{}, {"on": False}]}) == {
        "ref": {"name": "default", "kind": "K"},
        "size": "large",
        "items": [{"on": True}, {"on": False}],
    }
