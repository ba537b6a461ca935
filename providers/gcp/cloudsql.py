"""Databases on Cloud SQL: the `DatabaseClient` for provider "gcp".

The portable spec maps onto one Cloud SQL instance named by the external name, through the Cloud
SQL Admin API v1beta4 (`google.cloud.sqladmin_v1beta4`, REST). Managed settings (those compared
for drift) are the rows of `SETTINGS`, each with the instances.patch fragment that writes it (the
tier, disk size, availability type, automated backups, deletion protection, public IPv4 address,
database version, maintenance window and the ownership labels); the app database
(`spec.databaseName`) is checked too when a single instance is observed. Engine, region,
master user and `spec.providerOptions` are applied at create only.

Cloud SQL differs from RDS in two ways the reconciler relies on:
- Creation is asynchronous and the master user cannot be created before the instance is
  RUNNABLE. `create` only starts the instance (the engine's built-in superuser gets a random
  password nobody keeps); `set_password` creates the master user or resets its password, and the
  reconciler calls it once the instance is ready.
- Mutations are operations. Short ones (users, databases) are awaited for a few seconds so that
  their errors surface as `Terminal` with Google's message; instance patches are not (a tier
  change restarts the instance) and are reported as `Update.pending` until their operation ends.

A drift sweep over N instances costs ceil(N/500) instances.list calls. No password ever appears
in a log line, an Observation, a CloudCall or an exception message.

`spec.providerOptions` (create only): region, zone, edition (ENTERPRISE | ENTERPRISE_PLUS;
default from the tier), privateNetwork (projects/P/global/networks/N), allocatedIpRange,
databaseFlags (a map of flag name to value), maintenanceWindowDay (1 = Monday .. 7) with
maintenanceWindowHour (0-23, UTC), diskType (PD_SSD | PD_HDD | HYPERDISK_BALANCED),
storageAutoResize, storageAutoResizeLimitGB, backupStartTime (HH:MM UTC), kmsKeyName (CMEK for
the data disk) and finalBackupRetentionDays (how long the final backup taken on delete is kept).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from secrets import token_urlsafe
from typing import Any

from kumo.providers.base import (
    Creation,
    DatabaseSpec,
    Deletion,
    FieldDrift,
    MaintenanceWindow,
    ManagedResource,
    NotReady,
    Observation,
    PasswordChange,
    ProviderSettings,
    Retryable,
    Terminal,
    Update,
)
from kumo.providers.fields import UNMANAGED, FieldTable, Setting
from kumo.providers.options import ProviderOption, integer_between, is_boolean, one_of, text_matching

from .session import (
    CALL_TIMEOUT,
    PROVIDER_NAME,
    ServiceCaller,
    checked_options,
    is_kms_key,
    option_problems,
    owner_from_labels,
    ownership_labels,
    present_labels,
)

# ---------------------------------------------------------------------------- vocabulary

ENGINES = ("postgres", "mysql")
SUPPORTED_VERSIONS = {
    "postgres": ("13", "14", "15", "16", "17"),
    "mysql": ("8.0", "8.4"),
}
# MySQL majors have two components (8.0, 8.4); PostgreSQL majors one (15, 16) since 10.
MAJOR_COMPONENTS = {"postgres": 1, "mysql": 2}
SIZE_TIERS = {"small": "db-custom-1-3840", "medium": "db-custom-2-7680", "large": "db-custom-4-15360"}
# Under Enterprise Plus (asked for with providerOptions.edition) sizes map to its own machine
# series: it offers no custom or shared-core tier (cloud.google.com/sql/docs/postgres/create-instance).
ENTERPRISE_PLUS_SIZE_TIERS = {
    "small": "db-perf-optimized-N-2",
    "medium": "db-perf-optimized-N-4",
    "large": "db-perf-optimized-N-8",
}
PORTS = {"postgres": "5432", "mysql": "3306"}
# The database a client lands in when the spec names none: Cloud SQL PostgreSQL always has
# "postgres"; MySQL connects without a default schema.
DEFAULT_DATABASES = {"postgres": "postgres", "mysql": ""}
# Users created through the API are matched by host on MySQL; PostgreSQL users have none.
USER_HOSTS = {"postgres": "", "mysql": "%"}

EDITION_ENTERPRISE = "ENTERPRISE"
EDITION_ENTERPRISE_PLUS = "ENTERPRISE_PLUS"
PERF_OPTIMIZED_PREFIX = "db-perf-optimized-"
# Tier shapes Cloud SQL offers (PostgreSQL and MySQL): shared core, custom, legacy N1 presets, the
# Enterprise Plus performance-optimized ones, and newer machine series named like them.
CUSTOM_TIER = re.compile(r"db-custom-(?P<cpus>\d+)-(?P<memory>\d+)")
SHARED_CORE_TIERS = ("db-f1-micro", "db-g1-small")
TIER_SHAPES = (
    re.compile("|".join(SHARED_CORE_TIERS)),
    CUSTOM_TIER,
    re.compile(r"db-n1-(standard|highmem)-\d+"),
    re.compile(r"db-perf-optimized-N-\d+", re.IGNORECASE),
    re.compile(r"db-[a-z0-9]+-(standard|highmem|highcpu)-\d+(-lssd)?"),
)
TIER_EXAMPLES = "db-custom-2-7680, db-f1-micro, db-g1-small, db-n1-standard-2 or db-perf-optimized-N-2"
MAX_CUSTOM_CPUS = 96
MIN_CUSTOM_MEMORY_MB, MB_PER_CPU = 3840, (922, 6656)  # 0.9 to 6.5 GB per vCPU, at least 3.75 GB
MIN_STORAGE_GB, MAX_STORAGE_GB = 10, 65536
MAX_RETAINED_BACKUPS = 365
DEFAULT_RETAINED_BACKUPS = 7  # what Cloud SQL keeps when backups are on without a count
MAX_LOG_RETENTION_DAYS = 7  # point-in-time recovery logs, Enterprise edition

STATE_RUNNABLE = "RUNNABLE"
STATE_PENDING_CREATE = "PENDING_CREATE"
STATE_PENDING_DELETE = "PENDING_DELETE"
STATE_DELETED = "DELETED"
STATE_MAINTENANCE = "MAINTENANCE"
STATE_ONLINE_MAINTENANCE = "ONLINE_MAINTENANCE"
STATE_SUSPENDED = "SUSPENDED"
STATE_FAILED = "FAILED"
# Cloud SQL keeps serving through maintenance (a short restart at most, no change to the
# instance's address or data: cloud.google.com/sql/docs/postgres/maintenance), so Ready stays True.
SERVING_STATES = (STATE_RUNNABLE, STATE_MAINTENANCE, STATE_ONLINE_MAINTENANCE)
OPERATION_DONE = "DONE"
REASON_ALREADY_EXISTS = "instanceAlreadyExists"
CODE_NAME_RESERVED = "InstanceNameReserved"
CODE_NOT_RUNNABLE = "InstanceNotRunnable"
CODE_OPERATION_FAILED = "OperationFailed"
CODE_OPERATION_RUNNING = "OperationRunning"
REASON_OPERATION_IN_PROGRESS = "operationInProgress"
REASON_NOT_AUTHORIZED = "notAuthorized"

MESSAGE_NAME_RESERVED = (
    "Cloud SQL instance name {name!r} belongs to an instance deleted less than a week ago, and "
    "Cloud SQL does not reuse names before then; choose another with spec.externalName"
)
MESSAGE_NOT_RUNNABLE = "instance {name} is {state}; its settings can be changed once it is RUNNABLE"
MESSAGE_OPERATION_FAILED = "Cloud SQL operation {kind} on {name} failed: {message}"
MESSAGE_OPERATION_RUNNING = "Cloud SQL operation {kind} on {name} is still running"
MESSAGE_BUSY = "Cloud SQL is running another operation on {name}; {method} waits for it to end"
MESSAGE_MAINTENANCE = "Cloud SQL maintenance in progress on {name}; it keeps serving, changes wait until it ends"
MESSAGE_SUSPENDED = "cloud state: SUSPENDED (suspensionReason: {reasons})"
MESSAGE_FAILED = "cloud state: FAILED ({cause})"
FAILED_WITHOUT_CAUSE = "Cloud SQL gives no failed operation; see the instance's logs"

INSTANCES_PAGE_SIZE = 500  # the instances.list maximum
RECENT_OPERATIONS = 1  # operations.list looks at the newest operation only
# Waits between operations.get reads for the short operations (users, databases).
OPERATION_POLL_DELAYS = (0.2, 0.5, 1.0, 2.0)

# ---------------------------------------------------------------------------- managed settings

FIELD_INSTANCE_CLASS = "instanceClass"
FIELD_STORAGE = "storageGB"
FIELD_HIGH_AVAILABILITY = "highAvailability"
FIELD_BACKUP_RETENTION = "backupRetentionDays"
FIELD_DELETION_PROTECTION = "deletionProtection"
FIELD_PUBLIC = "publiclyAccessible"
FIELD_VERSION = "version"
FIELD_LABELS = "labels"
FIELD_MAINTENANCE_WINDOW = "maintenanceWindow"
FIELD_DATABASE_NAME = "databaseName"  # compared only by observe(), which reads the databases

# ---------------------------------------------------------------------------- provider options

_NAME = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_REGION = r"[a-z]+-[a-z]+\d+"


def _flag_map(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not value:
        return f"must be a non-empty map of flag name to value, got {value!r}"
    for name, flag in value.items():
        if not re.fullmatch(r"[a-z][a-z0-9_.]*", str(name)):
            return f"{name!r} is not a database flag name"
        if not isinstance(flag, str | int | float | bool):
            return f"the value of {name} must be a string, number or boolean"
    return None


OPTIONS = (
    ProviderOption("region", text_matching(_REGION, "a GCP region such as europe-west1")),
    ProviderOption("zone", text_matching(_REGION + r"-[a-z]", "a zone such as europe-west1-b")),
    ProviderOption("edition", one_of(EDITION_ENTERPRISE, EDITION_ENTERPRISE_PLUS)),
    ProviderOption(
        "privateNetwork", text_matching(r"projects/[^/]+/global/networks/[^/]+", "projects/P/global/networks/N")
    ),
    ProviderOption("allocatedIpRange", text_matching(_NAME, "the name of an allocated IP range")),
    ProviderOption("databaseFlags", _flag_map),
    ProviderOption("maintenanceWindowDay", integer_between(1, 7)),
    ProviderOption("maintenanceWindowHour", integer_between(0, 23)),
    ProviderOption("diskType", one_of("PD_SSD", "PD_HDD", "HYPERDISK_BALANCED")),
    ProviderOption("storageAutoResize", is_boolean),
    ProviderOption("storageAutoResizeLimitGB", integer_between(0, MAX_STORAGE_GB)),
    ProviderOption("backupStartTime", text_matching(r"([01]\d|2[0-3]):[0-5]\d", "HH:MM (UTC)")),
    ProviderOption("kmsKeyName", is_kms_key),
    ProviderOption("finalBackupRetentionDays", integer_between(1, MAX_RETAINED_BACKUPS)),
)


# ---------------------------------------------------------------------------- pure mapping


def database_version(engine: str, version: str) -> str:
    """The Cloud SQL databaseVersion for an engine and version: postgres "16" (or "16.4") is
    POSTGRES_16, mysql "8.0" is MYSQL_8_0. Whether Cloud SQL offers it is `validate`'s question."""
    major = version.split(".")[: MAJOR_COMPONENTS.get(engine, 1)]
    return "_".join([engine.upper(), *major])


