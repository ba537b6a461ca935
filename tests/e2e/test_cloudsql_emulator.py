"""The Cloud SQL Admin API emulator, driven through the real google-cloud-sql REST client.

Raw HTTP appears only where the client cannot say or show something: unknown fields,
malformed JSON, and the exact bytes of a response (to prove no password is ever in one).
"""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import sqladmin_v1beta4 as sql
from kumo.testbed.cloudsql_emulator import (
    ENTERPRISE_PLUS_TIER_MESSAGE,
    OPERATION_IN_PROGRESS_MESSAGE,
    CloudSQLEmulator,
    SqlAdminSchema,
)

# Self-contained (starts its own emulator), but an end-to-end test like its neighbours.
pytestmark = pytest.mark.e2e

Instance = sql.DatabaseInstance
Operation = sql.Operation
PENDING = Operation.SqlOperationStatus.PENDING
RUNNING = Operation.SqlOperationStatus.RUNNING
DONE = Operation.SqlOperationStatus.DONE
PENDING_CREATE = Instance.SqlInstanceState.PENDING_CREATE
RUNNABLE = Instance.SqlInstanceState.RUNNABLE
ENTERPRISE_PLUS_REFUSAL = "Invalid request: " + ENTERPRISE_PLUS_TIER_MESSAGE


@dataclass(frozen=True)
class Clients:
    emulator: CloudSQLEmulator
    instances: sql.SqlInstancesServiceClient
    users: sql.SqlUsersServiceClient
    databases: sql.SqlDatabasesServiceClient
    operations: sql.SqlOperationsServiceClient


def clients_for(emulator: CloudSQLEmulator) -> Clients:
    options: dict[str, Any] = {
        "client_options": {"api_endpoint": emulator.endpoint},
        "transport": "rest",
        "credentials": AnonymousCredentials(),
    }
    return Clients(
        emulator,
        sql.SqlInstancesServiceClient(**options),
        sql.SqlUsersServiceClient(**options),
        sql.SqlDatabasesServiceClient(**options),
        sql.SqlOperationsServiceClient(**options),
    )


@pytest.fixture(scope="module")
def api() -> Iterator[Clients]:
    # Operations end by reads here (30 s is never reached), so each step is deterministic.
    with CloudSQLEmulator(port=0, operation_steps=2, create_steps=2, operation_seconds=30) as emulator:
        yield clients_for(emulator)
        assert emulator.response_problems() == []


@pytest.fixture
def project() -> str:
    """A project of its own per test, so tests never see each other's instances."""
    return f"proj-{uuid.uuid4().hex[:8]}"


# --- helpers --------------------------------------------------------------------------------


def create(api: Clients, project: str, name: str, **body: Any) -> Operation:
    # PostgreSQL 16 defaults to Enterprise Plus, which has no custom tiers: name the edition.
    settings = {"tier": "db-custom-1-3840", "edition": "ENTERPRISE", **body.pop("settings", {})}
    request_body = {
        "name": name,
        "database_version": "POSTGRES_16",
        "region": "europe-west1",
        "settings": settings,
        **body,
    }
    return api.instances.insert(request={"project": project, "body": request_body})


def read_operation(api: Clients, project: str, operation: Operation) -> Operation:
    return api.operations.get(request={"project": project, "operation": operation.name})


def finish(api: Clients, project: str, operation: Operation) -> Operation:
    """Read an operation until DONE, failing the test if it never gets there."""
    for _ in range(10):
        operation = read_operation(api, project, operation)
        if operation.status == DONE:
            return operation
    pytest.fail(f"operation {operation.name} never reached DONE")


def get(api: Clients, project: str, name: str) -> Instance:
    return api.instances.get(request={"project": project, "instance": name})


def names(api: Clients, project: str, **request: Any) -> list[str]:
    """Names of listed instances, through `.pages`: the generated pager's own iterator walks
    `warnings`, not `items`."""
    pages = api.instances.list(request={"project": project, **request}).pages
    return [instance.name for page in pages for instance in page.items]


def create_running(api: Clients, project: str, name: str, **body: Any) -> Instance:
    finish(api, project, create(api, project, name, **body))
    instance = get(api, project, name)
    assert instance.state == RUNNABLE
    return instance


