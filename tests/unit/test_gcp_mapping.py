"""The GCP provider's pure logic: how the portable spec maps onto Cloud SQL and GCS settings, what
validate() says, how ownership labels round-trip, and how Google's errors are classified.

Nothing here talks to a network. The last scenarios drive a client over in-memory fakes of the
SDK, for paths the emulators cannot produce (an instance whose create operation failed, a bucket
listing that spans several pages).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field, replace
from typing import Any

import google.api_core.exceptions as google_errors
import google.auth.exceptions as auth_errors
import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import page_iterator
from google.auth.credentials import AnonymousCredentials
from google.cloud import sqladmin_v1beta4 as sql
from kumo.providers.base import (
    CallHooks,
    CloudCall,
    Kind,
    MaintenanceWindow,
    ManagedResource,
    Ownership,
    ProviderError,
    ProviderSettings,
    Retryable,
    Terminal,
)
from kumo.providers.gcp import CloudSQLClient, GCPProvider, GCSClient, cloudsql
from kumo.providers.gcp.cloudsql import database_version, instance_drift, patch_body, tier
from kumo.providers.gcp.gcs import actual_settings as bucket_settings
from kumo.providers.gcp.gcs import bucket_changes
from kumo.providers.gcp.session import (
    ServiceCaller,
    credentials_for,
    label_value,
    owner_from_labels,
    ownership_labels,
    project_of,
    translate,
)

from ..specs import bucket_spec, database_spec

OWNER = Ownership(uid="0b6c3f2e-1d2a-4c5b-9e8f-7a6b5c4d3e2f", namespace="team-a", name="orders", cluster_id="c1")
OWNER_LABELS = {
    "kumo-owner-uid": OWNER.uid,
    "kumo-owner-namespace": "team-a",
    "kumo-owner-name": "orders",
    "kumo-cluster-id": "c1",
}
SETTINGS = ProviderSettings(provider="gcp", project="p1", region="europe-west1")
PROVIDER = GCPProvider()


PRIVATE_NETWORK = "projects/p1/global/networks/default"


def database(**spec: Any) -> ManagedResource:
    # Private IP needs a network (Cloud SQL refuses an instance without any address).
    options = {"privateNetwork": PRIVATE_NETWORK, **spec.pop("provider_options", {})}
    options = {key: value for key, value in options.items() if value is not None}  # None: leave it out
    fields: dict[str, Any] = {"engine": "postgres", "version": "16", "provider_options": options, **spec}
    return ManagedResource(Kind.DATABASE, "orders-db", OWNER, database_spec(**fields))


def bucket(**spec: Any) -> ManagedResource:
    return ManagedResource(Kind.BUCKET, "orders-bucket", OWNER, bucket_spec(**spec))


# ---------------------------------------------------------------------------- Cloud SQL mapping


@pytest.mark.parametrize(
    ("engine", "version", "expected"),
    [
        pytest.param("postgres", "13", "POSTGRES_13", id="postgres-oldest"),
        pytest.param("postgres", "16", "POSTGRES_16", id="postgres-major"),
        pytest.param("postgres", "16.4", "POSTGRES_16", id="postgres-minor-pin-ignored"),
        pytest.param("postgres", "17", "POSTGRES_17", id="postgres-newest"),
        pytest.param("mysql", "8.0", "MYSQL_8_0", id="mysql-8.0"),
        pytest.param("mysql", "8.4", "MYSQL_8_4", id="mysql-8.4"),
    ],
)
def test_version_maps_to_database_version(engine: str, version: str, expected: str) -> None:
    """Cloud SQL versions by major only: the spec's version picks the databaseVersion enum."""
    assert database_version(engine, version) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param({}, "db-custom-1-3840", id="default-small"),
        pytest.param({"size": "medium"}, "db-custom-2-7680", id="medium"),
        pytest.param({"size": "large"}, "db-custom-4-15360", id="large"),
        pytest.param(
            {"size": "large", "instance_class": "db-perf-optimized-N-8"}, "db-perf-optimized-N-8", id="override"
        ),
    ],
)
def test_size_maps_to_tier_unless_overridden(spec: dict[str, Any], expected: str) -> None:
    """The portable size picks a custom tier; spec.instanceClass wins over it."""
    assert tier(database(**spec).database) == expected


