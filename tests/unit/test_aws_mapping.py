"""The AWS provider's pure logic: how the portable spec maps to RDS and S3 settings, what counts
as drift, what validate() says, how AWS errors are classified, how credentials are read, and
what the call wrapper does around one SDK call. No network: the wrapper runs against a stub.
"""

from __future__ import annotations

import asyncio
import datetime
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError
from kumo.providers.aws import AWSProvider, rds, s3
from kumo.providers.aws.session import (
    ServiceCaller,
    client_cache,
    owner_from_tags,
    ownership_tags,
    session_credentials,
    tags_to_dict,
    tags_to_list,
    translate,
)
from kumo.providers.base import (
    Deletion,
    FieldDrift,
    Kind,
    MaintenanceWindow,
    ManagedResource,
    Ownership,
    ProviderError,
    ProviderSettings,
    Retryable,
    Terminal,
)

from ..specs import bucket_spec, database_spec
from .fakes import HookRecorder

OWNER = Ownership(uid="u-1", namespace="team-a", name="orders", cluster_id="c-1")
OWNER_TAGS = {
    "kumo.dev/owner-uid": "u-1",
    "kumo.dev/owner-namespace": "team-a",
    "kumo.dev/owner-name": "orders",
    "kumo.dev/cluster-id": "c-1",
}
KMS_ARN = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def database(**spec: Any) -> ManagedResource:
    fields: dict[str, Any] = {"engine": "postgres", "version": "16", **spec}
    return ManagedResource(Kind.DATABASE, "team-a-orders-1a2b3c4d", OWNER, database_spec(**fields))


def bucket(**spec: Any) -> ManagedResource:
    return ManagedResource(Kind.BUCKET, "team-a-assets-1a2b3c4d", OWNER, bucket_spec(**spec))


def client_error(code: str, status: int, message: str = "AWS says no") -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "SomeOperation")


# ---------------------------------------------------------------------------- RDS mapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, "db.t3.micro", id="default-size-is-small"),
        pytest.param({"size": "small"}, "db.t3.micro", id="small"),
        pytest.param({"size": "medium"}, "db.t3.large", id="medium"),
        pytest.param({"size": "large"}, "db.m6i.xlarge", id="large"),
        pytest.param({"size": "large", "instance_class": "db.r6g.2xlarge"}, "db.r6g.2xlarge", id="override-wins"),
    ],
)
def test_size_maps_to_instance_class(spec: dict[str, Any], expected: str) -> None:
    """The portable size picks an RDS class; spec.instanceClass overrides it."""
    assert rds.instance_class(database(**spec).database) == expected


@pytest.mark.parametrize(
    ("desired", "actual", "matches"),
    [
        pytest.param("16", "16.4", True, id="major-matches-any-minor"),
        pytest.param("16", "16", True, id="exact"),
        pytest.param("8.0", "8.0.39", True, id="mysql-major-minor-matches-patch"),
        pytest.param("8.0", "8.4.1", False, id="mysql-other-minor"),
        pytest.param("16", "15.7", False, id="older-major"),
        pytest.param("1", "16.4", False, id="compares-components-not-characters"),
        pytest.param("16.4", "16", False, id="more-precise-than-actual"),
    ],
)
def test_version_matches_by_dot_component_prefix(desired: str, actual: str, matches: bool) -> None:
    """A desired major (or major.minor) matches any actual version within it."""
    assert rds.version_matches(desired, actual) is matches


@pytest.mark.parametrize(
    ("engine", "desired", "actual", "major_change"),
    [
        pytest.param("postgres", "16", "15.7", True, id="postgres-15-to-16"),
        pytest.param("postgres", "16.4", "16.2", False, id="postgres-minor"),
        pytest.param("mysql", "8.4", "8.0.39", True, id="mysql-8.0-to-8.4"),
        pytest.param("mysql", "8.0", "8.0.35", False, id="mysql-patch"),
    ],
)
def test_major_version_change_needs_allow_major_upgrade(
    engine: str, desired: str, actual: str, major_change: bool
) -> None:
    """Only a change of major (engine-aware: 8.0 -> 8.4 is one) asks RDS for a major upgrade."""
    resource = database(engine=engine, version=desired)
    drift = (FieldDrift("version", desired, actual),)
    assert rds.RDSClient._major_change(resource, drift) is major_change


def test_database_desired_renders_portable_settings_and_owner_tags() -> None:
    """desired() renders exactly the drift-compared settings, owner tags included."""
    resource = database(size="medium", storage_gb=50, high_availability=True, backup_retention_days=14)
    assert rds.desired_settings(resource) == {
        "instanceClass": "db.t3.large",
        "storageGB": 50,
        "highAvailability": True,
        "backupRetentionDays": 14,
        "deletionProtection": False,
        "publiclyAccessible": False,
        "version": "16",
        "tags": OWNER_TAGS,
    }


def instance(**overrides: Any) -> dict[str, Any]:
    """A DescribeDBInstances entry that matches `database()` exactly."""
    return {
        "DBInstanceIdentifier": "team-a-orders-1a2b3c4d",
        "DBInstanceClass": "db.t3.micro",
        "AllocatedStorage": 20,
        "MultiAZ": False,
        "BackupRetentionPeriod": 7,
        "DeletionProtection": False,
        "PubliclyAccessible": False,
        "EngineVersion": "16.4",
        "Engine": "postgres",
        "MasterUsername": "kumo",
        "DBInstanceStatus": "available",
        "Endpoint": {"Address": "orders.abc.eu-west-1.rds.amazonaws.com", "Port": 5432},
        **overrides,
    }


@pytest.mark.parametrize(
    ("described", "tags", "drifted"),
    [
        pytest.param(instance(), OWNER_TAGS, [], id="in-sync-with-newer-minor-version"),
        pytest.param(instance(), {**OWNER_TAGS, "cost": "x"}, [], id="foreign-tags-are-not-drift"),
        pytest.param(instance(DBInstanceClass="db.t3.large"), OWNER_TAGS, ["instanceClass"], id="class-changed"),
        pytest.param(instance(EngineVersion="15.7"), OWNER_TAGS, ["version"], id="older-major"),
        pytest.param(
            instance(DBInstanceClass="db.t3.large", PendingModifiedValues={"DBInstanceClass": "db.t3.micro"}),
            OWNER_TAGS,
            [],
            id="desired-value-already-pending",
        ),
        pytest.param(
            instance(AllocatedStorage=10, PendingModifiedValues={"AllocatedStorage": 15}),
            OWNER_TAGS,
            ["storageGB"],
            id="other-value-pending-is-still-drift",
        ),
        pytest.param(
            instance(EngineVersion="15.7", PendingModifiedValues={"EngineVersion": "16.1"}),
            OWNER_TAGS,
            [],
            id="desired-major-already-pending",
        ),
        pytest.param(instance(), {**OWNER_TAGS, "kumo.dev/owner-name": "other"}, ["tags"], id="owner-tag-changed"),
    ],
)
def test_database_drift(described: dict[str, Any], tags: dict[str, str], drifted: list[str]) -> None:
    """Drift ignores newer minors, foreign tags and already-pending desired values."""
    desired = rds.desired_settings(database())
    assert [d.field for d in rds.instance_drift(desired, described, tags)] == drifted


