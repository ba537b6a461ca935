"""The AWS provider end to end: boto3 over HTTP against a moto server, through the provider's
public verbs (observe / observe_many / create / update / delete / set_password).

Out-of-band changes are made with a plain boto3 client, as a user with console access would.
Every test counts the SDK calls it caused through `CallHooks` and checks that `before` was awaited
for each call `after` reported.
"""

from __future__ import annotations

import asyncio
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import boto3
import pytest
from kumo.providers.aws import AWSProvider
from kumo.providers.base import (
    CallHooks,
    CloudCall,
    DatabaseClient,
    Deletion,
    ExternalClient,
    Kind,
    ManagedResource,
    NotReady,
    Ownership,
    ProviderSettings,
    Retryable,
    Terminal,
)
from kumo.testbed.emulators import EMULATORS, start_emulator
from kumo.testbed.process import free_port

from ..specs import bucket_spec, database_spec

# Self-contained (starts its own moto server), but an end-to-end test like its neighbours.
pytestmark = pytest.mark.e2e

T = TypeVar("T")
REGION = "us-east-1"
PASSWORD = "s3cret-Passw0rd"  # the master password of every test database


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


# ---------------------------------------------------------------------------- fixtures


@dataclass(frozen=True)
class Moto:
    endpoint: str
    settings: ProviderSettings

    def boto(self, service: str, region: str = REGION) -> Any:
        """A plain boto3 client: the "someone else" who changes things out of band."""
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def reset(self) -> None:
        """Forget every resource (moto's own test API), for tests that count whole listings."""
        # Loopback URL of the server this module started.
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=10):  # noqa: S310
            pass


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Moto]:
    proc, endpoint = start_emulator(next(e for e in EMULATORS if e.name == "moto"), tmp_path_factory.mktemp("moto"))
    settings = ProviderSettings(
        provider="aws",
        region=REGION,
        credentials={"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
        endpoints={"rds": endpoint, "s3": endpoint, "sts": endpoint},
    )
    try:
        yield Moto(endpoint, settings)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def provider() -> AWSProvider:
    return AWSProvider()


@dataclass
class CallLog:
    """Every SDK call the provider made, as its hooks saw them."""

    started: list[tuple[str, str]] = field(default_factory=list)
    finished: list[CloudCall] = field(default_factory=list)

    def hooks(self) -> CallHooks:
        async def before(service: str, operation: str) -> None:
            await asyncio.sleep(0)  # a real token bucket may wait here
            self.started.append((service, operation))

        return CallHooks(before=before, after=self.finished.append)

    def count(self, operation: str) -> int:
        return sum(1 for call in self.finished if call.operation == operation)

    def operations(self) -> list[str]:
        return [call.operation for call in self.finished]

    def clear(self) -> None:
        self.started.clear()
        self.finished.clear()

    @property
    def balanced(self) -> bool:
        """`before` was awaited for exactly the calls `after` was told about (concurrent reads
        may finish in another order than they started)."""
        return Counter((c.service, c.operation) for c in self.finished) == Counter(self.started)


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture
def rds(provider: AWSProvider, moto: Moto, calls: CallLog) -> DatabaseClient:
    client = provider.client(Kind.DATABASE, moto.settings, calls.hooks())
    assert isinstance(client, DatabaseClient)
    return client


@pytest.fixture
def s3(provider: AWSProvider, moto: Moto, calls: CallLog) -> ExternalClient:
    return provider.client(Kind.BUCKET, moto.settings, calls.hooks())


def owner(name: str) -> Ownership:
    return Ownership(uid=str(uuid.uuid4()), namespace="team-a", name=name, cluster_id="c-test")


def database(**spec: Any) -> ManagedResource:
    name = f"db-{uuid.uuid4().hex[:10]}"
    fields: dict[str, Any] = {"engine": "postgres", "version": "16", **spec}
    return ManagedResource(Kind.DATABASE, name, owner(name), database_spec(**fields))


def bucket(**spec: Any) -> ManagedResource:
    name = f"bkt-{uuid.uuid4().hex[:10]}"
    return ManagedResource(Kind.BUCKET, name, owner(name), bucket_spec(**spec))


# ---------------------------------------------------------------------------- RDS


def settled(moto: Moto, resource: ManagedResource) -> dict[str, Any]:
    """The instance once RDS is done with it (available, nothing pending). The bed, like AWS,
    keeps a new instance creating and backing up for a while and applies modifications later
    (testbed/strictaws/rds.py); these tests used to rely on moto doing everything at once."""
    aws = moto.boto("rds")
    deadline = time.monotonic() + 60
    while True:
        found = dict(aws.describe_db_instances(DBInstanceIdentifier=resource.external_name)["DBInstances"][0])
        if found["DBInstanceStatus"] == "available" and not found.get("PendingModifiedValues"):
            return found
        assert time.monotonic() < deadline, f"{resource.external_name} still {found['DBInstanceStatus']}"
        time.sleep(0.2)


def test_database_create_then_observe_is_ready_owned_and_in_sync(
    rds: DatabaseClient, moto: Moto, calls: CallLog
) -> None:
    """A created instance is `creating` without an endpoint, then reads back ready, with
    host/port, our owner and no drift."""
    resource = database(database_name="app")
    creation = run(rds.create(resource, PASSWORD))
    assert creation.observation is not None and not creation.observation.ready
    assert creation.state == "creating" and "host" not in creation.observation.connection
    settled(moto, resource)
    observed = run(rds.observe(resource))

    assert creation.external_name == resource.external_name
    assert observed is not None and observed.ready and not observed.drift, observed.drift
    assert observed.owner == resource.owner
    assert observed.connection["host"].startswith(resource.external_name)
    assert observed.connection["port"] == "5432"
    assert observed.connection | {"host": "", "port": ""} == {
        "host": "",
        "port": "",
        "username": "kumo",
        "database": "app",
        "engine": "postgres",
    }
    assert observed.at_provider["arn"].endswith(f":db:{resource.external_name}")
    assert PASSWORD not in repr(observed)
    assert calls.operations() == ["CreateDBInstance", "DescribeDBInstances"] and calls.balanced


def test_database_observe_absent_is_none(rds: DatabaseClient, calls: CallLog) -> None:
    """An instance that does not exist observes as None, not as an error."""
    assert run(rds.observe(database())) is None
    assert calls.finished[0].outcome == "DBInstanceNotFound" and calls.balanced


def test_database_create_twice_is_idempotent(rds: DatabaseClient, calls: CallLog) -> None:
    """A second create (a retry after a crash) succeeds and leaves one instance."""
    resource = database()
    run(rds.create(resource, PASSWORD))
    again = run(rds.create(resource, PASSWORD))

    assert again.external_name == resource.external_name
    assert run(rds.observe(resource)) is not None
    assert [c.outcome for c in calls.finished[:2]] == ["ok", "DBInstanceAlreadyExists"] and calls.balanced


def test_database_out_of_band_changes_are_drift_until_update(rds: DatabaseClient, moto: Moto, calls: CallLog) -> None:
    """Console edits of class, storage, retention, protection and tags show as exactly those
    drifts; one update corrects them all and keeps foreign tags."""
    resource = database()
    run(rds.create(resource, PASSWORD))
    settled(moto, resource)
    aws = moto.boto("rds")
    instance = aws.modify_db_instance(
        DBInstanceIdentifier=resource.external_name,
        DBInstanceClass="db.t3.large",
        AllocatedStorage=50,
        BackupRetentionPeriod=1,
        DeletionProtection=True,
        ApplyImmediately=True,
    )["DBInstance"]
    arn = instance["DBInstanceArn"]
    aws.add_tags_to_resource(
        ResourceName=arn, Tags=[{"Key": "kumo.dev/owner-name", "Value": "hijacked"}, {"Key": "cost", "Value": "x"}]
    )
    settled(moto, resource)  # applied: until then the values wait in PendingModifiedValues

    drifted = run(rds.observe(resource))
    assert drifted is not None
    assert {d.field for d in drifted.drift} == {
        "instanceClass",
        "storageGB",
        "backupRetentionDays",
        "deletionProtection",
        "tags",
    }
    assert drifted.settings["instanceClass"] == "db.t3.large"
    # RDS never shrinks storage: that drift is reported, not correctable, and never sent.
    correctable = tuple(d for d in drifted.drift if d.correctable)
    assert {d.field for d in drifted.drift} - {d.field for d in correctable} == {"storageGB"}
    updated = run(rds.update(resource, correctable))
    assert set(updated.changed) == {d.field for d in correctable}
    settled(moto, resource)
    after = run(rds.observe(resource))
    assert after is not None and [(d.field, d.correctable) for d in after.drift] == [("storageGB", False)]
    assert after.settings["tags"]["cost"] == "x"
    assert after.owner == resource.owner
    assert calls.balanced


def test_database_storage_growth_is_drift_corrected(rds: DatabaseClient, moto: Moto) -> None:
    """A spec asking for more storage than the instance has is drift, and update grows it."""
    resource = database(storage_gb=20)
    run(rds.create(resource, PASSWORD))
    settled(moto, resource)
    bigger = ManagedResource(
        resource.kind,
        resource.external_name,
        resource.owner,
        database_spec(engine="postgres", version="16", storage_gb=40),
    )
    drifted = run(rds.observe(bigger))
    assert drifted is not None and [(d.field, d.desired, d.actual) for d in drifted.drift] == [("storageGB", 40, 20)]

    update = run(rds.update(bigger, drifted.drift))
    assert update.changed == ("storageGB",) and update.pending == ("storageGB",)
    waiting = run(rds.observe(bigger))
    assert waiting is not None and not waiting.drift  # a value RDS holds as pending is not drift
    settled(moto, resource)
    after = run(rds.observe(bigger))
    assert after is not None and not after.drift


def test_database_observe_many_pages_100_at_a_time(
    provider: AWSProvider, moto: Moto, calls: CallLog, rds: DatabaseClient
) -> None:
    """150 instances cost exactly 2 DescribeDBInstances calls; every asked-for one comes back."""
    moto.reset()
    aws = moto.boto("rds")
    resources = [database() for _ in range(150)]
    for resource in resources:
        aws.create_db_instance(
            DBInstanceIdentifier=resource.external_name,
            Engine="postgres",
            EngineVersion="16",
            DBInstanceClass="db.t3.micro",
            AllocatedStorage=20,
            MasterUsername="kumo",
            MasterUserPassword=PASSWORD,
        )
    absent = database()

    observed = run(rds.observe_many([*resources, absent]))

    assert set(observed) == {r.external_name for r in resources}
    assert calls.count("DescribeDBInstances") == 2 and len(calls.finished) == 2
    assert all(o.owner is None for o in observed.values())  # created without kumo's tags
    assert calls.balanced


def test_database_set_password_is_accepted_and_never_echoed(rds: DatabaseClient, moto: Moto, calls: CallLog) -> None:
    """set_password on an existing instance succeeds; the password appears in no call record.
    RDS applies it later: the answer says not applied yet, and observations report the password
    pending until MasterUserPassword leaves PendingModifiedValues (the reconciler publishes then)."""
    resource = database()
    run(rds.create(resource, PASSWORD))
    settled(moto, resource)
    change = run(rds.set_password(resource, "n3w-Passw0rd-value"))

    assert calls.operations()[-1] == "ModifyDBInstance" and calls.finished[-1].outcome == "ok"
    assert "n3w-Passw0rd-value" not in repr(calls.finished) and calls.balanced
    observed = run(rds.observe(resource))
    assert not change.applied and observed is not None and observed.password_pending
    settled(moto, resource)
    observed = run(rds.observe(resource))
    assert observed is not None and not observed.password_pending


def test_database_delete_is_gone_and_stays_gone(rds: DatabaseClient, calls: CallLog) -> None:
    """Delete starts deleting; the next delete finds nothing and reports gone."""
    resource = database()
    run(rds.create(resource, PASSWORD))

    first = run(rds.delete(resource))
    second = run(rds.delete(resource))

    assert first == Deletion(gone=False, state="deleting")  # RDS deletes asynchronously
    assert second.gone
    assert run(rds.observe(resource)) is None and calls.balanced


def test_database_delete_takes_a_deterministic_final_snapshot(rds: DatabaseClient, moto: Moto) -> None:
    """With skip_final_snapshot off, the snapshot is named after the instance."""
    resource = database(skip_final_snapshot=False)
    run(rds.create(resource, PASSWORD))
    settled(moto, resource)  # RDS takes no final snapshot while the instance is creating
    run(rds.delete(resource))

    snapshots = moto.boto("rds").describe_db_snapshots(DBSnapshotIdentifier=f"{resource.external_name}-final")
    assert len(snapshots["DBSnapshots"]) == 1


def with_spec(resource: ManagedResource, **spec: Any) -> ManagedResource:
    fields: dict[str, Any] = {"engine": "postgres", "version": "16", **spec}
    return ManagedResource(resource.kind, resource.external_name, resource.owner, database_spec(**fields))


def test_database_update_of_a_busy_instance_is_not_ready(rds: DatabaseClient, moto: Moto) -> None:
    """A modification RDS refuses because the instance is busy (here: still creating) is a wait,
    `NotReady` quoting AWS, not an error."""
    resource = database()
    run(rds.create(resource, PASSWORD))
    bigger = with_spec(resource, size="medium")
    drifted = run(rds.observe(bigger))
    assert drifted is not None and [d.field for d in drifted.drift] == ["instanceClass"]

    with pytest.raises(NotReady) as waits:
        run(rds.update(bigger, drifted.drift))

    assert "Database instance is not in available state." in str(waits.value)


def test_database_storage_refused_for_optimization_sends_the_rest_and_waits(rds: DatabaseClient, moto: Moto) -> None:
    """Right after a storage change RDS refuses another one, and the whole request with it; the
    client sends the class change on its own and says what waits (`NotReady`)."""
    resource = with_spec(database(), storage_gb=20)
    run(rds.create(resource, PASSWORD))
    settled(moto, resource)
    grown = with_spec(resource, storage_gb=30)
    first = run(rds.observe(grown))
    assert first is not None
    run(rds.update(grown, first.drift))
    settled(moto, resource)
    again = with_spec(resource, storage_gb=40, size="medium")
    drifted = run(rds.observe(again))
    assert drifted is not None and {d.field for d in drifted.drift} == {"storageGB", "instanceClass"}

    with pytest.raises(NotReady) as waits:
        run(rds.update(again, drifted.drift))

    assert str(waits.value).startswith("instanceClass sent; storageGB 30 -> 40 waits")
    found = moto.boto("rds").describe_db_instances(DBInstanceIdentifier=resource.external_name)["DBInstances"][0]
    assert found["AllocatedStorage"] == 30
    assert found["PendingModifiedValues"] == {"DBInstanceClass": "db.t3.large"}


def test_database_final_snapshot_name_taken_gets_a_timestamped_one(rds: DatabaseClient, moto: Moto) -> None:
    """`<name>-final` left by an earlier instance of the same name: the delete takes the final
    snapshot under `<name>-final-<time>` and leaves the earlier one alone."""
    resource = database(skip_final_snapshot=False)
    run(rds.create(resource, PASSWORD))
    settled(moto, resource)
    aws = moto.boto("rds")
    aws.create_db_snapshot(
        DBInstanceIdentifier=resource.external_name, DBSnapshotIdentifier=f"{resource.external_name}-final"
    )

    assert not run(rds.delete(resource)).gone

    snapshots = aws.describe_db_snapshots(DBInstanceIdentifier=resource.external_name, SnapshotType="manual")
    names = sorted(s["DBSnapshotIdentifier"] for s in snapshots["DBSnapshots"])
    assert names[0] == f"{resource.external_name}-final" and len(names) == 2
    assert names[1].startswith(f"{resource.external_name}-final-")


def test_database_delete_protection_reaches_the_caller(rds: DatabaseClient) -> None:
    """Deleting a protected instance is Terminal with AWS's own message; nothing is deleted."""
    resource = database(deletion_protection=True)
    run(rds.create(resource, PASSWORD))

    with pytest.raises(Terminal) as refused:
        run(rds.delete(resource))

    assert "deletion protection" in str(refused.value)
    assert run(rds.observe(resource)) is not None


# ---------------------------------------------------------------------------- S3


def test_bucket_create_then_observe_is_configured_and_in_sync(s3: ExternalClient, calls: CallLog) -> None:
    """Create leaves the bucket fully configured: observe reads every setting back, no drift."""
    resource = bucket(versioning=True, lifecycle_expire_days=30, labels={"team": "a"})
    run(s3.create(resource, None))
    observed = run(s3.observe(resource))

    assert observed is not None and not observed.drift, observed.drift
    assert observed.owner == resource.owner
    settings = dict(observed.settings)
    assert settings.pop("tags")["team"] == "a"
    assert settings == {
        "versioning": True,
        "publicAccessBlock": True,
        "encryption": "AES256",
        "lifecycleExpireDays": 30,
    }
    assert observed.connection["url"] == f"s3://{resource.external_name}"
    assert observed.at_provider["arn"] == f"arn:aws:s3:::{resource.external_name}"
    # A new bucket already has SSE-S3 and Block Public Access on (the strict bed, like S3 since 2023).
    assert calls.operations()[:4] == [
        "CreateBucket",
        "PutBucketVersioning",
        "PutBucketLifecycleConfiguration",
        "PutBucketTagging",
    ]
    assert calls.balanced


def test_bucket_create_away_from_s3_defaults_reads_back_as_asked(s3: ExternalClient, calls: CallLog) -> None:
    """Public access allowed and KMS encryption differ from what a new bucket has: both are
    written (Block Public Access removed, the key set) and read back without drift."""
    resource = bucket(public_access=True, provider_options={"kmsKeyId": "alias/orders"})
    run(s3.create(resource, None))
    observed = run(s3.observe(resource))

    assert observed is not None and not observed.drift, observed.drift
    assert observed.settings["publicAccessBlock"] is False
    assert observed.settings["encryption"] == "aws:kms"
    writes = [op for op in calls.operations() if op.startswith(("Put", "Delete"))]
    assert writes == ["DeletePublicAccessBlock", "PutBucketEncryption", "PutBucketTagging"]


def test_bucket_create_twice_is_idempotent(s3: ExternalClient, calls: CallLog) -> None:
    """A second create of our own bucket (a retry) succeeds and finishes the configuration."""
    resource = bucket(location="eu-west-1")
    run(s3.create(resource, None))
    calls.clear()
    run(s3.create(resource, None))

    observed = run(s3.observe(resource))
    assert calls.finished[0].outcome == "BucketAlreadyOwnedByYou"
    assert observed is not None and observed.connection["region"] == "eu-west-1" and not observed.drift
    assert calls.balanced


def test_bucket_create_refuses_a_bucket_another_object_owns(s3: ExternalClient, moto: Moto) -> None:
    """Create over an existing bucket of this account tagged for another owner is Terminal and
    leaves its tags alone."""
    resource = bucket(location="eu-west-1")
    aws = moto.boto("s3", "eu-west-1")  # S3 creates a bucket only at its own region's endpoint
    aws.create_bucket(Bucket=resource.external_name, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    theirs = [{"Key": "kumo.dev/owner-uid", "Value": "someone-else"}, {"Key": "kumo.dev/owner-name", "Value": "x"}]
    aws.put_bucket_tagging(Bucket=resource.external_name, Tagging={"TagSet": theirs})

    with pytest.raises(Terminal) as refused:
        run(s3.create(resource, None))

    assert refused.value.code == "OwnedByAnotherObject"
    assert aws.get_bucket_tagging(Bucket=resource.external_name)["TagSet"] == theirs


def _suspend_versioning(aws: Any, name: str) -> None:
    aws.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})


