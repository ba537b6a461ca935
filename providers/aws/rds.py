"""Databases on Amazon RDS: the `DatabaseClient` for provider "aws".

The portable spec maps onto one DB instance whose identifier is the external name. Managed
settings (those compared for drift) are the rows of `SETTINGS`: one per portable field, naming
its CreateDBInstance / ModifyDBInstance parameter (the engine version matches by prefix: "16"
matches 16.4), plus the ownership tags. Engine, database name and master user are create-only.

Every call goes through `ServiceCaller`; a drift sweep over N instances costs ceil(N/100)
DescribeDBInstances calls. The master password is passed to AWS and nowhere else: it never
appears in a log line, an Observation or an exception message.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

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
    ProviderError,
    ProviderSettings,
    Retryable,
    Terminal,
    Update,
)
from kumo.providers.fields import UNMANAGED, FieldTable, Setting
from kumo.providers.options import ProviderOption, integer_between, list_of, one_of, text_matching

from .session import (
    PROVIDER_NAME,
    ServiceCaller,
    is_kms_key,
    option_parameters,
    option_problems,
    owner_from_tags,
    ownership_tags,
    tags_to_dict,
    tags_to_list,
)

log = logging.getLogger(__name__)

SIZE_CLASSES = {"small": "db.t3.micro", "medium": "db.t3.large", "large": "db.m6i.xlarge"}  # every one of SIZES
INSTANCE_CLASS_PREFIX = "db."
ENGINES = ("postgres", "mysql")
# The database a client lands in when the spec names none: RDS PostgreSQL always has
# "postgres"; MySQL connects without a default schema.
DEFAULT_DATABASES = {"postgres": "postgres", "mysql": ""}
# MySQL majors have two components (8.0, 8.4); PostgreSQL majors one (15, 16) since 10.
MAJOR_COMPONENTS = {"mysql": 2, "mariadb": 2}
MIN_STORAGE_GB, MAX_STORAGE_GB = 20, 65536
MAX_BACKUP_RETENTION_DAYS = 35
PAGE_SIZE = 100  # the DescribeDBInstances maximum

# Statuses in which the instance accepts connections (see the RDS "DB instance status" table).
READY_STATES = frozenset(
    {
        "available",
        "backing-up",
        "modifying",
        "storage-optimization",
        "maintenance",
        "renaming",
        "resetting-master-credentials",
        "moving-to-vpc",
        "converting-to-vpc",
        "storage-config-upgrade",
        "upgrading",  # minor upgrades; major ones report a short outage as "rebooting"
    }
)
READY_STATE_PREFIXES = ("configuring-",)  # configuring-enhanced-monitoring, -log-exports, ...
STATE_DELETING = "deleting"
STATE_ALREADY_EXISTS = "already-exists"
STATE_DELETED = "deleted"

CODES_NOT_FOUND = ("DBInstanceNotFound", "DBInstanceNotFoundFault")
CODE_ALREADY_EXISTS = "DBInstanceAlreadyExists"
CODE_INVALID_STATE = "InvalidDBInstanceState"
CODE_INVALID_COMBINATION = "InvalidParameterCombination"
CODE_SNAPSHOT_EXISTS = "DBSnapshotAlreadyExists"
CODE_NO_PASSWORD = "NoMasterPassword"  # noqa: S105 - an error code, not a secret
# "Between the time of the request and the completion of the request, the MasterUserPassword
# element exists in the PendingModifiedValues element of the operation response" (ModifyDBInstance
# API reference, https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html).
PENDING_PASSWORD = "MasterUserPassword"  # noqa: S105 - a key name, never a value
MESSAGE_BEING_DELETED = "being deleted"
# AWS refuses a storage change for six hours after the previous one, or while that one is still
# being optimized, whichever is longer ("Working with storage for Amazon RDS DB instances"); the
# refusal names "storage" and "optimiz..." (hashicorp/terraform-provider-aws#12493).
STORAGE_REFUSAL_WORDS = ("storage", "optimiz")
MESSAGE_BUSY = "{name} is busy; kumo waits until it is available again (AWS: {aws})"
MESSAGE_STORAGE_WAITS = "storageGB {actual} -> {desired} waits: AWS refuses storage changes for now ({aws})"
FIELD_STORAGE = "storageGB"

FIELD_TAGS = "tags"
FIELD_VERSION = "version"

RDS_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # Monday first, as DAYS
_HOUR_MINUTE = r"([01]\d|2[0-3]):[0-5]\d"
_DAY = f"({'|'.join(RDS_DAYS)})"
_GROUP_NAME = r"[A-Za-z][\w.-]{0,254}"
# The documented `spec.providerOptions` for Databases on AWS, and the API parameters they become.
OPTIONS = (
    ProviderOption(
        "dbSubnetGroupName",
        parameter="DBSubnetGroupName",
        check=text_matching(r"[\w .-]{1,255}", "a DB subnet group name"),
    ),
    ProviderOption(
        "vpcSecurityGroupIds",
        parameter="VpcSecurityGroupIds",
        check=list_of(text_matching(r"sg-[0-9a-f]+", "a security group id (sg-...)")),
    ),
    ProviderOption("storageType", parameter="StorageType", check=one_of("gp2", "gp3", "io1", "io2", "standard")),
    ProviderOption("iops", parameter="Iops", check=integer_between(1000, 256000)),
    ProviderOption("storageThroughput", parameter="StorageThroughput", check=integer_between(125, 4000)),
    ProviderOption("kmsKeyId", parameter="KmsKeyId", check=is_kms_key),
    ProviderOption(
        "parameterGroupName",
        parameter="DBParameterGroupName",
        check=text_matching(_GROUP_NAME, "a DB parameter group name"),
    ),
    ProviderOption(
        "optionGroupName", parameter="OptionGroupName", check=text_matching(_GROUP_NAME, "an option group name")
    ),
    ProviderOption("port", parameter="Port", check=integer_between(1150, 65535)),
    ProviderOption(
        "availabilityZone",
        parameter="AvailabilityZone",
        check=text_matching(r"[a-z]{2}(-[a-z]+)+-\d[a-z]", "an availability zone such as eu-west-1a"),
    ),
    ProviderOption(
        "preferredMaintenanceWindow",
        parameter="PreferredMaintenanceWindow",
        check=text_matching(f"{_DAY}:{_HOUR_MINUTE}-{_DAY}:{_HOUR_MINUTE}", "ddd:hh24:mi-ddd:hh24:mi (UTC)"),
    ),
    ProviderOption(
        "preferredBackupWindow",
        parameter="PreferredBackupWindow",
        check=text_matching(f"{_HOUR_MINUTE}-{_HOUR_MINUTE}", "hh24:mi-hh24:mi (UTC)"),
    ),
)
IOPS_STORAGE_TYPES = ("io1", "io2", "gp3")


# ---------------------------------------------------------------------------- pure mapping


def instance_class(spec: DatabaseSpec) -> str:
    """`spec.instanceClass` when set, else the class the portable size maps to."""
    return spec.instance_class or SIZE_CLASSES[spec.size]


def version_matches(desired: str, actual: str) -> bool:
    """Whether the actual version is within the desired one: "16" matches "16.4", "8.0"
    matches "8.0.39", "8.0" does not match "8.4.1"."""
    wanted = desired.split(".")
    return actual.split(".")[: len(wanted)] == wanted


def major_version(engine: str, version: str) -> str:
    return ".".join(version.split(".")[: MAJOR_COMPONENTS.get(engine, 1)])


def preferred_maintenance_window(window: MaintenanceWindow | None) -> Any:
    """PreferredMaintenanceWindow for the spec's window: the hour it names, "tue:03:00-tue:04:00"
    (UTC, `ddd:hh24:mi-ddd:hh24:mi`, at least 30 minutes: ModifyDBInstance API reference,
    https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html). One hour,
    as Cloud SQL's window is; Sunday 23:00 ends on Monday ("sun:23:00-mon:00:00"). UNMANAGED
    without a window: RDS keeps the one it chose. AWS applies a new window at once, outside
    PendingModifiedValues (same page: "the change is asynchronously applied as soon as possible")."""
    if window is None:
        return UNMANAGED
    start = window.weekday * 24 + window.hour
    end = (start + 1) % (7 * 24)
    return f"{_rds_hour(start)}-{_rds_hour(end)}"


def _rds_hour(hour_of_week: int) -> str:
    day, hour = divmod(hour_of_week, 24)
    return f"{RDS_DAYS[day]}:{hour:02d}:00"


@dataclass(frozen=True)
class Described:
    """One DescribeDBInstances entry (or a CreateDBInstance / ModifyDBInstance answer, which
    share its shape) with the instance's tags."""

    instance: Mapping[str, Any]
    tags: Mapping[str, str]