def http_json(endpoint: str, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """One HTTP exchange with the emulator at `endpoint`: the status and the decoded JSON."""
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        connection.request(method, path, body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def raw(api: Clients, method: str, path: str, body: bytes | None = None) -> tuple[int, dict[str, Any]]:
    """A project-scoped API call bypassing the client, to see or send what the client cannot."""
    return http_json(api.emulator.endpoint, method, f"/sql/v1beta4/projects/{path}", body)


def reasons(error: exceptions.GoogleAPICallError) -> list[str]:
    return [detail["reason"] for detail in error.errors]


def message(error: exceptions.GoogleAPICallError) -> str:
    """Google's message, without the method and URL the client puts in front of it."""
    return str(error.errors[0]["message"])


# --- operations and the create life cycle ---------------------------------------------------


def test_create_operation_goes_pending_running_done(api: Clients, project: str) -> None:
    """A create returns a PENDING operation that advances one status per read, then stays DONE."""
    operation = create(api, project, "orders")
    assert operation.status == PENDING
    assert operation.operation_type == Operation.SqlOperationType.CREATE
    assert (operation.target_id, operation.target_project) == ("orders", project)
    assert operation.self_link.endswith(f"/projects/{project}/operations/{operation.name}")

    statuses = [read_operation(api, project, operation).status for _ in range(3)]

    assert statuses == [RUNNING, DONE, DONE]
    done = read_operation(api, project, operation)
    assert done.start_time <= done.end_time
    assert not done.error.errors


def test_instance_is_pending_create_until_enough_reads(api: Clients, project: str) -> None:
    """Polling only the instance brings it from PENDING_CREATE to RUNNABLE, and ends the create."""
    operation = create(api, project, "orders")

    states = [get(api, project, "orders").state for _ in range(3)]

    assert states == [PENDING_CREATE, RUNNABLE, RUNNABLE]
    assert read_operation(api, project, operation).status == DONE


def test_finished_create_operation_means_runnable_instance(api: Clients, project: str) -> None:
    """Once the create operation is DONE, the very next read of the instance shows RUNNABLE."""
    finish(api, project, create(api, project, "orders"))

    assert get(api, project, "orders").state == RUNNABLE


@pytest.mark.parametrize(("operation_steps", "create_steps"), [(0, 0), (0, 5), (5, 0)])
def test_a_zero_step_count_finishes_the_create_at_once(operation_steps: int, create_steps: int) -> None:
    """If either count is 0 the create is finished when returned: operation DONE, instance RUNNABLE."""
    with CloudSQLEmulator(operation_steps=operation_steps, create_steps=create_steps) as emulator:
        api = clients_for(emulator)

        operation = create(api, "fast", "orders")

        assert operation.status == DONE
        assert get(api, "fast", "orders").state == RUNNABLE


def test_instance_echoes_request_and_derives_identity(api: Clients, project: str) -> None:
    """GET returns what was sent (enums, int64s, nested settings) plus the server-made fields."""
    create(
        api,
        project,
        "orders",
        root_password="hunter2",
        settings={
            "data_disk_size_gb": 20,
            "availability_type": "REGIONAL",
            "edition": "ENTERPRISE",
            "user_labels": {"team": "red"},
            "ip_configuration": {"ipv4_enabled": True},
            "backup_configuration": {"enabled": True, "start_time": "03:00"},
        },
    )

    instance = get(api, project, "orders")

    assert instance.database_version == sql.SqlDatabaseVersion.POSTGRES_16
    assert instance.database_installed_version == "POSTGRES_16"
    assert instance.connection_name == f"{project}:europe-west1:orders"
    assert instance.settings.data_disk_size_gb == 20
    assert instance.settings.availability_type == sql.SqlAvailabilityType.REGIONAL
    assert instance.settings.edition == sql.Settings.Edition.ENTERPRISE
    assert dict(instance.settings.user_labels) == {"team": "red"}
    assert instance.settings.backup_configuration.start_time == "03:00"
    assert instance.settings.settings_version == 1
    [address] = instance.ip_addresses
    assert address.type_ == sql.SqlIpAddressType.PRIMARY
    assert address.ip_address.startswith("127.")
    assert instance.self_link.endswith(f"/projects/{project}/instances/orders")
    assert instance.create_time.year >= 2024
    assert instance.backend_type == sql.SqlBackendType.SECOND_GEN


def test_unknown_fields_and_enum_values_get_googles_400(api: Clients, project: str) -> None:
    """A field the discovery document lacks, or an enum value it does not list, is refused with
    Google's front-end 400 (one message per field, a BadRequest detail) and creates nothing."""
    body = {
        "name": "orders",
        "databaseVersion": "POSTGRES_16",
        "settings": {"tier": "db-f1-micro", "edition": "ENTERPRISE", "futureSetting": True},
        "region": "europe-west1",
    }
    status, unknown = raw(api, "POST", f"{project}/instances", json.dumps(body).encode())
    body["settings"] = {"tier": "db-f1-micro", "edition": "ENTERPRISE", "availabilityType": "ZONALISH"}
    status_enum, bad_enum = raw(api, "POST", f"{project}/instances", json.dumps(body).encode())

    assert status == status_enum == 400
    assert unknown["error"]["status"] == "INVALID_ARGUMENT"
    assert unknown["error"]["message"] == (
        "Invalid JSON payload received. Unknown name \"futureSetting\" at 'body.settings': Cannot find field."
    )
    [detail] = unknown["error"]["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"] == [{"field": "body.settings", "description": unknown["error"]["message"]}]
    assert bad_enum["error"]["message"] == (
        "Invalid value at 'body.settings.availability_type' "
        '(type.googleapis.com/google.cloud.sql.v1beta4.SqlAvailabilityType), "ZONALISH"'
    )
    assert names(api, project) == []


def test_enums_come_as_names_unless_numbers_are_asked_for(api: Clients, project: str) -> None:
    """Plain JSON (gcloud, curl) reads enum names; `$alt=json;enum-encoding=int` (the client
    library) reads the protobuf numbers. Either form is accepted in requests."""
    create_running(api, project, "orders")

    _, named = raw(api, "GET", f"{project}/instances/orders")
    _, numbered = raw(api, "GET", f"{project}/instances/orders?$alt=json;enum-encoding=int")

    assert (named["state"], named["databaseVersion"], named["settings"]["edition"]) == (
        "RUNNABLE",
        "POSTGRES_16",
        "ENTERPRISE",
    )
    assert (numbered["state"], numbered["databaseVersion"], numbered["settings"]["edition"]) == (1, 272, 2)


def test_instances_carry_the_fields_the_real_api_always_returns(api: Clients, project: str) -> None:
    """etag, maintenanceVersion, locationPreference, the edition and the kinds are always there."""
    create_running(api, project, "orders")

    _, instance = raw(api, "GET", f"{project}/instances/orders")

    settings = instance["settings"]
    assert instance["etag"] and instance["maintenanceVersion"].startswith("POSTGRES_16.")
    assert settings["locationPreference"] == {"zone": "europe-west1-a", "kind": "sql#locationPreference"}
    assert settings["backupConfiguration"]["kind"] == "sql#backupConfiguration"
    assert settings["maintenanceWindow"]["kind"] == "sql#maintenanceWindow"
    assert (instance["kind"], settings["kind"]) == ("sql#instance", "sql#settings")


# --- list -----------------------------------------------------------------------------------


def test_list_pages_through_every_instance_once(api: Clients, project: str) -> None:
    """Seven instances listed three at a time come as pages of 3, 3 and 1, each name once."""
    names = [f"db-{n}" for n in range(7)]
    for name in names:
        create(api, project, name)

    pages = list(api.instances.list(request={"project": project, "max_results": 3}).pages)

    assert [len(page.items) for page in pages] == [3, 3, 1]
    assert [item.name for page in pages for item in page.items] == names


def test_list_is_scoped_to_the_project_and_honours_a_simple_filter(api: Clients, project: str) -> None:
    """Only the project's instances are listed; `field:value` filters; other syntax is ignored."""
    create(api, project, "red-db", settings={"user_labels": {"team": "red"}})
    create(api, project, "blue-db", settings={"user_labels": {"team": "blue"}})
    create(api, f"{project}-other", "red-elsewhere", settings={"user_labels": {"team": "red"}})

    assert names(api, project) == ["blue-db", "red-db"]
    assert names(api, project, filter="settings.userLabels.team:red") == ["red-db"]
    both = "state=PENDING_CREATE AND databaseVersion:POSTGRES_16"
    assert names(api, project, filter=both) == ["blue-db", "red-db"]
    assert names(api, project, filter="(team = red) OR (team = blue)") == ["blue-db", "red-db"]


# --- patch ----------------------------------------------------------------------------------


def test_patch_changes_only_sent_fields_and_bumps_settings_version(api: Clients, project: str) -> None:
    """A patch merges: sent fields change, the rest stay, labels are replaced whole, version +1."""
    create_running(
        api,
        project,
        "orders",
        settings={
            "tier": "db-f1-micro",
            "data_disk_size_gb": 20,
            "user_labels": {"a": "1", "b": "2"},
            "backup_configuration": {"enabled": False, "start_time": "03:00"},
        },
    )
    patch = {
        "settings": {
            "tier": "db-custom-2-7680",
            "data_disk_size_gb": 50,
            "user_labels": {"c": "3"},
            "backup_configuration": {
                "enabled": True,
                "point_in_time_recovery_enabled": True,
                "backup_retention_settings": {"retained_backups": 14},
            },
        }
    }

    operation = api.instances.patch(request={"project": project, "instance": "orders", "body": patch})
    settings = get(api, project, "orders").settings

    assert operation.operation_type == Operation.SqlOperationType.UPDATE
    assert finish(api, project, operation).status == DONE
    assert settings.tier == "db-custom-2-7680"
    assert settings.data_disk_size_gb == 50
    assert dict(settings.user_labels) == {"c": "3"}
    assert settings.backup_configuration.enabled is True
    assert settings.backup_configuration.point_in_time_recovery_enabled is True
    assert settings.backup_configuration.backup_retention_settings.retained_backups == 14
    assert settings.backup_configuration.start_time == "03:00"  # untouched sibling field
    assert settings.availability_type == sql.SqlAvailabilityType.ZONAL  # untouched default
    assert settings.settings_version == 2


def test_patch_with_stale_settings_version_is_refused(api: Clients, project: str) -> None:
    """A patch naming an old settingsVersion fails 412 staleData; naming the current one works."""
    create_running(api, project, "orders")
    finish(
        api,
        project,
        api.instances.patch(
            request={"project": project, "instance": "orders", "body": {"settings": {"tier": "db-g1-small"}}}
        ),
    )

    stale = {"settings": {"tier": "db-f1-micro", "settings_version": 1}}
    with pytest.raises(exceptions.PreconditionFailed) as refused:
        api.instances.patch(request={"project": project, "instance": "orders", "body": stale})
    current = {"settings": {"tier": "db-f1-micro", "settings_version": 2}}
    api.instances.patch(request={"project": project, "instance": "orders", "body": current})

    assert reasons(refused.value) == ["staleData"]
    assert get(api, project, "orders").settings.tier == "db-f1-micro"
    assert get(api, project, "orders").settings.settings_version == 3


def test_patch_before_the_instance_is_runnable_conflicts(api: Clients, project: str) -> None:
    """Changing an instance still being created fails 409 invalidState, as on the real API."""
    create(api, project, "orders")
    body = {"settings": {"tier": "db-g1-small"}}

    with pytest.raises(exceptions.Conflict) as refused:
        api.instances.patch(request={"project": project, "instance": "orders", "body": body})

    assert reasons(refused.value) == ["invalidState"]


def test_update_replaces_settings_wholesale(api: Clients, project: str) -> None:
    """PUT (instances.update) resets settings it does not carry, unlike patch."""
    create_running(api, project, "orders", settings={"user_labels": {"a": "1"}, "data_disk_size_gb": 30})
    body = {"settings": {"tier": "db-g1-small", "data_disk_size_gb": 30}}

    api.instances.update(request={"project": project, "instance": "orders", "body": body})
    settings = get(api, project, "orders").settings

    assert (settings.tier, settings.data_disk_size_gb) == ("db-g1-small", 30)
    assert dict(settings.user_labels) == {}
    assert settings.settings_version == 2


# --- users and databases --------------------------------------------------------------------


def test_users_lifecycle_never_reveals_a_password(api: Clients, project: str) -> None:
    """Users can be created, listed, re-passworded and deleted; no response ever holds a password."""
    create_running(api, project, "orders", root_password="root-secret-1")
    base = {"project": project, "instance": "orders"}

    created = api.users.insert(request={**base, "body": {"name": "app", "password": "first-secret-2"}})
    finish(api, project, created)
    updated = api.users.update(request={**base, "name": "app", "body": {"password": "second-secret-3"}})
    finish(api, project, updated)
    listed = api.users.list(request=base)

    assert created.operation_type == Operation.SqlOperationType.CREATE_USER
    assert updated.operation_type == Operation.SqlOperationType.UPDATE_USER
    assert sorted(user.name for user in listed.items) == ["app", "postgres"]
    assert all(user.password == "" for user in listed.items)
    assert api.emulator.password_of(project, "orders", "app") == "second-secret-3"
    assert api.emulator.password_of(project, "orders", "postgres") == "root-secret-1"
    responses = [
        raw(api, "GET", f"{project}/instances/orders/users")[1],
        raw(api, "GET", f"{project}/instances/orders/users/app")[1],
        raw(api, "GET", f"{project}/instances/orders")[1],
        raw(api, "GET", f"{project}/operations?instance=orders")[1],
    ]
    text = json.dumps(responses)
    assert "secret" not in text and "password" not in text.lower()

    api.users.delete(request={**base, "name": "app"})
    assert [user.name for user in api.users.list(request=base).items] == ["postgres"]


def test_creating_an_existing_user_fails_its_operation(api: Clients, project: str) -> None:
    """A duplicate user is an engine error: the call succeeds, its operation ends DONE with an error."""
    create_running(api, project, "orders")
    request = {"project": project, "instance": "orders", "body": {"name": "app", "password": "pw"}}
    finish(api, project, api.users.insert(request=request))

    done = finish(api, project, api.users.insert(request=request))

    [error] = done.error.errors
    assert (error.code, error.kind) == ("ERROR_RDBMS", "sql#operationError")
    assert "app" in error.message


def test_users_need_a_runnable_instance(api: Clients, project: str) -> None:
    """User calls on an instance still being created fail 400: the engine is not running yet."""
    create(api, project, "orders")

    with pytest.raises(exceptions.BadRequest, match="not running"):
        api.users.insert(request={"project": project, "instance": "orders", "body": {"name": "app"}})


def test_databases_insert_get_list_delete(api: Clients, project: str) -> None:
    """Databases can be created (with engine defaults), read, listed and deleted."""
    create_running(api, project, "orders")
    base = {"project": project, "instance": "orders"}

    operation = api.databases.insert(request={**base, "body": {"name": "shop"}})
    finish(api, project, operation)
    shop = api.databases.get(request={**base, "database": "shop"})
    listed = [db.name for db in api.databases.list(request=base).items]
    api.databases.delete(request={**base, "database": "shop"})

    assert operation.operation_type == Operation.SqlOperationType.CREATE_DATABASE
    assert (shop.name, shop.instance, shop.charset) == ("shop", "orders", "UTF8")
    assert listed == ["postgres", "shop"]
    with pytest.raises(exceptions.NotFound):
        api.databases.get(request={**base, "database": "shop"})


# --- delete, errors -------------------------------------------------------------------------


def test_deleted_instance_is_pending_delete_then_gone_and_its_name_free(api: Clients, project: str) -> None:
    """Delete shows PENDING_DELETE until its operation ends; then GET is 404 and the name is free."""
    create_running(api, project, "orders")

    operation = api.instances.delete(request={"project": project, "instance": "orders"})

    assert operation.operation_type == Operation.SqlOperationType.DELETE
    assert get(api, project, "orders").state == Instance.SqlInstanceState.PENDING_DELETE
    with pytest.raises(exceptions.Conflict) as busy:
        api.instances.delete(request={"project": project, "instance": "orders"})
    assert reasons(busy.value) == ["operationInProgress"]
    assert finish(api, project, operation).status == DONE
    with pytest.raises(exceptions.NotFound) as missing:
        get(api, project, "orders")
    assert reasons(missing.value) == ["instanceDoesNotExist"]
    assert create(api, project, "orders").status == PENDING


def test_deletion_protection_blocks_delete_until_disabled(api: Clients, project: str) -> None:
    """A protected instance cannot be deleted; after a patch turns protection off, it can."""
    create_running(api, project, "orders", settings={"deletion_protection_enabled": True})
    target = {"project": project, "instance": "orders"}

    with pytest.raises(exceptions.BadRequest, match="protected"):
        api.instances.delete(request=target)
    assert get(api, project, "orders").state == RUNNABLE
    finish(
        api,
        project,
        api.instances.patch(request={**target, "body": {"settings": {"deletion_protection_enabled": False}}}),
    )
    finish(api, project, api.instances.delete(request=target))

    with pytest.raises(exceptions.NotFound):
        get(api, project, "orders")


def test_unknown_resources_raise_not_found(api: Clients, project: str) -> None:
    """Unknown operations, users and databases are 404s the client raises as NotFound."""
    create_running(api, project, "orders")
    base = {"project": project, "instance": "orders"}
    calls = [
        lambda: api.operations.get(request={"project": project, "operation": str(uuid.uuid4())}),
        lambda: api.users.get(request={**base, "name": "nobody"}),
        lambda: api.users.update(request={**base, "name": "nobody", "body": {"password": "x"}}),
        lambda: api.databases.get(request={**base, "database": "nothing"}),
    ]

    for call in calls:
        with pytest.raises(exceptions.NotFound):
            call()


def test_concurrent_creates_of_one_name_admit_exactly_one(api: Clients, project: str) -> None:
    """Twenty simultaneous creates of the same name: one succeeds, nineteen get 409."""

    def attempt(_: int) -> str:
        try:
            create(api, project, "orders")
        except exceptions.Conflict:
            return "conflict"
        return "created"

    with ThreadPoolExecutor(max_workers=20) as pool:
        outcomes = sorted(pool.map(attempt, range(20)))

    assert outcomes == ["conflict"] * 19 + ["created"]
    assert names(api, project) == ["orders"]


def test_duplicate_instance_name_conflicts(api: Clients, project: str) -> None:
    """Creating an instance whose name is taken fails 409 instanceAlreadyExists."""
    create(api, project, "orders")

    with pytest.raises(exceptions.Conflict) as taken:
        create(api, project, "orders")

    assert reasons(taken.value) == ["instanceAlreadyExists"]


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("", {}),
        ("Orders", {}),
        ("1orders", {}),
        ("orders-", {}),
        ("under_score", {}),
        ("x" * 85, {}),
        ("orders", {"settings": {"tier": "f1-micro"}}),
        ("orders", {"settings": {"data_disk_size_gb": 5}}),
        ("orders", {"database_version": 9999}),
    ],
    ids=[
        "no-name",
        "uppercase",
        "digit-first",
        "hyphen-last",
        "underscore",
        "too-long",
        "bad-tier",
        "tiny-disk",
        "unknown-version",
    ],
)
def test_invalid_create_requests_are_bad_requests(api: Clients, project: str, name: str, body: dict[str, Any]) -> None:
    """Bad names, tiers, disk sizes and database versions are refused 400 and create nothing."""
    with pytest.raises(exceptions.BadRequest):
        create(api, project, name, **body)

    assert names(api, project) == []