def version_supported(engine: str, version: str) -> bool:
    major = ".".join(version.split(".")[: MAJOR_COMPONENTS.get(engine, 1)])
    return major in SUPPORTED_VERSIONS.get(engine, ())


def tier(spec: DatabaseSpec) -> str:
    """`spec.instanceClass` when set, else the tier the portable size maps to in the edition."""
    if spec.instance_class:
        return spec.instance_class
    sizes = (
        ENTERPRISE_PLUS_SIZE_TIERS if spec.provider_options.get("edition") == EDITION_ENTERPRISE_PLUS else SIZE_TIERS
    )
    return sizes[spec.size]


def edition(spec: DatabaseSpec) -> str:
    """The edition asked for, else the one the tier belongs to. Always sent: without it Cloud SQL
    picks Enterprise Plus for PostgreSQL 16 and later, which refuses the custom and shared-core
    tiers the sizes map to (hashicorp/terraform-provider-google#20498), so a `size: small`
    PostgreSQL 17 would fail. A user asking for a size expects the cheap, general-purpose
    Enterprise edition whatever the version; Enterprise Plus is one providerOption away."""
    asked = spec.provider_options.get("edition")
    if asked:
        return str(asked)
    return EDITION_ENTERPRISE_PLUS if tier(spec).lower().startswith(PERF_OPTIMIZED_PREFIX) else EDITION_ENTERPRISE


