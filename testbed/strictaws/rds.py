"""The strict RDS layer: DB instances that take time, hold modifications and refuse while busy.

moto makes an instance `available` the moment CreateDBInstance returns, applies every
ModifyDBInstance at once, never fills `PendingModifiedValues`, and lets any instance be modified
or snapshotted in any state. AWS does none of that, and controllers that were only ever tested
against moto break on it. This module patches moto's RDS models in the bed's own moto process
(`install`) so that each DB instance carries a `Lifecycle`: a timeline of statuses and the
changes waiting to be applied. Time only moves when someone looks: every read of an instance's
status first advances its timeline to now, so there is no background thread.

What is modelled, each with the public source it is taken from (also in docs/testbed.md):

- `creating` -> `backing-up` -> `available`, no `Endpoint` while creating. AWS: "DB instance
  status" table, https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/accessing-monitoring.html
  (the first automated backup runs right after creation; the endpoint is assigned once the
  instance leaves `creating`).
- ModifyDBInstance holds the changes in `PendingModifiedValues`; with `ApplyImmediately` they are
  applied "asynchronously ... as soon as possible" (status `modifying` meanwhile), without it "during
  the next maintenance window" (here: `rds_maintenance_window` seconds after the request). AWS:
  ModifyDBInstance API reference, parameter ApplyImmediately,
  https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html
- Changes AWS applies as soon as possible whatever `ApplyImmediately` says: `MasterUserPassword`
  ("asynchronously applied as soon as possible. Between the time of the request and the completion
  of the request, the MasterUserPassword element exists in the PendingModifiedValues element"; status
  `resetting-master-credentials`), `BackupRetentionPeriod` from one non-zero value to another, and
  `PubliclyAccessible` / `DeletionProtection` (applied at once). Same API reference page.
- `InvalidDBInstanceState` "Database instance is not in available state." for a modify while the
  instance is busy (creating, backing-up, modifying, resetting credentials): the answer AWS gave
  in hashicorp/terraform-provider-aws#31594 for a ModifyDBInstance sent right after creation.
- DeleteDBInstance with a final snapshot while the instance is busy: `InvalidDBInstanceState`
  "Instance <id> is currently <status> - a final snapshot cannot be taken.", the text CloudFormation
  stack rollbacks report for an instance still creating (grucloud/grucloud retries its
  DeleteDBInstance on exactly this message). A delete that skips the final snapshot is accepted in
  any state, as on AWS.
- A storage change within `rds_storage_cooldown` of the previous one (six hours on AWS) or during
  `storage-optimization`: `InvalidParameterCombination` "You can't currently modify the storage of
  this DB instance because the previous storage change is being optimized." AWS: "Scaling up DB
  instance storage" ("You can't make further storage modifications for either six (6) hours or
  until storage optimization has completed on the instance, whichever is longer"),
  https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_PIOPS.ModifyingExisting.ScalingUp.html;
  the message as AWS returned it in hashicorp/terraform-provider-aws#12493. The whole request is
  refused: other changes sent with it are not applied either. Other modifications are accepted
  during `storage-optimization` (https://repost.aws/knowledge-center/rds-stuck-in-storage-optimization:
  "you can perform any other instance modifications, such as scaling instance size").
- `DBSnapshotAlreadyExists` when DeleteDBInstance's FinalDBSnapshotIdentifier names an existing
  snapshot: moto already refuses it with AWS's message (cloud-custodian/cloud-custodian#309,
  terraform-aws-modules/terraform-aws-rds#445); this layer keeps that answer and gives it before
  the busy-state one (either refusal leaves the instance and the snapshots untouched).
- A PreferredMaintenanceWindow that wraps the week ("sun:23:30-mon:00:30") is accepted like any
  other of 30 minutes to 24 hours; moto measures it as negative and refuses it as longer than 24
  hours. AWS: ModifyDBInstance API reference, PreferredMaintenanceWindow (the format
  `ddd:hh24:mi-ddd:hh24:mi`, at least 30 minutes; the AWS CLI's own example is Sun:23:45-Mon:00:15).
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .timings import Timings

WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAYS = "|".join(WEEK)
AVAILABLE = "available"
CREATING = "creating"
BACKING_UP = "backing-up"
MODIFYING = "modifying"
RESETTING = "resetting-master-credentials"
STORAGE_OPTIMIZATION = "storage-optimization"
# States in which AWS accepts a ModifyDBInstance / a final snapshot.
MODIFIABLE = frozenset({AVAILABLE, STORAGE_OPTIMIZATION})

MESSAGE_NOT_AVAILABLE = "Database instance is not in available state."
MESSAGE_NO_FINAL_SNAPSHOT = "Instance {name} is currently {status} - a final snapshot cannot be taken."
MESSAGE_STORAGE_OPTIMIZING = (
    "You can't currently modify the storage of this DB instance because the previous storage change is being optimized."
)
PASSWORD_MASK = "****"  # noqa: S105 - DescribeDBInstances never returns a password, pending or not

# ModifyDBInstance arguments (moto's snake_case) that AWS holds in PendingModifiedValues, and the
# key each is reported under there.
PENDING_KEYS = {
    "db_instance_class": "DBInstanceClass",
    "allocated_storage": "AllocatedStorage",
    "multi_az": "MultiAZ",
    "engine_version": "EngineVersion",
    "backup_retention_period": "BackupRetentionPeriod",
    "master_user_password": "MasterUserPassword",
    "iops": "Iops",
    "storage_type": "StorageType",
    "storage_throughput": "StorageThroughput",
}
STORAGE_KEYS = ("allocated_storage", "iops", "storage_type", "storage_throughput")
PASSWORD_KEY = "master_user_password"  # noqa: S105 - an argument name


@dataclass
class Phase:
    """One busy stretch of an instance's timeline; `changes` are applied when it ends."""

    status: str
    until: float
    changes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Lifecycle:
    """An instance's timeline: the busy phases ahead, and the changes not yet started."""

    phases: list[Phase]
    # moto argument -> (value, when AWS starts applying it)
    pending: dict[str, tuple[Any, float]] = field(default_factory=dict)
    storage_blocked_until: float = 0.0

    def status(self) -> str:
        return self.phases[0].status if self.phases else AVAILABLE

    def pending_values(self) -> dict[str, Any]:
        """PendingModifiedValues: waiting changes and those being applied right now."""
        values = {key: value for key, (value, _) in self.pending.items()}
        for phase in self.phases:
            values.update(phase.changes)
        shown = {PENDING_KEYS[key]: value for key, value in values.items() if key in PENDING_KEYS}
        if "MasterUserPassword" in shown:
            shown["MasterUserPassword"] = PASSWORD_MASK
        return shown


