"""The GCP provider end to end: the real google-cloud-sql and google-cloud-storage clients over
HTTP against kumo's Cloud SQL Admin emulator and the GCS emulator, through the provider's public
verbs (observe / observe_many / create / update / delete / set_password).

Out-of-band changes are made with plain SDK clients, as a user with console access would. Every
test counts the SDK calls it caused through `CallHooks` and checks that `before` was awaited for
each call `after` reported.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import pytest
from google.auth.credentials import AnonymousCredentials
from google.cloud import sqladmin_v1beta4 as sql
from google.cloud import storage
from kumo.providers.base import (
    CallHooks,
    CloudCall,
    DatabaseClient,
    Deletion,
    ExternalClient,
    FieldDrift,
    Kind,
    ManagedResource,
    Ownership,
    ProviderSettings,
    Retryable,
    Terminal,
)
from kumo.providers.gcp import GCPProvider
from kumo.testbed.cloudsql_emulator import CloudSQLEmulator
from kumo.testbed.emulators import EMULATORS, GCP_PROJECT, GCP_REGION, start_emulator
from kumo.testbed.strictgcs.limits import Limits

from ..specs import bucket_spec, database_spec

# Self-contained (starts its own emulators), but an end-to-end test like its neighbours.
pytestmark = pytest.mark.e2e

T = TypeVar("T")
PASSWORD = "s3cret-Passw0rd"  # the master password of every test database
PAGE_SIZE = 5  # instances.list page size for the sweep test: 12 instances make 3 pages
KMS_KEY = "projects/kumo-dev-project/locations/europe-west1/keyRings/kumo/cryptoKeys/buckets"


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


def wait_until(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Until `check()` holds: a Cloud SQL operation nobody reads ends after the emulator's
    operation_seconds, as a real one ends on its own."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout:.0f}s")
        time.sleep(0.1)


# ---------------------------------------------------------------------------- fixtures


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
        """`before` was awaited for exactly the calls `after` was told about."""
        return Counter((c.service, c.operation) for c in self.finished) == Counter(self.started)


@pytest.fixture
def calls() -> CallLog:
    return CallLog()


@pytest.fixture(scope="module")
def cloudsql() -> Iterator[CloudSQLEmulator]:
    emulator = CloudSQLEmulator(create_steps=2).start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="module")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, endpoint = start_emulator(next(e for e in EMULATORS if e.name == "gcs"), tmp_path_factory.mktemp("gcs"))
    try:
        yield endpoint
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def provider() -> GCPProvider:
    # Short polls: the emulator finishes an operation on its second read, not after seconds.
    return GCPProvider(instances_page_size=PAGE_SIZE, operation_poll_delays=(0.01,) * 5)


@dataclass(frozen=True)
class CloudSQL:
    """A project of its own in the Cloud SQL emulator, and a plain client for out-of-band edits."""

    emulator: CloudSQLEmulator
    settings: ProviderSettings

    @property
    def project(self) -> str:
        return self.settings.project

    @property
    def instances(self) -> Any:
        return sql.SqlInstancesServiceClient(
            client_options={"api_endpoint": self.emulator.endpoint},
            transport="rest",
            credentials=AnonymousCredentials(),
        )

    def patch(self, name: str, body: dict[str, Any]) -> None:
        """A console edit, finished before anyone goes on: Cloud SQL takes one operation per
        instance at a time, so kumo's next change would otherwise wait for this one."""
        operation = self.instances.patch(request={"project": self.project, "instance": name, "body": body})
        operations = sql.SqlOperationsServiceClient(
            client_options={"api_endpoint": self.emulator.endpoint},
            transport="rest",
            credentials=AnonymousCredentials(),
        )
        for _ in range(10):
            if operation.status == sql.Operation.SqlOperationStatus.DONE:
                return
            operation = operations.get(request={"project": self.project, "operation": operation.name})
        raise AssertionError(f"the console edit {operation.name} never finished")


@pytest.fixture
def cloud(cloudsql: CloudSQLEmulator) -> CloudSQL:
    """A fresh project per test, so listings see only that test's instances."""
    settings = ProviderSettings(
        provider="gcp",
        project=f"proj-{uuid.uuid4().hex[:8]}",
        region=GCP_REGION,
        endpoints={"sqladmin": cloudsql.endpoint},
    )
    return CloudSQL(cloudsql, settings)