def enum_name(value: Any) -> str:
    """An enum field's name; proto-plus hands back a bare int for values newer than the SDK."""
    return str(getattr(value, "name", value))


def maintenance_window(window: MaintenanceWindow | None) -> Any:
    """settings.maintenanceWindow for the spec's window: day 1-7 (Monday = 1) and hour 0-23, UTC;
    Cloud SQL's window is that one hour (Cloud SQL Admin API v1beta4, MaintenanceWindow:
    https://cloud.google.com/sql/docs/postgres/admin-api/rest/v1beta4/instances#maintenancewindow).
    UNMANAGED without a window: Cloud SQL keeps the one it has (or none, "any window")."""
    return UNMANAGED if window is None else {"day": window.weekday + 1, "hour": window.hour}


def window_of(window: Any) -> dict[str, int] | None:
    """An instance's maintenance window as `maintenance_window` renders one; None when it has none
    (day unset or 0: Cloud SQL picks any time)."""
    if not window.day:
        return None
    return {"day": int(window.day), "hour": int(window.hour or 0)}


def _labels_of(instance: Any) -> dict[str, str]:
    return present_labels(instance.settings.user_labels)


def retained_backups(backup: Any) -> int:
    """backupRetentionDays as a backupConfiguration shows it: 0 when backups are off."""
    if not backup.enabled:
        return 0
    return int(backup.backup_retention_settings.retained_backups or DEFAULT_RETAINED_BACKUPS)


def instance_drift(desired: Mapping[str, Any], actual: Mapping[str, Any], auto_resize: bool) -> tuple[FieldDrift, ...]:
    """Drift of one instance. A disk that storage auto-resize grew beyond the spec is no drift:
    disks cannot shrink, and the spec's size is then a floor."""
    comparable = dict(actual)
    if auto_resize and int(actual.get(FIELD_STORAGE) or 0) >= int(desired[FIELD_STORAGE]):
        comparable[FIELD_STORAGE] = desired[FIELD_STORAGE]
    return SETTINGS.drift(desired, comparable)


def backup_configuration(spec: DatabaseSpec) -> dict[str, Any]:
    """The whole backupConfiguration for the spec. Point-in-time recovery (PostgreSQL) and binary
    logging (MySQL) need backups, so they are switched on and off together with them."""
    days = spec.backup_retention_days
    recovery_field = "point_in_time_recovery_enabled" if spec.engine == "postgres" else "binary_log_enabled"
    if days <= 0:
        return {"enabled": False, recovery_field: False}
    config: dict[str, Any] = {
        "enabled": True,
        "backup_retention_settings": {"retention_unit": "COUNT", "retained_backups": days},
        recovery_field: True,
    }
    if days < MAX_LOG_RETENTION_DAYS:  # recovery logs may not outlive the backups they replay on
        config["transaction_log_retention_days"] = days
    return config