class StrictRDS:
    """The timelines of every DB instance in this moto process, and the rules that use them."""

    def __init__(self, timings: Timings, clock: Callable[[], float] = time.monotonic) -> None:
        self.timings = timings
        self.clock = clock
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ the timeline

    def created(self, instance: Any) -> None:
        now = self.clock()
        creating_until = now + self.timings.rds_creating
        instance._kumo_lifecycle = Lifecycle(
            phases=[
                Phase(CREATING, creating_until),
                Phase(BACKING_UP, creating_until + self.timings.rds_backing_up),
            ]
        )

    def advance(self, instance: Any) -> Lifecycle | None:
        """Move the instance's timeline to now, applying what finished on the way."""
        life: Lifecycle | None = getattr(instance, "_kumo_lifecycle", None)
        if life is None:
            return None
        now = self.clock()
        with self.lock:
            cursor = 0.0  # when the last finished phase ended
            while True:
                if life.phases:
                    phase = life.phases[0]
                    if phase.until > now:
                        break
                    life.phases.pop(0)
                    self._apply(instance, life, phase)
                    cursor = phase.until
                    continue
                due = {key: entry for key, entry in life.pending.items() if entry[1] <= now}
                if not due:
                    break
                for key in due:
                    del life.pending[key]
                start = max(min(when for _, when in due.values()), cursor)
                self._start(life, {key: value for key, (value, _) in due.items()}, start)
            return life

    def _start(self, life: Lifecycle, due: dict[str, Any], start: float) -> None:
        """Changes whose time has come: `modifying` for the settings, then credentials."""
        password = {PASSWORD_KEY: due.pop(PASSWORD_KEY)} if PASSWORD_KEY in due else {}
        until = start
        if due:
            until += self.timings.rds_modifying
            life.phases.append(Phase(MODIFYING, until, due))
        if password:
            life.phases.append(Phase(RESETTING, until + self.timings.rds_password_reset, password))

    def _apply(self, instance: Any, life: Lifecycle, phase: Phase) -> None:
        if not phase.changes:
            return
        for key, value in phase.changes.items():
            setattr(instance, key, value)
        if any(key in STORAGE_KEYS for key in phase.changes):
            optimized = phase.until + self.timings.rds_storage_optimization
            life.phases.insert(0, Phase(STORAGE_OPTIMIZATION, optimized))
            life.storage_blocked_until = max(optimized, phase.until + self.timings.rds_storage_cooldown)

    # ------------------------------------------------------------------ the rules

    def check_modify(self, instance: Any, requested: dict[str, Any]) -> dict[str, Any]:
        """Refuse what AWS refuses; return the arguments moto may apply at once (the rest is
        recorded as pending by `hold`)."""
        life = self.advance(instance)
        if life is None:
            return requested
        if life.status() not in MODIFIABLE:
            raise _error("InvalidDBInstanceStateFault", MESSAGE_NOT_AVAILABLE)
        storage = [k for k in STORAGE_KEYS if requested.get(k) is not None and requested[k] != _current(instance, k)]
        if storage and (life.status() == STORAGE_OPTIMIZATION or self.clock() < life.storage_blocked_until):
            raise _error("InvalidParameterCombination", MESSAGE_STORAGE_OPTIMIZING)
        return {k: v for k, v in requested.items() if k not in PENDING_KEYS or v is None}

    def hold(self, instance: Any, requested: dict[str, Any]) -> None:
        """Record the accepted changes in PendingModifiedValues with the time each starts."""
        life = self.advance(instance)
        if life is None:
            return
        now = self.clock()
        soon = now + self.timings.rds_modify_start
        immediately = bool(requested.get("apply_immediately"))
        window = now + self.timings.rds_maintenance_window
        with self.lock:
            if immediately:  # "the modifications in this request and any pending modifications"
                life.pending = {key: (value, min(when, soon)) for key, (value, when) in life.pending.items()}
            for key, value in requested.items():
                if key not in PENDING_KEYS or value is None:
                    continue
                if key != PASSWORD_KEY and value == _current(instance, key):
                    continue  # nothing to change (what AWS does then to another pending value is not modelled)
                starts = soon if immediately or _as_soon_as_possible(instance, key, value) else window
                life.pending[key] = (value, starts)

    def check_delete(self, instance: Any, final_snapshot: str | None, skip_final_snapshot: bool) -> None:
        life = self.advance(instance)
        if life is None or skip_final_snapshot or not final_snapshot:
            return
        if life.status() not in MODIFIABLE:
            message = MESSAGE_NO_FINAL_SNAPSHOT.format(name=instance.db_instance_identifier, status=life.status())
            raise _error("InvalidDBInstanceStateFault", message)