@pytest.fixture
def cloudsql_client(provider: GCPProvider, cloud: CloudSQL, calls: CallLog) -> DatabaseClient:
    client = provider.client(Kind.DATABASE, cloud.settings, calls.hooks())
    assert isinstance(client, DatabaseClient)
    return client


@pytest.fixture
def gcs_settings(gcs_endpoint: str) -> ProviderSettings:
    return ProviderSettings(provider="gcp", project=GCP_PROJECT, region=GCP_REGION, endpoints={"storage": gcs_endpoint})


@pytest.fixture
def gcs(provider: GCPProvider, gcs_settings: ProviderSettings, calls: CallLog) -> ExternalClient:
    return provider.client(Kind.BUCKET, gcs_settings, calls.hooks())


@pytest.fixture
def storage_client(gcs_endpoint: str) -> storage.Client:
    """A plain storage client: the "someone else" who changes buckets out of band."""
    return storage.Client(
        project=GCP_PROJECT, credentials=AnonymousCredentials(), client_options={"api_endpoint": gcs_endpoint}
    )


def owner(name: str) -> Ownership:
    return Ownership(uid=str(uuid.uuid4()), namespace="team-a", name=name, cluster_id="c-test")


PRIVATE_NETWORK = "projects/p1/global/networks/default"


def database(**spec: Any) -> ManagedResource:
    name = f"db-{uuid.uuid4().hex[:10]}"
    # Private IP needs a network (Cloud SQL refuses an instance without any address).
    options = {"privateNetwork": PRIVATE_NETWORK, **spec.pop("provider_options", {})}
    options = {key: value for key, value in options.items() if value is not None}  # None: leave it out
    fields: dict[str, Any] = {"engine": "postgres", "version": "16", "provider_options": options, **spec}
    return ManagedResource(Kind.DATABASE, name, owner(name), database_spec(**fields))


def bucket(**spec: Any) -> ManagedResource:
    name = f"bkt-{uuid.uuid4().hex[:10]}"
    return ManagedResource(Kind.BUCKET, name, owner(name), bucket_spec(**spec))


def wait_for_the_next_metadata_update() -> None:
    """An out-of-band writer's turn: GCS takes one metadata update per bucket per second, and the
    test bed's emulator enforces it (https://cloud.google.com/storage/quotas)."""
    time.sleep(Limits.from_env().bucket_update_interval)


def create_ready(client: DatabaseClient, resource: ManagedResource) -> None:
    """Create, then observe until RUNNABLE (the emulator needs two reads)."""
    run(client.create(resource, PASSWORD))
    for _ in range(3):
        observed = run(client.observe(resource))
        if observed is not None and observed.ready:
            return
    pytest.fail(f"{resource.external_name} never became RUNNABLE")


# ---------------------------------------------------------------------------- Cloud SQL


def test_database_create_is_pending_then_runnable_owned_and_in_sync(
    cloudsql_client: DatabaseClient, cloud: CloudSQL, calls: CallLog
) -> None:
    """Create returns at once; observe shows PENDING_CREATE (not ready), then RUNNABLE with the
    public address, our owner and no drift."""
    resource = database(publicly_accessible=True)
    creation = run(cloudsql_client.create(resource, PASSWORD))
    pending = run(cloudsql_client.observe(resource))
    ready = run(cloudsql_client.observe(resource))

    assert creation.state == "PENDING_CREATE"
    assert pending is not None and not pending.ready and pending.state == "PENDING_CREATE"
    assert ready is not None and ready.ready and ready.state == "RUNNABLE" and not ready.drift, ready.drift
    assert ready.owner == resource.owner
    assert ready.connection["host"].startswith("127.0.")
    assert ready.connection | {"host": ""} == {
        "host": "",
        "port": "5432",
        "username": "kumo",
        "database": "postgres",
        "engine": "postgres",
        "instanceConnectionName": f"{cloud.project}:{GCP_REGION}:{resource.external_name}",
    }
    assert ready.at_provider["databaseVersion"] == "POSTGRES_16"
    assert ready.at_provider["tier"] == "db-custom-1-3840"
    assert PASSWORD not in repr(ready)
    assert calls.operations() == ["instances.insert", "instances.get", "operations.list", "instances.get"]
    assert calls.balanced