def ip_configuration(spec: DatabaseSpec) -> dict[str, Any]:
    config: dict[str, Any] = {"ipv4_enabled": spec.publicly_accessible}
    options = spec.provider_options
    if options.get("privateNetwork"):
        config["private_network"] = options["privateNetwork"]
    if options.get("allocatedIpRange"):
        config["allocated_ip_range"] = options["allocatedIpRange"]
    return config


def _option_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    """The `settings` fields the create-only provider options become."""
    settings: dict[str, Any] = {}
    if "databaseFlags" in options:
        flags = options["databaseFlags"]
        settings["database_flags"] = [{"name": name, "value": _flag_text(value)} for name, value in flags.items()]
    if "maintenanceWindowDay" in options:
        settings["maintenance_window"] = {
            "day": options["maintenanceWindowDay"],
            "hour": options.get("maintenanceWindowHour", 0),
        }
    if "diskType" in options:
        settings["data_disk_type"] = options["diskType"]
    if "storageAutoResize" in options:
        settings["storage_auto_resize"] = options["storageAutoResize"]
    if "storageAutoResizeLimitGB" in options:
        settings["storage_auto_resize_limit"] = options["storageAutoResizeLimitGB"]
    if "zone" in options:
        settings["location_preference"] = {"zone": options["zone"]}
    return settings


def _flag_text(value: Any) -> str:
    if isinstance(value, bool):  # Cloud SQL spells boolean flags on / off
        return "on" if value else "off"
    return str(value)


def instance_region(spec: DatabaseSpec, settings: ProviderSettings) -> str:
    return str(spec.provider_options.get("region") or settings.region)


def _settings(**fields: Any) -> dict[str, Any]:
    """An instances.insert / instances.patch body fragment inside `settings`."""
    return {"settings": fields}


def _user_labels(resource: ManagedResource, instance: Any) -> dict[str, Any]:
    # userLabels is replaced as a whole: keep the labels someone else put there.
    current = present_labels(instance.settings.user_labels) if instance is not None else {}
    return _settings(user_labels={**current, **ownership_labels(resource.owner)})


# Builds the body fragment that writes one setting, from the spec and the instance as last read
# (None at create).
Fragment = Callable[[ManagedResource, Any], dict[str, Any]]
# The managed settings, read from an instances.get / instances.list entry and written by one
# instances.patch (instances.insert at create). Order: the order `Update.changed` lists them in.
SETTINGS: FieldTable[Any, Fragment] = FieldTable(
    Setting(
        FIELD_INSTANCE_CLASS,
        lambda resource: tier(resource.database),
        lambda instance: instance.settings.tier,
        lambda resource, _: _settings(tier=tier(resource.database), edition=edition(resource.database)),
    ),
    Setting(
        FIELD_STORAGE,
        lambda resource: resource.database.storage_gb,
        lambda instance: int(instance.settings.data_disk_size_gb or 0),
        lambda resource, _: _settings(data_disk_size_gb=resource.database.storage_gb),
        grow_only=True,  # Cloud SQL disks never shrink
    ),
    Setting(
        FIELD_HIGH_AVAILABILITY,
        lambda resource: resource.database.high_availability,
        lambda instance: enum_name(instance.settings.availability_type) == "REGIONAL",
        lambda resource, _: _settings(availability_type="REGIONAL" if resource.database.high_availability else "ZONAL"),
    ),
    Setting(
        FIELD_BACKUP_RETENTION,
        lambda resource: resource.database.backup_retention_days,
        lambda instance: retained_backups(instance.settings.backup_configuration),
        lambda resource, _: _settings(backup_configuration=backup_configuration(resource.database)),
    ),
    Setting(
        FIELD_DELETION_PROTECTION,
        lambda resource: resource.database.deletion_protection,
        lambda instance: bool(instance.settings.deletion_protection_enabled),
        lambda resource, _: _settings(deletion_protection_enabled=resource.database.deletion_protection),
    ),
    Setting(
        FIELD_PUBLIC,
        lambda resource: resource.database.publicly_accessible,
        # Unset means Cloud SQL's default, which is a public address.
        lambda instance: instance.settings.ip_configuration.ipv4_enabled is not False,
        lambda resource, _: _settings(ip_configuration={"ipv4_enabled": resource.database.publicly_accessible}),
    ),
    Setting(
        FIELD_VERSION,
        lambda resource: database_version(resource.database.engine, resource.database.version),
        lambda instance: enum_name(instance.database_version),
        # A major version upgrade in place: databaseVersion sits beside settings.
        lambda resource, _: {"database_version": database_version(resource.database.engine, resource.database.version)},
    ),
    Setting(FIELD_LABELS, lambda resource: ownership_labels(resource.owner), _labels_of, _user_labels),
    Setting(
        FIELD_MAINTENANCE_WINDOW,
        lambda resource: maintenance_window(resource.database.maintenance_window),
        lambda instance: window_of(instance.settings.maintenance_window),
        lambda resource, _: _settings(maintenance_window=maintenance_window(resource.database.maintenance_window)),
    ),
)