def _as_soon_as_possible(instance: Any, key: str, value: Any) -> bool:
    """Changes AWS applies as soon as possible even without ApplyImmediately."""
    if key == PASSWORD_KEY:
        return True
    if key == "backup_retention_period":  # non-zero to non-zero; enabling or disabling waits
        return bool(value) and bool(_current(instance, key))
    return False


def _current(instance: Any, key: str) -> Any:
    return None if key == PASSWORD_KEY else getattr(instance, key, None)  # moto refuses to read it back


def _error(code: str, message: str) -> Exception:
    from moto.rds.exceptions import RDSClientError

    return RDSClientError(code, message)


# ---------------------------------------------------------------------------- moto patches


def install(timings: Timings) -> None:
    """Patch moto's RDS backend and DBInstance in this process (idempotent per process)."""
    from moto.rds import models

    if getattr(models.RDSBackend, "_kumo_strict", None) is not None:
        return
    strict = StrictRDS(timings)
    backend, instance_class = models.RDSBackend, models.DBInstance
    backend._kumo_strict = strict  # type: ignore[attr-defined]
    _patch_instance(instance_class, strict)
    _patch_backend(backend, strict)
    models.valid_preferred_maintenance_window = _week_wrapping(models.valid_preferred_maintenance_window)  # type: ignore[assignment]