def _switch_to_kms(aws: Any, name: str) -> None:
    # Deleting the encryption would be no change: S3 falls back to SSE-S3 (the strict bed does too).
    kms = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/someone-elses-key"}
    aws.put_bucket_encryption(
        Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": kms}]}
    )


def _retag(aws: Any, name: str) -> None:
    tags = aws.get_bucket_tagging(Bucket=name)["TagSet"]
    tags = [t for t in tags if t["Key"] != "team"] + [{"Key": "team", "Value": "b"}, {"Key": "cost", "Value": "x"}]
    aws.put_bucket_tagging(Bucket=name, Tagging={"TagSet": tags})


OUT_OF_BAND = [
    pytest.param(_suspend_versioning, "versioning", id="versioning-suspended"),
    pytest.param(lambda aws, name: aws.delete_public_access_block(Bucket=name), "publicAccessBlock", id="pab-deleted"),
    pytest.param(_switch_to_kms, "encryption", id="encryption-switched-to-kms"),
    pytest.param(lambda aws, name: aws.delete_bucket_lifecycle(Bucket=name), "lifecycleExpireDays", id="rule-deleted"),
    pytest.param(_retag, "tags", id="label-changed-and-foreign-tag-added"),
]


@pytest.mark.parametrize(("change", "drift_field"), OUT_OF_BAND)
def test_bucket_out_of_band_change_is_drift_until_update(
    s3: ExternalClient, moto: Moto, calls: CallLog, change: Any, drift_field: str
) -> None:
    """Each console edit of a managed setting shows as that one drift; update corrects it and
    touches only that setting (foreign tags survive)."""
    resource = bucket(versioning=True, lifecycle_expire_days=7, labels={"team": "a"})
    run(s3.create(resource, None))
    change(moto.boto("s3"), resource.external_name)

    drifted = run(s3.observe(resource))
    assert drifted is not None and [d.field for d in drifted.drift] == [drift_field]
    calls.clear()
    updated = run(s3.update(resource, drifted.drift))
    after = run(s3.observe(resource))

    assert updated.changed == (drift_field,)
    assert after is not None and not after.drift, after.drift
    if drift_field == "tags":
        assert after.settings["tags"]["cost"] == "x" and after.settings["tags"]["team"] == "a"
    assert calls.balanced


