"""kumo against RDS as strict as RDS: instances that are busy for a while, modifications held in
PendingModifiedValues, storage changes refused during optimization, final-snapshot names taken.

Every scenario drives a Database through the real API server and checks the cloud with boto3
against the bed's moto, whose strict layer (testbed/strictaws/rds.py, docs/testbed.md "AWS: RDS")
models each behaviour with its AWS source. Waits are the bed's short defaults (KUMO_STRICT_AWS_*).
"""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from kumo.testbed.probes import AWSProbe, probe_for

from .conftest import Kumo, condition, example, unique

pytestmark = pytest.mark.e2e

TIMEOUT = 90.0


@pytest.fixture
def aws(testbed) -> AWSProbe:
    probe = probe_for("aws", testbed.env)
    assert isinstance(probe, AWSProbe)
    return probe


@pytest.fixture
def aws_config(kumo: Kumo, aws: AWSProbe) -> str:
    secret, config = aws.provider_config(name="aws")
    kumo.core.create_namespaced_secret(kumo.namespace, secret)
    kumo.create(config)
    return "aws"


def instance(aws: AWSProbe, name: str) -> dict[str, Any] | None:
    """The DB instance as DescribeDBInstances reports it, None when there is none."""
    try:
        return dict(aws.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0])
    except ClientError as error:
        if "NotFound" in error.response["Error"]["Code"]:
            return None
        raise


def in_state(aws: AWSProbe, name: str, *states: str) -> dict[str, Any] | None:
    found = instance(aws, name)
    return found if found is not None and found["DBInstanceStatus"] in states else None


def external_name(kumo: Kumo, name: str) -> str:
    def named() -> str:
        obj = kumo.get("Database", name) or {}
        return str(((obj.get("status") or {}).get("atProvider") or {}).get("externalName") or "")

    return str(kumo.wait_for(f"{name} has an external name", named, TIMEOUT))


def warnings(kumo: Kumo, name: str) -> list[str]:
    return [f"{e.reason}: {e.message}" for e in kumo.events(name) if e.type == "Warning"]


def database(name: str, **spec: Any) -> dict[str, Any]:
    manifest = example("aws", "Database", name)
    manifest["spec"].update(spec)
    return manifest


def test_spec_edit_while_the_instance_is_busy_waits_quietly_then_applies(kumo: Kumo, aws: AWSProbe, aws_config):
    """An edit made while RDS refuses modifications (the first backup after creation) is sent once
    the instance takes it: no warning event, Synced never False, the cloud ends as the spec says."""
    name = unique("busy")
    kumo.create(database(name))
    external = external_name(kumo, name)
    kumo.wait_for(f"{external} busy", lambda: in_state(aws, external, "creating", "backing-up"), TIMEOUT)
    kumo.patch("Database", name, {"spec": {"size": "medium", "backupRetentionDays": 3}})

    def applied() -> dict[str, Any] | None:
        found = instance(aws, external)
        done = found and found["DBInstanceClass"] == "db.t3.large" and found["BackupRetentionPeriod"] == 3
        return found if done else None

    kumo.wait_for("the edit reaches RDS", applied, TIMEOUT)
    obj = kumo.wait_for(
        "Synced, generation observed",
        lambda: (o := kumo.get("Database", name)) and o["status"].get("observedGeneration") == 2 and o,
        TIMEOUT,
    )
    assert condition(obj, "Synced")["status"] == "True"
    assert warnings(kumo, name) == []


def test_a_refused_storage_change_does_not_hold_back_the_class_change_sent_with_it(
    kumo: Kumo, aws: AWSProbe, aws_config
):
    """Right after a storage change RDS refuses another one ("storage optimization"). The class
    change asked for at the same time still reaches RDS; the storage change shows as waiting with
    AWS's reason in Synced (True: nothing failed) and is applied once RDS accepts it."""
    name = unique("storage")
    kumo.create(database(name))
    external = external_name(kumo, name)
    kumo.wait_ready("Database", name, TIMEOUT)
    kumo.wait_for(f"{external} available", lambda: in_state(aws, external, "available"), TIMEOUT)
    kumo.patch("Database", name, {"spec": {"storageGB": 30}})
    kumo.wait_for(
        "the first storage change applied",
        lambda: (instance(aws, external) or {}).get("AllocatedStorage") == 30,
        TIMEOUT,
    )

    kumo.patch("Database", name, {"spec": {"storageGB": 40, "size": "medium"}})
    kumo.wait_for(
        "the class change reaches RDS",
        lambda: (instance(aws, external) or {}).get("DBInstanceClass") == "db.t3.large",
        TIMEOUT,
    )

    def storage_waits() -> dict[str, Any] | None:
        synced = condition(kumo.get("Database", name) or {}, "Synced") or {}
        waiting = synced.get("reason") == "ReconcilePending" and "storageGB" in synced.get("message", "")
        return synced if waiting else None

    synced = storage_waits() or kumo.wait_for("the storage change shown as waiting", storage_waits, TIMEOUT)
    assert synced["status"] == "True"
    assert "storageGB 30 -> 40" in synced["message"] and "optimized" in synced["message"]
    assert (instance(aws, external) or {}).get("AllocatedStorage") == 30

    kumo.wait_for(
        "the storage change applied once RDS takes it",
        lambda: (instance(aws, external) or {}).get("AllocatedStorage") == 40,
        TIMEOUT,
    )
    obj = kumo.wait_for(
        "Synced without a reason to wait",
        lambda: (o := kumo.get("Database", name)) and condition(o, "Synced")["reason"] == "ReconcileSuccess" and o,
        TIMEOUT,
    )
    assert obj["status"]["observedGeneration"] == obj["metadata"]["generation"]
    assert warnings(kumo, name) == []