def test_database_private_instance_connects_through_its_private_address(cloudsql_client: DatabaseClient) -> None:
    """Without a public address, the host is the private one on the network from providerOptions."""
    network = "projects/kumo-dev-project/global/networks/default"
    resource = database(provider_options={"privateNetwork": network})
    create_ready(cloudsql_client, resource)

    observed = run(cloudsql_client.observe(resource))

    assert observed is not None and observed.settings["publiclyAccessible"] is False
    assert observed.connection["host"].startswith("127.1.")


def test_database_observe_absent_is_none(cloudsql_client: DatabaseClient, calls: CallLog) -> None:
    """An instance that never existed observes as None, not as an error: Cloud SQL answers 403
    for such a name, and instances.list confirms it is absent."""
    assert run(cloudsql_client.observe(database())) is None
    assert [(c.operation, c.outcome) for c in calls.finished] == [("instances.get", "403"), ("instances.list", "ok")]
    assert calls.balanced


def test_database_403_for_an_instance_that_is_listed_stands(
    cloudsql_client: DatabaseClient, cloud: CloudSQL, calls: CallLog
) -> None:
    """A 403 is taken as "absent" only when the list agrees; a deleted name answers 404."""
    resource = database()
    create_ready(cloudsql_client, resource)
    run(cloudsql_client.delete(resource))
    wait_until(lambda: run(cloudsql_client.delete(resource)).gone)

    assert run(cloudsql_client.observe(resource)) is None
    assert calls.finished[-1].outcome == "404"


def test_database_create_twice_is_idempotent(cloudsql_client: DatabaseClient, calls: CallLog) -> None:
    """A second create (a retry after a crash) answers with the existing instance's state."""
    resource = database()
    run(cloudsql_client.create(resource, PASSWORD))
    again = run(cloudsql_client.create(resource, PASSWORD))

    assert again.external_name == resource.external_name and again.state == "PENDING_CREATE"
    assert [c.outcome for c in calls.finished[:2]] == ["ok", "409"] and calls.balanced


@pytest.mark.parametrize(
    ("engine", "version", "host"),
    [pytest.param("postgres", "16", "", id="postgres"), pytest.param("mysql", "8.0", "%", id="mysql-any-host")],
)
def test_database_set_password_creates_then_resets_the_master_user(
    cloudsql_client: DatabaseClient, cloud: CloudSQL, calls: CallLog, engine: str, version: str, host: str
) -> None:
    """set_password creates the master user on a RUNNABLE instance, and resets it the second time;
    the password reaches Cloud SQL and no call record."""
    resource = database(engine=engine, version=version)
    create_ready(cloudsql_client, resource)
    calls.clear()

    run(cloudsql_client.set_password(resource, PASSWORD))
    first = cloud.emulator.password_of(cloud.project, resource.external_name, "kumo", host)
    change = run(cloudsql_client.set_password(resource, "n3w-Passw0rd-value"))
    second = cloud.emulator.password_of(cloud.project, resource.external_name, "kumo", host)

    assert (first, second) == (PASSWORD, "n3w-Passw0rd-value")
    assert change.applied  # the users operation is DONE: the reconciler may publish at once
    assert calls.count("users.insert") == 1 and calls.count("users.update") == 1
    assert {c.outcome for c in calls.finished} == {"ok"}
    assert PASSWORD not in repr(calls.finished) and "n3w-Passw0rd-value" not in repr(calls.finished)
    assert calls.balanced


def test_database_missing_app_database_is_drift_until_update(cloudsql_client: DatabaseClient, calls: CallLog) -> None:
    """spec.databaseName absent from the instance is drift; one update creates it."""
    resource = database(database_name="app")
    create_ready(cloudsql_client, resource)

    drifted = run(cloudsql_client.observe(resource))
    assert drifted is not None
    assert drifted.drift == (FieldDrift("databaseName", "app", None),)

    updated = run(cloudsql_client.update(resource, drifted.drift))
    after = run(cloudsql_client.observe(resource))

    assert updated.changed == ("databaseName",) and updated.pending == ()
    assert after is not None and not after.drift and after.settings["databaseName"] == "app"
    assert after.connection["database"] == "app"
    assert calls.balanced