def test_bucket_observe_many_lists_once_reads_tags_in_one_call_then_four_settings_each(
    provider: AWSProvider, moto: Moto, s3: ExternalClient, calls: CallLog
) -> None:
    """N buckets cost 1 ListBuckets + 1 GetResources for every bucket's tags + 4 reads each, with
    no HeadBucket and no GetBucketTagging; absent ones are left out."""
    resources = [bucket(labels={"n": str(i)}) for i in range(4)]
    for resource in resources:
        run(s3.create(resource, None))
    calls.clear()

    observed = run(s3.observe_many([*resources, bucket()]))

    assert set(observed) == {r.external_name for r in resources}
    assert all(not o.drift and o.owner is not None for o in observed.values())
    assert calls.count("ListBuckets") == 1 and calls.count("HeadBucket") == 0
    assert calls.count("GetResources") == 1 and calls.count("GetBucketTagging") == 0
    assert len(calls.finished) == 2 + 4 * len(resources)
    assert calls.balanced


def test_bucket_delete_refuses_objects_without_force_destroy(s3: ExternalClient, moto: Moto) -> None:
    """A bucket holding objects is not deleted unless spec.forceDestroy says so."""
    resource = bucket()
    run(s3.create(resource, None))
    moto.boto("s3").put_object(Bucket=resource.external_name, Key="keep.txt", Body=b"data")

    with pytest.raises(Terminal) as refused:
        run(s3.delete(resource))

    assert refused.value.code == "BucketNotEmpty"
    assert "spec.forceDestroy" in str(refused.value)
    assert run(s3.observe(resource)) is not None