@pytest.mark.parametrize(
    ("day", "hour", "window"),
    [
        pytest.param("Tuesday", 3, "tue:03:00-tue:04:00", id="an-hour"),
        pytest.param("Monday", 0, "mon:00:00-mon:01:00", id="midnight"),
        pytest.param("Wednesday", 23, "wed:23:00-thu:00:00", id="ends-next-day"),
        pytest.param("Sunday", 23, "sun:23:00-mon:00:00", id="sunday-night-wraps-to-monday"),
    ],
)
def test_maintenance_window_is_the_hour_it_names(day: str, hour: int, window: str) -> None:
    """spec.maintenanceWindow renders as a one-hour PreferredMaintenanceWindow, sent at create."""
    resource = database(maintenance_window=MaintenanceWindow(day, hour))
    assert rds.desired_settings(resource)["maintenanceWindow"] == window
    assert rds.setting_parameters(rds.desired_settings(resource))["PreferredMaintenanceWindow"] == window


@pytest.mark.parametrize(
    ("cloud", "drifted"),
    [
        pytest.param("tue:03:00-tue:04:00", [], id="same"),
        pytest.param("Tue:03:00-Tue:04:00", [], id="days-compare-without-case"),
        pytest.param("fri:07:00-fri:07:30", ["maintenanceWindow"], id="changed-out-of-band"),
    ],
)
def test_maintenance_window_read_back_and_drift(cloud: str, drifted: list[str]) -> None:
    resource = database(maintenance_window=MaintenanceWindow("Tuesday", 3))
    described = instance(PreferredMaintenanceWindow=cloud)
    assert rds.actual_settings(described, OWNER_TAGS)["maintenanceWindow"] == cloud
    assert [d.field for d in rds.instance_drift(rds.desired_settings(resource), described, OWNER_TAGS)] == drifted


def test_without_a_maintenance_window_rds_keeps_its_own() -> None:
    """Absent from the spec, the window is neither sent nor compared (RDS picked one)."""
    desired = rds.desired_settings(database())
    assert "maintenanceWindow" not in desired and "PreferredMaintenanceWindow" not in rds.setting_parameters(desired)
    assert rds.instance_drift(desired, instance(PreferredMaintenanceWindow="wed:06:38-wed:07:08"), OWNER_TAGS) == ()


@pytest.mark.parametrize(
    ("code", "message", "refusal"),
    [
        pytest.param(
            "InvalidParameterCombination",
            "You can't currently modify the storage of this DB instance because the previous storage change is "
            "being optimized.",
            True,
            id="storage-optimization",
        ),
        pytest.param(
            "InvalidParameterCombination",
            "You must specify both the storage size and iops when modifying the storage size or iops",
            False,
            id="other-storage-combination",
        ),
    ],
)
def test_database_storage_refusal_is_recognised(code: str, message: str, refusal: bool) -> None:
    """Only the "being optimized" refusal makes kumo send the other changes without storage."""
    assert rds.is_storage_refusal(Terminal(message, code=code)) is refusal


def test_database_final_snapshot_name_is_deterministic_then_timestamped() -> None:
    """`<name>-final` first; a taken name gets the UTC time, a valid snapshot identifier."""
    assert rds.final_snapshot_name("orders-db") == "orders-db-final"
    at = datetime.datetime(2026, 11, 28, 7, 3, 12, tzinfo=datetime.UTC)
    assert rds.final_snapshot_name("orders-db", at) == "orders-db-final-20261128t070312z"


def test_database_settings_report_the_full_actual_version() -> None:
    """Settings show the real version (16.4), not the desired major."""
    assert rds.actual_settings(instance(), OWNER_TAGS)["version"] == "16.4"


@pytest.mark.parametrize(
    ("described", "expected"),
    [
        pytest.param(
            instance(DBName="orders"),
            {
                "host": "orders.abc.eu-west-1.rds.amazonaws.com",
                "port": "5432",
                "username": "kumo",
                "database": "orders",
                "engine": "postgres",
            },
            id="named-database",
        ),
        pytest.param(
            instance(),
            {
                "host": "orders.abc.eu-west-1.rds.amazonaws.com",
                "port": "5432",
                "username": "kumo",
                "database": "postgres",
                "engine": "postgres",
            },
            id="postgres-default-database",
        ),
        pytest.param(
            instance(Engine="mysql", Endpoint=None, DBInstanceStatus="creating"),
            {"username": "kumo", "database": "", "engine": "mysql"},
            id="mysql-still-creating-has-no-host-yet",
        ),
    ],
)
def test_database_connection_details(described: dict[str, Any], expected: dict[str, str]) -> None:
    """Connection details carry host/port once assigned and the engine's default database."""
    assert rds.connection_details(described) == expected


@pytest.mark.parametrize(
    ("state", "ready"),
    [
        ("available", True),
        ("backing-up", True),
        ("modifying", True),
        ("configuring-enhanced-monitoring", True),
        ("creating", False),
        ("rebooting", False),
        ("deleting", False),
        ("storage-full", False),
    ],
)
def test_database_ready_states(state: str, ready: bool) -> None:
    """Only statuses in which the instance accepts connections count as ready."""
    assert rds.is_ready(state) is ready


# ---------------------------------------------------------------------------- S3 mapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {},
            {
                "versioning": False,
                "publicAccessBlock": True,
                "encryption": "AES256",
                "lifecycleExpireDays": None,
                "tags": OWNER_TAGS,
            },
            id="defaults-private-and-encrypted",
        ),
        pytest.param(
            {"versioning": True, "lifecycle_expire_days": 30, "labels": {"team": "a"}},
            {
                "versioning": True,
                "publicAccessBlock": True,
                "encryption": "AES256",
                "lifecycleExpireDays": 30,
                "tags": {"team": "a", **OWNER_TAGS},
            },
            id="versioned-expiring-labelled",
        ),
        pytest.param(
            {"public_access": True, "encryption": False},
            {
                "versioning": False,
                "publicAccessBlock": False,
                "encryption": None,
                "lifecycleExpireDays": None,
                "tags": OWNER_TAGS,
            },
            id="public-unencrypted",
        ),
        pytest.param(
            {"provider_options": {"kmsKeyId": KMS_ARN}},
            {
                "versioning": False,
                "publicAccessBlock": True,
                "encryption": "aws:kms",
                "lifecycleExpireDays": None,
                "tags": OWNER_TAGS,
            },
            id="kms-key-option",
        ),
    ],
)
def test_bucket_desired(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    """desired() renders versioning, public access block, encryption, lifecycle and tags."""
    assert s3.desired_settings(bucket(**spec)) == expected


def test_bucket_labels_cannot_override_ownership_tags() -> None:
    """A label can never forge an ownership tag."""
    resource = bucket(labels={"kumo.dev/owner-uid": "forged"})
    assert s3.desired_settings(resource)["tags"]["kumo.dev/owner-uid"] == "u-1"


def test_bucket_kms_encryption_names_the_key_and_uses_a_bucket_key() -> None:
    """kmsKeyId selects SSE-KMS with that key and an S3 bucket key."""
    config = s3.encryption_configuration(bucket(provider_options={"kmsKeyId": KMS_ARN}).bucket)
    assert config == {
        "Rules": [
            {
                "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": KMS_ARN},
                "BucketKeyEnabled": True,
            }
        ]
    }