def desired_settings(resource: ManagedResource) -> dict[str, Any]:
    """The managed settings the spec renders to, keyed by portable field name (and the app
    database, created by databases.insert rather than a setting of the instance)."""
    desired = SETTINGS.desired(resource)
    if resource.database.database_name:
        desired[FIELD_DATABASE_NAME] = resource.database.database_name
    return desired


def actual_settings(instance: Any) -> dict[str, Any]:
    """The managed settings as an instances.get / instances.list entry reports them."""
    return SETTINGS.read(instance)


def setting_fragments(resource: ManagedResource, fields: Sequence[str], instance: Any) -> dict[str, Any]:
    """The body writing `fields`: each row's fragment, their `settings` merged."""
    body: dict[str, Any] = {}
    for row in SETTINGS.selected(fields):
        fragment = row.patch(resource, instance)
        body.update({key: value for key, value in fragment.items() if key != "settings"})
        body.setdefault("settings", {}).update(fragment.get("settings", {}))
    return body


def instance_body(resource: ManagedResource, settings: ProviderSettings, root_password: str) -> dict[str, Any]:
    """The instances.insert body: every managed setting plus the create-only options."""
    spec = resource.database
    options = checked_options(spec.provider_options, OPTIONS)
    body = setting_fragments(resource, tuple(SETTINGS.desired(resource)), None)  # settings left to Cloud SQL: unsent
    backup = body["settings"]["backup_configuration"]
    if options.get("backupStartTime") and backup["enabled"]:
        backup["start_time"] = options["backupStartTime"]
    body["settings"]["ip_configuration"] = ip_configuration(spec)  # with the private network, at create
    body["settings"].update(_option_settings(options))
    body.update(name=resource.external_name, root_password=root_password)
    region = instance_region(spec, settings)
    if region:
        body["region"] = region
    if options.get("kmsKeyName"):
        body["disk_encryption_configuration"] = {"kms_key_name": options["kmsKeyName"]}
    return body


def patch_body(resource: ManagedResource, fields: Sequence[str], instance: Any) -> dict[str, Any]:
    """An instances.patch body changing only the drifted fields. It carries the settingsVersion
    just read, so a concurrent change makes Cloud SQL refuse it (412) instead of overwriting."""
    body = setting_fragments(resource, fields, instance)
    if body.get("settings"):
        body["settings"]["settings_version"] = instance.settings.settings_version
    else:
        body.pop("settings", None)
    return body


def instance_host(instance: Any, prefer_public: bool) -> str:
    """The address clients should use: the public one for a publicly accessible instance, else
    the private one, else whichever the instance has."""
    addresses = {enum_name(address.type_): address.ip_address for address in instance.ip_addresses}
    order = ("PRIMARY", "PRIVATE") if prefer_public else ("PRIVATE", "PRIMARY")
    return next((addresses[kind] for kind in order if addresses.get(kind)), "")


def connection_details(resource: ManagedResource, instance: Any) -> dict[str, str]:
    spec = resource.database
    details = {
        "username": spec.master_username,
        "database": spec.database_name or DEFAULT_DATABASES.get(spec.engine, ""),
        "engine": spec.engine,
        "instanceConnectionName": str(instance.connection_name),  # for the Cloud SQL connectors
    }
    host = instance_host(instance, spec.publicly_accessible)
    if host:
        details["host"] = host
        details["port"] = PORTS.get(spec.engine, "")
    return details


def instance_observation(
    resource: ManagedResource, instance: Any, project: str, databases: Sequence[str] | None, failure: str = ""
) -> Observation:
    """One Observation from an instance and, when they were read, the names of its databases."""
    desired = desired_settings(resource)
    actual = actual_settings(instance)
    if databases is not None and FIELD_DATABASE_NAME in desired:
        actual[FIELD_DATABASE_NAME] = (
            desired[FIELD_DATABASE_NAME] if desired[FIELD_DATABASE_NAME] in databases else None
        )
    else:
        desired.pop(FIELD_DATABASE_NAME, None)  # not read, so not compared
    state = enum_name(instance.state)
    auto_resize = instance.settings.storage_auto_resize is not False  # unset: Cloud SQL's default, on
    return Observation(
        external_name=resource.external_name,
        state=state,
        ready=state in SERVING_STATES,
        message=state_message(resource.external_name, instance, failure),
        owner=owner_from_labels(actual[FIELD_LABELS]),
        settings=actual,
        drift=instance_drift(desired, actual, auto_resize),
        connection=connection_details(resource, instance),
        at_provider={
            "externalName": resource.external_name,
            "provider": PROVIDER_NAME,
            "project": instance.project or project,
            "region": instance.region,
            "state": state,
            "connectionName": instance.connection_name,
            "databaseVersion": enum_name(instance.database_version),
            "tier": instance.settings.tier,
            "selfLink": instance.self_link,
        },
    )


def state_message(name: str, instance: Any, failure: str = "") -> str:
    """What a user should read in Ready about a state that is not plain RUNNABLE; `failure` is
    the error of the operation that left the instance FAILED, when it was read."""
    state = enum_name(instance.state)
    if state in (STATE_MAINTENANCE, STATE_ONLINE_MAINTENANCE):
        return MESSAGE_MAINTENANCE.format(name=name)
    if state == STATE_SUSPENDED:
        reasons = ", ".join(enum_name(reason) for reason in instance.suspension_reason) or "not given"
        return MESSAGE_SUSPENDED.format(reasons=reasons)
    if state == STATE_FAILED:
        return MESSAGE_FAILED.format(cause=failure or FAILED_WITHOUT_CAUSE)
    return ""