def test_bucket_force_destroy_deletes_every_version(s3: ExternalClient, moto: Moto, calls: CallLog) -> None:
    """With forceDestroy, all object versions and delete markers go, then the bucket."""
    resource = bucket(versioning=True, force_destroy=True)
    run(s3.create(resource, None))
    aws = moto.boto("s3")
    for body in (b"v1", b"v2", b"v3"):
        aws.put_object(Bucket=resource.external_name, Key="doc.txt", Body=body)
    aws.put_object(Bucket=resource.external_name, Key="other.txt", Body=b"x")
    aws.delete_object(Bucket=resource.external_name, Key="other.txt")  # leaves a delete marker

    deletion = run(s3.delete(resource))

    assert deletion.gone
    assert run(s3.observe(resource)) is None
    assert run(s3.delete(resource)).gone
    assert calls.count("DeleteObjects") == 1 and calls.balanced


# ---------------------------------------------------------------------------- provider config


def test_identity_names_the_credentials(provider: AWSProvider, moto: Moto, calls: CallLog) -> None:
    """GetCallerIdentity through the sts endpoint override proves the provider config works."""
    arn = run(provider.identity(moto.settings, calls.hooks()))
    assert arn.startswith("arn:aws:") and calls.operations() == ["GetCallerIdentity"]