@pytest.mark.parametrize(
    ("spec", "encryption", "drifted"),
    [
        pytest.param({"encryption": False}, "AES256", [], id="off-is-satisfied-by-s3-default-sse"),
        pytest.param({"encryption": False}, None, [], id="off-and-unconfigured"),
        pytest.param({"encryption": False}, "aws:kms", ["encryption"], id="off-but-kms"),
        pytest.param({}, None, ["encryption"], id="on-but-unconfigured"),
    ],
)
def test_bucket_encryption_drift(spec: dict[str, Any], encryption: str | None, drifted: list[str]) -> None:
    """ "No encryption" is satisfied by S3's mandatory SSE-S3 default, but not by KMS."""
    desired = s3.desired_settings(bucket(**spec))
    actual = {**desired, "encryption": encryption}
    assert [d.field for d in s3.bucket_drift(desired, actual)] == drifted


def test_bucket_reads_map_to_portable_settings() -> None:
    """The five S3 reads map to the portable settings."""
    reads = s3.BucketReads(
        versioning={"Status": "Suspended"},
        public_access_block={"PublicAccessBlockConfiguration": dict.fromkeys(s3.PUBLIC_ACCESS_BLOCK_SWITCHES, True)},
        encryption=None,
        lifecycle={"Rules": [{"ID": "kumo-expire", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 9}}]},
        tagging={"TagSet": tags_to_list(OWNER_TAGS)},
    )
    assert reads.settings() == {
        "versioning": False,
        "publicAccessBlock": True,
        "encryption": None,
        "lifecycleExpireDays": 9,
        "tags": OWNER_TAGS,
    }


def test_bucket_public_access_block_counts_only_when_all_four_switches_are_on() -> None:
    """A partial public access block is not a block."""
    config = {**dict.fromkeys(s3.PUBLIC_ACCESS_BLOCK_SWITCHES, True), "BlockPublicPolicy": False}
    reads = s3.BucketReads({}, {"PublicAccessBlockConfiguration": config}, None, None, None)
    assert reads.settings()["publicAccessBlock"] is False


FOREIGN_RULE = {"ID": "archive-logs", "Status": "Enabled", "Filter": {"Prefix": "logs/"}, "Transitions": []}
KUMO_RULE_7 = {"ID": "kumo-expire", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 7}}
KUMO_RULE_30 = {**KUMO_RULE_7, "Expiration": {"Days": 30}}


@pytest.mark.parametrize(
    ("current", "days", "expected"),
    [
        pytest.param([], 7, [KUMO_RULE_7], id="add-to-empty"),
        pytest.param([FOREIGN_RULE, KUMO_RULE_7], 30, [FOREIGN_RULE, KUMO_RULE_30], id="replace-ours-keep-theirs"),
        pytest.param([FOREIGN_RULE, KUMO_RULE_7], None, [FOREIGN_RULE], id="remove-ours-keep-theirs"),
        pytest.param([KUMO_RULE_7], None, [], id="remove-last-rule"),
    ],
)
def test_bucket_lifecycle_rules_touch_only_kumos_rule(
    current: list[dict[str, Any]], days: int | None, expected: list[dict[str, Any]]
) -> None:
    """Rewriting the lifecycle keeps every rule kumo did not write."""
    assert s3.lifecycle_rules(current, days) == expected


@pytest.mark.parametrize(
    ("override", "region", "endpoint"),
    [
        pytest.param("", "eu-west-1", "https://s3.eu-west-1.amazonaws.com", id="aws"),
        pytest.param("http://127.0.0.1:5000", "us-east-1", "http://127.0.0.1:5000", id="endpoint-override"),
    ],
)
def test_bucket_connection_details(override: str, region: str, endpoint: str) -> None:
    """The endpoint is the override when set, else the regional S3 endpoint."""
    assert s3.connection_details("assets", region, override) == {
        "bucket": "assets",
        "region": region,
        "endpoint": endpoint,
        "url": "s3://assets",
    }


def test_bucket_region_prefers_location_then_provider_config() -> None:
    """spec.location wins over the provider config's region."""
    settings = ProviderSettings(provider="aws", region="eu-central-1")
    assert s3.bucket_region(bucket(location="ap-south-1"), settings) == "ap-south-1"
    assert s3.bucket_region(bucket(), settings) == "eu-central-1"


# ---------------------------------------------------------------------------- validate()


@pytest.mark.parametrize(
    ("resource", "problems"),
    [
        pytest.param(database(), [], id="database-defaults-are-fine"),
        pytest.param(
            database(
                provider_options={
                    "storageType": "io1",
                    "iops": 3000,
                    "kmsKeyId": "alias/rds",
                    "vpcSecurityGroupIds": ["sg-0abc123"],
                    "port": 5433,
                    "preferredMaintenanceWindow": "sun:03:00-sun:04:00",
                    "preferredBackupWindow": "01:00-01:30",
                }
            ),
            [],
            id="database-known-options-are-fine",
        ),
        pytest.param(
            database(provider_options={"foo": 1}),
            ["spec.providerOptions.foo: unknown option for aws; known: availabilityZone, dbSubnetGroupName"],
            id="database-unknown-option",
        ),
        pytest.param(
            database(instance_class="t3.micro"),
            ["spec.instanceClass: 't3.micro' is not an RDS instance class"],
            id="instance-class-without-db-prefix",
        ),
        pytest.param(
            database(provider_options={"kmsKeyId": "my-key"}),
            ["spec.providerOptions.kmsKeyId: must be a KMS key id, alias/<name>, or a KMS key or alias ARN"],
            id="database-kms-key-shape",
        ),
        pytest.param(
            database(provider_options={"iops": 3000}),
            ["spec.providerOptions.iops: needs spec.providerOptions.storageType io1 / io2 / gp3"],
            id="iops-without-provisioned-storage",
        ),
        pytest.param(
            database(provider_options={"storageType": "gp9"}),
            ["spec.providerOptions.storageType: must be one of gp2, gp3, io1, io2, standard"],
            id="unknown-storage-type",
        ),
        pytest.param(
            database(provider_options={"vpcSecurityGroupIds": "sg-1"}),
            ["spec.providerOptions.vpcSecurityGroupIds: must be a non-empty list"],
            id="security-groups-not-a-list",
        ),
        pytest.param(
            database(
                maintenance_window=MaintenanceWindow("Sunday", 3),
                provider_options={"preferredMaintenanceWindow": "sun:03:00-sun:04:00"},
            ),
            ["spec.providerOptions.preferredMaintenanceWindow: spec.maintenanceWindow sets it; use one"],
            id="maintenance-window-twice",
        ),
        pytest.param(
            database(provider_options={"preferredMaintenanceWindow": "sunday 3am"}),
            ["spec.providerOptions.preferredMaintenanceWindow: must be ddd:hh24:mi-ddd:hh24:mi"],
            id="maintenance-window-shape",
        ),
        pytest.param(
            database(backup_retention_days=40),
            ["spec.backupRetentionDays: RDS allows 0 to 35"],
            id="retention-too-long",
        ),
        pytest.param(database(storage_gb=5), ["spec.storageGB: RDS allows 20 to 65536"], id="storage-too-small"),
        pytest.param(bucket(), [], id="bucket-defaults-are-fine"),
        pytest.param(bucket(provider_options={"kmsKeyId": KMS_ARN}), [], id="bucket-kms-key-arn"),
        pytest.param(
            bucket(provider_options={"storageClass": "GLACIER"}),
            ["spec.providerOptions.storageClass: unknown option for aws; known: kmsKeyId"],
            id="bucket-unknown-option",
        ),
        pytest.param(
            bucket(provider_options={"kmsKeyId": "key/123"}),
            ["spec.providerOptions.kmsKeyId: must be a KMS key id"],
            id="bucket-kms-key-shape",
        ),
        pytest.param(
            bucket(encryption=False, provider_options={"kmsKeyId": "alias/s3"}),
            ["spec.providerOptions.kmsKeyId: set, but spec.encryption is false"],
            id="kms-key-with-encryption-off",
        ),
        pytest.param(
            bucket(location="Europe"), ["spec.location: 'Europe' is not an AWS region"], id="location-not-a-region"
        ),
        pytest.param(
            bucket(labels={"kumo.dev/owner-uid": "x"}),
            ["spec.labels.kumo.dev/owner-uid: the kumo.dev/ and aws: prefixes are reserved"],
            id="label-with-reserved-prefix",
        ),
        pytest.param(
            bucket(lifecycle_expire_days=0),
            ["spec.lifecycle.expireAfterDays: S3 expires objects after 1 day at the soonest"],
            id="lifecycle-zero-days",
        ),
    ],
)
def test_validate_names_the_field(resource: ManagedResource, problems: list[str]) -> None:
    """Each validate() problem names the offending field; valid specs have none."""
    found = AWSProvider().validate(resource)
    assert len(found) == len(problems), found
    for message, expected in zip(found, problems, strict=True):
        assert message.startswith(expected)