def test_database_out_of_band_changes_are_drift_until_update(
    cloudsql_client: DatabaseClient, cloud: CloudSQL, calls: CallLog
) -> None:
    """Console edits of tier, backups, HA, protection, public IP and labels show as exactly those
    drifts (a disk grown beyond the spec, as auto-resize does, is not drift); one update corrects
    them all and keeps foreign labels."""
    resource = database()
    create_ready(cloudsql_client, resource)
    cloud.patch(
        resource.external_name,
        {
            "settings": {
                "tier": "db-custom-2-7680",
                "data_disk_size_gb": 50,
                "availability_type": "REGIONAL",
                "backup_configuration": {"enabled": False},
                "deletion_protection_enabled": True,
                "ip_configuration": {"ipv4_enabled": True},
                "user_labels": {"kumo-owner-name": "hijacked", "cost-center": "x"},
            }
        },
    )

    drifted = run(cloudsql_client.observe(resource))
    assert drifted is not None
    assert {d.field for d in drifted.drift} == {
        "instanceClass",
        "highAvailability",
        "backupRetentionDays",
        "deletionProtection",
        "publiclyAccessible",
        "labels",
    }
    assert drifted.settings["instanceClass"] == "db-custom-2-7680" and drifted.settings["storageGB"] == 50
    assert drifted.owner is None  # the uid label was dropped with the others

    updated = run(cloudsql_client.update(resource, drifted.drift))
    after = run(cloudsql_client.observe(resource))

    assert set(updated.changed) == {d.field for d in drifted.drift}
    assert set(updated.pending) == set(updated.changed)  # the patch operation was still running
    assert after is not None and not after.drift, after.drift
    assert after.settings["labels"]["cost-center"] == "x" and after.owner == resource.owner
    assert calls.count("instances.patch") == 1 and calls.balanced


def test_database_storage_growth_is_drift_corrected(cloudsql_client: DatabaseClient) -> None:
    """A spec asking for more storage than the disk has is drift, and update grows the disk."""
    resource = database(storage_gb=20)
    create_ready(cloudsql_client, resource)
    bigger = replace(resource, spec=replace(resource.database, storage_gb=40))

    drifted = run(cloudsql_client.observe(bigger))
    assert drifted is not None and drifted.drift == (FieldDrift("storageGB", 40, 20),)
    assert run(cloudsql_client.update(bigger, drifted.drift)).changed == ("storageGB",)
    after = run(cloudsql_client.observe(bigger))
    assert after is not None and not after.drift


def test_database_update_waits_for_a_runnable_instance(cloudsql_client: DatabaseClient) -> None:
    """Settings of an instance still being created are not patched: Retryable, nothing sent."""
    resource = database()
    run(cloudsql_client.create(resource, PASSWORD))

    with pytest.raises(Retryable) as later:
        run(cloudsql_client.update(resource, (FieldDrift("instanceClass", "db-custom-1-3840", "x"),)))

    assert later.value.code == "InstanceNotRunnable"


def test_database_failed_operation_is_terminal_with_googles_message(
    cloudsql_client: DatabaseClient, calls: CallLog
) -> None:
    """An operation that ends DONE with an error (creating a database that already exists, from a
    stale drift) surfaces as Terminal carrying Cloud SQL's own message."""
    resource = database(database_name="app")
    create_ready(cloudsql_client, resource)
    stale = (FieldDrift("databaseName", "app", None),)
    run(cloudsql_client.update(resource, stale))

    with pytest.raises(Terminal) as failed:
        run(cloudsql_client.update(resource, stale))

    assert failed.value.code == "OperationFailed"
    assert "CREATE_DATABASE" in str(failed.value) and "already exists" in str(failed.value)
    assert calls.balanced