def test_database_desired_renders_every_managed_setting_with_ownership_labels() -> None:
    """desired() is the drift baseline: every managed setting, the ownership labels included."""
    resource = database(size="medium", high_availability=True, publicly_accessible=True, database_name="app")

    assert PROVIDER.client(Kind.DATABASE, SETTINGS).desired(resource) == {
        "instanceClass": "db-custom-2-7680",
        "storageGB": 20,
        "highAvailability": True,
        "backupRetentionDays": 7,
        "deletionProtection": False,
        "publiclyAccessible": True,
        "version": "POSTGRES_16",
        "labels": OWNER_LABELS,
        "databaseName": "app",
    }


def instance(**settings: Any) -> Any:
    base = {
        "tier": "db-custom-1-3840",
        "data_disk_size_gb": 20,
        "availability_type": "ZONAL",
        "backup_configuration": {"enabled": True, "backup_retention_settings": {"retained_backups": 7}},
        "deletion_protection_enabled": False,
        "ip_configuration": {"ipv4_enabled": False},
        "user_labels": {**OWNER_LABELS, "cost-center": "x"},
        "settings_version": 3,
    }
    return sql.DatabaseInstance(
        name="orders-db", state="RUNNABLE", database_version="POSTGRES_16", settings={**base, **settings}
    )


@pytest.mark.parametrize(
    ("actual_gb", "auto_resize", "drifted"),
    [
        pytest.param(50, True, False, id="grown-by-auto-resize-is-no-drift"),
        pytest.param(50, False, True, id="grown-without-auto-resize-is-drift"),
        pytest.param(10, True, True, id="smaller-than-spec-is-drift"),
    ],
)
def test_disk_size_drift_respects_auto_resize(actual_gb: int, auto_resize: bool, drifted: bool) -> None:
    """Disks cannot shrink: with auto-resize on, the spec's size is a floor, not a target."""
    drift = instance_drift({"storageGB": 20}, {"storageGB": actual_gb}, auto_resize)
    assert bool(drift) is drifted


def test_patch_body_sends_only_drifted_settings_and_keeps_foreign_labels() -> None:
    """update() patches the drifted fields alone, with the settingsVersion it read, and writes the
    label map back with the labels someone else added."""
    resource = database(backup_retention_days=0)
    current = instance(user_labels={"kumo-owner-uid": "stale", "cost-center": "x"})

    body = patch_body(resource, ["backupRetentionDays", "labels"], current)

    assert body == {
        "settings": {
            "backup_configuration": {"enabled": False, "point_in_time_recovery_enabled": False},
            "user_labels": {**OWNER_LABELS, "cost-center": "x"},
            "settings_version": 3,
        }
    }


def test_patch_body_upgrades_the_major_version_in_place() -> None:
    """A raised spec.version patches databaseVersion (Cloud SQL upgrades in place)."""
    assert patch_body(database(version="17"), ["version"], instance()) == {"database_version": "POSTGRES_17"}


@pytest.mark.parametrize(
    ("day", "hour", "window"),
    [
        pytest.param("Monday", 0, {"day": 1, "hour": 0}, id="monday-is-1"),
        pytest.param("Sunday", 23, {"day": 7, "hour": 23}, id="sunday-is-7"),
    ],
)
def test_maintenance_window_maps_to_day_1_to_7_and_is_created_and_patched(day: str, hour: int, window: dict) -> None:
    resource = database(maintenance_window=MaintenanceWindow(day, hour))
    assert cloudsql.desired_settings(resource)["maintenanceWindow"] == window
    assert cloudsql.instance_body(resource, SETTINGS, "x")["settings"]["maintenance_window"] == window
    body = patch_body(resource, ["maintenanceWindow"], instance())
    assert body == {"settings": {"maintenance_window": window, "settings_version": 3}}