# ---------------------------------------------------------------------------- errors over the wire


def test_invalid_bucket_name_is_terminal_with_aws_message(s3: ExternalClient, calls: CallLog) -> None:
    """AWS's refusal of a bad value reaches the caller as Terminal, code and message intact."""
    resource = ManagedResource(Kind.BUCKET, "ab", owner("ab"), bucket_spec())

    with pytest.raises(Terminal) as refused:
        run(s3.create(resource, None))

    assert refused.value.code == "InvalidBucketName"
    assert "not valid" in str(refused.value)
    assert calls.finished[-1].outcome == "InvalidBucketName" and calls.balanced


def test_unreachable_endpoint_is_retryable(provider: AWSProvider, calls: CallLog) -> None:
    """A cloud that cannot be reached is Retryable, named by botocore's error class."""
    port = free_port()  # nothing listens there
    settings = ProviderSettings(
        provider="aws",
        region=REGION,
        credentials={"aws_access_key_id": "testing", "aws_secret_access_key": "testing"},
        endpoints={"rds": f"http://127.0.0.1:{port}"},
    )
    client = provider.client(Kind.DATABASE, settings, calls.hooks())

    with pytest.raises(Retryable) as failed:
        run(client.observe(database()))

    assert failed.value.code == "EndpointConnectionError"
    assert calls.finished[-1].outcome == "EndpointConnectionError" and calls.balanced
