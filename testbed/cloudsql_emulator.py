"""An in-memory emulator of the Cloud SQL Admin API (v1beta4) for kumo's tests.

Google ships no emulator for Cloud SQL, so without this kumo's GCP provider could only be
exercised against a real project. The emulator serves the part of the REST API that the
provider calls (instances, users, databases, operations) exactly as the `google-cloud-sql`
REST transport speaks it: JSON bodies with integer enums and int64 fields as strings, errors
in Google's JSON error shape. It keeps everything in memory and binds to loopback only.

kumo's end-to-end tests start it in a thread; developers can run it in the foreground with
`python -m kumo.testbed.cloudsql_emulator --port 8089`. docs/cloudsql-emulator.md says what
it covers, what it does not, and how its operations and instances advance.

    with CloudSQLEmulator() as emulator:
        client = SqlInstancesServiceClient(
            client_options={"api_endpoint": emulator.endpoint},
            transport="rest",
            credentials=AnonymousCredentials(),
        )
"""

from __future__ import annotations

import argparse
import base64
import bisect
import copy
import ipaddress
import json
import logging
import re
import signal
import threading
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import IntEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

from .serving import ServerThread

LOG = logging.getLogger(__name__)

API_ROOT = "/sql/v1beta4/projects"
DEFAULT_PAGE_SIZE = 500  # what instances.list returns without maxResults
DEFAULT_REGION = "us-central1"
DEFAULT_VERSION = "MYSQL_8_0"  # the real API's default when databaseVersion is omitted
MAX_INSTANCE_NAME = 84  # the real limit is 98 characters including the project ID
MIN_DISK_GB = 10
EMULATOR_USER = "emulator@kumo.invalid"

INSTANCE_NAME_RE = re.compile(r"^[a-z](?:[-a-z0-9]*[a-z0-9])?$")
TIER_RE = re.compile(r"^db-[a-z0-9]+(?:-[a-z0-9]+)*$")


class InstanceState(IntEnum):
    RUNNABLE = 1
    PENDING_CREATE = 4


class OperationStatus(IntEnum):
    PENDING = 1
    RUNNING = 2
    DONE = 3


class OperationType(IntEnum):
    CREATE = 3
    UPDATE = 4
    DELETE = 5
    CREATE_USER = 19
    DELETE_USER = 20
    UPDATE_USER = 21
    CREATE_DATABASE = 22
    DELETE_DATABASE = 23
    UPDATE_DATABASE = 24


class IpAddressType(IntEnum):
    PRIMARY = 1
    PRIVATE = 3


# SqlDatabaseVersion as the client library numbers it: the client sends the number, gcloud and
# hand-written JSON send the name; both are accepted and the number is stored and returned.
DATABASE_VERSIONS: dict[str, int] = {
    "MYSQL_5_1": 2, "MYSQL_5_5": 3, "MYSQL_5_6": 5, "MYSQL_5_7": 6, "MYSQL_8_0": 20,
    "MYSQL_8_0_18": 41, "MYSQL_8_0_26": 85, "MYSQL_8_0_27": 111, "MYSQL_8_0_28": 132,
    "MYSQL_8_0_29": 148, "MYSQL_8_0_30": 174, "MYSQL_8_0_31": 197, "MYSQL_8_0_32": 213,
    "MYSQL_8_0_33": 238, "MYSQL_8_0_34": 239, "MYSQL_8_0_35": 240, "MYSQL_8_0_36": 241,
    "MYSQL_8_0_37": 355, "MYSQL_8_0_39": 357, "MYSQL_8_0_40": 358, "MYSQL_8_0_41": 488,
    "MYSQL_8_0_42": 489, "MYSQL_8_0_43": 553, "MYSQL_8_0_44": 554, "MYSQL_8_0_45": 555,
    "MYSQL_8_0_46": 556, "MYSQL_8_4": 398, "MYSQL_9_7": 654,
    "POSTGRES_9_6": 9, "POSTGRES_10": 18, "POSTGRES_11": 10, "POSTGRES_12": 19,
    "POSTGRES_13": 23, "POSTGRES_14": 110, "POSTGRES_15": 172, "POSTGRES_16": 272,
    "POSTGRES_17": 408, "POSTGRES_18": 557, "POSTGRES_19": 684, "POSTGRES_20": 781,
    "SQLSERVER_2017_STANDARD": 11, "SQLSERVER_2017_ENTERPRISE": 14,
    "SQLSERVER_2017_EXPRESS": 15, "SQLSERVER_2017_WEB": 16,
    "SQLSERVER_2019_STANDARD": 26, "SQLSERVER_2019_ENTERPRISE": 27,
    "SQLSERVER_2019_EXPRESS": 28, "SQLSERVER_2019_WEB": 29,
    "SQLSERVER_2022_STANDARD": 199, "SQLSERVER_2022_ENTERPRISE": 200,
    "SQLSERVER_2022_EXPRESS": 201, "SQLSERVER_2022_WEB": 202,
    "SQLSERVER_2025_STANDARD": 549, "SQLSERVER_2025_ENTERPRISE": 550,
    "SQLSERVER_2025_EXPRESS": 551,
}  # fmt: skip
VERSION_NAMES = {number: name for name, number in DATABASE_VERSIONS.items()}