def _week_wrapping(moto_check: Callable[[Any, Any], str | None]) -> Callable[[Any, Any], str | None]:
    """moto's window check, given a week-wrapping window one day earlier (sun-mon becomes
    sat-sun): the same length and times of day, so its length and backup-overlap checks hold."""

    def check(maintenance_window: Any, backup_window: Any) -> str | None:
        window = str(maintenance_window or "").lower()
        days = re.fullmatch(rf"({_DAYS}):(\d\d:\d\d)-({_DAYS}):(\d\d:\d\d)", window)
        if days and WEEK.index(days[3]) < WEEK.index(days[1]):
            earlier = [WEEK[WEEK.index(days[1]) - 1], days[2], WEEK[WEEK.index(days[3]) - 1], days[4]]
            maintenance_window = "{}:{}-{}:{}".format(*earlier)
        return moto_check(maintenance_window, backup_window)

    return check


def _patch_instance(cls: Any, strict: StrictRDS) -> None:
    moto_endpoint = cls.endpoint

    def get_status(self: Any) -> str:
        moto_status = self.__dict__.get("_kumo_moto_status", AVAILABLE)
        life = strict.advance(self)
        if life is None or moto_status != AVAILABLE:
            return str(moto_status)  # moto's own word wins for what it models (deleting, stopped)
        return life.status()

    def set_status(self: Any, value: str) -> None:
        self.__dict__["_kumo_moto_status"] = value

    def endpoint(self: Any) -> dict[str, Any] | None:
        # AWS assigns the endpoint once the instance leaves `creating`.
        return None if self.status == CREATING else moto_endpoint.fget(self)

    def pending_modified_values(self: Any) -> dict[str, Any]:
        life = strict.advance(self)
        return life.pending_values() if life else {}

    cls.status = property(get_status, set_status)
    cls.endpoint = property(endpoint)
    cls.pending_modified_values = property(pending_modified_values)


def _patch_backend(cls: Any, strict: StrictRDS) -> None:
    moto_create, moto_modify, moto_delete = cls.create_db_instance, cls.modify_db_instance, cls.delete_db_instance
    moto_describe = cls.describe_db_instances

    def describe_db_instances(self: Any, *args: Any, **kwargs: Any) -> Any:
        # Advance every timeline before the answer is written: the serializer reads the settings
        # before the status, so a change that finished meanwhile must be applied first.
        instances = moto_describe(self, *args, **kwargs)
        for instance in instances:
            strict.advance(instance)
        return instances

    def create_db_instance(self: Any, db_kwargs: dict[str, Any]) -> Any:
        instance = moto_create(self, db_kwargs)
        if db_kwargs.get("db_cluster_identifier") is None:  # Aurora members are out of scope
            strict.created(instance)
        return instance

    def modify_db_instance(self: Any, db_instance_identifier: str, db_kwargs: dict[str, Any]) -> Any:
        instance = self.describe_db_instances(db_instance_identifier)[0]
        with strict.lock:
            at_once = strict.check_modify(instance, db_kwargs)
            modified = moto_modify(self, db_instance_identifier, at_once)
            strict.hold(modified, db_kwargs)
        return modified

    def delete_db_instance(
        self: Any,
        db_instance_identifier: str,
        final_db_snapshot_identifier: str | None = None,
        skip_final_snapshot: bool | None = False,
        delete_automated_backups: bool | None = True,
    ) -> Any:
        instance = self.databases.get(db_instance_identifier)
        if instance is not None:
            final = final_db_snapshot_identifier if not skip_final_snapshot else None
            if final and final in self.database_snapshots:
                from moto.rds.exceptions import DBSnapshotAlreadyExistsError

                raise DBSnapshotAlreadyExistsError(final)
            strict.check_delete(instance, final_db_snapshot_identifier, bool(skip_final_snapshot))
        return moto_delete(
            self, db_instance_identifier, final_db_snapshot_identifier, skip_final_snapshot, delete_automated_backups
        )

    cls.describe_db_instances = describe_db_instances
    cls.create_db_instance = create_db_instance
    cls.modify_db_instance = modify_db_instance
    cls.delete_db_instance = delete_db_instance


def wrap(app: Any) -> Any:
    """Nothing RDS needs is judged from the request itself."""
    return app