@pytest.mark.parametrize(
    ("cloud", "read", "drifted"),
    [
        pytest.param({"day": 2, "hour": 3}, {"day": 2, "hour": 3}, [], id="same"),
        pytest.param({"day": 5, "hour": 7}, {"day": 5, "hour": 7}, ["maintenanceWindow"], id="changed-out-of-band"),
        pytest.param({"day": 0, "hour": 0}, None, ["maintenanceWindow"], id="removed-any-window"),
    ],
)
def test_maintenance_window_read_back_and_drift(cloud: dict, read: dict | None, drifted: list[str]) -> None:
    resource = database(maintenance_window=MaintenanceWindow("Tuesday", 3))
    observed = cloudsql.instance_observation(resource, instance(maintenance_window=cloud), "p", None)
    assert observed.settings["maintenanceWindow"] == read
    assert [d.field for d in observed.drift] == drifted


def test_without_a_maintenance_window_cloud_sql_keeps_its_own() -> None:
    """Absent from the spec, the window is neither sent at create nor compared."""
    resource = database()
    assert "maintenance_window" not in cloudsql.instance_body(resource, SETTINGS, "x")["settings"]
    observed = cloudsql.instance_observation(resource, instance(maintenance_window={"day": 3, "hour": 4}), "p", None)
    assert observed.settings["maintenanceWindow"] == {"day": 3, "hour": 4} and observed.drift == ()


# ---------------------------------------------------------------------------- GCS mapping


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        pytest.param(
            {},
            {"versioning": False, "publicAccessPrevention": "enforced", "encryption": "google-managed"},
            id="defaults-are-private-google-managed",
        ),
        pytest.param(
            {"public_access": True, "versioning": True},
            {"versioning": True, "publicAccessPrevention": "inherited", "encryption": "google-managed"},
            id="public-access-lifts-prevention",
        ),
        pytest.param(
            {"provider_options": {"kmsKeyName": "projects/p/locations/eu/keyRings/r/cryptoKeys/k"}},
            {
                "versioning": False,
                "publicAccessPrevention": "enforced",
                "encryption": "projects/p/locations/eu/keyRings/r/cryptoKeys/k",
            },
            id="kms-key",
        ),
        pytest.param(
            {"encryption": False},
            {"versioning": False, "publicAccessPrevention": "enforced", "encryption": "google-managed"},
            id="encryption-off-is-still-google-managed",
        ),
    ],
)
def test_bucket_desired_settings(spec: dict[str, Any], expected: dict[str, Any]) -> None:
    """desired() for buckets: prevention, encryption and versioning as GCS names them."""
    desired = PROVIDER.client(Kind.BUCKET, SETTINGS).desired(bucket(labels={"team": "a"}, **spec))
    assert desired == {**expected, "lifecycleExpireDays": None, "labels": {"team": "a", **OWNER_LABELS}}


def test_bucket_settings_read_legacy_and_emulator_shapes() -> None:
    """ "unspecified" prevention reads as "inherited", and a label kept as null is no label."""
    resource = {
        "iamConfiguration": {"publicAccessPrevention": "unspecified"},
        "labels": {"team": "a", "gone": None},
        "lifecycle": {"rule": [{"action": {"type": "Delete"}, "condition": {"age": 9, "isLive": False}}]},
    }
    assert bucket_settings(resource) == {
        "versioning": False,
        "publicAccessPrevention": "inherited",
        "encryption": "google-managed",
        "lifecycleExpireDays": None,  # a rule with other conditions is not kumo's
        "labels": {"team": "a"},
    }


