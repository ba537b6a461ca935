"""The strict RDS layer of the test bed (testbed/strictaws/rds.py) on a clock the test moves:
each scenario is one behaviour AWS has and moto lacks, read back through boto3 as kumo reads it.

moto runs in process (`mock_aws`); the layer's patches stay installed for the rest of the session,
which only changes RDS DB instances (no other unit test creates one).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

moto = pytest.importorskip("moto")

from kumo.testbed.strictaws import rds as strict  # noqa: E402
from kumo.testbed.strictaws.timings import Timings  # noqa: E402

TIMINGS = Timings()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Iterator[Clock]:
    strict.install(TIMINGS)
    from moto.rds import models

    layer = models.RDSBackend._kumo_strict  # type: ignore[attr-defined]
    saved, layer.clock = layer.clock, Clock()
    try:
        yield layer.clock
    finally:
        layer.clock = saved


@pytest.fixture
def rds(clock: Clock) -> Iterator[Any]:
    with moto.mock_aws():
        yield boto3.client("rds", region_name="us-east-1")


def create(rds: Any, name: str = "db1", **extra: Any) -> dict[str, Any]:
    return dict(
        rds.create_db_instance(
            DBInstanceIdentifier=name,
            Engine="postgres",
            DBInstanceClass="db.t3.micro",
            MasterUsername="kumo",
            MasterUserPassword="s3cret-Passw0rd",
            AllocatedStorage=20,
            BackupRetentionPeriod=7,
            **extra,
        )["DBInstance"]
    )


def described(rds: Any, name: str = "db1") -> dict[str, Any]:
    return dict(rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0])


def refusal(call: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as refused:
        call()
    error = refused.value.response["Error"]
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return error["Code"], error["Message"]


def available(rds: Any, clock: Clock) -> None:
    clock.advance(TIMINGS.rds_creating + TIMINGS.rds_backing_up)
    assert described(rds)["DBInstanceStatus"] == "available"


def test_a_new_instance_is_creating_without_endpoint_then_backing_up_then_available(rds, clock):
    created = create(rds)
    assert created["DBInstanceStatus"] == "creating" and "Endpoint" not in created
    clock.advance(TIMINGS.rds_creating)
    backing_up = described(rds)
    assert backing_up["DBInstanceStatus"] == "backing-up" and backing_up["Endpoint"]["Address"]
    clock.advance(TIMINGS.rds_backing_up)
    assert described(rds)["DBInstanceStatus"] == "available"


@pytest.mark.parametrize("elapsed", [0.0, TIMINGS.rds_creating], ids=["creating", "backing-up"])
def test_modify_while_busy_is_invalid_db_instance_state(rds, clock, elapsed):
    create(rds)
    clock.advance(elapsed)
    assert refusal(lambda: rds.modify_db_instance(DBInstanceIdentifier="db1", DBInstanceClass="db.t3.large")) == (
        "InvalidDBInstanceState",
        "Database instance is not in available state.",
    )


def test_apply_immediately_holds_the_change_as_pending_then_modifying_then_applied(rds, clock):
    create(rds)
    available(rds, clock)
    answer = rds.modify_db_instance(DBInstanceIdentifier="db1", DBInstanceClass="db.t3.large", ApplyImmediately=True)
    assert answer["DBInstance"]["DBInstanceStatus"] == "available"
    assert answer["DBInstance"]["PendingModifiedValues"] == {"DBInstanceClass": "db.t3.large"}
    clock.advance(TIMINGS.rds_modify_start)
    modifying = described(rds)
    assert modifying["DBInstanceStatus"] == "modifying" and modifying["DBInstanceClass"] == "db.t3.micro"
    clock.advance(TIMINGS.rds_modifying)
    done = described(rds)
    assert done["DBInstanceStatus"] == "available" and done["DBInstanceClass"] == "db.t3.large"
    assert done["PendingModifiedValues"] == {}


def test_without_apply_immediately_a_change_waits_for_the_window_unless_a_later_request_applies_it(rds, clock):
    create(rds)
    available(rds, clock)
    rds.modify_db_instance(DBInstanceIdentifier="db1", DBInstanceClass="db.t3.large", ApplyImmediately=False)
    clock.advance(TIMINGS.rds_maintenance_window / 2)
    assert described(rds)["PendingModifiedValues"] == {"DBInstanceClass": "db.t3.large"}
    # "the modifications in this request and any pending modifications are ... applied as soon as possible"
    rds.modify_db_instance(DBInstanceIdentifier="db1", DeletionProtection=True, ApplyImmediately=True)
    clock.advance(TIMINGS.rds_modify_start + TIMINGS.rds_modifying)
    done = described(rds)
    assert done["DBInstanceClass"] == "db.t3.large" and done["DeletionProtection"] is True


def test_a_new_password_is_applied_as_soon_as_possible_and_never_shown(rds, clock):
    create(rds)
    available(rds, clock)
    rds.modify_db_instance(DBInstanceIdentifier="db1", MasterUserPassword="n3w-Passw0rd", DBInstanceClass="db.t3.large")
    clock.advance(TIMINGS.rds_modify_start)
    resetting = described(rds)
    assert resetting["DBInstanceStatus"] == "resetting-master-credentials"
    assert resetting["PendingModifiedValues"] == {"DBInstanceClass": "db.t3.large", "MasterUserPassword": "****"}
    clock.advance(TIMINGS.rds_password_reset)
    assert described(rds)["PendingModifiedValues"] == {"DBInstanceClass": "db.t3.large"}  # the window's


def test_a_storage_change_soon_after_the_previous_one_is_refused_whole(rds, clock):
    create(rds)
    available(rds, clock)
    rds.modify_db_instance(DBInstanceIdentifier="db1", AllocatedStorage=30, ApplyImmediately=True)
    clock.advance(TIMINGS.rds_modify_start + TIMINGS.rds_modifying)
    assert described(rds)["DBInstanceStatus"] == "storage-optimization"

    def both() -> Any:
        return rds.modify_db_instance(
            DBInstanceIdentifier="db1", AllocatedStorage=40, DBInstanceClass="db.t3.large", ApplyImmediately=True
        )

    code, message = refusal(both)
    assert code == "InvalidParameterCombination" and "previous storage change is being optimized" in message
    assert described(rds)["PendingModifiedValues"] == {}  # the class change went nowhere either
    rds.modify_db_instance(DBInstanceIdentifier="db1", DBInstanceClass="db.t3.large", ApplyImmediately=True)
    clock.advance(TIMINGS.rds_storage_cooldown)
    both()
    clock.advance(TIMINGS.rds_modify_start + TIMINGS.rds_modifying)
    assert described(rds)["AllocatedStorage"] == 40


def test_a_final_snapshot_is_refused_while_busy_and_under_a_taken_name(rds, clock):
    create(rds)
    code, message = refusal(lambda: rds.delete_db_instance(DBInstanceIdentifier="db1", FinalDBSnapshotIdentifier="s1"))
    assert (code, message) == (
        "InvalidDBInstanceState",
        "Instance db1 is currently creating - a final snapshot cannot be taken.",
    )
    available(rds, clock)
    rds.create_db_snapshot(DBInstanceIdentifier="db1", DBSnapshotIdentifier="s1")
    code, _ = refusal(lambda: rds.delete_db_instance(DBInstanceIdentifier="db1", FinalDBSnapshotIdentifier="s1"))
    assert code == "DBSnapshotAlreadyExists" and described(rds)["DBInstanceStatus"] == "available"
    rds.delete_db_instance(DBInstanceIdentifier="db1", FinalDBSnapshotIdentifier="s2")


def test_a_delete_without_final_snapshot_is_accepted_while_creating(rds, clock):
    create(rds)
    assert rds.delete_db_instance(DBInstanceIdentifier="db1", SkipFinalSnapshot=True)["DBInstance"]


def test_the_maintenance_window_is_kept_from_create_and_a_change_applies_at_once(rds, clock):
    """PreferredMaintenanceWindow is stored as sent (lowercase, as AWS reports it) and a new one
    is "asynchronously applied as soon as possible", never listed in PendingModifiedValues (that
    type has no such member): ModifyDBInstance API reference."""
    create(rds, PreferredMaintenanceWindow="tue:03:00-tue:04:00")
    available(rds, clock)
    assert described(rds)["PreferredMaintenanceWindow"] == "tue:03:00-tue:04:00"
    answer = rds.modify_db_instance(
        DBInstanceIdentifier="db1", PreferredMaintenanceWindow="Sun:23:00-Mon:00:00", ApplyImmediately=True
    )
    assert answer["DBInstance"]["PendingModifiedValues"] == {}
    now = described(rds)
    assert now["PreferredMaintenanceWindow"] == "sun:23:00-mon:00:00" and now["DBInstanceStatus"] == "available"