def test_database_observe_many_costs_one_list_call_per_page(
    cloudsql_client: DatabaseClient, cloud: CloudSQL, calls: CallLog
) -> None:
    """12 instances with pages of 5 cost exactly 3 instances.list calls and nothing else; every
    asked-for instance comes back, and databases are not compared in a sweep."""
    resources = [database(database_name="app") for _ in range(12)]
    instances = cloud.instances
    for resource in resources:
        settings = {"tier": "db-f1-micro", "edition": "ENTERPRISE"}
        body = {"name": resource.external_name, "database_version": "POSTGRES_16", "settings": settings}
        instances.insert(request={"project": cloud.project, "body": body})
    absent = database()

    observed = run(cloudsql_client.observe_many([*resources, absent]))

    assert set(observed) == {r.external_name for r in resources}
    assert calls.operations() == ["instances.list"] * math.ceil(12 / PAGE_SIZE)
    assert all(o.owner is None for o in observed.values())  # created without kumo's labels
    assert all("databaseName" not in {d.field for d in o.drift} for o in observed.values())
    assert calls.balanced


def test_database_delete_is_gone_and_stays_gone(cloudsql_client: DatabaseClient, calls: CallLog) -> None:
    """Delete (with a final backup asked for) starts deleting; the next delete reports gone."""
    resource = database(skip_final_snapshot=False)
    create_ready(cloudsql_client, resource)

    first = run(cloudsql_client.delete(resource))
    second = run(cloudsql_client.delete(resource))

    assert first == second == Deletion(gone=False, state="PENDING_DELETE")  # no second delete call
    wait_until(lambda: run(cloudsql_client.delete(resource)).gone)
    assert run(cloudsql_client.observe(resource)) is None and calls.balanced
    assert calls.operations().count("instances.delete") == 1


def test_database_delete_protection_reaches_the_caller(cloudsql_client: DatabaseClient) -> None:
    """Deleting a protected instance is Terminal with Cloud SQL's own message; nothing is deleted."""
    resource = database(deletion_protection=True)
    create_ready(cloudsql_client, resource)

    with pytest.raises(Terminal) as refused:
        run(cloudsql_client.delete(resource))

    assert "protected" in str(refused.value) and "http" not in str(refused.value)
    assert run(cloudsql_client.observe(resource)) is not None


# ---------------------------------------------------------------------------- GCS


def test_bucket_create_then_observe_is_configured_and_in_sync(gcs: ExternalClient, calls: CallLog) -> None:
    """Create leaves the bucket fully configured in one insert (GCS keeps the settings sent with
    it, and a second write within the second would be refused): observe reads every setting
    back, with no drift."""
    resource = bucket(versioning=True, lifecycle_expire_days=30, labels={"team": "a"})
    run(gcs.create(resource, None))
    observed = run(gcs.observe(resource))

    assert observed is not None and observed.ready and not observed.drift, observed.drift
    assert observed.owner == resource.owner
    settings = dict(observed.settings)
    assert settings.pop("labels")["team"] == "a"
    assert settings == {
        "versioning": True,
        "publicAccessPrevention": "enforced",
        "encryption": "google-managed",
        "lifecycleExpireDays": 30,
    }
    assert observed.connection["url"] == f"gs://{resource.external_name}"
    assert observed.connection["endpoint"].startswith("http://127.0.0.1:")
    assert calls.operations() == ["buckets.insert", "buckets.get"] and calls.balanced


def test_bucket_customer_managed_key_is_configured(gcs: ExternalClient) -> None:
    """A Cloud KMS key from providerOptions becomes the bucket's default key."""
    resource = bucket(provider_options={"kmsKeyName": KMS_KEY})
    run(gcs.create(resource, None))

    observed = run(gcs.observe(resource))
    assert observed is not None and observed.settings["encryption"] == KMS_KEY and not observed.drift


def test_bucket_observe_absent_is_none(gcs: ExternalClient, calls: CallLog) -> None:
    """A bucket that does not exist observes as None, not as an error."""
    assert run(gcs.observe(bucket())) is None
    assert calls.finished[0].outcome == "404" and calls.balanced


def test_bucket_create_twice_is_idempotent(gcs: ExternalClient, calls: CallLog) -> None:
    """A second create of our own bucket (a retry) succeeds and configures it again."""
    resource = bucket(labels={"team": "a"})
    run(gcs.create(resource, None))
    calls.clear()
    run(gcs.create(resource, None))

    observed = run(gcs.observe(resource))
    assert calls.finished[0].outcome == "409"
    assert observed is not None and not observed.drift and calls.balanced