def test_bucket_changes_keep_foreign_rules_and_labels() -> None:
    """Rewriting the rule list or label map carries over what someone else added."""
    foreign_rule = {"action": {"type": "SetStorageClass", "storageClass": "COLDLINE"}, "condition": {"age": 90}}
    current = {
        "labels": {"cost-center": "x", "team": "old"},
        "lifecycle": {"rule": [foreign_rule, {"action": {"type": "Delete"}, "condition": {"age": 5}}]},
    }
    changes = bucket_changes(
        bucket(lifecycle_expire_days=30, labels={"team": "a"}), ["lifecycleExpireDays", "labels"], current
    )

    assert changes == {
        "lifecycleExpireDays": [foreign_rule, {"action": {"type": "Delete"}, "condition": {"age": 30}}],
        "labels": {"cost-center": "x", "team": "a", **OWNER_LABELS},
    }


# ---------------------------------------------------------------------------- validate()


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        pytest.param(database(), [], id="defaults-are-valid"),
        pytest.param(database(engine="mysql", version="8.4", instance_class="db-n1-standard-2"), [], id="mysql-n1"),
        pytest.param(
            database(provider_options={"parameterGroupName": "x"}),
            ["spec.providerOptions.parameterGroupName: unknown option for gcp; known: allocatedIpRange"],
            id="unknown-option",
        ),
        pytest.param(
            database(maintenance_window=MaintenanceWindow("Sunday", 3), provider_options={"maintenanceWindowDay": 7}),
            ["spec.providerOptions.maintenanceWindowDay: spec.maintenanceWindow sets it; use one"],
            id="maintenance-window-twice",
        ),
        pytest.param(
            database(instance_class="db.t3.micro"),
            ["spec.instanceClass: 'db.t3.micro' is not a Cloud SQL tier"],
            id="aws-class",
        ),
        pytest.param(
            database(instance_class="db-custom-3-7680"),
            ["spec.instanceClass: 'db-custom-3-7680': a custom tier has 1 or an even number of vCPUs"],
            id="odd-vcpus",
        ),
        pytest.param(
            database(instance_class="db-custom-2-1024"),
            ["spec.instanceClass: 'db-custom-2-1024': memory must be a multiple of 256 MB from 3840 to 13312"],
            id="too-little-memory",
        ),
        pytest.param(
            database(version="12"),
            ["spec.version: Cloud SQL has no databaseVersion for postgres '12'; use one of 13, 14, 15, 16, 17"],
            id="postgres-12",
        ),
        pytest.param(
            database(engine="mysql", version="5.7"),
            ["spec.version: Cloud SQL has no databaseVersion for mysql '5.7'; use one of 8.0, 8.4"],
            id="mysql-5.7",
        ),
        pytest.param(
            database(instance_class="db-perf-optimized-N-4", provider_options={"edition": "ENTERPRISE"}),
            ["spec.providerOptions.edition: tier 'db-perf-optimized-N-4' needs ENTERPRISE_PLUS"],
            id="perf-tier-needs-enterprise-plus",
        ),
        pytest.param(
            database(provider_options={"maintenanceWindowHour": 3}),
            ["spec.providerOptions.maintenanceWindowHour: needs spec.providerOptions.maintenanceWindowDay"],
            id="hour-without-day",
        ),
        pytest.param(
            database(provider_options={"diskType": "gp3"}),
            ["spec.providerOptions.diskType: must be one of PD_SSD, PD_HDD, HYPERDISK_BALANCED, got 'gp3'"],
            id="aws-disk-type",
        ),
        pytest.param(
            database(provider_options={"privateNetwork": None}),
            ["spec.providerOptions.privateNetwork"],
            id="private-only-without-network",
        ),
        pytest.param(database(publicly_accessible=True, provider_options={"privateNetwork": None}), [], id="public-ip"),
        pytest.param(bucket(location="EU"), [], id="bucket-multi-region"),
        pytest.param(
            bucket(location="eu-west-1"),
            ["spec.location: 'eu-west-1' is not a GCS location such as europe-west1, EU or NAM4"],
            id="bucket-aws-region",
        ),
        pytest.param(
            bucket(encryption=False, provider_options={"kmsKeyName": "projects/p/locations/l/keyRings/r/cryptoKeys/k"}),
            ["spec.providerOptions.kmsKeyName: set, but spec.encryption is false"],
            id="bucket-key-without-encryption",
        ),
        pytest.param(
            bucket(provider_options={"kmsKeyId": "alias/x"}),
            ["spec.providerOptions.kmsKeyId: unknown option for gcp; known: kmsKeyName"],
            id="bucket-aws-option",
        ),
    ],
)
def test_validate_names_the_field(resource: ManagedResource, expected: list[str]) -> None:
    """Each problem starts with the field it is about and says what Cloud SQL / GCS accept."""
    problems = PROVIDER.validate(resource)
    assert len(problems) == len(expected), problems
    assert all(problem.startswith(prefix) for problem, prefix in zip(problems, expected, strict=True)), problems