# What a new instance of each engine already has, as on the real service.
DEFAULT_USER = {"POSTGRES": ("postgres", ""), "MYSQL": ("root", "%"), "SQLSERVER": ("sqlserver", "")}
SYSTEM_DATABASES = {
    "POSTGRES": ("postgres",),
    "MYSQL": ("information_schema", "mysql", "performance_schema", "sys"),
    "SQLSERVER": ("master", "model", "msdb", "tempdb"),
}
DEFAULT_CHARSET = {
    "POSTGRES": ("UTF8", "en_US.UTF8"),
    "MYSQL": ("utf8mb4", "utf8mb4_0900_ai_ci"),
    "SQLSERVER": ("UTF8", "SQL_Latin1_General_CP1_CI_AS"),
}

# Settings the real API fills in when a create request leaves them out (enums as numbers).
SETTINGS_DEFAULTS: dict[str, Any] = {
    "kind": "sql#settings",
    "activationPolicy": 1,  # ALWAYS
    "availabilityType": 1,  # ZONAL
    "pricingPlan": 2,  # PER_USE
    "dataDiskType": 1,  # PD_SSD
    "dataDiskSizeGb": "10",
    "storageAutoResize": True,
}

# Output-only DatabaseInstance fields: the real API ignores them in requests, so do we.
OUTPUT_ONLY = frozenset({
    "kind", "state", "selfLink", "connectionName", "ipAddresses", "createTime", "etag",
    "serviceAccountEmailAddress", "databaseInstalledVersion", "project", "backendType",
})  # fmt: skip
# Maps that a patch replaces as a whole instead of merging key by key.
REPLACED_MAPS = frozenset({"userLabels", "tags"})
# Fields of a User that name it, or that the server owns: users.update leaves them alone.
USER_IDENTITY = frozenset({"name", "host", "kind", "instance", "project"})
# Write-only fields: kept out of every stored resource so no response can ever carry them.
SECRET_FIELDS = frozenset({"password", "rootPassword"})

# Messages worded as the real API words them, so log-matching code sees the same text.
INVALID_STATE_MESSAGE = "The instance or operation is not in an appropriate state to handle the request."
PROTECTED_MESSAGE = (
    "The instance is protected. Please disable the deletion protection and try again. "
    "To disable deletion protection, update the instance settings with "
    "deletionProtectionEnabled set to false."
)

Json = dict[str, Any]