def test_bucket_create_refuses_a_bucket_another_object_owns(
    gcs: ExternalClient, storage_client: storage.Client
) -> None:
    """Create over an existing bucket labelled for another owner is Terminal; its labels stay."""
    resource = bucket()
    theirs = storage_client.bucket(resource.external_name)
    theirs.labels = {"kumo-owner-uid": "someone-else", "kumo-owner-name": "x"}
    storage_client.create_bucket(theirs)

    with pytest.raises(Terminal) as refused:
        run(gcs.create(resource, None))

    assert refused.value.code == "OwnedByAnotherObject"
    assert storage_client.get_bucket(resource.external_name).labels["kumo-owner-uid"] == "someone-else"


def test_bucket_out_of_band_changes_are_drift_until_update(
    gcs: ExternalClient, storage_client: storage.Client, calls: CallLog
) -> None:
    """Versioning switched off, public access prevention lifted and labels edited show as exactly
    those drifts; one update corrects them and keeps the foreign label."""
    resource = bucket(versioning=True, labels={"team": "a"})
    run(gcs.create(resource, None))
    changed = storage_client.get_bucket(resource.external_name)
    changed.versioning_enabled = False
    changed.iam_configuration.public_access_prevention = "inherited"
    changed.labels = {**changed.labels, "team": "b", "cost-center": "x"}
    wait_for_the_next_metadata_update()  # GCS takes one per bucket per second
    changed.patch()
    wait_for_the_next_metadata_update()

    drifted = run(gcs.observe(resource))
    assert drifted is not None
    assert {d.field for d in drifted.drift} == {"versioning", "publicAccessPrevention", "labels"}

    updated = run(gcs.update(resource, drifted.drift))
    after = run(gcs.observe(resource))

    assert updated.changed == ("publicAccessPrevention", "versioning", "labels")
    assert after is not None and not after.drift, after.drift
    assert after.settings["labels"]["cost-center"] == "x"
    assert calls.count("buckets.patch") == 1 and calls.balanced  # the update's (create is one insert)


def test_bucket_observe_many_costs_one_list_call(
    gcs: ExternalClient, storage_client: storage.Client, calls: CallLog
) -> None:
    """Many buckets are observed with one buckets.list (GCS pages by 1000); every asked-for
    bucket comes back with its settings."""
    resources = [bucket() for _ in range(6)]
    for resource in resources:
        storage_client.create_bucket(resource.external_name)

    observed = run(gcs.observe_many([*resources, bucket()]))

    assert set(observed) == {r.external_name for r in resources}
    assert calls.operations() == ["buckets.list"] and calls.balanced
    assert all({d.field for d in o.drift} == {"publicAccessPrevention", "labels"} for o in observed.values())


def test_bucket_delete_refuses_objects_without_force_destroy(
    gcs: ExternalClient, storage_client: storage.Client
) -> None:
    """A bucket holding an object is not deleted: Terminal BucketNotEmpty naming spec.forceDestroy."""
    resource = bucket()
    run(gcs.create(resource, None))
    storage_client.bucket(resource.external_name).blob("keep.txt").upload_from_string("data")

    with pytest.raises(Terminal) as refused:
        run(gcs.delete(resource))

    assert refused.value.code == "BucketNotEmpty" and "spec.forceDestroy" in str(refused.value)
    assert run(gcs.observe(resource)) is not None


def test_bucket_force_destroy_empties_and_deletes(
    gcs: ExternalClient, storage_client: storage.Client, calls: CallLog
) -> None:
    """With forceDestroy every object goes in one batch request, then the bucket; a second delete
    finds nothing and reports gone."""
    resource = bucket(versioning=True, force_destroy=True)
    run(gcs.create(resource, None))
    target = storage_client.bucket(resource.external_name)
    for index in range(3):
        target.blob(f"object-{index}").upload_from_string("data")
    calls.clear()

    first = run(gcs.delete(resource))
    second = run(gcs.delete(resource))

    assert first.gone and second.gone
    assert run(gcs.observe(resource)) is None
    assert calls.operations()[:4] == ["objects.list", "objects.delete", "objects.list", "buckets.delete"]
    assert calls.balanced