# ---------------------------------------------------------------------------- ownership labels


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("orders", "orders", id="plain"),
        pytest.param("web.frontend", "web_frontend", id="dot-in-k8s-name"),
        pytest.param("Cluster-EU", "cluster-eu", id="uppercase"),
        pytest.param("x" * 80, "x" * 63, id="too-long"),
    ],
)
def test_label_values_follow_gcp_rules(text: str, expected: str) -> None:
    """Label values keep only lowercase letters, digits, "_" and "-", at most 63 characters."""
    assert label_value(text) == expected


def test_ownership_round_trips_through_labels() -> None:
    """The labels written on create read back as the same owner; the uid is kept exactly."""
    assert ownership_labels(OWNER) == OWNER_LABELS
    assert owner_from_labels(ownership_labels(OWNER)) == OWNER
    dotted = replace(OWNER, name="web.frontend")
    assert owner_from_labels(ownership_labels(dotted)) == replace(OWNER, name="web_frontend")


def test_labels_without_the_uid_name_no_owner() -> None:
    """An untagged (adoptable) resource has no owner, whatever other labels it carries."""
    assert owner_from_labels({"kumo-owner-name": "orders", "team": "a"}) is None


# ---------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("error", "kind", "code"),
    [
        pytest.param(google_errors.TooManyRequests("slow down"), Retryable, "TooManyRequests", id="429"),
        pytest.param(google_errors.ServiceUnavailable("down"), Retryable, "ServiceUnavailable", id="503"),
        pytest.param(google_errors.InternalServerError("oops"), Retryable, "InternalServerError", id="500"),
        pytest.param(google_errors.BadGateway("bad gateway"), Retryable, "BadGateway", id="502"),
        pytest.param(google_errors.GatewayTimeout("timeout"), Retryable, "GatewayTimeout", id="504"),
        pytest.param(google_errors.DeadlineExceeded("deadline"), Retryable, "DeadlineExceeded", id="deadline"),
        pytest.param(
            google_errors.Conflict("busy", errors=[{"reason": "operationInProgress", "message": "busy"}]),
            Retryable,
            "operationInProgress",
            id="409-operation-in-progress",
        ),
        pytest.param(
            google_errors.PreconditionFailed("stale", errors=[{"reason": "staleData", "message": "stale"}]),
            Retryable,
            "staleData",
            id="412-stale-settings-version",
        ),
        pytest.param(requests.ConnectionError("refused"), Retryable, "ConnectionError", id="connection-refused"),
        pytest.param(requests.Timeout("read timed out"), Retryable, "Timeout", id="read-timeout"),
        pytest.param(auth_errors.TransportError("metadata server"), Retryable, "TransportError", id="auth-transport"),
        pytest.param(
            google_errors.BadRequest("x", errors=[{"reason": "invalid", "message": "The instance is protected."}]),
            Terminal,
            "invalid",
            id="400",
        ),
        pytest.param(google_errors.Forbidden("denied"), Terminal, "Forbidden", id="403"),
        pytest.param(google_errors.PermissionDenied("denied"), Terminal, "PermissionDenied", id="permission-denied"),
        pytest.param(google_errors.Unauthorized("who are you"), Terminal, "Unauthorized", id="401"),
        pytest.param(google_errors.MethodNotImplemented("nope"), Terminal, "MethodNotImplemented", id="501"),
        pytest.param(
            google_errors.Conflict("taken", errors=[{"reason": "instanceAlreadyExists", "message": "taken"}]),
            Terminal,
            "instanceAlreadyExists",
            id="409-name-taken",
        ),
        pytest.param(auth_errors.DefaultCredentialsError("no ADC"), Terminal, "NoCredentials", id="no-credentials"),
    ],
)
def test_errors_are_classified(error: Exception, kind: type[ProviderError], code: str) -> None:
    """Throttling, 5xx, busy instances and network failures retry soon; the rest is Terminal."""
    translated = translate(error, "instances.get")
    assert type(translated) is kind and translated.code == code


