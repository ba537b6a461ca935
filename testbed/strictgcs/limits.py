"""How strict the GCS emulator's rate limits are: GCS's own by default, adjustable by a developer.

`KUMO_STRICT_GCS_BUCKET_UPDATE_INTERVAL` (seconds, float): the least time between two metadata
writes to one bucket; a write sooner is refused with 429. 0 switches the limit off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    """Rate limits, in seconds between requests, of the behaviours the strict layer models."""

    # Cloud Storage "Quotas & limits": "Maximum rate of bucket metadata updates per bucket: One
    # update per second" (https://cloud.google.com/storage/quotas).
    bucket_update_interval: float = 1.0

    @classmethod
    def from_env(cls) -> Limits:
        values = {}
        for item in fields(cls):
            raw = os.environ.get(f"KUMO_STRICT_GCS_{item.name.upper()}")
            if raw is not None:
                values[item.name] = float(raw)
        return cls(**values)