# ---------------------------------------------------------------------------- errors


ENDPOINT = {"endpoint_url": "https://rds.eu-west-1.amazonaws.com"}


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        pytest.param(client_error("Throttling", 400), Retryable, "Throttling", id="rds-throttling"),
        pytest.param(client_error("ThrottlingException", 400), Retryable, "ThrottlingException", id="throttling-exc"),
        pytest.param(client_error("RequestLimitExceeded", 400), Retryable, "RequestLimitExceeded", id="request-limit"),
        pytest.param(client_error("SlowDown", 503), Retryable, "SlowDown", id="s3-slow-down"),
        pytest.param(client_error("TooManyRequestsException", 429), Retryable, "TooManyRequestsException", id="429"),
        pytest.param(client_error("RequestThrottled", 400), Retryable, "RequestThrottled", id="request-throttled"),
        pytest.param(client_error("InternalFailure", 500), Retryable, "InternalFailure", id="5xx"),
        pytest.param(client_error("SomethingNew", 502), Retryable, "SomethingNew", id="any-5xx-code"),
        pytest.param(client_error("InvalidDBInstanceState", 400), Retryable, "InvalidDBInstanceState", id="busy"),
        pytest.param(client_error("InvalidParameterValue", 400), Terminal, "InvalidParameterValue", id="bad-value"),
        pytest.param(
            client_error("InvalidParameterCombination", 400), Terminal, "InvalidParameterCombination", id="mix"
        ),
        pytest.param(client_error("AccessDenied", 403), Terminal, "AccessDenied", id="access-denied"),
        pytest.param(client_error("InstanceQuotaExceeded", 400), Terminal, "InstanceQuotaExceeded", id="quota"),
        pytest.param(client_error("StorageQuotaExceeded", 400), Terminal, "StorageQuotaExceeded", id="storage-quota"),
        pytest.param(client_error("InvalidBucketName", 400), Terminal, "InvalidBucketName", id="bad-bucket-name"),
        pytest.param(client_error("", 403, message=""), Terminal, "403", id="head-403-without-body"),
        pytest.param(EndpointConnectionError(**ENDPOINT), Retryable, "EndpointConnectionError", id="no-route"),
        pytest.param(ConnectTimeoutError(**ENDPOINT), Retryable, "ConnectTimeoutError", id="connect-timeout"),
        pytest.param(ReadTimeoutError(**ENDPOINT), Retryable, "ReadTimeoutError", id="read-timeout"),
        pytest.param(ConnectionClosedError(**ENDPOINT), Retryable, "ConnectionClosedError", id="connection-closed"),
        pytest.param(NoCredentialsError(), Terminal, "NoCredentials", id="no-credentials"),
        pytest.param(
            ResponseParserError("Unable to parse response (syntax error), invalid XML received: <html>"),
            Retryable,
            "ResponseParserError",
            id="html-error-page",
        ),
    ],
)
def test_error_classification(error: Exception, kind: type[ProviderError], code: str) -> None:
    """Throttling, 5xx, busy instances and network failures retry; the rest is terminal."""
    translated = translate(error, "CreateDBInstance")
    assert type(translated) is kind
    assert translated.code == code


def test_client_error_keeps_aws_message() -> None:
    """The user sees AWS's own words."""
    translated = translate(client_error("InvalidParameterValue", 400, "Invalid DB instance class: db.x"), "Op")
    assert str(translated) == "Invalid DB instance class: db.x"


def test_parameter_validation_error_never_quotes_values() -> None:
    """botocore's parameter report (which quotes values) never reaches a message."""
    report = "Invalid type for parameter MasterUserPassword, value: hunter2-secret, type: <class 'int'>"
    translated = translate(ParamValidationError(report=report), "ModifyDBInstance")
    assert isinstance(translated, Terminal) and "hunter2-secret" not in str(translated)


# ---------------------------------------------------------------------------- ownership tags


def test_ownership_tags_round_trip() -> None:
    """Ownership written as tags reads back as the same owner, foreign tags ignored."""
    tags = ownership_tags(OWNER)
    assert tags == OWNER_TAGS
    assert owner_from_tags(tags_to_dict(tags_to_list({**tags, "cost": "x"}))) == OWNER


@pytest.mark.parametrize(
    "tags",
    [pytest.param({}, id="no-tags"), pytest.param({"kumo.dev/owner-name": "orders"}, id="no-uid-tag")],
)
def test_resources_without_owner_uid_have_no_owner(tags: dict[str, str]) -> None:
    """Without the uid tag a resource has no kumo owner."""
    assert owner_from_tags(tags) is None


# ---------------------------------------------------------------------------- credentials