def test_error_message_is_googles_own() -> None:
    """The message is Google's text, without the method and URL api_core puts in front."""
    error = google_errors.NotFound("GET https://sqladmin.googleapis.com/sql/v1beta4/projects/p/instances/x: gone")
    assert str(translate(error, "instances.get")) == "gone"


# ---------------------------------------------------------------------------- credentials


def service_account_key(**overrides: Any) -> str:
    """A service-account key JSON with a freshly generated private key."""
    private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    key = {
        "type": "service_account",
        "project_id": "key-project",
        "client_email": "kumo@key-project.iam.gserviceaccount.com",
        "private_key": private_key.decode(),
        "token_uri": "https://oauth2.googleapis.com/token",
        **overrides,
    }
    return json.dumps(key)


@pytest.mark.parametrize("secret_key", ["document", "credentials.json"])
def test_service_account_key_from_the_credentials_secret(secret_key: str) -> None:
    """A key JSON under either key is used as it is, and names the project when the config does not."""
    settings = ProviderSettings(provider="gcp", credentials={secret_key: service_account_key()})

    credentials = credentials_for(settings, "sqladmin")

    assert credentials.service_account_email == "kumo@key-project.iam.gserviceaccount.com"
    assert project_of(settings) == "key-project"


def test_emulator_endpoints_without_credentials_are_anonymous(monkeypatch: pytest.MonkeyPatch) -> None:
    """No credentials and an overridden endpoint: anonymous (emulators); without an override the
    environment's Application Default Credentials (Workload Identity) are used."""
    monkeypatch.setattr("google.auth.default", lambda scopes: ("adc-credentials", "adc-project"))
    settings = ProviderSettings(provider="gcp", project="p1", endpoints={"storage": "http://127.0.0.1:9023"})

    assert isinstance(credentials_for(settings, "storage"), AnonymousCredentials)
    assert credentials_for(settings, "sqladmin") == "adc-credentials"


@pytest.mark.parametrize(
    ("credentials", "expected"),
    [
        pytest.param({"document": "{not json"}, "credentials.document: not valid JSON", id="not-json"),
        pytest.param(
            {"document": json.dumps({"type": "authorized_user"})},
            "credentials.document: not a service-account key",
            id="user-credentials",
        ),
        pytest.param(
            {"credentials.json": json.dumps({"type": "service_account", "private_key": "SECRET-KEY"})},
            "credentials.credentials.json: service-account key lacks client_email, token_uri",
            id="missing-fields",
        ),
        pytest.param(
            {"document": service_account_key(private_key="-----BEGIN PRIVATE KEY-----\nSECRET-KEY\n")},
            "credentials.document: the private key could not be loaded",
            id="broken-private-key",
        ),
        pytest.param({"aws_access_key_id": "AKIA"}, "credentials: need document or credentials.json", id="aws-keys"),
    ],
)
def test_unusable_credentials_are_terminal_and_never_quoted(credentials: dict[str, str], expected: str) -> None:
    """A bad credentials Secret says which key is wrong and how, without quoting its content."""
    settings = ProviderSettings(provider="gcp", project="p1", credentials=credentials)

    with pytest.raises(Terminal) as refused:
        credentials_for(settings, "sqladmin")

    assert str(refused.value).startswith(expected) and refused.value.code == "NoCredentials"
    assert "SECRET-KEY" not in str(refused.value)