def test_a_change_left_for_the_maintenance_window_shows_as_pending_not_as_drift(kumo: Kumo, aws: AWSProbe, aws_config):
    """Someone modifies the instance without ApplyImmediately: RDS holds the change in
    PendingModifiedValues until the maintenance window. kumo shows it in
    atProvider.pendingModifications, does not call it drift (the instance still matches the
    spec), and sends nothing that would apply it early."""
    name = unique("window")
    kumo.create(database(name))
    external = external_name(kumo, name)
    kumo.wait_ready("Database", name, TIMEOUT)
    kumo.wait_for(f"{external} available", lambda: in_state(aws, external, "available"), TIMEOUT)
    aws.rds.modify_db_instance(DBInstanceIdentifier=external, DBInstanceClass="db.m5.large", ApplyImmediately=False)
    kumo.patch("Database", name, {"spec": {"driftPolicy": "Report"}})  # an edit with no cloud call: a reconcile

    def pending_shown() -> dict[str, Any] | None:
        obj = kumo.get("Database", name) or {}
        status = obj.get("status") or {}
        shown = (status.get("atProvider") or {}).get("pendingModifications")
        return obj if shown == {"instanceClass": "db.m5.large"} and status.get("observedGeneration") == 2 else None

    obj = kumo.wait_for("the waiting change in atProvider.pendingModifications", pending_shown, TIMEOUT)
    assert condition(obj, "InSync")["status"] == "True" and obj["status"].get("drift", []) == []
    found = instance(aws, external) or {}
    assert found["DBInstanceClass"] == "db.t3.micro" and found["DBInstanceStatus"] == "available"
    assert found["PendingModifiedValues"] == {"DBInstanceClass": "db.m5.large"}
    assert warnings(kumo, name) == []


def test_delete_of_a_busy_instance_with_a_final_snapshot_waits_then_takes_it(kumo: Kumo, aws: AWSProbe, aws_config):
    """RDS takes no final snapshot of an instance still creating or backing up; kumo waits quietly
    (no warning event) and deletes it with its snapshot once it can."""
    name = unique("early")
    kumo.create(database(name, snapshotOnDelete=True))
    external = external_name(kumo, name)
    kumo.wait_for(f"{external} busy", lambda: in_state(aws, external, "creating", "backing-up"), TIMEOUT)
    kumo.delete("Database", name)

    kumo.wait_gone("Database", name, TIMEOUT)
    assert instance(aws, external) is None
    snapshots = aws.rds.describe_db_snapshots(DBInstanceIdentifier=external, SnapshotType="manual")["DBSnapshots"]
    assert [s["DBSnapshotIdentifier"] for s in snapshots] == [f"{external}-final"]
    assert warnings(kumo, name) == []


def test_a_final_snapshot_name_taken_by_an_earlier_instance_does_not_block_the_delete(
    kumo: Kumo, aws: AWSProbe, aws_config
):
    """An earlier instance under the same name left `<name>-final` behind: the delete takes the
    final snapshot under a fresh name instead of being stuck, and the earlier snapshot stays."""
    name = unique("again")
    external = f"{name}-rds"
    aws.rds.create_db_instance(
        DBInstanceIdentifier=external,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        MasterUsername="earlier",
        MasterUserPassword="earlier-Passw0rd",
        AllocatedStorage=20,
    )
    aws.rds.create_db_snapshot(DBInstanceIdentifier=external, DBSnapshotIdentifier=f"{external}-final")
    aws.rds.delete_db_instance(DBInstanceIdentifier=external, SkipFinalSnapshot=True)

    kumo.create(database(name, externalName=external, snapshotOnDelete=True))
    kumo.wait_ready("Database", name, TIMEOUT)
    kumo.delete("Database", name)

    kumo.wait_gone("Database", name, TIMEOUT)
    assert instance(aws, external) is None
    snapshots = aws.rds.describe_db_snapshots(DBInstanceIdentifier=external, SnapshotType="manual")["DBSnapshots"]
    names = sorted(s["DBSnapshotIdentifier"] for s in snapshots)
    assert len(names) == 2 and names[0] == f"{external}-final", names
    assert names[1].startswith(f"{external}-final-"), names