CREDENTIALS_FILE = """
[ops]
aws_access_key_id = AKIAOPS
aws_secret_access_key = ops-secret

[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret
aws_session_token = token
"""


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        pytest.param({}, {}, id="empty-means-default-chain"),
        pytest.param(
            {"aws_access_key_id": "AKIA1", "aws_secret_access_key": "s1"},
            {"aws_access_key_id": "AKIA1", "aws_secret_access_key": "s1"},
            id="key-pair",
        ),
        pytest.param(
            {"document": CREDENTIALS_FILE},
            {
                "aws_access_key_id": "AKIADEFAULT",
                "aws_secret_access_key": "default-secret",
                "aws_session_token": "token",
            },
            id="document-default-profile",
        ),
        pytest.param(
            {"document": CREDENTIALS_FILE.split("[default]")[0]},
            {"aws_access_key_id": "AKIAOPS", "aws_secret_access_key": "ops-secret"},
            id="document-first-profile",
        ),
    ],
)
def test_session_credentials(credentials: dict[str, str], expected: dict[str, str]) -> None:
    """Key pairs, credentials files ([default], else the first profile) and the default chain."""
    assert session_credentials(credentials) == expected


@pytest.mark.parametrize(
    "credentials",
    [
        pytest.param({"aws_access_key_id": "AKIA1"}, id="secret-key-missing"),
        pytest.param({"document": "aws_secret_access_key = leaked-value\n"}, id="document-not-ini"),
        pytest.param({"document": "[default]\nregion = eu-west-1\n"}, id="document-without-keys"),
    ],
)
def test_incomplete_credentials_are_terminal_and_quote_nothing(credentials: dict[str, str]) -> None:
    """Unusable credentials are Terminal without echoing what they hold."""
    with pytest.raises(Terminal) as refused:
        session_credentials(credentials)
    assert "leaked-value" not in str(refused.value)


def boto3_s3_client(provider: AWSProvider, settings: ProviderSettings) -> Any:
    client = provider.client(Kind.BUCKET, settings)
    assert isinstance(client, s3.S3Client)
    return client.s3(client.home_region).client


def test_clients_are_cached_per_provider_config() -> None:
    """Same settings share one boto3 client; rotated credentials get a new one."""
    provider = AWSProvider()
    settings = ProviderSettings(provider="aws", region="eu-west-1", credentials={"document": CREDENTIALS_FILE})
    rotated = ProviderSettings(
        provider="aws", region="eu-west-1", credentials={"aws_access_key_id": "AKIA2", "aws_secret_access_key": "s2"}
    )
    first, again, other = (boto3_s3_client(provider, s) for s in (settings, settings, rotated))
    assert first is again
    assert first is not other


def test_bucket_clients_are_per_region_and_cached() -> None:
    """Each region gets its own S3 client (a bucket's calls go to its region), built once."""
    settings = ProviderSettings(provider="aws", region="eu-west-1", credentials={"document": CREDENTIALS_FILE})
    client = AWSProvider().client(Kind.BUCKET, settings)
    assert isinstance(client, s3.S3Client)
    home, abroad, again = client.s3("eu-west-1").client, client.s3("ap-south-1").client, client.s3("ap-south-1").client
    assert (home.meta.region_name, abroad.meta.region_name) == ("eu-west-1", "ap-south-1")
    assert abroad is again and abroad is not home


def test_s3_control_behind_an_address_drops_the_account_host_prefix() -> None:
    """S3 Control falls back to the s3 override; an address cannot take the account-id label."""
    settings = ProviderSettings(
        provider="aws",
        region="us-east-1",
        credentials={"aws_access_key_id": "AKIA1", "aws_secret_access_key": "s1"},
        endpoints={"s3": "http://127.0.0.1:9"},
    )
    control = client_cache().client(settings, "s3control")
    sent: list[str] = []

    def capture(request: Any, **_: Any) -> Any:
        sent.append(request.url)
        raise RuntimeError("not sent")

    control.meta.events.register("before-send.s3-control", capture)
    with pytest.raises(RuntimeError):
        control.get_public_access_block(AccountId="123456789012")
    assert sent == ["http://127.0.0.1:9/v20180820/configuration/publicAccessBlock"]


def test_s3_behind_an_endpoint_override_is_path_style_with_three_attempts() -> None:
    """Clients carry the timeouts, standard retries and path-style S3 for overrides."""
    settings = ProviderSettings(provider="aws", region="us-east-1", endpoints={"s3": "http://127.0.0.1:9"})
    client = boto3_s3_client(AWSProvider(), settings)
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert (client.meta.config.connect_timeout, client.meta.config.read_timeout) == (5, 30)


# ---------------------------------------------------------------------------- the call wrapper


@dataclass
class StubClient:
    """Just enough of a botocore client: one operation that answers or raises."""

    answer: Any
    received: list[dict[str, Any]] = field(default_factory=list)

    @property
    def meta(self) -> Any:
        return type("Meta", (), {"region_name": "eu-west-1", "endpoint_url": "https://rds"})()

    def describe_db_instances(self, **params: Any) -> dict[str, Any]:
        self.received.append(params)
        if isinstance(self.answer, Exception):
            raise self.answer
        return dict(self.answer)


def test_wrapper_awaits_before_then_reports_after() -> None:
    """Every call awaits `before` first and reports `after` with the AWS operation name."""
    recorder, stub = HookRecorder(), StubClient({"DBInstances": []})
    caller = ServiceCaller(stub, "rds", recorder.hooks())

    answer = asyncio.run(caller.call("DescribeDBInstances", MaxRecords=100))

    assert answer == {"DBInstances": []} and stub.received == [{"MaxRecords": 100}]
    assert recorder.events == ["before rds DescribeDBInstances", "after ok"]
    assert recorder.calls[0].provider == "aws" and recorder.calls[0].operation == "DescribeDBInstances"


def test_wrapper_maps_missing_codes_to_none_and_reports_the_code() -> None:
    """Not-found codes the caller expects become None, still reported to `after`."""
    recorder = HookRecorder()
    caller = ServiceCaller(StubClient(client_error("DBInstanceNotFound", 404)), "rds", recorder.hooks())

    answer = asyncio.run(caller.find("DescribeDBInstances", missing=("DBInstanceNotFound",)))

    assert answer is None and recorder.events[-1] == "after DBInstanceNotFound"


def test_wrapper_raises_translated_errors_without_secrets() -> None:
    """A secret AWS echoes back is redacted, and the botocore error is not chained."""
    echoed = client_error("InvalidParameterValue", 400, "The password p4ss-w0rd-value is too short")
    caller = ServiceCaller(StubClient(echoed), "rds", HookRecorder().hooks())

    with pytest.raises(Terminal) as refused:
        asyncio.run(caller.call("DescribeDBInstances", secrets=("p4ss-w0rd-value",)))

    assert refused.value.code == "InvalidParameterValue"
    assert "p4ss-w0rd-value" not in str(refused.value) and "***" in str(refused.value)
    assert refused.value.__cause__ is None  # the botocore error (and its request) is not chained


def test_wrapper_works_without_hooks() -> None:
    """Hooks are optional."""
    caller = ServiceCaller(StubClient({"DBInstances": [1]}), "rds")
    assert asyncio.run(caller.call("DescribeDBInstances")) == {"DBInstances": [1]}