def test_malformed_json_and_missing_tier_are_bad_requests(api: Clients, project: str) -> None:
    """Unparsable JSON and a create without settings.tier get 400 in Google's error shape."""
    status, malformed = raw(api, "POST", f"{project}/instances", b"{not json")
    no_tier = json.dumps({"name": "orders", "settings": {}}).encode()
    status_no_tier, missing = raw(api, "POST", f"{project}/instances", no_tier)

    assert status == status_no_tier == 400
    assert malformed["error"]["status"] == "INVALID_ARGUMENT"
    assert malformed["error"]["errors"][0]["domain"] == "global"
    assert "tier" in missing["error"]["message"]


def test_disk_cannot_shrink(api: Clients, project: str) -> None:
    """A patch to a smaller disk is refused 400 and leaves the disk as it was."""
    create_running(api, project, "orders", settings={"data_disk_size_gb": 50})
    body = {"settings": {"data_disk_size_gb": 20}}

    with pytest.raises(exceptions.BadRequest, match="decreased"):
        api.instances.patch(request={"project": project, "instance": "orders", "body": body})

    assert get(api, project, "orders").settings.data_disk_size_gb == 50


def test_unemulated_method_fails_loudly(api: Clients, project: str) -> None:
    """A Cloud SQL method the emulator lacks answers 501, not a misleading 404."""
    create_running(api, project, "orders")

    with pytest.raises(exceptions.MethodNotImplemented):
        api.instances.restart(request={"project": project, "instance": "orders"})


