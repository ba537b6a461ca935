"""An in-memory emulator of the Cloud SQL Admin API (v1beta4) for kumo's tests.

Google ships no emulator for Cloud SQL, so without this kumo's GCP provider could only be
exercised against a real project. The emulator serves the part of the REST API that the
provider calls (instances, users, databases, operations) as the real API does: request bodies
checked against Google's discovery document (discovery_schema.py), enums as names or, when the
client asks with `$alt=json;enum-encoding=int`, as numbers, int64 fields as strings, errors in
Google's JSON error shape. It is as strict as the real service where controllers break: one
operation per instance at a time, PENDING_DELETE, maintenance / suspension / failure states,
edition rules, 403 for never-seen names. It keeps everything in memory and binds to loopback only.

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
import hashlib
import ipaddress
import json
import logging
import re
import signal
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self
from urllib.parse import parse_qs, unquote, urlsplit

from google.cloud import sqladmin_v1beta4 as sqladmin

from .discovery_schema import Discovery, EnumCodec, Violation, load_document
from .engines import BACKED_ENGINES, POSTGRES_PORT, EngineGateway
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
TIER_RE = re.compile(r"^db-[a-zA-Z0-9]+(?:-[a-zA-Z0-9]+)*$")  # db-perf-optimized-N-2 has a capital


# Enum values as the API names them. The emulator stores names and converts to the numbers the
# client library asks for (`$alt=json;enum-encoding=int`) only on the way out.
RUNNABLE, PENDING_CREATE, PENDING_DELETE = "RUNNABLE", "PENDING_CREATE", "PENDING_DELETE"
MAINTENANCE, SUSPENDED, FAILED = "MAINTENANCE", "SUSPENDED", "FAILED"
INJECTABLE_STATES = (RUNNABLE, MAINTENANCE, SUSPENDED, FAILED)  # through the test-only admin endpoint
OP_PENDING, OP_RUNNING, OP_DONE = "PENDING", "RUNNING", "DONE"
ENTERPRISE, ENTERPRISE_PLUS = "ENTERPRISE", "ENTERPRISE_PLUS"
# PostgreSQL 16 and later default to Enterprise Plus, which offers only its own machine series
# (https://cloud.google.com/sql/docs/postgres/editions-intro; reported as a surprise in
# hashicorp/terraform-provider-google#20498 and GoogleCloudPlatform/magic-modules#18014).
FIRST_ENTERPRISE_PLUS_POSTGRES = 16
PERF_OPTIMIZED_TIER = re.compile(r"db-perf-optimized-N-\d+")
MAINTENANCE_RELEASE = "R20261018.01_00"  # the suffix of maintenanceVersion

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

# Settings the real API fills in when a create request leaves them out: an instance read back
# from the real API always carries these (kinds included), whatever the create asked for.
SETTINGS_DEFAULTS: dict[str, Any] = {
    "kind": "sql#settings",
    "activationPolicy": "ALWAYS",
    "availabilityType": "ZONAL",
    "pricingPlan": "PER_USE",
    "replicationType": "SYNCHRONOUS",
    "dataDiskType": "PD_SSD",
    "dataDiskSizeGb": "10",
    "storageAutoResize": True,
    "storageAutoResizeLimit": "0",
    "connectorEnforcement": "NOT_REQUIRED",
    "deletionProtectionEnabled": False,
    "backupConfiguration": {
        "kind": "sql#backupConfiguration",
        "enabled": False,
        "startTime": "05:00",
        "backupRetentionSettings": {"retentionUnit": "COUNT", "retainedBackups": 7},
        "transactionLogRetentionDays": 7,
    },
    "ipConfiguration": {"ipv4Enabled": True, "requireSsl": False, "sslMode": "ALLOW_UNENCRYPTED_AND_ENCRYPTED"},
    "maintenanceWindow": {"kind": "sql#maintenanceWindow", "hour": 0, "day": 0},
}

# Output-only DatabaseInstance fields: the real API ignores them in requests, so do we.
OUTPUT_ONLY = frozenset({
    "kind", "state", "selfLink", "connectionName", "ipAddresses", "createTime", "etag",
    "serviceAccountEmailAddress", "databaseInstalledVersion", "project", "backendType",
    "maintenanceVersion", "suspensionReason", "satisfiesPzs",
})  # fmt: skip
# Maps that a patch replaces as a whole instead of merging key by key.
REPLACED_MAPS = frozenset({"userLabels", "tags"})
# Fields of a User that name it, or that the server owns: users.update leaves them alone.
USER_IDENTITY = frozenset({"name", "host", "kind", "instance", "project"})
# Write-only fields: kept out of every stored resource so no response can ever carry them.
SECRET_FIELDS = frozenset({"password", "rootPassword"})

# Messages worded as the real API words them, so log-matching code sees the same text.
INVALID_STATE_MESSAGE = "The instance or operation is not in an appropriate state to handle the request."
OPERATION_IN_PROGRESS_MESSAGE = "Operation failed because another operation was already in progress."
NOT_AUTHORIZED_MESSAGE = "The client is not authorized to make this request."
ENTERPRISE_PLUS_TIER_MESSAGE = (
    "Invalid Tier ({tier}) for (ENTERPRISE_PLUS) Edition. Use a predefined Tier like "
    "db-perf-optimized-N-* instead. Learn more at "
    "https://cloud.google.com/sql/docs/postgres/create-instance#machine-types."
)
ENTERPRISE_TIER_MESSAGE = "Invalid Tier ({tier}) for (ENTERPRISE) Edition."
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
        403: "PERMISSION_DENIED",
        404: "NOT_FOUND",
        409: "ALREADY_EXISTS",
        412: "FAILED_PRECONDITION",
        500: "INTERNAL",
        501: "UNIMPLEMENTED",
    }

    def __init__(self, code: int, reason: str, message: str, status: str = "", details: Sequence[Json] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.status = status or self.STATUS.get(code, "UNKNOWN")
        self.details = list(details)

    def to_json(self) -> Json:
        detail = {"domain": "global", "reason": self.reason, "message": self.message}
        error = {"code": self.code, "message": self.message, "status": self.status}
        extra = {"details": self.details} if self.details else {}
        return {"error": {**error, "errors": [detail], **extra}}


def _schema_error(violations: Sequence[Violation]) -> ApiError:
    """Google's front-end 400 for a body its schema refuses: one message per field, joined by
    newlines, and a google.rpc.BadRequest detail listing each field (the shape seen in, e.g.,
    danny-avila/LibreChat#11761 and google-gemini/gemini-cli#13972 for the same front end)."""
    message = "\n".join(v.description for v in violations)
    field_violations = [{"field": v.field, "description": v.description} for v in violations]
    detail = {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": field_violations}
    return ApiError(400, "invalid", message, details=[detail])


def _operation_in_progress() -> ApiError:
    # Cloud SQL runs one operation per instance at a time; anything else is refused until it ends:
    # crossplane-contrib/provider-gcp#121, hashicorp/terraform-provider-google#4370 and #1558,
    # GoogleCloudPlatform/gcp-service-broker#222 (users and databases during an update).
    return ApiError(409, "operationInProgress", OPERATION_IN_PROGRESS_MESSAGE, status="ABORTED")


def _not_authorized() -> ApiError:
    return ApiError(403, "notAuthorized", NOT_AUTHORIZED_MESSAGE)


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
    due: float  # time.monotonic() at which it is DONE even if nobody reads it
    reads: int = 0
    error: Json | None = None  # shown once DONE, as the real API reports async failures
    # For a CREATE: the instance it brings up. A cycle with _Instance.create_op, hence repr=False.
    creates: _Instance | None = field(default=None, repr=False)
    # For a DELETE: the instance that disappears when it is DONE (PENDING_DELETE until then).
    deletes: _Instance | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return bool(self.body["status"] == OP_DONE)


@dataclass(eq=False)
class _User:
    body: Json
    password: str | None = field(default=None, repr=False)


@dataclass(eq=False)
class _Instance:
    body: Json
    reads: int = 0
    create_op: _Operation | None = field(default=None, repr=False)
    # The operation running on the instance, if any: Cloud SQL runs one at a time.
    busy_with: _Operation | None = field(default=None, repr=False)
    users: dict[tuple[str, str], _User] = field(default_factory=dict)
    databases: dict[str, Json] = field(default_factory=dict)

    @property
    def engine(self) -> str:
        return str(self.body["databaseVersion"]).split("_", 1)[0]

    @property
    def runnable(self) -> bool:
        return bool(self.body["state"] == RUNNABLE)


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


def _database_version(value: Any) -> str:
    # The schema already refused names the API does not know; the engines we emulate remain.
    if not isinstance(value, str) or value.split("_", 1)[0] not in DEFAULT_USER:
        raise _invalid(f"Invalid database version ({value}).")
    return value


def default_edition(database_version: str) -> str:
    """The edition Cloud SQL picks when a create names none: Enterprise Plus from PostgreSQL 16."""
    engine, _, major = database_version.partition("_")
    if (
        engine == "POSTGRES"
        and major.split("_")[0].isdigit()
        and int(major.split("_")[0]) >= FIRST_ENTERPRISE_PLUS_POSTGRES
    ):
        return ENTERPRISE_PLUS
    return ENTERPRISE


def _check_edition(settings: Json) -> None:
    """Enterprise Plus offers only its performance-optimized tiers, and they need it:
    GoogleCloudPlatform/cloud-foundation-fabric#2946 quotes the 400, langfuse/langfuse-terraform-gcp#34
    the converse; https://cloud.google.com/sql/docs/postgres/create-instance#machine-types."""
    tier, edition = str(settings["tier"]), settings.get("edition")
    if edition == ENTERPRISE_PLUS and not PERF_OPTIMIZED_TIER.fullmatch(tier):
        raise _invalid(ENTERPRISE_PLUS_TIER_MESSAGE.format(tier=tier))
    if edition == ENTERPRISE and PERF_OPTIMIZED_TIER.fullmatch(tier):
        raise _invalid(ENTERPRISE_TIER_MESSAGE.format(tier=tier))


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
    _check_edition(settings)


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


def _with_defaults(settings: Json) -> Json:
    """Settings as the real API stores them: its defaults, with what was sent merged over them."""
    merged = copy.deepcopy(SETTINGS_DEFAULTS)
    _merge(merged, settings)
    return merged


def _touch(body: Json) -> None:
    """A new etag for a resource that changed: the real API's etag follows every change."""
    body.pop("etag", None)
    body["etag"] = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def _merge(target: Json, changes: Json) -> None:
    """PATCH semantics: fields present in `changes` win, nested messages merge, maps replace."""
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and key not in REPLACED_MAPS:
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _engine_key(instance: _Instance) -> str:
    return f"cloudsql/{instance.body['project']}/{instance.body['name']}"


def _fake_ip(project: str, name: str, network: int) -> str:
    """A stable loopback address per instance, so tests can tell instances apart."""
    digest = zlib.crc32(f"{project}/{name}".encode())
    return f"127.{network}.{digest >> 8 & 0xFF}.{digest % 254 + 1}"


def _ip_addresses(project: str, name: str, settings: Json) -> list[Json]:
    ip_config = settings.get("ipConfiguration") or {}
    addresses = []
    if ip_config.get("ipv4Enabled", True) is not False:
        addresses.append({"type": "PRIMARY", "ipAddress": _fake_ip(project, name, 0)})
    if ip_config.get("privateNetwork"):
        addresses.append({"type": "PRIVATE", "ipAddress": _fake_ip(project, name, 1)})
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
    return str(value).lower() if isinstance(value, bool) else str(value)


def _matches(body: Json, terms: list[tuple[list[str], str]]) -> bool:
    return all(_field_text(body, path) == value for path, value in terms)


# ---------------------------------------------------------------------------------------------
# The emulated service
# ---------------------------------------------------------------------------------------------


class _CloudSQL:
    """All state and behaviour. Every public method runs under one lock and returns JSON with
    enums as names; the HTTP layer validates requests and encodes responses."""

    def __init__(self, settings: EmulatorSettings, engines: EngineGateway | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = settings
        self._engines = engines  # real PostgreSQL behind RUNNABLE instances, when the bed has one
        self._instances: dict[tuple[str, str], _Instance] = {}
        self._known_names: set[tuple[str, str]] = set()  # every instance name a project has had
        self._operations: dict[str, _Operation] = {}
        self._unfinished: set[_Operation] = set()
        self._seq = 0  # creation order, for operations.list
        self.base_url = ""  # set once the server has a port; selfLinks point back at us

    # --- lookups -----------------------------------------------------------------------------

    def _instance(self, req: _Request) -> _Instance:
        self._advance()
        key = (req.project, req.params["instance"])
        found = self._instances.get(key)
        if found is None:
            if self._settings.forbidden_for_unknown and key not in self._known_names:
                # For a name the project never had, the real API answers 403, not 404:
                # googleapis/google-api-go-client#1815 (instances.get and delete),
                # crossplane-contrib/provider-gcp#246 (observe before create),
                # hashicorp/terraform-provider-google#1069.
                raise _not_authorized()
            raise ApiError(404, "instanceDoesNotExist", "The Cloud SQL instance does not exist.")
        return found

    def _running_instance(self, req: _Request) -> _Instance:
        """Users and databases live in the database engine, so the instance must be up."""
        found = self._instance(req)
        if found.body["state"] not in (RUNNABLE, MAINTENANCE):
            raise ApiError(400, "invalid", "Invalid request since instance is not running.")
        return found

    def _idle_instance(self, req: _Request) -> _Instance:
        """A running instance with no operation in progress: what every change needs."""
        found = self._running_instance(req)
        self._check_idle(found)
        return found

    @staticmethod
    def _check_idle(instance: _Instance) -> None:
        if instance.busy_with is not None and not instance.busy_with.done:
            raise _operation_in_progress()
        if instance.body["state"] == MAINTENANCE:
            # Maintenance is itself an operation: no change is taken until it ends
            # (https://cloud.google.com/sql/docs/postgres/maintenance).
            raise _operation_in_progress()

    def _link(self, project: str, *path: str) -> str:
        return "/".join((self.base_url + API_ROOT, project, *path))

    # --- life cycle ----------------------------------------------------------------------------

    def _start_operation(
        self, project: str, target: str, kind: str, instance: _Instance | None = None, **extra: Any
    ) -> _Operation:
        name = str(uuid.uuid4())
        self._seq += 1
        body = {
            "kind": "sql#operation",
            "name": name,
            "operationType": kind,
            "status": OP_PENDING,
            "targetId": target,
            "targetProject": project,
            "targetLink": self._link(project, "instances", target),
            "selfLink": self._link(project, "operations", name),
            "insertTime": _now(),
            "user": EMULATOR_USER,
        }
        due = time.monotonic() + self._settings.operation_seconds
        operation = _Operation(body, seq=self._seq, steps=self._settings.operation_steps, due=due, **extra)
        self._operations[name] = operation
        self._unfinished.add(operation)
        if instance is not None:
            instance.busy_with = operation
        if operation.steps == 0:
            self._complete_operation(operation)
        return operation

    def _advance(self) -> None:
        """Finish the operations whose time has come, read or not: an operation nobody polls
        (a patch whose caller moved on) still ends, as on the real service."""
        now = time.monotonic()
        for operation in [op for op in self._unfinished if op.due <= now]:
            self._complete_operation(operation)

    def _complete_operation(self, operation: _Operation) -> None:
        now = _now()
        operation.body.setdefault("startTime", now)
        operation.body.update(status=OP_DONE, endTime=now)
        self._unfinished.discard(operation)
        if operation.error is not None:
            operation.body["error"] = {"kind": "sql#operationErrors", "errors": [operation.error]}
        instance, operation.creates = operation.creates, None
        if instance is not None and instance.create_op is operation:
            self._complete_create(instance)
        gone, operation.deletes = operation.deletes, None
        if gone is not None:
            key = (gone.body["project"], gone.body["name"])
            if self._instances.get(key) is gone:
                del self._instances[key]  # with its users and databases
                if self._engines is not None:
                    self._engines.remove(_engine_key(gone))

    def _complete_create(self, instance: _Instance) -> None:
        # A create is one process seen from two sides: whichever side finishes it first
        # finishes the other, so an instance is never RUNNABLE under a RUNNING create.
        if instance.body["state"] == PENDING_CREATE:
            instance.body["state"] = RUNNABLE
            _touch(instance.body)
            self._serve_engine(instance)
        operation, instance.create_op = instance.create_op, None
        if operation is not None and not operation.done:
            self._complete_operation(operation)

    def _read_operation(self, operation: _Operation) -> None:
        if operation.done:
            return
        operation.reads += 1
        if operation.reads >= operation.steps:
            self._complete_operation(operation)
        else:
            operation.body.update(status=OP_RUNNING)
            operation.body.setdefault("startTime", _now())

    def _read_instance(self, instance: _Instance) -> None:
        if instance.body["state"] != PENDING_CREATE:
            return
        instance.reads += 1
        if instance.reads >= self._settings.create_steps:
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
        settings = _with_defaults(body["settings"])
        settings["edition"] = settings.get("edition") or default_edition(body["databaseVersion"])
        settings["settingsVersion"] = "1"
        _check_settings(settings)
        with self._lock:
            self._advance()
            if (req.project, name) in self._instances:
                raise ApiError(409, "instanceAlreadyExists", "The Cloud SQL instance already exists.")
            instance = _Instance(self._new_instance_body(req.project, name, body, settings))
            self._instances[(req.project, name)] = instance
            self._known_names.add((req.project, name))
            self._add_system_objects(instance, root_password)
            operation = self._start_operation(req.project, name, "CREATE", instance, creates=instance)
            instance.create_op = operation
            if self._settings.create_steps == 0 or operation.done:
                self._complete_create(instance)
            return self._served(operation)

    def _new_instance_body(self, project: str, name: str, body: Json, settings: Json) -> Json:
        region = body.get("region") or DEFAULT_REGION
        zone = body.get("gceZone") or settings.get("locationPreference", {}).get("zone") or f"{region}-a"
        settings["locationPreference"] = {"zone": zone, **settings.get("locationPreference", {})}
        settings["locationPreference"]["kind"] = "sql#locationPreference"
        version = body["databaseVersion"]
        instance = {
            **body,
            "kind": "sql#instance",
            "name": name,
            "project": project,
            "region": region,
            "gceZone": zone,
            "settings": settings,
            "state": PENDING_CREATE,
            "connectionName": f"{project}:{region}:{name}",
            "ipAddresses": _ip_addresses(project, name, settings),
            "selfLink": self._link(project, "instances", name),
            "createTime": _now(),
            "databaseInstalledVersion": version,
            "maintenanceVersion": f"{version}.{MAINTENANCE_RELEASE}",
            "backendType": "SECOND_GEN",
            "instanceType": body.get("instanceType") or "CLOUD_SQL_INSTANCE",
            "sqlNetworkArchitecture": "NEW_NETWORK_ARCHITECTURE",
            "satisfiesPzs": False,
            "serviceAccountEmailAddress": f"p-{project}@gcp-sa-cloud-sql.iam.gserviceaccount.com",
        }
        _touch(instance)
        return instance

    def _add_system_objects(self, instance: _Instance, root_password: str | None) -> None:
        """The built-in user and system databases every new instance of the engine has."""
        user, host = DEFAULT_USER[instance.engine]
        body = self._user_body(instance, {"name": user, "host": host})
        instance.users[(user, host)] = _User(body, root_password)  # rootPassword is its password
        for database in SYSTEM_DATABASES[instance.engine]:
            instance.databases[database] = self._database_body(instance, {"name": database})

    # --- the real engine behind the instance ---------------------------------------------------

    def _serve_engine(self, instance: _Instance) -> None:
        """A new RUNNABLE PostgreSQL instance answers at its PRIMARY (or PRIVATE) address on the
        engine's own port, as Cloud SQL's do (the API reports no port)."""
        addresses = [a["ipAddress"] for a in instance.body.get("ipAddresses", [])]
        if self._engines is None or instance.engine.lower() not in BACKED_ENGINES or not addresses:
            return
        try:
            self._engines.declare(_engine_key(instance), hosts=addresses, port=POSTGRES_PORT)
        except OSError as error:  # another bed on this machine holds the same address
            LOG.warning("instance %s has no real engine: %s", instance.body["name"], error)
            return
        self._sync_engine(instance)

    def _sync_engine(self, instance: _Instance) -> None:
        if self._engines is None:
            return
        passwords = {name: user.password for (name, _host), user in instance.users.items() if user.password}
        self._engines.hold(_engine_key(instance), passwords, set(instance.databases))

    def get_instance(self, req: _Request) -> Json:
        with self._lock:
            instance = self._instance(req)
            self._read_instance(instance)
            return copy.deepcopy(instance.body)

    def list_instances(self, req: _Request) -> Json:
        size = _page_size(req.query)
        terms = _filter_terms(req.query.get("filter", ""))
        with self._lock:
            self._advance()
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
            self._check_idle(instance)
            current = instance.body["settings"]
            self._check_settings_version(current, changes.get("settings") or {})
            body = copy.deepcopy(instance.body)
            if replace_settings:
                kept = {k: current[k] for k in ("settingsVersion", "edition", "locationPreference") if k in current}
                body["settings"] = _with_defaults(kept)
            _merge(body, changes)
            self._check_change(req, body, current)
            body["settings"]["settingsVersion"] = str(int(current["settingsVersion"]) + 1)
            body["ipAddresses"] = _ip_addresses(req.project, body["name"], body["settings"])
            _touch(body)
            instance.body = body
            return self._served(self._start_operation(req.project, body["name"], "UPDATE", instance))

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
            if instance.body["state"] == PENDING_DELETE:
                raise _operation_in_progress()  # its own delete is the operation in progress
            self._check_idle(instance)
            if instance.body["settings"].get("deletionProtectionEnabled") is True:
                raise ApiError(400, "invalid", PROTECTED_MESSAGE, status="FAILED_PRECONDITION")
            # PENDING_DELETE until the operation ends; then gone, users and databases with it.
            instance.body["state"] = PENDING_DELETE
            _touch(instance.body)
            operation = self._start_operation(req.project, req.params["instance"], "DELETE", instance, deletes=instance)
            return self._served(operation)

    # --- test-only administration ---------------------------------------------------------------

    def start_background_operation(self, project: str, name: str, kind: str, seconds: float) -> Json:
        """An operation the service runs on its own (an automated backup, say), holding the
        instance busy for `seconds` unless finished earlier. Not part of the Cloud SQL API."""
        with self._lock:
            self._advance()
            instance = self._instances.get((project, name))
            if instance is None:
                raise ApiError(404, "instanceDoesNotExist", "The Cloud SQL instance does not exist.")
            self._check_idle(instance)
            operation = self._start_operation(project, name, kind, instance)
            operation.due = time.monotonic() + seconds
            operation.steps = 1 << 30  # reads do not end it: only time or finish_operation()
            operation.body.update(status=OP_RUNNING, startTime=_now())
            return self._served(operation)

    def finish_operation(self, project: str, name: str) -> Json:
        with self._lock:
            operation = self._operations.get(name)
            if operation is None or operation.body["targetProject"] != project:
                raise ApiError(404, "operationDoesNotExist", "The Cloud SQL operation does not exist.")
            if not operation.done:
                self._complete_operation(operation)
            return self._served(operation)

    def set_state(
        self, project: str, name: str, state: str, suspension_reasons: Sequence[str] = (), error: str = ""
    ) -> Json:
        """Put an instance into a state the real service enters on its own (maintenance,
        suspension, failure) or back to RUNNABLE. A failure may come with the error of the
        operation that caused it (a MAINTENANCE operation, DONE with that error), as the real
        service reports one. Not part of the Cloud SQL API."""
        if state not in INJECTABLE_STATES:
            raise _invalid(f"state must be one of {', '.join(INJECTABLE_STATES)}, not {state!r}.")
        with self._lock:
            self._advance()
            instance = self._instances.get((project, name))
            if instance is None:
                raise ApiError(404, "instanceDoesNotExist", "The Cloud SQL instance does not exist.")
            instance.body["state"] = state
            instance.body.pop("suspensionReason", None)
            if state == SUSPENDED:
                instance.body["suspensionReason"] = list(suspension_reasons) or ["BILLING_ISSUE"]
            if state == FAILED and error:
                failure = {"kind": "sql#operationError", "code": "INTERNAL_ERROR", "message": error}
                operation = self._start_operation(project, name, "MAINTENANCE", error=failure)
                self._complete_operation(operation)
            _touch(instance.body)
            return copy.deepcopy(instance.body)

    # --- users ---------------------------------------------------------------------------------

    def _user_body(self, instance: _Instance, body: Json) -> Json:
        owner = {"instance": instance.body["name"], "project": instance.body["project"]}
        user = {**body, "kind": "sql#user", **owner}
        if not user.get("host"):
            user.pop("host", None)  # Postgres and SQL Server users have no host
        _touch(user)
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
            instance = self._idle_instance(req)
            if (name, host) in instance.users:
                error = _operation_error(f"user {name!r} already exists")
                return self._served(self._instance_op(instance, "CREATE_USER", error))
            body = self._user_body(instance, _without_secrets(req.body))
            instance.users[(name, host)] = _User(body, req.body.get("password"))
            self._sync_engine(instance)
            return self._served(self._instance_op(instance, "CREATE_USER"))

    def _instance_op(self, instance: _Instance, kind: str, error: Json | None = None) -> _Operation:
        return self._start_operation(instance.body["project"], instance.body["name"], kind, instance, error=error)

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
            instance = self._idle_instance(req)
            _, user = self._user(instance, req.arg("name"), req.query.get("host", ""))
            if "password" in req.body:
                user.password = req.body["password"]
            changes = {k: v for k, v in _without_secrets(req.body).items() if k not in USER_IDENTITY | {"etag"}}
            _merge(user.body, changes)
            _touch(user.body)
            self._sync_engine(instance)
            return self._served(self._instance_op(instance, "UPDATE_USER"))

    def delete_user(self, req: _Request) -> Json:
        with self._lock:
            instance = self._idle_instance(req)
            key, _ = self._user(instance, req.arg("name"), req.query.get("host", ""))
            del instance.users[key]
            self._sync_engine(instance)
            return self._served(self._instance_op(instance, "DELETE_USER"))

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
        database = {
            "charset": charset,
            "collation": collation,
            **body,
            "kind": "sql#database",
            "instance": owner,
            "project": project,
            "selfLink": link,
        }
        _touch(database)
        return database

    def _database(self, instance: _Instance, name: str) -> Json:
        if name not in instance.databases:
            raise ApiError(404, "notFound", f"The database {name} does not exist on this instance.")
        return instance.databases[name]

    def insert_database(self, req: _Request) -> Json:
        name = req.body.get("name")
        if not name:
            raise ApiError(400, "required", "Missing parameter: name")
        with self._lock:
            instance = self._idle_instance(req)
            if name in instance.databases:
                error = _operation_error(f"database {name!r} already exists")
                return self._served(self._instance_op(instance, "CREATE_DATABASE", error))
            instance.databases[name] = self._database_body(instance, req.body)
            self._sync_engine(instance)
            return self._served(self._instance_op(instance, "CREATE_DATABASE"))

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
            instance = self._idle_instance(req)
            database = self._database(instance, req.params["database"])
            changes = {k: v for k, v in req.body.items() if k in ("charset", "collation")}
            database.update(copy.deepcopy(changes))
            _touch(database)
            return self._served(self._instance_op(instance, "UPDATE_DATABASE"))

    def delete_database(self, req: _Request) -> Json:
        with self._lock:
            instance = self._idle_instance(req)
            self._database(instance, req.params["database"])
            del instance.databases[req.params["database"]]
            self._sync_engine(instance)
            return self._served(self._instance_op(instance, "DELETE_DATABASE"))

    # --- operations ----------------------------------------------------------------------------

    def get_operation(self, req: _Request) -> Json:
        with self._lock:
            self._advance()
            operation = self._operations.get(req.params["operation"])
            if operation is None or operation.body["targetProject"] != req.project:
                raise ApiError(404, "operationDoesNotExist", "The Cloud SQL operation does not exist.")
            self._read_operation(operation)
            return self._served(operation)

    def list_operations(self, req: _Request) -> Json:
        size = _page_size(req.query)
        target = req.query.get("instance", "")
        with self._lock:
            self._advance()
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
Handler = Callable[[_CloudSQL, _Request], Json]
# (HTTP method, path, handler, the method's id in the discovery document)
ROUTES: list[tuple[str, re.Pattern[str], Handler, str]] = [
    (method, re.compile(pattern + "$"), handler, method_id)
    for method, pattern, handler, method_id in [
        ("POST", _P + "/instances", _CloudSQL.insert_instance, "sql.instances.insert"),
        ("GET", _P + "/instances", _CloudSQL.list_instances, "sql.instances.list"),
        ("GET", _I, _CloudSQL.get_instance, "sql.instances.get"),
        ("PATCH", _I, _CloudSQL.patch_instance, "sql.instances.patch"),
        ("PUT", _I, _CloudSQL.update_instance, "sql.instances.update"),
        ("DELETE", _I, _CloudSQL.delete_instance, "sql.instances.delete"),
        ("POST", _I + "/users", _CloudSQL.insert_user, "sql.users.insert"),
        ("GET", _I + "/users", _CloudSQL.list_users, "sql.users.list"),
        ("PUT", _I + "/users", _CloudSQL.update_user, "sql.users.update"),
        ("DELETE", _I + "/users", _CloudSQL.delete_user, "sql.users.delete"),
        ("GET", _I + "/users/(?P<name>[^/]+)", _CloudSQL.get_user, "sql.users.get"),
        ("POST", _I + "/databases", _CloudSQL.insert_database, "sql.databases.insert"),
        ("GET", _I + "/databases", _CloudSQL.list_databases, "sql.databases.list"),
        ("GET", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.get_database, "sql.databases.get"),
        ("PATCH", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.patch_database, "sql.databases.patch"),
        ("PUT", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.patch_database, "sql.databases.update"),
        ("DELETE", _I + "/databases/(?P<database>[^/]+)", _CloudSQL.delete_database, "sql.databases.delete"),
        ("GET", _P + "/operations", _CloudSQL.list_operations, "sql.operations.list"),
        ("GET", _P + "/operations/(?P<operation>[^/]+)", _CloudSQL.get_operation, "sql.operations.get"),
    ]
]
# Test-only administration, outside the API's paths: POST {"state": ..., "suspensionReason": [...]}.
ADMIN_STATE = re.compile(r"/_emulator/projects/(?P<project>[^/]+)/instances/(?P<instance>[^/]+)/state$")
ADMIN_OPERATIONS = re.compile(r"/_emulator/projects/(?P<project>[^/]+)/instances/(?P<instance>[^/]+)/operations$")
ADMIN_FINISH = re.compile(r"/_emulator/projects/(?P<project>[^/]+)/operations/(?P<operation>[^/]+)/finish$")
ADMIN_RESPONSE_PROBLEMS = "/_emulator/response-problems"


def _route(method: str, path: str) -> tuple[Handler, dict[str, str], str]:
    if path.startswith(API_ROOT):
        for verb, pattern, handler, method_id in ROUTES:
            match = pattern.match(path[len(API_ROOT) :])
            if match and verb == method:
                return handler, {k: unquote(v) for k, v in match.groupdict().items()}, method_id
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


def _proto_descriptor(schema: str) -> Any:
    """The client library's protobuf descriptor for a discovery schema of the same name."""
    message = getattr(sqladmin, schema, None)
    return message.pb().DESCRIPTOR if message is not None and hasattr(message, "pb") else None


def _enum_type_name(schema: str, prop: str) -> str:
    descriptor = _proto_descriptor(schema)
    fields = {f.json_name: f for f in descriptor.fields} if descriptor is not None else {}
    field = fields.get(prop)
    return str(field.enum_type.full_name) if field is not None and field.enum_type is not None else ""


class SqlAdminSchema:
    """Google's sqladmin v1beta4 discovery document and the enum numbers of its client library."""

    def __init__(self) -> None:
        self.discovery = Discovery(load_document("sqladmin", "v1beta4"), _enum_type_name)
        self.codec = EnumCodec(_proto_descriptor)

    def decoded_request(self, method_id: str, body: Json) -> Json:
        """The body with enums as names, or Google's 400 when its schema refuses the body."""
        schema = self.discovery.request_schema(method_id)
        if schema is None:
            return body
        body = self.codec.to_names(schema, body)
        violations = self.discovery.request_violations(schema, body)
        if violations:
            raise _schema_error(violations)
        return dict(body)

    def response_problems(self, method_id: str, body: Json) -> list[str]:
        schema = self.discovery.response_schema(method_id)
        return self.discovery.response_problems(schema, body) if schema else []

    def encoded_response(self, method_id: str, body: Json, numeric_enums: bool) -> Json:
        schema = self.discovery.response_schema(method_id)
        return dict(self.codec.to_numbers(schema, body)) if numeric_enums and schema else body


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # an idle keep-alive connection must not hold up stop()

    def __init__(self, address: tuple[str, int], service: _CloudSQL, schema: SqlAdminSchema) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.schema = schema
        self.response_problems: list[str] = []  # every response that broke the schema, for tests


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
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            if url.path.startswith("/_emulator/"):
                status, payload = 200, self._admin(method, url.path, _parse_body(raw))
            else:
                status, payload = 200, self._api(method, url.path, query, raw)
        except ApiError as exc:
            status, payload = exc.code, exc.to_json()
        except Exception:  # a bug here must reach the client as a 500, not a dropped connection
            LOG.exception("cloudsql emulator failed on %s %s", method, url.path)
            status, payload = 500, ApiError(500, "backendError", "Internal error.").to_json()
        self._reply(status, payload)

    def _api(self, method: str, path: str, query: dict[str, str], raw: bytes) -> Json:
        handler, params, method_id = _route(method, path)
        schema = self.server.schema
        body = schema.decoded_request(method_id, _parse_body(raw))
        result = handler(self.server.service, _Request(params, query, body))
        problems = schema.response_problems(method_id, result)
        if problems:  # an emulator bug: the real API never sends these
            LOG.error("cloudsql emulator response to %s breaks the schema: %s", method_id, problems)
            self.server.response_problems.extend(f"{method_id}: {problem}" for problem in problems)
        # The client library asks for enums as numbers; anyone else gets the names.
        numeric = "enum-encoding=int" in query.get("$alt", "")
        return schema.encoded_response(method_id, result, numeric)

    def _admin(self, method: str, path: str, body: Json) -> Json:
        if method == "GET" and path == ADMIN_RESPONSE_PROBLEMS:
            return {"problems": list(self.server.response_problems)}
        match = ADMIN_STATE.match(path)
        if method == "POST" and match:
            reasons, error = body.get("suspensionReason") or [], str(body.get("error") or "")
            return self.server.service.set_state(
                match["project"], match["instance"], str(body.get("state")), reasons, error
            )
        match = ADMIN_OPERATIONS.match(path)
        if method == "POST" and match:
            kind, seconds = str(body.get("operationType") or "BACKUP_VOLUME"), float(body.get("seconds") or 60)
            return self.server.service.start_background_operation(match["project"], match["instance"], kind, seconds)
        match = ADMIN_FINISH.match(path)
        if method == "POST" and match:
            return self.server.service.finish_operation(match["project"], match["operation"])
        raise ApiError(404, "notFound", f"No emulator administration at {method} {path}.")

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


@dataclass(frozen=True)
class EmulatorSettings:
    """How strict and how slow the emulator is. The defaults are the test bed's: real behaviour,
    short waits.

    `operation_steps`: GETs of an operation until it is DONE (PENDING when returned, RUNNING
    until then). `operation_seconds`: time after which an operation is DONE even if nobody reads
    it (the instance is busy until then). `create_steps`: GETs of a new instance until it is
    RUNNABLE (PENDING_CREATE until then). A create finishes on whichever comes first, and
    finishing one side finishes the other; 0 steps make it immediate. `forbidden_for_unknown`:
    answer 403 notAuthorized, as the real API does, for an instance name the project never had.
    """

    operation_steps: int = 2
    create_steps: int = 2
    operation_seconds: float = 1.0
    forbidden_for_unknown: bool = True

    def __post_init__(self) -> None:
        if self.operation_steps < 0 or self.create_steps < 0 or self.operation_seconds < 0:
            raise ValueError("operation_steps, create_steps and operation_seconds must be >= 0")


class CloudSQLEmulator:
    """The emulator as a server: `start()` serves in a daemon thread until `stop()`. The keyword
    arguments are those of `EmulatorSettings`; `engines` puts a real PostgreSQL server behind
    each PostgreSQL instance (`kumo.testbed.engines`)."""

    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, engines: EngineGateway | None = None, **settings: Any
    ) -> None:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            raise ValueError(f"the emulator binds to loopback only, not {host}")
        self.settings = EmulatorSettings(**settings)
        self._service = _CloudSQL(self.settings, engines)
        schema = SqlAdminSchema()
        self._server: _Server | None = None
        self._serving = ServerThread(self._make_server(host, port, schema), "emulator")

    def _make_server(self, host: str, port: int, schema: SqlAdminSchema) -> Callable[[], _Server]:
        def make() -> _Server:
            self._server = _Server((host, port), self._service, schema)
            return self._server

        return make

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

    def set_state(
        self, project: str, instance: str, state: str, suspension_reasons: Sequence[str] = (), error: str = ""
    ) -> None:
        """Test-only: put an instance into MAINTENANCE, SUSPENDED (with reasons), FAILED (with the
        error of the operation that failed) or back to RUNNABLE, as the real service does."""
        self._service.set_state(project, instance, state, suspension_reasons, error)

    def response_problems(self) -> list[str]:
        """Every response served so far that broke the discovery document (an emulator bug)."""
        return list(self._server.response_problems) if self._server is not None else []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    defaults = EmulatorSettings()
    parser = argparse.ArgumentParser(
        prog="python -m kumo.testbed.cloudsql_emulator",
        description="Serve an in-memory Cloud SQL Admin API (v1beta4) on 127.0.0.1.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free one)")
    parser.add_argument(
        "--operation-steps", type=int, default=defaults.operation_steps, help="GETs until an operation is DONE"
    )
    parser.add_argument(
        "--operation-seconds",
        type=float,
        default=defaults.operation_seconds,
        help="seconds until an operation is DONE even if unread (the instance is busy until then)",
    )
    parser.add_argument(
        "--create-steps", type=int, default=defaults.create_steps, help="GETs until an instance is RUNNABLE"
    )
    parser.add_argument(
        "--unknown-instance-status",
        type=int,
        choices=(403, 404),
        default=403 if defaults.forbidden_for_unknown else 404,
        help="the answer for an instance name the project never had (the real API: 403)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until SIGTERM or SIGINT."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    with CloudSQLEmulator(
        port=args.port,
        operation_steps=args.operation_steps,
        operation_seconds=args.operation_seconds,
        create_steps=args.create_steps,
        forbidden_for_unknown=args.unknown_instance_status == 403,
        engines=EngineGateway.from_env(),  # set by the test bed when it runs a PostgreSQL server
    ) as emulator:
        print(f"listening on {emulator.endpoint}", flush=True)
        while not stopping.wait(0.5):  # a bounded wait keeps the main thread responsive to signals
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