# ---------------------------------------------------------------------------- verbs against a script


@dataclass
class ScriptedClient:
    """A botocore client stand-in: each operation answers from its script, in order, and every
    request is recorded as (operation method, parameters)."""

    script: dict[str, list[Any]]
    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    regions: list[str] = field(default_factory=list)
    meta: Any = field(default_factory=lambda: type("Meta", (), {"region_name": "eu-west-1", "endpoint_url": ""})())

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_") or method not in self.script:
            raise AttributeError(method)

        def call(**params: Any) -> Any:
            self.requests.append((method, params))
            answer = self.script[method].pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer

        return call


SETTINGS = ProviderSettings(provider="aws", region="eu-west-1")


def rds_client(script: dict[str, list[Any]]) -> tuple[rds.RDSClient, ScriptedClient]:
    stub = ScriptedClient(script)
    return rds.RDSClient(ServiceCaller(stub, "rds"), SETTINGS), stub


def s3_client(
    script: dict[str, list[Any]], settings: ProviderSettings = SETTINGS
) -> tuple[s3.S3Client, ScriptedClient]:
    """An S3 client whose every region and service answer from one script; `stub.regions` lists
    the region each request went to."""
    stub = ScriptedClient(script)

    def regional(service: str, region: str) -> ServiceCaller:
        return ServiceCaller(InRegion(stub, region), service)

    return s3.S3Client(regional, settings), stub


@dataclass
class InRegion:
    """The scripted client as reached through one region's endpoint."""

    stub: ScriptedClient
    region: str

    @property
    def meta(self) -> Any:
        return type("Meta", (), {"region_name": self.region, "endpoint_url": ""})()

    def __getattr__(self, method: str) -> Any:
        call = getattr(self.stub, method)

        def in_region(**params: Any) -> Any:
            self.stub.regions.append(self.region)
            return call(**params)

        return in_region


def test_database_create_sends_encrypted_tagged_request_with_options() -> None:
    """CreateDBInstance is encrypted, owner-tagged and carries the mapped providerOptions."""
    client, stub = rds_client({"create_db_instance": [{"DBInstance": {"DBInstanceStatus": "creating"}}]})
    resource = database(database_name="orders", provider_options={"storageType": "gp3", "port": 5433})

    creation = asyncio.run(client.create(resource, "pw-value"))

    params = stub.requests[0][1]
    assert creation.state == "creating"
    assert params["StorageEncrypted"] is True and params["CopyTagsToSnapshot"] is True
    assert (params["Engine"], params["EngineVersion"], params["DBName"]) == ("postgres", "16", "orders")
    assert (params["StorageType"], params["Port"]) == ("gp3", 5433)
    assert tags_to_dict(params["Tags"]) == OWNER_TAGS


@pytest.mark.parametrize(
    ("drift", "modify", "tagged"),
    [
        pytest.param(
            (FieldDrift("instanceClass", "db.t3.micro", "db.t3.large"), FieldDrift("storageGB", 20, 10)),
            {"DBInstanceClass": "db.t3.micro", "AllocatedStorage": 20},
            False,
            id="only-drifted-fields-are-sent",
        ),
        pytest.param(
            (FieldDrift("version", "16", "15.7"),),
            {"EngineVersion": "16", "AllowMajorVersionUpgrade": True},
            False,
            id="major-upgrade-is-allowed-explicitly",
        ),
        pytest.param(
            (FieldDrift("tags", OWNER_TAGS, {}), FieldDrift("deletionProtection", False, True)),
            {"DeletionProtection": False},
            True,
            id="tags-added-with-the-arn-from-modify",
        ),
    ],
)
def test_database_update_modifies_only_what_drifted(
    drift: tuple[FieldDrift, ...], modify: dict[str, Any], tagged: bool
) -> None:
    """One ModifyDBInstance with only the drifted fields, applied immediately."""
    answer = {"DBInstance": {"DBInstanceArn": "arn:aws:rds:eu-west-1:1:db:x", "PendingModifiedValues": {}}}
    client, stub = rds_client({"modify_db_instance": [answer], "add_tags_to_resource": [{}]})

    update = asyncio.run(client.update(database(), drift))

    assert stub.requests[0] == (
        "modify_db_instance",
        {"DBInstanceIdentifier": "team-a-orders-1a2b3c4d", "ApplyImmediately": True, **modify},
    )
    assert [r[0] for r in stub.requests[1:]] == (["add_tags_to_resource"] if tagged else [])
    assert set(update.changed) == {d.field for d in drift}


def test_database_tag_only_update_looks_up_the_arn() -> None:
    """A tags-only update finds the ARN with one describe and adds the tags."""
    described = {"DBInstances": [{"DBInstanceArn": "arn:aws:rds:eu-west-1:1:db:x"}]}
    client, stub = rds_client({"describe_db_instances": [described], "add_tags_to_resource": [{}]})

    asyncio.run(client.update(database(), (FieldDrift("tags", OWNER_TAGS, {}),)))

    method, params = stub.requests[1]
    assert method == "add_tags_to_resource" and params["ResourceName"] == "arn:aws:rds:eu-west-1:1:db:x"


def test_database_update_reports_values_rds_has_yet_to_apply_as_pending() -> None:
    """Values RDS accepted but has not applied are reported as pending."""
    answer = {"DBInstance": {"DBInstanceArn": "a", "PendingModifiedValues": {"DBInstanceClass": "db.t3.micro"}}}
    client, _ = rds_client({"modify_db_instance": [answer]})

    update = asyncio.run(client.update(database(), (FieldDrift("instanceClass", "db.t3.micro", "db.t3.large"),)))

    assert update.pending == ("instanceClass",)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        pytest.param({"DBInstance": {"DBInstanceStatus": "deleting"}}, Deletion(False, "deleting"), id="started"),
        pytest.param(client_error("DBInstanceNotFound", 404), Deletion(True, "deleted"), id="already-gone"),
        pytest.param(
            client_error("InvalidDBInstanceState", 400, "Instance x is already being deleted."),
            Deletion(False, "deleting"),
            id="already-being-deleted",
        ),
    ],
)
def test_database_delete_outcomes(answer: Any, expected: Deletion) -> None:
    """Delete reports started, already gone and already deleting without raising."""
    client, stub = rds_client({"delete_db_instance": [answer]})
    assert asyncio.run(client.delete(database())) == expected
    assert stub.requests[0][1]["SkipFinalSnapshot"] is True and "FinalDBSnapshotIdentifier" not in stub.requests[0][1]


def test_database_delete_of_a_busy_instance_stays_retryable() -> None:
    """Any other invalid state on delete is retried."""
    client, _ = rds_client({"delete_db_instance": [client_error("InvalidDBInstanceState", 400, "is modifying")]})
    with pytest.raises(Retryable):
        asyncio.run(client.delete(database()))


def test_bucket_observe_forbidden_says_it_belongs_to_another_account() -> None:
    """A 403 on HeadBucket says whose the bucket is likely to be."""
    client, _ = s3_client({"head_bucket": [client_error("", 403, message="")]})
    with pytest.raises(Terminal, match="exists but belongs to another account"):
        asyncio.run(client.observe(bucket()))