def test_operations_list_newest_first_in_pages(api: Clients, project: str) -> None:
    """operations.list returns an instance's operations newest first, page by page."""
    create_running(api, project, "orders")
    finish(api, project, api.users.insert(request={"project": project, "instance": "orders", "body": {"name": "app"}}))
    api.databases.insert(request={"project": project, "instance": "orders", "body": {"name": "shop"}})

    request = {"project": project, "instance": "orders", "max_results": 2}
    pages = list(api.operations.list(request=request).pages)

    kinds = [op.operation_type.name for page in pages for op in page.items]
    assert kinds == ["CREATE_DATABASE", "CREATE_USER", "CREATE"]
    assert [len(page.items) for page in pages] == [2, 1]


# --- one operation at a time, states, editions, 403 (the strict bed) ---------------------


def admin(api: Clients, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
    """The emulator's test-only administration endpoint."""
    data = json.dumps(body).encode() if body is not None else None
    return http_json(api.emulator.endpoint, method, f"/_emulator/{path}", data)


def test_one_operation_at_a_time_per_instance(api: Clients, project: str) -> None:
    """While an instance update runs, every other change to the instance (another patch, users,
    databases, delete) is refused 409 operationInProgress; reads are served; once the update is
    DONE the same calls go through."""
    create_running(api, project, "orders")
    base = {"project": project, "instance": "orders"}
    update = api.instances.patch(request={**base, "body": {"settings": {"tier": "db-custom-2-7680"}}})
    calls = [
        lambda: api.instances.patch(request={**base, "body": {"settings": {"data_disk_size_gb": 30}}}),
        lambda: api.users.insert(request={**base, "body": {"name": "app", "password": "pw"}}),
        lambda: api.users.update(request={**base, "name": "postgres", "body": {"password": "pw"}}),
        lambda: api.databases.insert(request={**base, "body": {"name": "shop"}}),
        lambda: api.databases.delete(request={**base, "database": "postgres"}),
        lambda: api.instances.delete(request=base),
    ]

    refused = []
    for call in calls:
        with pytest.raises(exceptions.Conflict) as busy:
            call()
        refused.append((reasons(busy.value), message(busy.value)))
    served = [user.name for user in api.users.list(request=base).items]
    finish(api, project, update)

    assert refused == [(["operationInProgress"], OPERATION_IN_PROGRESS_MESSAGE)] * len(calls)
    assert served == ["postgres"]
    assert finish(api, project, calls[1]()).status == DONE


def test_an_operation_nobody_reads_ends_on_its_own() -> None:
    """After operation_seconds an unread operation is DONE and the instance takes changes again,
    as a real patch ends whether or not its caller polls it."""
    with CloudSQLEmulator(operation_steps=2, create_steps=0, operation_seconds=0.2) as emulator:
        api = clients_for(emulator)
        create(api, "quick", "orders")
        base = {"project": "quick", "instance": "orders"}
        api.instances.patch(request={**base, "body": {"settings": {"tier": "db-g1-small"}}})

        for _ in range(50):
            try:
                api.databases.insert(request={**base, "body": {"name": "shop"}})
                break
            except exceptions.Conflict:
                time.sleep(0.1)
        else:
            pytest.fail("the unread patch never ended")


def test_a_background_operation_holds_the_instance_until_finished(api: Clients, project: str) -> None:
    """An operation the service runs on its own (started through the admin endpoint) keeps the
    instance busy whatever the reads, until it is finished."""
    create_running(api, project, "orders")
    status, operation = admin(api, "POST", f"projects/{project}/instances/orders/operations", {"seconds": 60})
    read_operation(api, project, Operation(name=operation["name"]))
    read_operation(api, project, Operation(name=operation["name"]))

    with pytest.raises(exceptions.Conflict):
        api.databases.insert(request={"project": project, "instance": "orders", "body": {"name": "shop"}})
    admin(api, "POST", f"projects/{project}/operations/{operation['name']}/finish", {})

    assert (status, operation["status"], operation["operationType"]) == (200, "RUNNING", "BACKUP_VOLUME")
    assert api.databases.insert(request={"project": project, "instance": "orders", "body": {"name": "shop"}})


def test_a_name_the_project_never_had_is_403_not_404(api: Clients, project: str) -> None:
    """Like the real API, reads and changes of an instance name that never existed answer 403
    notAuthorized; a name deleted since answers 404 (after its PENDING_DELETE)."""
    base = {"project": project, "instance": "never"}
    calls = [
        lambda: get(api, project, "never"),
        lambda: api.instances.delete(request=base),
        lambda: api.instances.patch(request={**base, "body": {"settings": {"tier": "db-g1-small"}}}),
        lambda: api.users.list(request=base),
    ]

    for call in calls:
        with pytest.raises(exceptions.Forbidden) as refused:
            call()
        assert reasons(refused.value) == ["notAuthorized"]
        assert message(refused.value) == "The client is not authorized to make this request."


def test_403_for_unknown_names_can_be_turned_off() -> None:
    """`forbidden_for_unknown=False` (`--unknown-instance-status 404`) answers 404 instead."""
    with CloudSQLEmulator(forbidden_for_unknown=False) as emulator, pytest.raises(exceptions.NotFound):
        get(clients_for(emulator), "p", "never")


@pytest.mark.parametrize(
    ("version", "settings", "refusal", "edition"),
    [
        ("POSTGRES_16", {"tier": "db-f1-micro"}, ENTERPRISE_PLUS_REFUSAL.format(tier="db-f1-micro"), None),
        ("POSTGRES_17", {"tier": "db-custom-2-7680"}, ENTERPRISE_PLUS_REFUSAL.format(tier="db-custom-2-7680"), None),
        ("POSTGRES_16", {"tier": "db-perf-optimized-N-2"}, None, "ENTERPRISE_PLUS"),
        ("POSTGRES_15", {"tier": "db-custom-2-7680"}, None, "ENTERPRISE"),
        ("POSTGRES_16", {"tier": "db-g1-small", "edition": "ENTERPRISE"}, None, "ENTERPRISE"),
        (
            "MYSQL_8_0",
            {"tier": "db-perf-optimized-N-2", "edition": "ENTERPRISE"},
            "Invalid request: Invalid Tier (db-perf-optimized-N-2) for (ENTERPRISE) Edition.",
            None,
        ),
    ],
    ids=["pg16-shared-core", "pg17-custom", "pg16-perf-optimized", "pg15-custom", "pg16-enterprise", "mysql-plus-tier"],
)
def test_editions_and_their_tiers(
    api: Clients, project: str, version: str, settings: dict[str, Any], refusal: str | None, edition: str | None
) -> None:
    """PostgreSQL 16+ defaults to Enterprise Plus, which takes only db-perf-optimized-N-* tiers
    (and those need it), with the real 400 message."""
    body = {"name": "orders", "database_version": version, "settings": settings}
    if refusal is not None:
        with pytest.raises(exceptions.BadRequest) as refused:
            api.instances.insert(request={"project": project, "body": body})
        assert message(refused.value) == refusal
        assert names(api, project) == []
    else:
        finish(api, project, api.instances.insert(request={"project": project, "body": body}))
        assert get(api, project, "orders").settings.edition.name == edition


def test_a_patch_cannot_break_the_edition_rules(api: Clients, project: str) -> None:
    """Moving an Enterprise instance with a custom tier to Enterprise Plus is refused."""
    create_running(api, project, "orders")
    body = {"settings": {"edition": "ENTERPRISE_PLUS"}}

    with pytest.raises(exceptions.BadRequest, match="ENTERPRISE_PLUS"):
        api.instances.patch(request={"project": project, "instance": "orders", "body": body})


def test_injected_states_show_as_the_real_api_shows_them(api: Clients, project: str) -> None:
    """MAINTENANCE (reads served, changes 409), SUSPENDED with its reason, FAILED with the error
    of the operation that failed, and back."""
    create_running(api, project, "orders")
    base = {"project": project, "instance": "orders"}
    state_path = f"projects/{project}/instances/orders/state"

    admin(api, "POST", state_path, {"state": "MAINTENANCE"})
    assert get(api, project, "orders").state == Instance.SqlInstanceState.MAINTENANCE
    assert [user.name for user in api.users.list(request=base).items] == ["postgres"]
    with pytest.raises(exceptions.Conflict) as busy:
        api.databases.insert(request={**base, "body": {"name": "shop"}})
    assert reasons(busy.value) == ["operationInProgress"]

    admin(api, "POST", state_path, {"state": "SUSPENDED", "suspensionReason": ["BILLING_ISSUE"]})
    suspended = get(api, project, "orders")
    _, named = raw(api, "GET", f"{project}/instances/orders")
    assert suspended.state == Instance.SqlInstanceState.SUSPENDED
    assert [reason.name for reason in suspended.suspension_reason] == ["BILLING_ISSUE"]
    assert named["suspensionReason"] == ["BILLING_ISSUE"]
    with pytest.raises(exceptions.BadRequest, match="not running"):
        api.users.list(request=base)

    admin(api, "POST", state_path, {"state": "FAILED", "error": "The instance could not restart."})
    assert get(api, project, "orders").state == Instance.SqlInstanceState.FAILED
    [newest] = api.operations.list(request={**base, "max_results": 1}).items
    assert newest.operation_type.name == "MAINTENANCE"
    assert [e.message for e in newest.error.errors] == ["The instance could not restart."]
    admin(api, "POST", state_path, {"state": "RUNNABLE"})
    _, back = raw(api, "GET", f"{project}/instances/orders")
    assert back["state"] == "RUNNABLE" and "suspensionReason" not in back
    status, refused = admin(api, "POST", state_path, {"state": "PENDING_CREATE"})
    assert status == 400 and "state must be one of" in refused["error"]["message"]


def test_every_response_of_a_scenario_matches_the_discovery_document(api: Clients, project: str) -> None:
    """A whole life cycle over plain HTTP, in both enum encodings: every response body is valid
    against Google's document (types, enum values, no unknown fields), checked here independently
    of the emulator's own check."""
    schema = SqlAdminSchema()
    checked: list[str] = []

    def call(method_id: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        results = []
        numeric = ("&" if "?" in path else "?") + "$alt=json;enum-encoding=int"
        for query in ("", numeric) if method == "GET" else ("",):
            status, payload = raw(api, method, path + query, data)
            assert status == 200, payload
            if query:
                response_schema = schema.discovery.response_schema(method_id)
                assert response_schema is not None
                payload = schema.codec.to_names(response_schema, payload)
            problems = schema.response_problems(method_id, payload)
            assert problems == [], problems
            checked.append(method_id)
            results.append(payload)
        return results[0]

    instance_body = {
        "name": "orders",
        "databaseVersion": "POSTGRES_16",
        "region": "europe-west1",
        "settings": {"tier": "db-custom-1-3840", "edition": "ENTERPRISE", "userLabels": {"team": "red"}},
    }
    operation = call("sql.instances.insert", "POST", f"{project}/instances", instance_body)
    for _ in range(2):
        operation = call("sql.operations.get", "GET", f"{project}/operations/{operation['name']}")
    call("sql.instances.get", "GET", f"{project}/instances/orders")
    call("sql.instances.list", "GET", f"{project}/instances")
    user = call("sql.users.insert", "POST", f"{project}/instances/orders/users", {"name": "app", "password": "pw"})
    finish(api, project, Operation(name=user["name"]))
    call("sql.users.list", "GET", f"{project}/instances/orders/users")
    call("sql.users.get", "GET", f"{project}/instances/orders/users/app")
    database = call("sql.databases.insert", "POST", f"{project}/instances/orders/databases", {"name": "shop"})
    finish(api, project, Operation(name=database["name"]))
    call("sql.databases.get", "GET", f"{project}/instances/orders/databases/shop")
    call("sql.databases.list", "GET", f"{project}/instances/orders/databases")
    patch = {"settings": {"tier": "db-custom-2-7680", "backupConfiguration": {"enabled": True}}}
    update = call("sql.instances.patch", "PATCH", f"{project}/instances/orders", patch)
    finish(api, project, Operation(name=update["name"]))
    admin(api, "POST", f"projects/{project}/instances/orders/state", {"state": "SUSPENDED"})
    call("sql.instances.get", "GET", f"{project}/instances/orders")
    admin(api, "POST", f"projects/{project}/instances/orders/state", {"state": "RUNNABLE"})
    call("sql.instances.delete", "DELETE", f"{project}/instances/orders")
    call("sql.instances.get", "GET", f"{project}/instances/orders")  # PENDING_DELETE
    call("sql.operations.list", "GET", f"{project}/operations?instance=orders")

    assert len(checked) >= 20
    assert api.emulator.response_problems() == []


# --- the server itself ----------------------------------------------------------------------


def test_emulator_refuses_non_loopback_address() -> None:
    """The emulator binds to loopback only; any other address is a programming error."""
    with pytest.raises(ValueError, match="loopback"):
        CloudSQLEmulator(host="192.0.2.10")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_cli_serves_until_signalled(signum: signal.Signals) -> None:
    """`python -m kumo.testbed.cloudsql_emulator` prints its endpoint, serves, exits 0 on a signal."""
    command = [sys.executable, "-m", "kumo.testbed.cloudsql_emulator", "--port", "0"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            line = server.stdout.readline().strip()
            status, listed = http_json(line.removeprefix("listening on "), "GET", "/sql/v1beta4/projects/p/instances")
        finally:
            server.send_signal(signum)
        code = server.wait(timeout=5)

    assert line.startswith("listening on http://127.0.0.1:")
    assert (status, listed) == (200, {"kind": "sql#instancesList", "items": []})
    assert code == 0