RDSSetting: TypeAlias = Setting[Described, str | None]


def _parameter(name: str, parameter: str, desired: Callable[[DatabaseSpec], Any], **row: Any) -> RDSSetting:
    """A setting RDS takes under one parameter name in CreateDBInstance and ModifyDBInstance and
    reports under the same key in DescribeDBInstances and PendingModifiedValues."""
    return Setting(
        name, lambda resource: desired(resource.database), lambda d: d.instance.get(parameter), parameter, **row
    )


# The managed settings: row.patch is the CreateDBInstance / ModifyDBInstance parameter, None for
# tags (AddTagsToResource). Order: the order updates report them in.
SETTINGS: FieldTable[Described, str | None] = FieldTable(
    _parameter("instanceClass", "DBInstanceClass", lambda spec: instance_class(spec)),
    _parameter(FIELD_STORAGE, "AllocatedStorage", lambda spec: spec.storage_gb, grow_only=True),  # never shrinks
    _parameter("highAvailability", "MultiAZ", lambda spec: spec.high_availability),
    _parameter("backupRetentionDays", "BackupRetentionPeriod", lambda spec: spec.backup_retention_days),
    _parameter("deletionProtection", "DeletionProtection", lambda spec: spec.deletion_protection),
    _parameter("publiclyAccessible", "PubliclyAccessible", lambda spec: spec.publicly_accessible),
    _parameter(
        FIELD_VERSION,
        "EngineVersion",
        lambda spec: spec.version,
        matches=lambda want, have: isinstance(have, str) and version_matches(str(want), have),
    ),
    _parameter(
        "maintenanceWindow",
        "PreferredMaintenanceWindow",
        lambda spec: preferred_maintenance_window(spec.maintenance_window),
        # Days compare without case: AWS takes "Tue" as well as "tue" (someone else's change may use either).
        matches=lambda want, have: isinstance(have, str) and have.lower() == want,
    ),
    Setting(FIELD_TAGS, lambda resource: ownership_tags(resource.owner), lambda d: dict(d.tags), None),
)
PARAMETER_ROWS = tuple(row for row in SETTINGS.rows if row.patch is not None)