# ---------------------------------------------------------------------------- fakes of the SDK


@dataclass
class CallLog:
    started: list[str] = field(default_factory=list)
    finished: list[CloudCall] = field(default_factory=list)

    def hooks(self) -> CallHooks:
        async def before(service: str, operation: str) -> None:
            self.started.append(operation)

        return CallHooks(before=before, after=self.finished.append)


@dataclass(frozen=True)
class FakeClients:
    """Stands in for `ClientCache`: every service gets the same fake SDK client."""

    sdk: Any

    def client(self, settings: ProviderSettings, service: str) -> Any:
        return self.sdk


class FakeMethods:
    """An SDK service whose methods answer from a table: name -> response."""

    def __init__(self, **answers: Any) -> None:
        self._answers = answers

    def __getattr__(self, method: str) -> Any:
        return lambda **_: self._answers[method]


def test_failed_create_operation_is_terminal_with_googles_message() -> None:
    """An instance stuck in PENDING_CREATE whose create operation ended with an error makes
    observe raise Terminal with Google's message, instead of "still creating" forever."""
    failed = sql.Operation(
        status="DONE",
        operation_type="CREATE",
        error={"errors": [{"code": "QUOTA_EXCEEDED", "message": "Quota exceeded for CPUs in europe-west1."}]},
    )
    sdk = type("FakeSqlAdmin", (), {})()
    sdk.instances = FakeMethods(get=sql.DatabaseInstance(name="orders-db", state="PENDING_CREATE"))
    sdk.operations = FakeMethods(list=sql.OperationsListResponse(items=[failed]))
    log = CallLog()
    client = CloudSQLClient(ServiceCaller(FakeClients(sdk), SETTINGS, "sqladmin", log.hooks()), SETTINGS)

    with pytest.raises(Terminal) as stuck:
        asyncio.run(client.observe(database()))

    assert "Quota exceeded for CPUs in europe-west1." in str(stuck.value)
    assert log.started == ["instances.get", "operations.list"] == [c.operation for c in log.finished]


class FakeStorage:
    """A storage client whose buckets.list is api_core's real HTTPIterator over canned pages."""

    def __init__(self, pages: list[list[str]]) -> None:
        self.pages = pages
        self.requests = 0

    def list_buckets(self, page_size: int, **_: Any) -> Any:
        def api_request(method: str, path: str, query_params: dict[str, Any]) -> dict[str, Any]:
            self.requests += 1
            index = int(query_params.get("pageToken") or 0)
            response: dict[str, Any] = {"items": [{"name": name} for name in self.pages[index]]}
            if index + 1 < len(self.pages):
                response["nextPageToken"] = str(index + 1)
            return response

        return page_iterator.HTTPIterator(
            client=None,
            api_request=api_request,
            path="/b",
            item_to_value=lambda _, item: type("Bucket", (), {"_properties": item})(),
            page_size=page_size,
        )


def test_bucket_listing_costs_one_hooked_call_per_page() -> None:
    """observe_many drives the SDK's page iterator one request at a time: three pages are three
    buckets.list calls through the hooks, and exactly three HTTP requests."""
    sdk = FakeStorage([["a", "b"], ["c", "d"], ["e"]])
    log = CallLog()
    client = GCSClient(ServiceCaller(FakeClients(sdk), SETTINGS, "storage", log.hooks()), SETTINGS, page_size=2)
    wanted = [ManagedResource(Kind.BUCKET, name, OWNER, bucket_spec()) for name in ("a", "e")]

    observed = asyncio.run(client.observe_many(wanted))

    assert set(observed) == {"a", "e"}
    assert sdk.requests == 3 and log.started == ["buckets.list"] * 3 == [c.operation for c in log.finished]
