"""The shared field-table row type (providers/fields.py) and the four providers' tables: what
`desired` leaves out, what counts as drift, and that every table reads back what it renders."""

from __future__ import annotations

from typing import Any

import pytest
from kumo.providers.aws import rds, s3
from kumo.providers.base import Kind, ManagedResource, Ownership
from kumo.providers.fields import UNMANAGED, FieldTable, Setting
from kumo.providers.gcp import cloudsql, gcs

from ..specs import bucket_spec, database_spec

OWNER = Ownership(uid="u-1", namespace="team-a", name="orders", cluster_id="c-1")


def _row(name: str, desired: Any, **row: Any) -> Setting[dict[str, Any], None]:
    return Setting(name, lambda _: desired, lambda answer: answer.get(name), None, **row)


TABLE = FieldTable(
    _row("size", 20, grow_only=True),
    _row("window", UNMANAGED),
    _row("version", "16", matches=lambda want, have: str(have).startswith(want)),
    _row("tags", {"owner": "u-1"}),
)
RESOURCE = ManagedResource(Kind.DATABASE, "orders", OWNER, database_spec())


def test_a_setting_the_spec_leaves_to_the_cloud_is_neither_desired_nor_compared() -> None:
    desired = TABLE.desired(RESOURCE)
    assert "window" not in desired
    assert TABLE.drift(desired, {"size": 20, "window": "sun", "version": "16", "tags": {"owner": "u-1"}}) == ()


@pytest.mark.parametrize(
    ("actual", "drifted", "correctable"),
    [
        pytest.param({"size": 20, "version": "16.4", "tags": {"owner": "u-1", "x": "y"}}, [], [], id="in-sync"),
        pytest.param({"size": 30, "version": "16", "tags": {"owner": "u-1"}}, ["size"], [False], id="grown-disk"),
        pytest.param({"size": 10, "version": "16", "tags": {"owner": "u-1"}}, ["size"], [True], id="small-disk"),
        pytest.param({"size": 20, "version": "15.2", "tags": {}}, ["version", "tags"], [True, True], id="version"),
    ],
)
def test_drift_uses_each_rows_match_and_growth_rule(
    actual: dict[str, Any], drifted: list[str], correctable: list[bool]
) -> None:
    drift = TABLE.drift(TABLE.desired(RESOURCE), actual)
    assert [d.field for d in drift] == drifted
    assert [d.correctable for d in drift] == correctable


def test_selected_keeps_table_order_and_a_table_names_each_setting_once() -> None:
    assert [row.name for row in TABLE.selected({"tags", "size"})] == ["size", "tags"]
    with pytest.raises(ValueError, match="once"):
        FieldTable(_row("size", 1), _row("size", 2))


@pytest.mark.parametrize(
    ("table", "grow_only"),
    [
        pytest.param(rds.SETTINGS, {"storageGB"}, id="rds"),
        pytest.param(cloudsql.SETTINGS, {"storageGB"}, id="cloudsql"),
        pytest.param(s3.SETTINGS, set(), id="s3"),
        pytest.param(gcs.SETTINGS, set(), id="gcs"),
    ],
)
def test_only_disks_are_grow_only(table: FieldTable[Any, Any], grow_only: set[str]) -> None:
    assert table.grow_only == grow_only


def test_database_tables_manage_the_same_portable_settings() -> None:
    """Both clouds compare the same portable fields (ownership is tags on AWS, labels on GCP)."""
    assert set(rds.SETTINGS.names) - {"tags"} == set(cloudsql.SETTINGS.names) - {"labels"}


def test_bucket_tables_render_every_setting_of_a_default_bucket() -> None:
    resource = ManagedResource(Kind.BUCKET, "assets", OWNER, bucket_spec())
    assert set(s3.desired_settings(resource)) == set(s3.SETTINGS.names)
    assert set(gcs.desired_settings(resource)) == set(gcs.SETTINGS.names)


def test_a_create_writes_only_what_a_new_resource_does_not_already_have() -> None:
    """Rows whose desired value the cloud's initial one satisfies (by the row's own match) are
    not written on create; rows without a documented initial value always are."""
    table = FieldTable(
        _row("blocked", True, initial=True),
        _row("version", "16", matches=lambda want, have: str(have).startswith(want), initial="16.4"),
        _row("versioning", True, initial=False),
        _row("tags", {"owner": "u-1"}),
    )
    desired = {"blocked": True, "version": "16", "versioning": True, "tags": {"owner": "u-1"}}
    assert [row.name for row in table.written_on_create(desired)] == ["versioning", "tags"]
    assert [row.name for row in table.written_on_create({"blocked": False})] == ["blocked"]