def desired_settings(resource: ManagedResource) -> dict[str, Any]:
    """The managed settings the spec renders to, keyed by portable field name."""
    return SETTINGS.desired(resource)


def setting_parameters(desired: Mapping[str, Any], fields: Iterable[str] | None = None) -> dict[str, Any]:
    """The CreateDBInstance / ModifyDBInstance parameters of the desired settings (of `fields`
    only, when given)."""
    chosen = SETTINGS.selected(desired if fields is None else fields)
    return {row.patch: desired[row.name] for row in chosen if row.patch is not None and row.name in desired}


def actual_settings(instance: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    """The managed settings as a DescribeDBInstances entry reports them."""
    return SETTINGS.read(Described(instance, tags))


def instance_drift(
    desired: Mapping[str, Any], instance: Mapping[str, Any], tags: Mapping[str, str]
) -> tuple[FieldDrift, ...]:
    """Drift of one instance. A version within the desired one is no drift, and neither is a
    value already waiting in PendingModifiedValues (requested, applied at the next window):
    re-issuing the modify every sweep would change nothing."""
    effective = actual_settings(instance, tags)
    pending = instance.get("PendingModifiedValues") or {}
    for row in PARAMETER_ROWS:
        if (
            row.name in desired
            and row.patch in pending
            and SETTINGS.satisfied(row.name, desired[row.name], pending[row.patch])
        ):
            effective[row.name] = desired[row.name]
    return SETTINGS.drift(desired, effective)


def is_ready(state: str) -> bool:
    return state in READY_STATES or state.startswith(READY_STATE_PREFIXES)


def connection_details(instance: Mapping[str, Any]) -> dict[str, str]:
    """Host, port, user, database and engine; host and port only once RDS assigned them."""
    engine = str(instance.get("Engine", ""))
    details = {
        "username": str(instance.get("MasterUsername", "")),
        "database": str(instance.get("DBName") or DEFAULT_DATABASES.get(engine, "")),
        "engine": engine,
    }
    endpoint = instance.get("Endpoint") or {}
    if endpoint.get("Address"):
        details["host"] = str(endpoint["Address"])
        details["port"] = str(endpoint.get("Port", ""))
    return details


def final_snapshot_name(external_name: str, taken_at: datetime.datetime | None = None) -> str:
    """`<name>-final`: deterministic, so a retried delete never takes a second snapshot. When an
    earlier instance of the same name left a final snapshot under it (AWS then refuses the delete
    with DBSnapshotAlreadyExists), the delete is retried with the time appended, never without
    a snapshot: `<name>-final-20261128t070312z`."""
    name = f"{external_name}-final"
    return name if taken_at is None else f"{name}-{taken_at:%Y%m%dt%H%M%Sz}"


def is_storage_refusal(error: ProviderError) -> bool:
    """AWS's refusal of a storage change that comes too soon after the previous one."""
    text = str(error).lower()
    return error.code == CODE_INVALID_COMBINATION and all(word in text for word in STORAGE_REFUSAL_WORDS)


def password_pending(instance: Mapping[str, Any]) -> bool:
    """RDS accepted a new master password and has not applied it yet (the old one still works)."""
    return PENDING_PASSWORD in (instance.get("PendingModifiedValues") or {})


def pending_modifications(instance: Mapping[str, Any]) -> dict[str, Any]:
    """PendingModifiedValues in kumo's portable field names (the managed settings only)."""
    pending = instance.get("PendingModifiedValues") or {}
    return {row.name: pending[row.patch] for row in PARAMETER_ROWS if row.patch in pending}


def validate_database(spec: DatabaseSpec) -> list[str]:
    """Problems only RDS can judge, each naming its field."""
    problems = option_problems(spec.provider_options, OPTIONS)
    if spec.instance_class and not spec.instance_class.startswith(INSTANCE_CLASS_PREFIX):
        problems.append(
            f"spec.instanceClass: {spec.instance_class!r} is not an RDS instance class "
            f"(they start with {INSTANCE_CLASS_PREFIX!r}, e.g. db.t3.micro)"
        )
    if spec.engine not in ENGINES:
        problems.append(f"spec.engine: aws supports {', '.join(ENGINES)}, not {spec.engine!r}")
    if not re.fullmatch(r"\d+(\.\d+)*", spec.version):
        problems.append(f"spec.version: {spec.version!r} is not a version such as 16 or 8.0")
    if not MIN_STORAGE_GB <= spec.storage_gb <= MAX_STORAGE_GB:
        problems.append(f"spec.storageGB: RDS allows {MIN_STORAGE_GB} to {MAX_STORAGE_GB}")
    if not 0 <= spec.backup_retention_days <= MAX_BACKUP_RETENTION_DAYS:
        problems.append(f"spec.backupRetentionDays: RDS allows 0 to {MAX_BACKUP_RETENTION_DAYS}")
    if spec.maintenance_window and "preferredMaintenanceWindow" in spec.provider_options:
        problems.append("spec.providerOptions.preferredMaintenanceWindow: spec.maintenanceWindow sets it; use one")
    storage_type = spec.provider_options.get("storageType", "gp2")
    if "iops" in spec.provider_options and storage_type not in IOPS_STORAGE_TYPES:
        problems.append(
            f"spec.providerOptions.iops: needs spec.providerOptions.storageType {' / '.join(IOPS_STORAGE_TYPES)}"
        )
    return problems


# ---------------------------------------------------------------------------- the client


class RDSClient:
    """The Database client for one provider config (see `DatabaseClient` for the contract)."""

    def __init__(self, rds: ServiceCaller, settings: ProviderSettings) -> None:
        self.rds = rds
        self.settings = settings

    def desired(self, resource: ManagedResource) -> dict[str, Any]:
        return desired_settings(resource)

    async def observe(self, resource: ManagedResource) -> Observation | None:
        found = await self.rds.find(
            "DescribeDBInstances",
            missing=CODES_NOT_FOUND,
            DBInstanceIdentifier=resource.external_name,
        )
        instances = (found or {}).get("DBInstances") or []
        return await self._observation(resource, instances[0]) if instances else None

    async def observe_many(self, resources: list[ManagedResource]) -> dict[str, Observation]:
        # RDS stores identifiers lowercased; match case-insensitively, answer by external name.
        wanted = {resource.external_name.lower(): resource for resource in resources}
        found: dict[str, Observation] = {}
        marker = ""
        while wanted:
            page = await self.rds.call(
                "DescribeDBInstances", MaxRecords=PAGE_SIZE, **({"Marker": marker} if marker else {})
            )
            for instance in page.get("DBInstances", []):
                resource = wanted.pop(str(instance["DBInstanceIdentifier"]).lower(), None)
                if resource is not None:
                    found[resource.external_name] = await self._observation(resource, instance)
            marker = page.get("Marker") or ""
            if not marker:
                break
        return found

    async def create(self, resource: ManagedResource, password: str | None) -> Creation:
        if not password:
            raise Terminal("a master password is required to create a database", code=CODE_NO_PASSWORD)
        params = self._create_parameters(resource)
        try:
            response = await self.rds.call(
                "CreateDBInstance", secrets=(password,), MasterUserPassword=password, **params
            )
        except Terminal as error:
            if error.code != CODE_ALREADY_EXISTS:
                raise
            # An earlier attempt (or someone else) got there first; the caller checks the owner.
            return Creation(resource.external_name, STATE_ALREADY_EXISTS)
        # The same shape DescribeDBInstances answers with; an answer without TagList (older API
        # versions) has the tags this very request set.
        instance = {"TagList": params["Tags"], **response["DBInstance"]}
        state = str(instance.get("DBInstanceStatus", ""))
        observation = await self._observation(resource, instance)
        return Creation(resource.external_name, state, password_applied=True, observation=observation)

    async def update(self, resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> Update:
        desired = self.desired(resource)
        fields = {entry.field for entry in drift}
        try:
            instance = await self._modify(resource, desired, drift) or {}
        except NotReady:
            # Tags are taken in any state: ownership tags never wait behind a busy instance or a
            # storage change RDS holds back.
            if FIELD_TAGS in fields:
                await self._add_tags(await self._arn(resource), desired[FIELD_TAGS])
            raise
        if FIELD_TAGS in fields:
            arn = str(instance.get("DBInstanceArn") or await self._arn(resource))
            await self._add_tags(arn, desired[FIELD_TAGS])
        changed = tuple(f for f in desired if f in fields)
        return Update(changed=changed, pending=_pending_fields(instance, fields))

    async def set_password(self, resource: ManagedResource, password: str) -> PasswordChange:
        # AWS applies a new master password as soon as possible whatever ApplyImmediately says;
        # it is sent with True all the same, which also starts any change waiting for the window.
        # The old password keeps working until MasterUserPassword leaves PendingModifiedValues
        # (minutes, in `resetting-master-credentials`): observations say when (`password_pending`).
        async with _busy_is_a_wait(resource):
            response = await self.rds.call(
                "ModifyDBInstance",
                secrets=(password,),
                DBInstanceIdentifier=resource.external_name,
                MasterUserPassword=password,
                ApplyImmediately=True,
            )
        return PasswordChange(applied=not password_pending(response.get("DBInstance") or {}))

    async def delete(self, resource: ManagedResource) -> Deletion:
        spec = resource.database
        params: dict[str, Any] = {
            "DBInstanceIdentifier": resource.external_name,
            "SkipFinalSnapshot": spec.skip_final_snapshot,
            "DeleteAutomatedBackups": True,
        }
        if not spec.skip_final_snapshot:
            params["FinalDBSnapshotIdentifier"] = final_snapshot_name(resource.external_name)
        try:
            response = await self._delete(resource, params)
        except Retryable as error:
            if error.code == CODE_INVALID_STATE and MESSAGE_BEING_DELETED in str(error):
                return Deletion(gone=False, state=STATE_DELETING)
            raise
        if response is None:
            return Deletion(gone=True, state=STATE_DELETED)
        return Deletion(gone=False, state=str(response["DBInstance"].get("DBInstanceStatus", STATE_DELETING)))

    # ------------------------------------------------------------------------ helpers

    async def _delete(self, resource: ManagedResource, params: dict[str, Any]) -> dict[str, Any] | None:
        """DeleteDBInstance. A final snapshot name already taken (by an earlier instance of the
        same name) gets a timestamped one instead; a busy instance is a wait, not an error."""
        async with _busy_is_a_wait(resource, deleting=True):
            try:
                return await self.rds.find("DeleteDBInstance", missing=CODES_NOT_FOUND, **params)
            except Terminal as error:
                if error.code != CODE_SNAPSHOT_EXISTS or "FinalDBSnapshotIdentifier" not in params:
                    raise
                taken = params["FinalDBSnapshotIdentifier"]
                params = {
                    **params,
                    "FinalDBSnapshotIdentifier": final_snapshot_name(
                        resource.external_name, datetime.datetime.now(datetime.UTC)
                    ),
                }
                log.info("final snapshot %s exists already; taking %s", taken, params["FinalDBSnapshotIdentifier"])
                return await self.rds.find("DeleteDBInstance", missing=CODES_NOT_FOUND, **params)

    def _create_parameters(self, resource: ManagedResource) -> dict[str, Any]:
        spec = resource.database
        desired = self.desired(resource)
        params: dict[str, Any] = {
            "DBInstanceIdentifier": resource.external_name,
            "Engine": spec.engine,
            "MasterUsername": spec.master_username,
            "StorageEncrypted": True,
            "CopyTagsToSnapshot": True,
            "Tags": tags_to_list(desired[FIELD_TAGS]),
            **setting_parameters(desired),
        }
        if spec.database_name:
            params["DBName"] = spec.database_name
        params.update(option_parameters(spec.provider_options, OPTIONS))
        return params

    async def _observation(self, resource: ManagedResource, instance: Mapping[str, Any]) -> Observation:
        tags = await self._tags(instance)
        state = str(instance.get("DBInstanceStatus", ""))
        endpoint = instance.get("Endpoint") or {}
        pending = pending_modifications(instance)
        return Observation(
            external_name=resource.external_name,
            state=state,
            ready=is_ready(state),
            owner=owner_from_tags(tags),
            settings=actual_settings(instance, tags),
            drift=instance_drift(self.desired(resource), instance, tags),
            connection=connection_details(instance),
            password_pending=password_pending(instance),
            at_provider={
                "externalName": resource.external_name,
                "provider": PROVIDER_NAME,
                "region": self.settings.region or self.rds.region,
                "state": state,
                "endpoint": f"{endpoint['Address']}:{endpoint.get('Port', '')}" if endpoint.get("Address") else "",
                "arn": instance.get("DBInstanceArn", ""),
                "engineVersion": instance.get("EngineVersion", ""),
                "instanceClass": instance.get("DBInstanceClass", ""),
                # Accepted by RDS, not applied yet (being applied, or waiting for the window).
                "pendingModifications": pending,
            },
        )

    async def _modify(
        self, resource: ManagedResource, desired: Mapping[str, Any], drift: tuple[FieldDrift, ...]
    ) -> dict[str, Any] | None:
        """One ModifyDBInstance with only the drifted settings; None when only tags drifted. A
        storage change RDS refuses for now does not hold back the others: they are sent without
        it, and `NotReady` says what waits and why."""
        fields = {entry.field for entry in drift}
        changes = setting_parameters(desired, fields)
        if not changes:
            return None
        if FIELD_VERSION in fields and self._major_change(resource, drift):
            changes["AllowMajorVersionUpgrade"] = True
        storage = SETTINGS[FIELD_STORAGE].patch
        async with _busy_is_a_wait(resource):
            try:
                response = await self._modify_call(resource, changes)
            except Terminal as error:
                if not is_storage_refusal(error) or storage not in changes:
                    raise
                held = next(d for d in drift if d.field == FIELD_STORAGE)
                waits = MESSAGE_STORAGE_WAITS.format(actual=held.actual, desired=held.desired, aws=error)
                others = {k: v for k, v in changes.items() if k != storage}
                if set(others) <= {"AllowMajorVersionUpgrade"}:
                    raise NotReady(waits, code=error.code) from error
                # The refusal covers the whole request: the other changes go on their own now, and
                # the pass ends waiting, so the spec does not count as applied until storage is.
                sent = ", ".join(row.name for row in PARAMETER_ROWS if row.name in fields and row.name != FIELD_STORAGE)
                await self._modify_call(resource, others)
                raise NotReady(f"{sent} sent; {waits}", code=error.code) from error
        return dict(response["DBInstance"])

    async def _modify_call(self, resource: ManagedResource, changes: Mapping[str, Any]) -> dict[str, Any]:
        # kumo applies a spec change as soon as possible (ApplyImmediately), not in the weekly
        # maintenance window: the spec is the user's request now. Values RDS still holds in
        # PendingModifiedValues count as applied, so nothing is sent twice.
        return await self.rds.call(
            "ModifyDBInstance", DBInstanceIdentifier=resource.external_name, ApplyImmediately=True, **changes
        )

    async def _tags(self, instance: Mapping[str, Any]) -> dict[str, str]:
        # DescribeDBInstances includes TagList; older API answers did not, so ask when absent.
        if "TagList" in instance:
            return tags_to_dict(instance["TagList"])
        response = await self.rds.call("ListTagsForResource", ResourceName=instance["DBInstanceArn"])
        return tags_to_dict(response.get("TagList"))

    async def _arn(self, resource: ManagedResource) -> str:
        response = await self.rds.call("DescribeDBInstances", DBInstanceIdentifier=resource.external_name)
        return str(response["DBInstances"][0]["DBInstanceArn"])

    async def _add_tags(self, arn: str, tags: Mapping[str, str]) -> None:
        # AddTagsToResource merges: tags someone else put on the instance stay.
        await self.rds.call("AddTagsToResource", ResourceName=arn, Tags=tags_to_list(tags))

    @staticmethod
    def _major_change(resource: ManagedResource, drift: tuple[FieldDrift, ...]) -> bool:
        engine = resource.database.engine
        actual = next((str(d.actual or "") for d in drift if d.field == FIELD_VERSION), "")
        return major_version(engine, resource.database.version) != major_version(engine, actual)


@contextlib.asynccontextmanager
async def _busy_is_a_wait(resource: ManagedResource, *, deleting: bool = False) -> AsyncIterator[None]:
    """InvalidDBInstanceState (creating, backing-up, modifying, resetting credentials: AWS takes
    no change then) becomes `NotReady`, a quiet wait; "already being deleted" on delete stays."""
    try:
        yield
    except Retryable as error:
        if isinstance(error, NotReady) or error.code != CODE_INVALID_STATE:
            raise
        if deleting and MESSAGE_BEING_DELETED in str(error):
            raise
        raise NotReady(MESSAGE_BUSY.format(name=resource.external_name, aws=error), code=error.code) from error


def _pending_fields(instance: Mapping[str, Any], fields: set[str]) -> tuple[str, ...]:
    """The fields RDS accepted but has not applied yet."""
    pending = instance.get("PendingModifiedValues") or {}
    return tuple(row.name for row in PARAMETER_ROWS if row.name in fields and row.patch in pending)
