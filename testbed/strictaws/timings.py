"""How long the strict AWS layer makes things take: short in tests, realistic when asked.

Every duration is read from a `KUMO_STRICT_AWS_*` variable (seconds, float) so `make test`
keeps its waits short while a developer can slow the bed down to watch a controller cope.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Timings:
    """Durations, in seconds, of the state changes the strict layer models."""

    # S3 (see testbed/strictaws/s3.py and docs/testbed.md for the AWS sources)
    s3_name_reuse_delay: float = 1.0  # OperationAborted for a CreateBucket this soon after DeleteBucket

    @classmethod
    def from_env(cls) -> Timings:
        values = {}
        for item in fields(cls):
            raw = os.environ.get(f"KUMO_STRICT_AWS_{item.name.upper()}")
            if raw is not None:
                values[item.name] = float(raw)
        return cls(**values)