def operation_failure(operation: Any) -> str | None:
    """Google's message for an operation that ended with an error, else None."""
    if enum_name(operation.status) != OPERATION_DONE or not operation.error.errors:
        return None
    return "; ".join(str(error.message or error.code) for error in operation.error.errors)


def _tier_problem(value: str) -> str | None:
    if not any(shape.fullmatch(value) for shape in TIER_SHAPES):
        return f"spec.instanceClass: {value!r} is not a Cloud SQL tier (e.g. {TIER_EXAMPLES})"
    custom = CUSTOM_TIER.fullmatch(value)
    if custom is None:
        return None
    cpus, memory = int(custom["cpus"]), int(custom["memory"])
    if cpus < 1 or cpus > MAX_CUSTOM_CPUS or (cpus > 1 and cpus % 2):
        return f"spec.instanceClass: {value!r}: a custom tier has 1 or an even number of vCPUs up to {MAX_CUSTOM_CPUS}"
    low, high = max(MIN_CUSTOM_MEMORY_MB, MB_PER_CPU[0] * cpus), MB_PER_CPU[1] * cpus
    if memory % 256 or not low <= memory <= high:
        return (
            f"spec.instanceClass: {value!r}: memory must be a multiple of 256 MB "
            f"from {low} to {high} MB for {cpus} vCPU(s)"
        )
    return None


def _edition_problem(spec: DatabaseSpec) -> str | None:
    """Enterprise Plus offers only its performance-optimized tiers, and they only under it."""
    chosen, asked = tier(spec), spec.provider_options.get("edition")
    if chosen.lower().startswith(PERF_OPTIMIZED_PREFIX) and asked == EDITION_ENTERPRISE:
        return f"spec.providerOptions.edition: tier {chosen!r} needs {EDITION_ENTERPRISE_PLUS}"
    if asked == EDITION_ENTERPRISE_PLUS and (CUSTOM_TIER.fullmatch(chosen) or chosen in SHARED_CORE_TIERS):
        return f"spec.providerOptions.edition: {EDITION_ENTERPRISE_PLUS} does not offer tier {chosen!r}"
    return None


def validate_database(spec: DatabaseSpec) -> list[str]:
    """Problems only Cloud SQL can judge, each naming its field."""
    problems = option_problems(spec.provider_options, OPTIONS)
    if spec.instance_class and (problem := _tier_problem(spec.instance_class)):
        problems.append(problem)
    if spec.engine not in ENGINES:
        problems.append(f"spec.engine: gcp supports {', '.join(ENGINES)}, not {spec.engine!r}")
    elif not version_supported(spec.engine, spec.version):
        offered = ", ".join(SUPPORTED_VERSIONS[spec.engine])
        problems.append(
            f"spec.version: Cloud SQL has no databaseVersion for {spec.engine} {spec.version!r}; use one of {offered}"
        )
    if not MIN_STORAGE_GB <= spec.storage_gb <= MAX_STORAGE_GB:
        problems.append(f"spec.storageGB: Cloud SQL allows {MIN_STORAGE_GB} to {MAX_STORAGE_GB}")
    if not 0 <= spec.backup_retention_days <= MAX_RETAINED_BACKUPS:
        problems.append(f"spec.backupRetentionDays: Cloud SQL retains 0 to {MAX_RETAINED_BACKUPS} backups")
    if spec.high_availability and spec.backup_retention_days <= 0:
        problems.append("spec.backupRetentionDays: Cloud SQL high availability needs automated backups (at least 1)")
    if (problem := _edition_problem(spec)) is not None:
        problems.append(problem)
    if spec.maintenance_window and "maintenanceWindowDay" in spec.provider_options:
        problems.append("spec.providerOptions.maintenanceWindowDay: spec.maintenanceWindow sets it; use one")
    if "maintenanceWindowHour" in spec.provider_options and "maintenanceWindowDay" not in spec.provider_options:
        problems.append("spec.providerOptions.maintenanceWindowHour: needs spec.providerOptions.maintenanceWindowDay")
    if not spec.publicly_accessible and not spec.provider_options.get("privateNetwork"):
        # Cloud SQL refuses an instance with neither a public nor a private address.
        problems.append(
            "spec.providerOptions.privateNetwork: a Cloud SQL instance without public IP "
            "(spec.publiclyAccessible: false) needs a VPC network for its private IP; set it here or, "
            "for every object at once, in the ProviderConfig's spec.providerOptions"
        )
    return problems


# ---------------------------------------------------------------------------- the client


@contextmanager
def _busy_is_a_wait(method: str, name: str) -> Iterator[None]:
    """Cloud SQL runs one operation per instance at a time and answers anything else with 409
    operationInProgress (crossplane-contrib/provider-gcp#121, hashicorp/terraform-provider-google
    #4370): a wait for the cloud, not a failure, so `NotReady` (no warning event, no backoff)."""
    try:
        yield
    except Retryable as error:
        if error.code != REASON_OPERATION_IN_PROGRESS or isinstance(error, NotReady):
            raise
        raise NotReady(MESSAGE_BUSY.format(name=name or "the instance", method=method), code=error.code) from error


