"""How long the strict AWS layer makes things take: short in tests, realistic when asked.

Every duration is read from a `KUMO_STRICT_AWS_*` variable (seconds, float) so `make test`
keeps its waits short while a developer can slow the bed down to watch a controller cope.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuning_from_env


@dataclass(frozen=True)
class Timings:
    """Durations, in seconds, of the state changes the strict layer models."""

    # RDS (see testbed/strictaws/rds.py and docs/testbed.md for the AWS sources)
    rds_creating: float = 1.0  # `creating`, no endpoint yet
    rds_backing_up: float = 3.0  # the first automated backup after `creating` (no modification then)
    rds_modify_start: float = 0.5  # accepted changes wait in PendingModifiedValues, status still available
    rds_modifying: float = 1.0  # `modifying` while they are applied
    rds_password_reset: float = 1.0  # `resetting-master-credentials`
    rds_storage_optimization: float = 2.0  # `storage-optimization` after a storage change
    rds_storage_cooldown: float = 15.0  # no new storage change this long after one (six hours on AWS)
    rds_maintenance_window: float = 3600.0  # changes sent without ApplyImmediately wait this long
    # S3 (see testbed/strictaws/s3.py and docs/testbed.md for the AWS sources)
    s3_name_reuse_delay: float = 1.0  # OperationAborted for a CreateBucket this soon after DeleteBucket

    @classmethod
    def from_env(cls) -> Timings:
        return tuning_from_env(cls, "KUMO_STRICT_AWS_")