class ApiError(Exception):
    """A request the real API refuses, answered in Google's JSON error shape."""

    STATUS: ClassVar[dict[int, str]] = {
        400: "INVALID_ARGUMENT",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        412: "FAILED_PRECONDITION",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
    }

    def __init__(self, code: int, reason: str, message: str, status: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or self.STATUS.get(code, "UNKNOWN")

    def to_json(self) -> Json:
        detail = {"domain": "global", "reason": self.reason, "message": self.message}
        error = {"code": self.code, "message": self.message, "status": self.status}
        return {"error": {**error, "errors": [detail]}}


def _invalid(message: str) -> ApiError:
    return ApiError(400, "invalid", f"Invalid request: {message}")


def _operation_error(message: str) -> Json:
    # An engine-level failure: the request was valid, the database engine refused it.
    return {"kind": "sql#operationError", "code": "ERROR_RDBMS", "message": message}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# ---------------------------------------------------------------------------------------------
# Records kept in memory
# ---------------------------------------------------------------------------------------------


@dataclass(eq=False)
class _Operation:
    body: Json
    seq: int  # creation order, for operations.list
    steps: int  # GETs of this operation until it is DONE
    reads: int = 0
    error: Json | None = None  # shown once DONE, as the real API reports async failures
    # For a CREATE: the instance it brings up. A cycle with _Instance.create_op, hence repr=False.
    creates: _Instance | None = field(default=None, repr=False)


@dataclass(eq=False)
class _User:
    body: Json
    password: str | None = field(default=None, repr=False)


@dataclass(eq=False)
class _Instance:
    body: Json
    reads: int = 0
    create_op: _Operation | None = field(default=None, repr=False)
    users: dict[tuple[str, str], _User] = field(default_factory=dict)
    databases: dict[str, Json] = field(default_factory=dict)

    @property
    def engine(self) -> str:
        return VERSION_NAMES[self.body["databaseVersion"]].split("_", 1)[0]

    @property
    def runnable(self) -> bool:
        return bool(self.body["state"] == InstanceState.RUNNABLE)


@dataclass(frozen=True)
class _Request:
    params: dict[str, str]
    query: dict[str, str]
    body: Json

    @property
    def project(self) -> str:
        return self.params["project"]

    def arg(self, name: str) -> str:
        """A required query parameter, as the real API demands it."""
        value = self.query.get(name, "")
        if not value:
            raise ApiError(400, "required", f"Required parameter: {name}")
        return value


# ---------------------------------------------------------------------------------------------
# Validation and JSON helpers (pure functions, no state)
# ---------------------------------------------------------------------------------------------


def _instance_name(value: Any) -> str:
    if not value:
        raise ApiError(400, "required", "Missing parameter: name")
    if not isinstance(value, str) or len(value) > MAX_INSTANCE_NAME or not INSTANCE_NAME_RE.match(value):
        raise _invalid(
            f"instance name ({value}) must start with a lowercase letter, contain only lowercase "
            f"letters, digits and hyphens, and be at most {MAX_INSTANCE_NAME} characters."
        )
    return value


def _database_version(value: Any) -> int:
    number = DATABASE_VERSIONS.get(value) if isinstance(value, str) else value
    if isinstance(number, bool) or number not in VERSION_NAMES:
        raise _invalid(f"Invalid database version ({value}).")
    return int(number)


def _disk_gb(value: Any) -> int:
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise _invalid(f"Invalid value for dataDiskSizeGb ({value}).") from None
    if size < MIN_DISK_GB:
        raise _invalid(f"dataDiskSizeGb must be at least {MIN_DISK_GB} GB.")
    return size


def _check_settings(settings: Json, previous: Json | None = None) -> None:
    tier = settings.get("tier")
    if not tier:
        raise ApiError(400, "required", "Missing parameter: settings.tier")
    if not isinstance(tier, str) or not TIER_RE.match(tier):
        raise _invalid(f"Invalid Tier ({tier}).")
    size = _disk_gb(settings.get("dataDiskSizeGb", SETTINGS_DEFAULTS["dataDiskSizeGb"]))
    if previous is not None and size < int(previous.get("dataDiskSizeGb", 0)):
        raise _invalid("The disk size cannot be decreased.")
    ip_config = settings.get("ipConfiguration") or {}
    if ip_config.get("ipv4Enabled", True) is False and not ip_config.get("privateNetwork"):
        # The real API refuses an instance nothing could ever connect to.
        raise _invalid("At least one of Public IP or Private IP connectivity must be enabled.")


def _without_secrets(value: Any) -> Any:
    """A copy of `value` with every write-only field removed, however deeply nested."""
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value


def _instance_input(body: Json) -> Json:
    """What of a DatabaseInstance request body the API acts on: no output-only, no secrets."""
    if not isinstance(body.get("settings", {}), dict):
        raise _invalid("settings must be an object.")
    return {k: v for k, v in _without_secrets(body).items() if k not in OUTPUT_ONLY}


def _merge(target: Json, changes: Json) -> None:
    """PATCH semantics: fields present in `changes` win, nested messages merge, maps replace."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and key not in REPLACED_MAPS:
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _fake_ip(project: str, name: str, network: int) -> str:
    """A stable loopback address per instance, so tests can tell instances apart."""
    digest = zlib.crc32(f"{project}/{name}".encode())
    return f"127.{network}.{digest >> 8 & 0xFF}.{digest % 254 + 1}"


def _ip_addresses(project: str, name: str, settings: Json) -> list[Json]:
    ip_config = settings.get("ipConfiguration") or {}
    addresses = []
    if ip_config.get("ipv4Enabled", True) is not False:
        addresses.append({"type": int(IpAddressType.PRIMARY), "ipAddress": _fake_ip(project, name, 0)})
    if ip_config.get("privateNetwork"):
        addresses.append({"type": int(IpAddressType.PRIVATE), "ipAddress": _fake_ip(project, name, 1)})
    return addresses


def _page_size(query: dict[str, str]) -> int:
    raw = query.get("maxResults", "")
    try:
        size = int(raw) if raw else 0
    except ValueError:
        raise _invalid(f"Invalid value for maxResults ({raw}).") from None
    return size if size > 0 else DEFAULT_PAGE_SIZE


def _encode_token(key: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_token(token: str) -> Any:
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        raise _invalid(f"Invalid page token ({token}).") from None


def _paginate(items: list[Json], keys: list[Any], token: str, size: int) -> Json:
    """One page of `items` (sorted by `keys`); the token names the last key served."""
    try:
        start = bisect.bisect_right(keys, _decode_token(token)) if token else 0
    except TypeError:
        raise _invalid(f"Invalid page token ({token}).") from None
    page: Json = {"items": copy.deepcopy(items[start : start + size])}
    if start + size < len(items):
        page["nextPageToken"] = _encode_token(keys[start + size - 1])
    return page


def _filter_terms(expression: str) -> list[tuple[list[str], str]]:
    """`a.b:value c=value` as (path, value) pairs; [] (match all) for syntax we don't know."""
    terms = []
    for word in expression.split():
        if word.upper() == "AND":
            continue
        match = re.fullmatch(r"([A-Za-z][\w.-]*)[:=](.+)", word)
        if match is None:
            LOG.warning("ignoring instances.list filter the emulator cannot parse: %r", expression)
            return []
        terms.append((match[1].split("."), match[2].strip("\"'")))
    return terms


def _field_text(body: Json, path: list[str]) -> str | None:
    value: Any = body
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if path == ["state"]:
        return InstanceState(value).name
    if path == ["databaseVersion"]:
        return VERSION_NAMES[value]
    return str(value).lower() if isinstance(value, bool) else str(value)


def _matches(body: Json, terms: list[tuple[list[str], str]]) -> bool:
    return all(_field_text(body, path) == value for path, value in terms)


# ---------------------------------------------------------------------------------------------
# The emulated service
# ---------------------------------------------------------------------------------------------


class _CloudSQL:
    """All state and behaviour. Every public method runs under one lock and returns JSON."""

    def __init__(self, operation_steps: int, create_steps: int) -> None:
        self._lock = threading.Lock()
        self._operation_steps = operation_steps
        self._create_steps = create_steps
        self._instances: dict[tuple[str, str], _Instance] = {}
        self._operations: dict[str, _Operation] = {}
        self._seq = 0  # creation order, for operations.list
        self.base_url = ""  # set once the server has a port; selfLinks point back at us

    # --- lookups -----------------------------------------------------------------------------

    def _instance(self, req: _Request) -> _Instance:
        found = self._instances.get((req.project, req.params["instance"]))
        if found is None:
            raise ApiError(404, "instanceDoesNotExist", "The Cloud SQL instance does not exist.")
        return found

    def _running_instance(self, req: _Request) -> _Instance:
        """Users and databases live in the database engine, so the instance must be up."""
        found = self._instance(req)
        if not found.runnable:
            raise ApiError(400, "invalid", "Invalid request since instance is not running.")
        return found

    def _link(self, project: str, *path: str) -> str:
        return "/".join((self.base_url + API_ROOT, project, *path))

    # --- life cycle ----------------------------------------------------------------------------

    def _start_operation(self, project: str, target: str, kind: OperationType, **extra: Any) -> _Operation:
        name = str(uuid.uuid4())
        self._seq += 1
        body = {
            "kind": "sql#operation",
            "name": name,
            "operationType": int(kind),
            "status": int(OperationStatus.PENDING),
            "targetId": target,
            "targetProject": project,
            "targetLink": self._link(project, "instances", target),
            "selfLink": self._link(project, "operations", name),
            "insertTime": _now(),
            "user": EMULATOR_USER,
        }
        operation = _Operation(body, seq=self._seq, steps=self._operation_steps, **extra)
        self._operations[name] = operation
        if operation.steps == 0:
            self._complete_operation(operation)
        return operation

    def _complete_operation(self, operation: _Operation) -> None:
        now = _now()
        operation.body.setdefault("startTime", now)
        operation.body.update(status=int(OperationStatus.DONE), endTime=now)
        if operation.error is not None:
            operation.body["error"] = {"kind": "sql#operationErrors", "errors": [operation.error]}
        instance, operation.creates = operation.creates, None
        if instance is not None and instance.create_op is operation:
            self._complete_create(instance)

    def _complete_create(self, instance: _Instance) -> None:
        # A create is one process seen from two sides: whichever side finishes it first
        # finishes the other, so an instance is never RUNNABLE under a RUNNING create.
        instance.body["state"] = int(InstanceState.RUNNABLE)
        operation, instance.create_op = instance.create_op, None
        if operation is not None and operation.body["status"] != OperationStatus.DONE:
            self._complete_operation(operation)

    def _read_operation(self, operation: _Operation) -> None:
        if operation.body["status"] == OperationStatus.DONE:
            return
        operation.reads += 1
        if operation.reads >= operation.steps:
            self._complete_operation(operation)
        else:
            operation.body.update(status=int(OperationStatus.RUNNING))
            operation.body.setdefault("startTime", _now())

    def _read_instance(self, instance: _Instance) -> None:
        if instance.runnable:
            return
        instance.reads += 1
        if instance.reads >= self._create_steps:
            self._complete_create(instance)

    @staticmethod
    def _served(operation: _Operation) -> Json:
        return copy.deepcopy(operation.body)

    # --- instances -----------------------------------------------------------------------------

    def insert_instance(self, req: _Request) -> Json:
        body = _instance_input(req.body)
        root_password = req.body.get("rootPassword")
        name = _instance_name(body.get("name"))
        body["databaseVersion"] = _database_version(body.get("databaseVersion") or DEFAULT_VERSION)
        if not isinstance(body.get("settings"), dict):
            raise ApiError(400, "required", "Missing parameter: settings")
        settings = {**SETTINGS_DEFAULTS, **body["settings"], "settingsVersion": "1"}
        _check_settings(settings)
        with self._lock:
            if (req.project, name) in self._instances:
                raise ApiError(409, "instanceAlreadyExists", "The Cloud SQL instance already exists.")
            instance = _Instance(self._new_instance_body(req.project, name, body, settings))
            self._instances[(req.project, name)] = instance
            self._add_system_objects(instance, root_password)
            operation = self._start_operation(req.project, name, OperationType.CREATE, creates=instance)
            instance.create_op = operation
            if self._create_steps == 0 or operation.body["status"] == OperationStatus.DONE:
                self._complete_create(instance)
            return self._served(operation)

    def _new_instance_body(self, project: str, name: str, body: Json, settings: Json) -> Json:
        region = body.get("region") or DEFAULT_REGION
        return {
            **body,
            "kind": "sql#instance",
            "name": name,
            "project": project,
            "region": region,
            "gceZone": body.get("gceZone") or f"{region}-a",
            "settings": settings,
            "state": int(InstanceState.PENDING_CREATE),
            "connectionName": f"{project}:{region}:{name}",
            "ipAddresses": _ip_addresses(project, name, settings),
            "selfLink": self._link(project, "instances", name),
            "createTime": _now(),
            "databaseInstalledVersion": VERSION_NAMES[body["databaseVersion"]],
            "backendType": 2,  # SECOND_GEN
            "instanceType": body.get("instanceType") or 1,  # CLOUD_SQL_INSTANCE
            "serviceAccountEmailAddress": f"p-{project}@gcp-sa-cloud-sql.iam.gserviceaccount.com",
        }

    def _add_system_objects(self, instance: _Instance, root_password: str | None) -> None:
        """The built-in user and system databases every new instance of the engine has."""
        user, host = DEFAULT_USER[instance.engine]
        body = self._user_body(instance, {"name": user, "host": host})
        instance.users[(user, host)] = _User(body, root_password)  # rootPassword is its password
        for database in SYSTEM_DATABASES[instance.engine]:
            instance.databases[database] = self._database_body(instance, {"name": database})

    def get_instance(self, req: _Request) -> Json:
        with self._lock:
            instance = self._instance(req)
            self._read_instance(instance)
            return copy.deepcopy(instance.body)

    def list_instances(self, req: _Request) -> Json:
        size = _page_size(req.query)
        terms = _filter_terms(req.query.get("filter", ""))
        with self._lock:
            bodies = sorted(
                (i.body for (project, _), i in self._instances.items() if project == req.project),
                key=lambda body: str(body["name"]),
            )
            bodies = [body for body in bodies if _matches(body, terms)]
            page = _paginate(bodies, [b["name"] for b in bodies], req.query.get("pageToken", ""), size)
        return {"kind": "sql#instancesList", **page}

    def patch_instance(self, req: _Request) -> Json:
        return self._change_instance(req, replace_settings=False)

    def update_instance(self, req: _Request) -> Json:
        return self._change_instance(req, replace_settings=True)

    def _change_instance(self, req: _Request, *, replace_settings: bool) -> Json:
        changes = _instance_input(req.body)
        with self._lock:
            instance = self._instance(req)
            if not instance.runnable:
                raise ApiError(409, "invalidState", INVALID_STATE_MESSAGE, status="ABORTED")
            current = instance.body["settings"]
            self._check_settings_version(current, changes.get("settings") or {})
            body = copy.deepcopy(instance.body)
            if replace_settings:
                body["settings"] = {**SETTINGS_DEFAULTS, "settingsVersion": current["settingsVersion"]}
            _merge(body, changes)
            self._check_change(req, body, current)
            body["settings"]["settingsVersion"] = str(int(current["settingsVersion"]) + 1)
            body["ipAddresses"] = _ip_addresses(req.project, body["name"], body["settings"])
            instance.body = body
            return self._served(self._start_operation(req.project, body["name"], OperationType.UPDATE))

    @staticmethod
    def _check_settings_version(current: Json, sent: Json) -> None:
        # Optimistic concurrency: a client that read an older version must re-read first.
        version = sent.get("settingsVersion")
        if version is not None and str(version) != current["settingsVersion"]:
            raise ApiError(412, "staleData", "Condition does not match.")

    @staticmethod
    def _check_change(req: _Request, body: Json, current_settings: Json) -> None:
        if body["name"] != req.params["instance"]:
            raise _invalid("The instance name cannot be changed.")
        body["databaseVersion"] = _database_version(body["databaseVersion"])
        _check_settings(body["settings"], previous=current_settings)

    def delete_instance(self, req: _Request) -> Json:
        with self._lock:
            instance = self._instance(req)
            if instance.body["settings"].get("deletionProtectionEnabled") is True:
                raise ApiError(400, "invalid", PROTECTED_MESSAGE, status="FAILED_PRECONDITION")
            # Removed at once, users and databases with it; the name is free again right away.
            del self._instances[(req.project, req.params["instance"])]
            operation = self._start_operation(req.project, req.params["instance"], OperationType.DELETE)
            return self._served(operation)

    # --- users ---------------------------------------------------------------------------------

    def _user_body(self, instance: _Instance, body: Json) -> Json:
        owner = {"instance": instance.body["name"], "project": instance.body["project"]}
        user = {**body, "kind": "sql#user", **owner}
        if not user.get("host"):
            user.pop("host", None)  # Postgres and SQL Server users have no host
        return user

    @staticmethod
    def _user_key(instance: _Instance, name: str, host: str) -> tuple[str, str]:
        """The stored key for name@host; without a host, the only user of that name."""
        if (name, host) in instance.users or host:
            return name, host
        same_name = [key for key in instance.users if key[0] == name]
        return same_name[0] if len(same_name) == 1 else (name, host)

    def _user(self, instance: _Instance, name: str, host: str) -> tuple[tuple[str, str], _User]:
        key = self._user_key(instance, name, host)
        if key not in instance.users:
            raise ApiError(404, "notFound", f"The user {name} does not exist on this instance.")
        return key, instance.users[key]

    def insert_user(self, req: _Request) -> Json:
        name = req.body.get("name")
        if not name:
            raise ApiError(400, "required", "Missing parameter: name")
        host = req.body.get("host", "")
        with self._lock:
            instance = self._running_instance(req)
            if (name, host) in instance.users:
                error = _operation_error(f"user {name!r} already exists")
                return self._served(self._instance_op(instance, OperationType.CREATE_USER, error))
            body = self._user_body(instance, _without_secrets(req.body))
            instance.users[(name, host)] = _User(body, req.body.get("password"))
            return self._served(self._instance_op(instance, OperationType.CREATE_USER))

    def _instance_op(self, instance: _Instance, kind: OperationType, error: Json | None = None) -> _Operation:
        return self._start_operation(instance.body["project"], instance.body["name"], kind, error=error)

    def list_users(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            items = [copy.deepcopy(instance.users[key].body) for key in sorted(instance.users)]
        return {"kind": "sql#usersList", "items": items}

    def get_user(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            _, user = self._user(instance, req.params["name"], req.query.get("host", ""))
            return copy.deepcopy(user.body)

    def update_user(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            _, user = self._user(instance, req.arg("name"), req.query.get("host", ""))
            if "password" in req.body:
                user.password = req.body["password"]
            changes = {k: v for k, v in _without_secrets(req.body).items() if k not in USER_IDENTITY}
            _merge(user.body, changes)
            return self._served(self._instance_op(instance, OperationType.UPDATE_USER))

    def delete_user(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            key, _ = self._user(instance, req.arg("name"), req.query.get("host", ""))
            del instance.users[key]
            return self._served(self._instance_op(instance, OperationType.DELETE_USER))

    def password_of(self, project: str, instance: str, user: str, host: str = "") -> str | None:
        with self._lock:
            found = self._instances.get((project, instance))
            if found is None:
                return None
            stored = found.users.get(self._user_key(found, user, host))
            return stored.password if stored else None

    # --- databases -----------------------------------------------------------------------------

    def _database_body(self, instance: _Instance, body: Json) -> Json:
        charset, collation = DEFAULT_CHARSET[instance.engine]
        project, owner = instance.body["project"], instance.body["name"]
        link = self._link(project, "instances", owner, "databases", body["name"])
        return {
            "charset": charset,
            "collation": collation,
            **body,
            "kind": "sql#database",
            "instance": owner,
            "project": project,
            "selfLink": link,
        }

    def _database(self, instance: _Instance, name: str) -> Json:
        if name not in instance.databases:
            raise ApiError(404, "notFound", f"The database {name} does not exist on this instance.")
        return instance.databases[name]

    def insert_database(self, req: _Request) -> Json:
        name = req.body.get("name")
        if not name:
            raise ApiError(400, "required", "Missing parameter: name")
        with self._lock:
            instance = self._running_instance(req)
            if name in instance.databases:
                error = _operation_error(f"database {name!r} already exists")
                return self._served(self._instance_op(instance, OperationType.CREATE_DATABASE, error))
            instance.databases[name] = self._database_body(instance, req.body)
            return self._served(self._instance_op(instance, OperationType.CREATE_DATABASE))

    def get_database(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            return copy.deepcopy(self._database(instance, req.params["database"]))

    def list_databases(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            items = [copy.deepcopy(instance.databases[name]) for name in sorted(instance.databases)]
        return {"kind": "sql#databasesList", "items": items}

    def patch_database(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            database = self._database(instance, req.params["database"])
            changes = {k: v for k, v in req.body.items() if k in ("charset", "collation")}
            database.update(copy.deepcopy(changes))
            return self._served(self._instance_op(instance, OperationType.UPDATE_DATABASE))

    def delete_database(self, req: _Request) -> Json:
        with self._lock:
            instance = self._running_instance(req)
            self._database(instance, req.params["database"])
            del instance.databases[req.params["database"]]
            return self._served(self._instance_op(instance, OperationType.DELETE_DATABASE))

    # --- operations ----------------------------------------------------------------------------

    def get_operation(self, req: _Request) -> Json:
        with self._lock:
            operation = self._operations.get(req.params["operation"])
            if operation is None or operation.body["targetProject"] != req.project:
                raise ApiError(404, "operationDoesNotExist", "The Cloud SQL operation does not exist.")
            self._read_operation(operation)
            return self._served(operation)

    def list_operations(self, req: _Request) -> Json:
        size = _page_size(req.query)
        target = req.query.get("instance", "")
        with self._lock:
            # Newest first, as the real API lists them; listing does not advance them.
            chosen = sorted(
                (
                    op
                    for op in self._operations.values()
                    if op.body["targetProject"] == req.project and target in ("", op.body["targetId"])
                ),
                key=lambda op: -op.seq,
            )
            bodies, keys = [op.body for op in chosen], [-op.seq for op in chosen]
            page = _paginate(bodies, keys, req.query.get("pageToken", ""), size)
        return {"kind": "sql#operationsList", **page}


# ---------------------------------------------------------------------------------------------
# HTTP
# ---------------------------------------------------------------------------------------------

_P = r"/(?P<project>[^/]+)"
_I = _P + r"/instances/(?P<instance>[^/]+)"
ROUTES: list[tuple[str, re.Pattern[str], Callable[[_CloudSQL, _Request], Json]]] = [
    (method, re.compile(pattern + "$"), handler)
    for method, pattern, handler in [
        ("POST", _P + "/instances", _CloudSQL.insert_instance),
        ("GET", _P + "/instances", _CloudSQL.list_instances),
        ("GET", _I, _CloudSQL.get_instance),
        ("PATCH", _I, _CloudSQL.patch_instance),
        ("PUT", _I, _CloudSQL.update_instance),
        ("DELETE", _I, _CloudSQL.delete_instance),
        ("POST", _I + "/users", _CloudSQL.insert_user),
        ("GET", _I + "/users", _CloudSQL.list_users),
        ("PUT", _I + "/users", _CloudSQL.update_user),
        ("DELETE", _I + "/users", _CloudSQL.delete_user),
        ("GET", _I + "/users/(?P<name>[^/]+)", _CloudSQL.get_user),
        ("POST", _I + "/databases", _CloudSQL.insert_database),
        ("GET", _I + "/databases", _CloudSQL.list_databases),
        ("GET", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.get_database),
        ("PATCH", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.patch_database),
        ("PUT", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.patch_database),
        ("DELETE", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.delete_database),
        ("GET", _P + "/operations", _CloudSQL.list_operations),
        ("GET", _P + "/operations/(?P<operation>[^/]+)", _CloudSQL.get_operation),
    ]
]


def _route(method: str, path: str) -> tuple[Callable[[_CloudSQL, _Request], Json], dict[str, str]]:
    if path.startswith(API_ROOT):
        for verb, pattern, handler in ROUTES:
            match = pattern.match(path[len(API_ROOT) :])
            if match and verb == method:
                return handler, {k: unquote(v) for k, v in match.groupdict().items()}
    # Loud rather than a plausible 404, so a caller of an unemulated method knows at once.
    raise ApiError(501, "notImplemented", f"The Cloud SQL emulator does not implement {method} {path}.")


def _parse_body(raw: bytes) -> Json:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise ApiError(400, "parseError", f"Invalid JSON payload received. {exc}") from None
    if not isinstance(body, dict):
        raise ApiError(400, "parseError", "Invalid JSON payload received. Expected an object.")
    return body


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not hold up stop()

    def __init__(self, address: tuple[str, int], service: _CloudSQL) -> None:
        super().__init__(address, _Handler)
        self.service = service


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the client's requests session expects
    # Headers and body go out in two writes; with Nagle on, each reply would wait ~40 ms for
    # the client's delayed ACK.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:  # the name http.server dispatches to
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        # Read the body first, whatever happens next, or the keep-alive stream desynchronises.
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        url = urlsplit(self.path)
        try:
            handler, params = _route(method, url.path)
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            status, payload = 200, handler(self.server.service, _Request(params, query, _parse_body(raw)))
        except ApiError as exc:
            status, payload = exc.code, exc.to_json()
        except Exception:  # a bug here must reach the client as a 500, not a dropped connection
            LOG.exception("cloudsql emulator failed on %s %s", method, url.path)
            status, payload = 500, ApiError(500, "backendError", "Internal error.").to_json()
        self._reply(status, payload)

    def _reply(self, status: int, payload: Json) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # Debug level and the path only: bodies (passwords) never reach a log.
        LOG.debug("%s %s", self.address_string(), format % args)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


class CloudSQLEmulator:
    """The emulator as a server: `start()` serves in a daemon thread until `stop()`.

    `operation_steps`: GETs of an operation until it is DONE (PENDING when returned, RUNNING
    until then). `create_steps`: GETs of a new instance until it is RUNNABLE (PENDING_CREATE
    until then). A create finishes on whichever count is reached first, and finishing one side
    finishes the other. 0 makes the step immediate.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, *, operation_steps: int = 2, create_steps: int = 2
    ) -> None:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the emulator binds to loopback only, not {host}")
        if operation_steps < 0 or create_steps < 0:
            raise ValueError("operation_steps and create_steps must be >= 0")
        self._service = _CloudSQL(operation_steps, create_steps)
        self._serving = ServerThread(lambda: _Server((host, port), self._service), "emulator")

    @property
    def endpoint(self) -> str:
        """The base URL to pass as `client_options={"api_endpoint": ...}`."""
        return self._serving.endpoint

    def start(self) -> Self:
        self._serving.start()
        self._service.base_url = self.endpoint
        return self

    def stop(self) -> None:
        self._serving.stop()

    def password_of(self, project: str, instance: str, user: str, host: str = "") -> str | None:
        """The password last set for a user: test-only, since the API never returns one."""
        return self._service.password_of(project, instance, user, host)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m kumo.testbed.cloudsql_emulator",
        description="Serve an in-memory Cloud SQL Admin API (v1beta4) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument("--operation-steps", type=int, default=2, help="GETs until an operation is DONE")
    parser.add_argument("--create-steps", type=int, default=2, help="GETs until an instance is RUNNABLE")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with CloudSQLEmulator(
        port=args.port, operation_steps=args.operation_steps, create_steps=args.create_steps
    ) as emulator:
        print(f"listening on {emulator.endpoint}", flush=True)
        while not stopping.wait(0.5):  # a bounded wait keeps the main thread responsive to signals
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