def sql_request(operation: str, request: Mapping[str, Any]) -> Callable[[Any], Any]:
    """The request function for a Cloud SQL Admin method named as the API names it
    (``instances.get`` is `SqlAdmin.instances.get`), without SDK retries and with a timeout."""
    service, method = operation.split(".")
    return lambda sql: getattr(getattr(sql, service), method)(request=dict(request), retry=None, timeout=CALL_TIMEOUT)


class CloudSQLClient:
    """The Database client for one provider config (see `DatabaseClient` for the contract)."""

    def __init__(
        self,
        sql: ServiceCaller,
        settings: ProviderSettings,
        *,
        page_size: int = INSTANCES_PAGE_SIZE,
        poll_delays: Sequence[float] = OPERATION_POLL_DELAYS,
    ) -> None:
        self._sql = sql
        self._settings = settings
        self._page_size = page_size
        self._poll_delays = tuple(poll_delays)

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        return desired_settings(resource)

    async def observe(self, resource: ManagedResource) -> Observation | None:
        name = resource.external_name
        instance = await self._get_instance(name)
        if instance is None:
            return None
        databases, failure = None, ""
        state = enum_name(instance.state)
        if state == STATE_FAILED:
            # The instance exists and is broken: Ready=False with the cause, not an error of kumo's.
            failure = await self._latest_failure(name) or ""
        elif state not in SERVING_STATES:
            await self._raise_failed_operation(name)
        elif resource.database.database_name:
            response = await self._call("databases.list", instance=name)
            databases = [database.name for database in response.items]
        return instance_observation(resource, instance, self._sql.project, databases, failure)

    async def observe_many(self, resources: list[ManagedResource]) -> dict[str, Observation]:
        # One instances.list per page and nothing else: databases and operations are not read.
        wanted = {resource.external_name: resource for resource in resources}
        found: dict[str, Observation] = {}
        token = ""
        while wanted:
            # The generated pager iterates `warnings`; `items` and `next_page_token` are the page's.
            page = await self._call(
                "instances.list", max_results=self._page_size, **({"page_token": token} if token else {})
            )
            for instance in page.items:
                resource = wanted.pop(instance.name, None)
                if resource is not None:
                    found[resource.external_name] = instance_observation(resource, instance, self._sql.project, None)
            token = page.next_page_token
            if not token:
                break
        return found

    async def create(self, resource: ManagedResource, password: str | None) -> Creation:
        # The master user needs a RUNNABLE instance: set_password creates it later. The built-in
        # superuser (postgres / root) gets a password nobody keeps, so it is never open.
        root_password = token_urlsafe(32)
        body = instance_body(resource, self._settings, root_password)
        try:
            await self._call("instances.insert", secrets=(root_password,), body=body)
        except Terminal as error:
            if error.code != REASON_ALREADY_EXISTS:
                raise
            return await self._existing(resource)
        return Creation(resource.external_name, STATE_PENDING_CREATE)

    async def update(self, resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> Update:
        fields = [entry.field for entry in drift]
        changed: list[str] = []
        pending: list[str] = []
        # The database first: Cloud SQL runs one operation per instance at a time, and this one
        # is short while a patch may restart the instance.
        if FIELD_DATABASE_NAME in fields:
            changed.append(FIELD_DATABASE_NAME)
            body = {"name": resource.database.database_name}
            operation = await self._call("databases.insert", instance=resource.external_name, body=body)
            if not await self._finished(resource.external_name, operation):
                pending.append(FIELD_DATABASE_NAME)
        patched = [row.name for row in SETTINGS.selected(fields)]
        if patched:
            changed += patched
            if not await self._patch(resource, patched):
                pending += patched
        return Update(changed=tuple(changed), pending=tuple(pending))

    async def set_password(self, resource: ManagedResource, password: str) -> PasswordChange:
        """Create the master user with this password, or reset the password of the existing one;
        returns once Cloud SQL confirms it, the users operation DONE (`NotReady` when that takes
        more than a few seconds: the next pass sends it again)."""
        spec, name = resource.database, resource.external_name
        host = USER_HOSTS.get(spec.engine, "")
        user = {"name": spec.master_username, "password": password, **({"host": host} if host else {})}
        users = await self._call("users.list", instance=name)
        if any(item.name == spec.master_username and (item.host or "") == host for item in users.items):
            where = {"host": host} if host else {}
            operation = await self._call(
                "users.update", secrets=(password,), instance=name, name=spec.master_username, body=user, **where
            )
        else:
            operation = await self._call("users.insert", secrets=(password,), instance=name, body=user)
        if not await self._finished(name, operation):
            kind = enum_name(operation.operation_type)
            raise NotReady(MESSAGE_OPERATION_RUNNING.format(kind=kind, name=name), code=CODE_OPERATION_RUNNING)
        return PasswordChange(applied=True)

    async def delete(self, resource: ManagedResource) -> Deletion:
        name, spec = resource.external_name, resource.database
        instance = await self._get_instance(name)
        if instance is None:
            return Deletion(gone=True, state=STATE_DELETED)
        if enum_name(instance.state) == STATE_PENDING_DELETE:
            return Deletion(gone=False, state=STATE_PENDING_DELETE)  # asking again would be refused
        final_backup: dict[str, Any] = {}
        if not spec.skip_final_snapshot:  # a backup Cloud SQL keeps after the instance is gone
            final_backup["enable_final_backup"] = True
            if spec.provider_options.get("finalBackupRetentionDays"):
                final_backup["final_backup_ttl_days"] = spec.provider_options["finalBackupRetentionDays"]
        if await self._find("instances.delete", instance=name, **final_backup) is None:
            return Deletion(gone=True, state=STATE_DELETED)
        return Deletion(gone=False, state=STATE_PENDING_DELETE)

    # ------------------------------------------------------------------------ helpers

    async def _call(self, method: str, /, *, secrets: Sequence[str] = (), **request: Any) -> Any:
        """One Cloud SQL Admin request in the provider config's project."""
        full = {"project": self._sql.project, **request}
        with _busy_is_a_wait(method, request.get("instance", "")):
            return await self._sql.call(method, sql_request(method, full), secrets=secrets)

    async def _find(self, method: str, /, **request: Any) -> Any:
        """Like `_call`, but None when Cloud SQL answers 404."""
        with _busy_is_a_wait(method, request.get("instance", "")):
            return await self._sql.find(method, sql_request(method, {"project": self._sql.project, **request}))

    async def _get_instance(self, name: str) -> Any:
        """instances.get, None when the instance does not exist.

        For a name that does not exist, Cloud SQL sometimes answers 403 notAuthorized instead of
        404 (googleapis/google-api-go-client#1815 for instances.get and delete; the same 403 on
        the first observe blocked creation in crossplane-contrib/provider-gcp#246 and is reported
        in hashicorp/terraform-provider-google#1069). A 403 is also what a real lack of
        permission looks like, so it is taken as "absent" only when instances.list, which the
        same role grants, confirms that no instance of that name exists; otherwise the 403
        stands, with Google's message."""
        try:
            return await self._find("instances.get", instance=name)
        except Terminal as error:
            if error.code != REASON_NOT_AUTHORIZED or await self._listed(name):
                raise
            return None

    async def _listed(self, name: str) -> bool:
        """Whether instances.list shows an instance of exactly this name."""
        token = ""
        while True:
            page = await self._call(
                "instances.list",
                filter=f"name:{name}",
                max_results=self._page_size,
                **({"page_token": token} if token else {}),
            )
            if any(instance.name == name for instance in page.items):
                return True
            token = page.next_page_token
            if not token:
                return False

    async def _latest_failure(self, name: str) -> str | None:
        """Google's message for the newest operation on the instance, if it failed."""
        page = await self._call("operations.list", instance=name, max_results=RECENT_OPERATIONS)
        operations = list(page.items)[:RECENT_OPERATIONS]
        return operation_failure(operations[0]) if operations else None

    async def _raise_failed_operation(self, name: str) -> None:
        """`Terminal` with Google's message when the newest operation on a not-RUNNABLE instance
        ended in an error (a create that failed): waiting would not help."""
        page = await self._call("operations.list", instance=name, max_results=RECENT_OPERATIONS)
        operations = list(page.items)[:RECENT_OPERATIONS]
        if operations:
            self._raise_if_failed(name, operations[0])

    @staticmethod
    def _raise_if_failed(name: str, operation: Any) -> None:
        message = operation_failure(operation)
        if message is not None:
            text = MESSAGE_OPERATION_FAILED.format(kind=enum_name(operation.operation_type), name=name, message=message)
            raise Terminal(text, code=CODE_OPERATION_FAILED)

    async def _existing(self, resource: ManagedResource) -> Creation:
        """After 409 on insert: ours from an earlier attempt (the caller checks the owner), or a
        name Cloud SQL still reserves for a recently deleted instance."""
        instance = await self._get_instance(resource.external_name)
        if instance is None:
            raise Terminal(MESSAGE_NAME_RESERVED.format(name=resource.external_name), code=CODE_NAME_RESERVED)
        return Creation(resource.external_name, enum_name(instance.state))

    async def _patch(self, resource: ManagedResource, fields: Sequence[str]) -> bool:
        """One instances.patch with the drifted fields; True when Cloud SQL applied it at once."""
        name = resource.external_name
        instance = await self._get_instance(name)
        if instance is None:
            raise Retryable(f"instance {name} disappeared before it could be updated", code="NotFound")
        state = enum_name(instance.state)
        if state != STATE_RUNNABLE:
            raise NotReady(MESSAGE_NOT_RUNNABLE.format(name=name, state=state), code=CODE_NOT_RUNNABLE)
        operation = await self._call("instances.patch", instance=name, body=patch_body(resource, fields, instance))
        return enum_name(operation.status) == OPERATION_DONE

    async def _finished(self, name: str, operation: Any) -> bool:
        """Read a short operation until it is DONE (True) or the polls run out (False); an
        operation that failed raises `Terminal` with Google's message."""
        for delay in self._poll_delays:
            if enum_name(operation.status) == OPERATION_DONE:
                break
            await asyncio.sleep(delay)
            operation = await self._call("operations.get", operation=operation.name)
        if enum_name(operation.status) != OPERATION_DONE:
            return False
        self._raise_if_failed(name, operation)
        return True