def test_bucket_create_of_a_taken_name_is_terminal_and_says_so() -> None:
    """A globally taken name is Terminal and points at spec.externalName."""
    client, _ = s3_client({"create_bucket": [client_error("BucketAlreadyExists", 409)]})
    with pytest.raises(Terminal, match="is taken by another AWS account") as refused:
        asyncio.run(client.create(bucket(), None))
    assert refused.value.code == "BucketAlreadyExists" and "spec.externalName" in str(refused.value)


CREATE_CALLS = ("create_bucket", "put_public_access_block", "put_bucket_encryption", "put_bucket_tagging")


@pytest.mark.parametrize(
    ("location", "config_region", "expected_region", "expected_configuration"),
    [
        pytest.param(
            "ap-south-1", "eu-west-1", "ap-south-1", {"LocationConstraint": "ap-south-1"}, id="location-elsewhere"
        ),
        pytest.param("", "eu-west-1", "eu-west-1", {"LocationConstraint": "eu-west-1"}, id="config-region"),
        pytest.param("us-east-1", "eu-west-1", "us-east-1", None, id="us-east-1-takes-no-constraint"),
        pytest.param("eu-west-1", "us-east-1", "eu-west-1", {"LocationConstraint": "eu-west-1"}, id="from-us-east-1"),
    ],
)
def test_bucket_create_goes_to_the_bucket_region_with_its_own_name(
    location: str, config_region: str, expected_region: str, expected_configuration: dict[str, str] | None
) -> None:
    """S3 takes CreateBucket only at the endpoint of the region its LocationConstraint names (and
    none for us-east-1), so the create and every later call on the bucket go to its region."""
    settings = ProviderSettings(provider="aws", region=config_region)
    client, stub = s3_client({name: [{}] for name in CREATE_CALLS}, settings)
    creation = asyncio.run(client.create(bucket(location=location), None))
    expected = {"Bucket": "team-a-assets-1a2b3c4d"}
    if expected_configuration is not None:
        expected["CreateBucketConfiguration"] = expected_configuration  # type: ignore[assignment]
    assert stub.requests[0] == ("create_bucket", expected)
    assert set(stub.regions) == {expected_region}
    # Every setting is as desired (written, or S3's default), so the create describes the bucket
    # without reading it back.
    described = creation.observation
    assert described is not None and described.ready and described.drift == ()
    assert described.owner == bucket().owner and described.connection["region"] == expected_region
    assert [name for name, _ in stub.requests if name.startswith(("get_", "head_"))] == []


# What S3 gives every new bucket: SSE-S3, Block Public Access on, no versioning, no lifecycle rule.
NEW_BUCKET_DEFAULTS = {
    "publicAccessBlock": True,
    "encryption": "AES256",
    "versioning": False,
    "lifecycleExpireDays": None,
}


