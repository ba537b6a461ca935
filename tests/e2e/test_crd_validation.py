"""The CRDs in crds/ against a real kube-apiserver: what users get told when a manifest is wrong.

Every rejection must be a 422 (Unprocessable Entity) whose message names the offending field,
so `kubectl apply` points the user at the line to fix. Fixtures (tests/conftest.py):
`kube_api`, an admin ApiClient on a local API server with crds/ installed, and `namespace`,
a fresh namespace per test.

Each bad manifest carries exactly one mistake: the API server skips CEL rules once an object
has a schema error (wrong type, value outside an enum), so a manifest with two mistakes would
hide the CEL message behind the schema one.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kumo.api import GROUP, PLURALS, RESOURCES, VERSION

pytestmark = pytest.mark.e2e

CLUSTER_SCOPED = {resource.kind for resource in RESOURCES if not resource.namespaced}
MISSING = object()  # marks "leave spec out entirely"

DATABASE = "Database"
BUCKET = "Bucket"
PC = "ProviderConfig"
CPC = "ClusterProviderConfig"

# The smallest valid spec of each kind; bad manifests below are these plus one mistake.
GOOD_SPECS: dict[str, dict[str, Any]] = {
    DATABASE: {"engine": "postgres", "version": "16"},
    BUCKET: {},
    PC: {"provider": "aws", "region": "eu-west-1"},
    CPC: {"provider": "gcp", "project": "kumo-test-1"},
}


# ---------------------------------------------------------------------------- helpers


def as_object(response: object) -> dict[str, Any]:
    assert isinstance(response, dict), response
    return response


class Objects:
    """Create / patch / read kumo objects in one namespace; cleans up cluster-scoped ones."""

    def __init__(self, api_client: client.ApiClient, namespace: str) -> None:
        self.api = client.CustomObjectsApi(api_client)
        self.namespace = namespace
        self._cluster_objects: list[tuple[str, str]] = []
        self._count = 0

    def name(self, kind: str) -> str:
        self._count += 1
        if kind in CLUSTER_SCOPED:  # cluster-wide names must not collide across tests
            return f"{self.namespace}-{self._count}"
        return f"{kind.lower()}-{self._count}"

    def manifest(self, kind: str, spec: Any) -> dict[str, Any]:
        body: dict[str, Any] = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": kind,
            "metadata": {"name": self.name(kind)},
        }
        if kind not in CLUSTER_SCOPED:
            body["metadata"]["namespace"] = self.namespace
        if spec is not MISSING:
            body["spec"] = spec
        return body

    def create(self, kind: str, spec: Any) -> dict[str, Any]:
        body = self.manifest(kind, spec)
        plural = PLURALS[kind]
        if kind in CLUSTER_SCOPED:
            created = self.api.create_cluster_custom_object(GROUP, VERSION, plural, body)
            self._cluster_objects.append((plural, body["metadata"]["name"]))
        else:
            created = self.api.create_namespaced_custom_object(GROUP, VERSION, self.namespace, plural, body)
        return as_object(created)

    def patch(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        """A JSON merge patch (null deletes a field)."""
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in CLUSTER_SCOPED:
            return as_object(self.api.patch_cluster_custom_object(GROUP, VERSION, PLURALS[kind], name, patch))
        return as_object(
            self.api.patch_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name, patch)
        )

    def patch_status(self, obj: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        return as_object(
            self.api.patch_namespaced_custom_object_status(
                GROUP, VERSION, self.namespace, PLURALS[obj["kind"]], obj["metadata"]["name"], patch
            )
        )

    def get(self, obj: dict[str, Any]) -> dict[str, Any]:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind in CLUSTER_SCOPED:
            return as_object(self.api.get_cluster_custom_object(GROUP, VERSION, PLURALS[kind], name))
        return as_object(self.api.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name))

    def cleanup(self) -> None:
        for plural, name in self._cluster_objects:
            try:
                self.api.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@pytest.fixture
def objects(kube_api: client.ApiClient, unwatched_namespace: str) -> Iterator[Objects]:
    # No controller acts there: these tests are about what the API server alone accepts.
    helper = Objects(kube_api, unwatched_namespace)
    yield helper
    helper.cleanup()


def assert_unprocessable(error: ApiException, field_path: str, *says: str) -> None:
    """422, a cause on `field_path` (or below it), and the field named in the message."""
    assert error.status == 422, f"expected 422 Unprocessable Entity, got {error.status}: {error.body}"
    status = json.loads(error.body or "{}")
    message = status["message"]
    causes = [cause.get("field", "") for cause in status.get("details", {}).get("causes", [])]
    assert any(cause == field_path or cause.startswith((field_path + ".", field_path + "[")) for cause in causes), (
        f"no error on {field_path}; errors were on {causes}: {message}"
    )
    assert field_path in message, f"message does not name {field_path}: {message}"
    for fragment in says:
        assert fragment in message, f"expected {fragment!r} in: {message}"


def with_spec(kind: str, **changes: Any) -> dict[str, Any]:
    spec = copy.deepcopy(GOOD_SPECS[kind])
    spec.update(changes)
    return spec


def without(kind: str, key: str) -> dict[str, Any]:
    spec = copy.deepcopy(GOOD_SPECS[kind])
    del spec[key]
    return spec


# ---------------------------------------------------------------------------- bad manifests


def bad(case_id: str, kind: str, field_path: str, *says: str, spec: Any = None, **changes: Any) -> Any:
    """A manifest of `kind`: the good spec with `changes` (or `spec` as given), rejected on `field_path`."""
    if spec is None:
        spec = with_spec(kind, **changes)
    return pytest.param(kind, spec, field_path, says, id=case_id)


# fmt: off
BAD_MANIFESTS = [
    # Database: required fields, enums, bounds, types
    bad("database-without-spec", DATABASE, "spec", "Required value", spec=MISSING),
    bad("database-without-engine", DATABASE, "spec.engine", "Required value", spec=without(DATABASE, "engine")),
    bad("database-without-version", DATABASE, "spec.version", "Required value", spec=without(DATABASE, "version")),
    bad("unknown-engine-oracle", DATABASE, "spec.engine", "Unsupported value", engine="oracle"),
    bad("size-not-in-enum", DATABASE, "spec.size", "Unsupported value", size="xlarge"),
    bad("negative-storage", DATABASE, "spec.storageGB", "greater than or equal to 20", storageGB=-5),
    bad("storage-below-20gb", DATABASE, "spec.storageGB", "greater than or equal to 20", storageGB=10),
    bad("storage-above-64tib", DATABASE, "spec.storageGB", "less than or equal to 65536", storageGB=70000),
    bad("storage-as-string", DATABASE, "spec.storageGB", "must be of type integer", storageGB="100"),
    bad("ha-as-string", DATABASE, "spec.highAvailability", "must be of type boolean", highAvailability="yes"),
    bad("backup-retention-40-days", DATABASE, "spec.backupRetentionDays", "less than or equal to 35",
        backupRetentionDays=40),
    bad("maintenance-day-unknown", DATABASE, "spec.maintenanceWindow.day", "Unsupported value",
        maintenanceWindow={"day": "Funday", "hour": 3}),
    bad("maintenance-hour-24", DATABASE, "spec.maintenanceWindow.hour", "less than or equal to 23",
        maintenanceWindow={"day": "Monday", "hour": 24}),
    bad("maintenance-without-hour", DATABASE, "spec.maintenanceWindow.hour", "Required value",
        maintenanceWindow={"day": "Monday"}),
    bad("deletion-policy-orphan", DATABASE, "spec.deletionPolicy", "Unsupported value", deletionPolicy="Orphan"),
    bad("drift-policy-unknown", DATABASE, "spec.driftPolicy", "Unsupported value", driftPolicy="Fix"),
    # Database: version per engine (CEL)
    bad("postgres-12-no-longer-offered", DATABASE, "spec.version",
        'spec.version "12" is not supported for engine postgres', version="12"),
    bad("postgres-18-not-yet-offered", DATABASE, "spec.version", "not supported for engine postgres", version="18.1"),
    bad("mysql-5.7-not-offered", DATABASE, "spec.version",
        'spec.version "5.7" is not supported for engine mysql', '"8.0" or "8.4"', engine="mysql", version="5.7"),
    bad("mysql-with-a-postgres-version", DATABASE, "spec.version", "not supported for engine mysql",
        engine="mysql", version="16"),
    bad("version-not-numeric", DATABASE, "spec.version", "should match", version="latest"),
    bad("ha-without-backups", DATABASE, "spec.backupRetentionDays", "when spec.highAvailability is true",
        highAvailability=True, backupRetentionDays=0),
    # Database: names
    bad("master-username-postgres-is-reserved", DATABASE, "spec.masterUsername",
        'spec.masterUsername "postgres" is reserved', masterUsername="postgres"),
    bad("master-username-Root-is-reserved-in-any-case", DATABASE, "spec.masterUsername", "is reserved",
        masterUsername="Root"),
    bad("master-username-too-long", DATABASE, "spec.masterUsername", "Too long", masterUsername="a" * 17),
    bad("master-username-with-dash", DATABASE, "spec.masterUsername", "should match", masterUsername="app-user"),
    bad("database-name-starting-with-digit", DATABASE, "spec.databaseName", "should match", databaseName="1app"),
    bad("instance-class-uppercase", DATABASE, "spec.instanceClass", "should match", instanceClass="DB.R6G.LARGE"),
    bad("database-external-name-double-hyphen", DATABASE, "spec.externalName", "two consecutive hyphens",
        externalName="orders--db"),
    bad("database-external-name-trailing-hyphen", DATABASE, "spec.externalName", "should match",
        externalName="orders-"),
    bad("database-external-name-starting-with-digit", DATABASE, "spec.externalName", "should match",
        externalName="1orders"),
    # Database: references
    bad("provider-config-ref-bad-kind", DATABASE, "spec.providerConfigRef.kind", "Unsupported value",
        providerConfigRef={"kind": "Secret", "name": "aws"}),
    bad("provider-config-ref-without-name", DATABASE, "spec.providerConfigRef.name", "Required value",
        providerConfigRef={"kind": "ProviderConfig"}),
    bad("provider-config-ref-name-not-dns", DATABASE, "spec.providerConfigRef.name", "should match",
        providerConfigRef={"name": "My_Config"}),
    bad("connection-secret-name-not-dns", DATABASE, "spec.writeConnectionSecretToRef.name", "should match",
        writeConnectionSecretToRef={"name": "Conn_Secret"}),
    # Bucket: names valid on both S3 and GCS
    bad("bucket-without-spec", BUCKET, "spec", "Required value", spec=MISSING),
    bad("bucket-name-uppercase", BUCKET, "spec.externalName", "should match", externalName="My-Bucket"),
    bad("bucket-name-double-dot", BUCKET, "spec.externalName", "spec.externalName must not contain two adjacent dots",
        externalName="logs..archive"),
    bad("bucket-name-like-an-ip-address", BUCKET, "spec.externalName", "IP address", externalName="192.168.5.4"),
    bad("bucket-name-too-short", BUCKET, "spec.externalName", "at least 3", externalName="ab"),
    bad("bucket-name-too-long", BUCKET, "spec.externalName", "Too long", externalName="a" * 64),
    bad("bucket-name-punycode-prefix", BUCKET, "spec.externalName", '"xn--"', externalName="xn--bucket"),
    bad("bucket-name-goog-prefix", BUCKET, "spec.externalName", '"goog"', externalName="googlogs"),
    bad("bucket-name-s3alias-suffix", BUCKET, "spec.externalName", '"-s3alias"', externalName="logs-s3alias"),
    bad("bucket-name-ol-s3-suffix", BUCKET, "spec.externalName", '"--ol-s3"', externalName="logs--ol-s3"),
    bad("bucket-name-mrap-suffix", BUCKET, "spec.externalName", '".mrap"', externalName="logs.mrap"),
    bad("bucket-location-with-underscore", BUCKET, "spec.location", "should match", location="eu_west_1"),
    # Bucket: labels portable to GCS, kumo* reserved
    bad("label-key-uppercase", BUCKET, "spec.labels", 'spec.labels key "Team" is invalid', labels={"Team": "data"}),
    bad("label-key-starting-with-digit", BUCKET, "spec.labels", "is invalid", labels={"1team": "data"}),
    bad("label-key-kumo-is-reserved", BUCKET, "spec.labels", 'spec.labels key "kumo-owner" is reserved',
        labels={"kumo-owner": "me"}),
    bad("label-value-uppercase", BUCKET, "spec.labels.team", "should match", labels={"team": "Data"}),
    bad("label-value-not-a-string", BUCKET, "spec.labels.replicas", "must be of type string", labels={"replicas": 3}),
    bad("more-than-50-labels", BUCKET, "spec.labels", "at most 50", labels={f"l{i}": "x" for i in range(51)}),
    # Bucket: other fields
    bad("lifecycle-zero-days", BUCKET, "spec.lifecycle.expireAfterDays", "greater than or equal to 1",
        lifecycle={"expireAfterDays": 0}),
    bad("lifecycle-without-days", BUCKET, "spec.lifecycle.expireAfterDays", "Required value", lifecycle={}),
    bad("bucket-provider-config-ref-bad-kind", BUCKET, "spec.providerConfigRef.kind", "Unsupported value",
        providerConfigRef={"kind": "AWS", "name": "x"}),
    bad("encryption-as-string", BUCKET, "spec.encryption", "must be of type boolean", encryption="true"),
    # ProviderConfig / ClusterProviderConfig
    bad("provider-config-without-spec", PC, "spec", "Required value", spec=MISSING),
    bad("provider-name-not-a-plugin-name", PC, "spec.provider", "should match", provider="Azure Cloud!"),
    bad("aws-without-region", PC, "spec.region", "spec.region is required when spec.provider is aws",
        spec=without(PC, "region")),
    bad("cluster-aws-without-region", CPC, "spec.region", "spec.region is required when spec.provider is aws",
        spec={"provider": "aws"}),
    bad("gcp-without-project", CPC, "spec.project", "spec.project is required when spec.provider is gcp",
        spec=without(CPC, "project")),
    bad("namespaced-gcp-without-project", PC, "spec.project", "required when spec.provider is gcp",
        spec={"provider": "gcp"}),
    bad("aws-with-a-gcp-project", PC, "spec.project", "must not be set when spec.provider is aws",
        project="my-project"),
    bad("gcp-project-id-malformed", CPC, "spec.project", "should match", project="My_Project"),
    bad("region-with-uppercase", PC, "spec.region", "should match", region="EU-WEST-1"),
    bad("secret-credentials-without-secret-ref", PC, "spec.credentials.secretRef",
        "spec.credentials.secretRef is required when spec.credentials.source is Secret",
        credentials={"source": "Secret"}),
    bad("cluster-secret-credentials-without-secret-ref", CPC, "spec.credentials.secretRef",
        "required when spec.credentials.source is Secret", credentials={"source": "Secret"}),
    bad("credentials-source-vault-unsupported", PC, "spec.credentials.source", "Unsupported value",
        credentials={"source": "Vault"}),
    bad("secret-ref-without-name", PC, "spec.credentials.secretRef.name", "Required value",
        credentials={"source": "Secret", "secretRef": {"key": "creds"}}),
    bad("endpoint-not-a-url", PC, "spec.endpoints.s3", "should match", endpoints={"s3": "localhost:4566"}),
    bad("endpoint-ftp-scheme", CPC, "spec.endpoints.storage", "should match",
        endpoints={"storage": "ftp://127.0.0.1:9023"}),
    bad("endpoint-key-not-a-service-name", PC, "spec.endpoints", "spec.endpoints keys must be service names",
        endpoints={"S3 API": "http://localhost:4566"}),
]
# fmt: on


@pytest.mark.parametrize(("kind", "spec", "field_path", "says"), BAD_MANIFESTS)
def test_bad_manifest_is_rejected_naming_the_field(
    objects: Objects, kind: str, spec: Any, field_path: str, says: tuple[str, ...]
) -> None:
    with pytest.raises(ApiException) as raised:
        objects.create(kind, spec)
    assert_unprocessable(raised.value, field_path, *says)


# ---------------------------------------------------------------------------- updates

FULL_DATABASE = {
    "engine": "postgres",
    "version": "16",
    "storageGB": 50,
    "databaseName": "orders",
    "masterUsername": "app",
    "externalName": "orders-db",
    "providerConfigRef": {"kind": "ProviderConfig", "name": "aws-dev"},
}
FULL_BUCKET = {
    "externalName": "kumo-e2e-assets",
    "location": "eu-west-1",
    "providerConfigRef": {"kind": "ClusterProviderConfig", "name": "aws"},
}


def rejected(case_id: str, kind: str, spec: dict[str, Any], patch: dict[str, Any], field_path: str, says: str) -> Any:
    """Create `spec`, then merge-patch it with `patch`: refused with 422 on `field_path`."""
    return pytest.param(kind, spec, patch, field_path, says, id=case_id)


def allowed(case_id: str, kind: str, spec: dict[str, Any], patch: dict[str, Any]) -> Any:
    """Create `spec`, then merge-patch it with `patch`: accepted and stored."""
    return pytest.param(kind, spec, patch, id=case_id)


# fmt: off
IMMUTABLE_CHANGES = [
    rejected("database-engine-postgres-to-mysql", DATABASE, FULL_DATABASE, {"engine": "mysql", "version": "8.0"},
             "spec.engine", "spec.engine is immutable"),
    rejected("database-external-name-changed", DATABASE, FULL_DATABASE, {"externalName": "orders-db-2"},
             "spec.externalName", "spec.externalName is immutable"),
    rejected("database-external-name-removed", DATABASE, FULL_DATABASE, {"externalName": None},
             "spec.externalName", "spec.externalName is immutable"),
    rejected("database-external-name-added-later", DATABASE, GOOD_SPECS[DATABASE], {"externalName": "adopt-me"},
             "spec.externalName", "spec.externalName is immutable"),
    rejected("database-name-changed", DATABASE, FULL_DATABASE, {"databaseName": "billing"},
             "spec.databaseName", "spec.databaseName is immutable"),
    rejected("database-name-added-later", DATABASE, GOOD_SPECS[DATABASE], {"databaseName": "billing"},
             "spec.databaseName", "spec.databaseName is immutable"),
    rejected("database-provider-config-ref-name-changed", DATABASE, FULL_DATABASE,
             {"providerConfigRef": {"name": "aws-prod"}}, "spec.providerConfigRef", "would orphan"),
    rejected("database-provider-config-ref-kind-changed", DATABASE, FULL_DATABASE,
             {"providerConfigRef": {"kind": "ClusterProviderConfig"}},
             "spec.providerConfigRef", "spec.providerConfigRef is immutable"),
    rejected("database-defaulted-provider-config-ref-changed", DATABASE, GOOD_SPECS[DATABASE],
             {"providerConfigRef": {"name": "gcp"}}, "spec.providerConfigRef", "spec.providerConfigRef is immutable"),
    rejected("database-storage-decreased", DATABASE, FULL_DATABASE, {"storageGB": 30},
             "spec.storageGB", "spec.storageGB cannot be decreased"),
    rejected("database-master-username-changed", DATABASE, FULL_DATABASE, {"masterUsername": "app2"},
             "spec.masterUsername", "spec.masterUsername is immutable"),
    rejected("database-defaulted-master-username-changed", DATABASE, GOOD_SPECS[DATABASE], {"masterUsername": "app"},
             "spec.masterUsername", "spec.masterUsername is immutable"),
    rejected("bucket-external-name-changed", BUCKET, FULL_BUCKET, {"externalName": "kumo-e2e-assets-2"},
             "spec.externalName", "spec.externalName is immutable"),
    rejected("bucket-external-name-added-later", BUCKET, {}, {"externalName": "kumo-e2e-adopted"},
             "spec.externalName", "spec.externalName is immutable"),
    rejected("bucket-location-moved", BUCKET, FULL_BUCKET, {"location": "us-east-1"},
             "spec.location", "spec.location is immutable"),
    rejected("bucket-location-removed", BUCKET, FULL_BUCKET, {"location": None},
             "spec.location", "spec.location is immutable"),
    rejected("bucket-provider-config-ref-changed", BUCKET, FULL_BUCKET, {"providerConfigRef": {"name": "gcp"}},
             "spec.providerConfigRef", "spec.providerConfigRef is immutable"),
    rejected("provider-config-aws-to-gcp", PC, GOOD_SPECS[PC],
             {"provider": "gcp", "region": None, "project": "kumo-test-1"},
             "spec.provider", "spec.provider is immutable"),
    rejected("cluster-provider-config-gcp-to-aws", CPC, GOOD_SPECS[CPC],
             {"provider": "aws", "project": None, "region": "eu-west-1"},
             "spec.provider", "spec.provider is immutable"),
]

# The transition rules must not get in the way of ordinary changes.
ORDINARY_CHANGES = [
    allowed("database-storage-grows", DATABASE, FULL_DATABASE, {"storageGB": 100}),
    allowed("database-version-upgrade", DATABASE, FULL_DATABASE, {"version": "17"}),
    allowed("database-resize-and-ha", DATABASE, FULL_DATABASE, {"size": "large", "highAvailability": True}),
    allowed("database-same-immutable-values-resent", DATABASE, FULL_DATABASE,
            dict(FULL_DATABASE, deletionPolicy="Retain", driftPolicy="Report")),
    allowed("bucket-versioning-and-labels", BUCKET, FULL_BUCKET, {"versioning": True, "labels": {"team": "data"}}),
    allowed("provider-config-new-region-and-secret", PC, GOOD_SPECS[PC],
            {"region": "us-east-1", "credentials": {"source": "Secret", "secretRef": {"name": "aws-creds"}}}),
]
# fmt: on


@pytest.mark.parametrize(("kind", "spec", "patch", "field_path", "says"), IMMUTABLE_CHANGES)
def test_update_is_rejected_naming_the_field(
    objects: Objects, kind: str, spec: dict[str, Any], patch: dict[str, Any], field_path: str, says: str
) -> None:
    created = objects.create(kind, copy.deepcopy(spec))
    with pytest.raises(ApiException) as raised:
        objects.patch(created, {"spec": patch})
    assert_unprocessable(raised.value, field_path, says)
    assert objects.get(created)["spec"] == created["spec"], "a rejected update must change nothing"


@pytest.mark.parametrize(("kind", "spec", "patch"), ORDINARY_CHANGES)
def test_ordinary_update_is_accepted(objects: Objects, kind: str, spec: dict[str, Any], patch: dict[str, Any]) -> None:
    created = objects.create(kind, copy.deepcopy(spec))
    updated = objects.patch(created, {"spec": patch})["spec"]
    assert {key: updated[key] for key in patch} == patch


# ---------------------------------------------------------------------------- good manifests


def test_minimal_database_is_accepted_with_defaults(objects: Objects) -> None:
    spec = objects.create(DATABASE, {"engine": "postgres", "version": "16"})["spec"]
    assert spec == {
        "engine": "postgres",
        "version": "16",
        "size": "small",
        "storageGB": 20,
        "highAvailability": False,
        "backupRetentionDays": 7,
        "deletionProtection": False,
        "publiclyAccessible": False,
        "masterUsername": "kumo",
        "snapshotOnDelete": False,
        "deletionPolicy": "Delete",
        "managementPolicy": "Default",
        "providerConfigRef": {"kind": "ClusterProviderConfig", "name": "default"},
    }


def test_minimal_bucket_is_accepted_with_defaults(objects: Objects) -> None:
    spec = objects.create(BUCKET, {})["spec"]
    assert spec == {
        "versioning": False,
        "publicAccess": False,
        "encryption": True,
        "forceDestroy": False,
        "deletionPolicy": "Delete",
        "managementPolicy": "Default",
        "providerConfigRef": {"kind": "ClusterProviderConfig", "name": "default"},
    }


def test_provider_config_ref_kind_defaults_when_only_name_given(objects: Objects) -> None:
    spec = objects.create(DATABASE, with_spec(DATABASE, providerConfigRef={"name": "aws"}))["spec"]
    assert spec["providerConfigRef"] == {"kind": "ClusterProviderConfig", "name": "aws"}


@pytest.mark.parametrize("kind", [PC, CPC])
def test_provider_config_credentials_default_to_environment(objects: Objects, kind: str) -> None:
    spec = objects.create(kind, GOOD_SPECS[kind])["spec"]
    assert spec["credentials"] == {"source": "Environment"}


FULL_MANIFESTS = [
    pytest.param(
        DATABASE,
        {
            "engine": "mysql",
            "version": "8.4",
            "size": "medium",
            "instanceClass": "db.r6g.large",
            "storageGB": 65536,
            "highAvailability": True,
            "backupRetentionDays": 35,
            "deletionProtection": True,
            "publiclyAccessible": True,
            "databaseName": "orders_v2",
            "masterUsername": "Orders_Admin",
            "snapshotOnDelete": True,
            "maintenanceWindow": {"day": "Sunday", "hour": 23},
            "externalName": "orders-db-eu1",
            "providerConfigRef": {"kind": "ProviderConfig", "name": "aws-prod"},
            "deletionPolicy": "Retain",
            "driftPolicy": "Report",
            "writeConnectionSecretToRef": {"name": "orders-db.conn"},
            "providerOptions": {"parameterGroupName": "custom-mysql84", "tags": {"cost-center": 42}},
        },
        id="database-every-field-set",
    ),
    pytest.param(
        DATABASE,
        {"engine": "postgres", "version": "13.15", "instanceClass": "db-custom-2-7680"},
        id="database-postgres-minor-and-cloud-sql-tier",
    ),
    pytest.param(
        DATABASE, {"engine": "mysql", "version": "8.0", "backupRetentionDays": 0}, id="database-backups-disabled"
    ),
    pytest.param(
        BUCKET,
        {
            "externalName": "kumo.e2e-assets.2024",
            "location": "EU",
            "versioning": True,
            "publicAccess": True,
            "encryption": False,
            "lifecycle": {"expireAfterDays": 36500},
            "labels": {f"label_{i}": "" if i % 2 else f"value-{i}" for i in range(50)},
            "forceDestroy": True,
            "providerConfigRef": {"kind": "ProviderConfig", "name": "gcp"},
            "deletionPolicy": "Delete",
            "driftPolicy": "Correct",
            "writeConnectionSecretToRef": {"name": "assets"},
            "providerOptions": {"kmsKeyName": "projects/p/locations/eu/keyRings/r/cryptoKeys/k"},
        },
        id="bucket-every-field-set",
    ),
    pytest.param(BUCKET, {"externalName": "abc", "location": "europe-west1"}, id="bucket-shortest-name"),
    pytest.param(
        PC,
        {
            "provider": "aws",
            "region": "eu-west-1",
            "credentials": {"source": "Secret", "secretRef": {"name": "aws-creds", "key": "credentials"}},
            "endpoints": {
                "rds": "http://127.0.0.1:5000",
                "s3": "http://localhost:5000/",
                "sts": "https://sts.eu-west-1.amazonaws.com",
            },
        },
        id="aws-provider-config-with-secret-and-endpoints",
    ),
    pytest.param(
        CPC,
        {
            "provider": "gcp",
            "project": "kumo-demo-123456",
            "region": "europe-west1",
            "credentials": {"source": "Secret", "secretRef": {"name": "gcp-sa", "key": "key.json"}},
            "endpoints": {"sqladmin": "http://127.0.0.1:8080/", "storage": "http://127.0.0.1:9023"},
        },
        id="gcp-cluster-provider-config-with-secret-and-endpoints",
    ),
]


@pytest.mark.parametrize(("kind", "spec"), FULL_MANIFESTS)
def test_good_manifest_is_accepted_as_written(objects: Objects, kind: str, spec: dict[str, Any]) -> None:
    stored = objects.create(kind, copy.deepcopy(spec))["spec"]
    for key, value in spec.items():
        assert stored[key] == value, key


# ---------------------------------------------------------------------------- status subresource


def condition(kind: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-01T00:00:00Z",
        "observedGeneration": 1,
    }


@pytest.mark.parametrize("kind", [DATABASE, BUCKET])
def test_status_is_written_through_the_status_subresource(objects: Objects, kind: str) -> None:
    created = objects.create(kind, GOOD_SPECS[kind])
    status = {
        "observedGeneration": 1,
        "conditions": [condition("Ready", "True", "Available"), condition("Synced", "True", "ReconcileSuccess")],
        "atProvider": {
            "externalName": "kumo-e2e",
            "provider": "aws",
            "region": "eu-west-1",
            "state": "available",
            "arn": "arn:aws:rds:eu-west-1:123456789012:db:kumo-e2e",
            "endpoint": {"address": "kumo-e2e.rds.local", "port": 5432},
        },
        "drift": [{"field": "spec.storageGB", "desired": "20", "actual": "30", "since": "2025-01-01T00:00:00Z"}],
    }
    stored = objects.patch_status(created, {"status": status})
    assert stored["status"] == status, "atProvider keeps provider-specific fields it does not declare"
    assert stored["metadata"]["generation"] == created["metadata"]["generation"]

    # status sent to the main resource is ignored, and spec sent to /status too
    objects.patch(stored, {"status": {"observedGeneration": 99}})
    assert objects.get(created)["status"]["observedGeneration"] == 1


@pytest.mark.parametrize(
    ("bad_condition", "field_path"),
    [
        pytest.param(
            dict(condition("Ready", "Maybe", "Available")),
            "status.conditions[0].status",
            id="condition-status-not-true-false-unknown",
        ),
        pytest.param(
            {k: v for k, v in condition("Ready", "True", "Available").items() if k != "reason"},
            "status.conditions[0].reason",
            id="condition-without-reason",
        ),
        pytest.param(
            dict(condition("Ready", "True", "not a reason")),
            "status.conditions[0].reason",
            id="condition-reason-not-camel-case",
        ),
    ],
)
def test_malformed_conditions_are_rejected(objects: Objects, bad_condition: dict[str, Any], field_path: str) -> None:
    created = objects.create(DATABASE, GOOD_SPECS[DATABASE])
    with pytest.raises(ApiException) as raised:
        objects.patch_status(created, {"status": {"conditions": [bad_condition]}})
    assert_unprocessable(raised.value, field_path)