@pytest.mark.parametrize(
    ("spec", "writes"),
    [
        pytest.param({}, ["put_bucket_tagging"], id="default-bucket-only-tags"),
        pytest.param({"encryption": False}, ["put_bucket_tagging"], id="no-encryption-is-sse-s3-anyway"),
        pytest.param({"versioning": True}, ["put_bucket_versioning", "put_bucket_tagging"], id="versioned"),
        pytest.param(
            {"lifecycle_expire_days": 30},
            ["put_bucket_lifecycle_configuration", "put_bucket_tagging"],
            id="lifecycle",
        ),
        pytest.param(
            {"provider_options": {"kmsKeyId": "alias/orders"}},
            ["put_bucket_encryption", "put_bucket_tagging"],
            id="kms",
        ),
        pytest.param({"public_access": True}, ["delete_public_access_block", "put_bucket_tagging"], id="public-access"),
    ],
)
def test_bucket_create_writes_only_what_differs_from_a_new_buckets_defaults(
    spec: dict[str, Any], writes: list[str]
) -> None:
    """A new bucket already has SSE-S3 and Block Public Access on (S3 since 2023), no versioning and
    no lifecycle rule: create writes the rest, Block Public Access first when it is to go, and
    describes the bucket as the spec wants it."""
    settings_writes = [*writes, "put_bucket_encryption", "put_bucket_versioning", "put_public_access_block"]
    script: dict[str, list[Any]] = {name: [{}] for name in ["create_bucket", *settings_writes]}
    script |= {"get_caller_identity": [{"Account": "123456789012"}], "get_public_access_block": [{}]}
    client, stub = s3_client(script)
    resource = bucket(**spec)

    creation = asyncio.run(client.create(resource, None))

    sent = [name for name, _ in stub.requests if name.startswith(("put_", "delete_"))]
    assert sent == writes
    described = creation.observation
    assert described is not None and described.drift == ()
    assert described.settings == s3.desired_settings(resource)
    if "put_bucket_encryption" in writes:
        put = next(params for name, params in stub.requests if name == "put_bucket_encryption")
        default = put["ServerSideEncryptionConfiguration"]["Rules"][0]["ApplyServerSideEncryptionByDefault"]
        assert default == {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/orders"}


def test_bucket_table_initial_values_are_s3s_new_bucket_defaults() -> None:
    assert {row.name: row.initial for row in s3.SETTINGS.rows if row.name != s3.FIELD_TAGS} == NEW_BUCKET_DEFAULTS


def test_bucket_create_over_our_own_earlier_bucket_sets_every_setting() -> None:
    """BucketAlreadyOwnedByYou: an earlier attempt made the bucket and may have written settings of
    an older spec before it failed (versioning on, public access allowed): nothing is assumed
    to be a new bucket's default, every setting is written, foreign tags kept."""
    ours = {"TagSet": tags_to_list({**OWNER_TAGS, "cost": "x"})}
    client, stub = s3_client(
        {
            "create_bucket": [client_error("BucketAlreadyOwnedByYou", 409)],
            "get_bucket_tagging": [ours, ours],
            "put_public_access_block": [{}],
            "put_bucket_encryption": [{}],
            "put_bucket_versioning": [{}],
            "get_bucket_lifecycle_configuration": [client_error("NoSuchLifecycleConfiguration", 404)],
            "delete_bucket_lifecycle": [{}],
            "put_bucket_tagging": [{}],
        }
    )

    asyncio.run(client.create(bucket(), None))

    sent = {name: params for name, params in stub.requests if name.startswith(("put_", "delete_"))}
    assert list(sent) == [
        "put_public_access_block",
        "put_bucket_encryption",
        "put_bucket_versioning",
        "delete_bucket_lifecycle",
        "put_bucket_tagging",
    ]
    assert sent["put_bucket_versioning"]["VersioningConfiguration"] == {"Status": "Suspended"}
    assert tags_to_dict(sent["put_bucket_tagging"]["Tagging"]["TagSet"])["cost"] == "x"


def test_public_bucket_kept_private_by_the_account_setting_is_reported_not_accepted() -> None:
    """publicAccess: true with account-level Block Public Access on is drift kumo cannot correct,
    and the condition names the account-level setting."""
    account_block = {"PublicAccessBlockConfiguration": dict.fromkeys(s3.PUBLIC_ACCESS_BLOCK_SWITCHES, True)}
    script = {name: [{}] for name in CREATE_CALLS if name != "put_public_access_block"}
    script |= {
        "delete_public_access_block": [{}],
        "get_caller_identity": [{"Account": "123456789012"}],
        "get_public_access_block": [account_block],
    }
    client, stub = s3_client(script)
    creation = asyncio.run(client.create(bucket(public_access=True), None))
    described = creation.observation
    assert described is not None
    (withheld,) = described.drift
    assert (withheld.field, withheld.desired, withheld.actual, withheld.correctable) == (
        s3.FIELD_PUBLIC_ACCESS_BLOCK,
        False,
        True,
        False,
    )
    assert "account-level S3 Block Public Access" in withheld.reason
    assert ("get_public_access_block", {"AccountId": "123456789012"}) in stub.requests


def test_bucket_force_destroy_deletes_in_batches_of_at_most_1000() -> None:
    """forceDestroy deletes versions and markers in DeleteObjects batches of at most 1000."""
    versions = [{"Key": f"k{i}", "VersionId": f"v{i}"} for i in range(700)]
    markers = [{"Key": f"m{i}", "VersionId": f"d{i}"} for i in range(500)]
    client, stub = s3_client(
        {
            "list_object_versions": [{"Versions": versions, "DeleteMarkers": markers}, {}],
            "delete_objects": [{}, {}],
            "delete_bucket": [{}],
        }
    )

    assert asyncio.run(client.delete(bucket(force_destroy=True))).gone

    batches = [params["Delete"]["Objects"] for method, params in stub.requests if method == "delete_objects"]
    assert [len(batch) for batch in batches] == [1000, 200]
    assert stub.requests[-1][0] == "delete_bucket"


def test_bucket_force_destroy_reports_objects_it_could_not_delete() -> None:
    """Per-object delete failures surface with S3's code and the key."""
    failed = {"Errors": [{"Key": "locked.txt", "Code": "AccessDenied", "Message": "Access Denied"}]}
    client, _ = s3_client(
        {"list_object_versions": [{"Versions": [{"Key": "locked.txt", "VersionId": "1"}]}], "delete_objects": [failed]}
    )
    with pytest.raises(Terminal, match=r"locked\.txt") as refused:
        asyncio.run(client.delete(bucket(force_destroy=True)))
    assert refused.value.code == "AccessDenied"


def test_bucket_update_merges_tags_into_the_foreign_ones() -> None:
    """PutBucketTagging keeps the tags someone else set."""
    client, stub = s3_client(
        {"get_bucket_tagging": [{"TagSet": [{"Key": "cost", "Value": "x"}]}], "put_bucket_tagging": [{}]}
    )
    update = asyncio.run(client.update(bucket(labels={"team": "a"}), (FieldDrift("tags", {}, {}),)))
    assert update.changed == ("tags",)
    put = stub.requests[-1][1]["Tagging"]["TagSet"]
    assert tags_to_dict(put) == {"cost": "x", "team": "a", **OWNER_TAGS}


def test_wrapper_lets_bugs_through_but_still_reports_them() -> None:
    """A non-AWS exception (a bug) keeps its type, and `after` still hears of the call."""
    recorder = HookRecorder()
    caller = ServiceCaller(StubClient(KeyError("boom")), "rds", recorder.hooks())

    with pytest.raises(KeyError):
        asyncio.run(caller.call("DescribeDBInstances"))

    assert recorder.events == ["before rds DescribeDBInstances", "after KeyError"]


def _sweep_script(names: list[str], tagging: list[Any]) -> dict[str, list[Any]]:
    """What S3 answers a sweep of `names` (all in eu-west-1, default settings, no lifecycle),
    with `tagging` the Tagging API's answers in order."""
    each = len(names)
    return {
        "list_buckets": [{"Buckets": [{"Name": n, "BucketRegion": "eu-west-1"} for n in names]}],
        "get_resources": tagging,
        "get_bucket_versioning": [{}] * each,
        "get_public_access_block": [
            {"PublicAccessBlockConfiguration": dict.fromkeys(s3.PUBLIC_ACCESS_BLOCK_SWITCHES, True)}
        ]
        * each,
        "get_bucket_encryption": [
            {
                "ServerSideEncryptionConfiguration": {
                    "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
                }
            }
        ]
        * each,
        "get_bucket_lifecycle_configuration": [client_error("NoSuchLifecycleConfiguration", 404)] * each,
        "get_bucket_tagging": [{"TagSet": tags_to_list(OWNER_TAGS)}] * each,
    }


def test_bucket_sweep_reads_tags_in_one_tagging_api_call_per_100_buckets() -> None:
    """observe_many reads every bucket's tags through GetResources with their ARNs (following a
    page token alone, as an emulator may send one) instead of one GetBucketTagging per bucket;
    a bucket GetResources leaves out has no tags."""
    first, second, untagged = (
        bucket(),
        replace(bucket(), external_name="team-a-logs-2b"),
        replace(bucket(), external_name="team-a-bare-3c"),
    )
    names = [first.external_name, second.external_name, untagged.external_name]
    pages = [
        {
            "ResourceTagMappingList": [{"ResourceARN": f"arn:aws:s3:::{names[0]}", "Tags": tags_to_list(OWNER_TAGS)}],
            "PaginationToken": "t1",
        },
        {
            "ResourceTagMappingList": [{"ResourceARN": f"arn:aws:s3:::{names[1]}", "Tags": tags_to_list(OWNER_TAGS)}],
            "PaginationToken": "",
        },
    ]
    client, stub = s3_client(_sweep_script(names, pages))

    observed = asyncio.run(client.observe_many([first, second, untagged]))

    operations = [method for method, _ in stub.requests]
    assert "get_bucket_tagging" not in operations and operations.count("get_resources") == 2
    tagging_requests = [params for method, params in stub.requests if method == "get_resources"]
    assert tagging_requests == [{"ResourceARNList": [f"arn:aws:s3:::{n}" for n in names]}, {"PaginationToken": "t1"}]
    assert observed[names[0]].settings["tags"] == OWNER_TAGS and observed[names[1]].drift == ()
    assert observed[names[2]].settings["tags"] == {} and observed[names[2]].owner is None


def test_bucket_sweep_reads_each_buckets_tags_when_the_tagging_api_is_refused() -> None:
    """Without tag:GetResources (or on an S3-compatible endpoint without the API) a sweep reads
    each bucket's tags with GetBucketTagging: drift detection does not depend on that API."""
    names = [bucket().external_name, "team-a-logs-2b"]
    client, stub = s3_client(_sweep_script(names, [client_error("AccessDeniedException", 400)]))

    observed = asyncio.run(client.observe_many([bucket(), replace(bucket(), external_name=names[1])]))

    operations = [method for method, _ in stub.requests]
    assert operations.count("get_bucket_tagging") == 2
    assert all(observed[name].settings["tags"] == OWNER_TAGS for name in names)
