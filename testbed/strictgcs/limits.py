"""How strict the GCS emulator's rate limits are: GCS's own by default, adjustable by a developer.

`KUMO_STRICT_GCS_BUCKET_UPDATE_INTERVAL` (seconds, float): the least time between two metadata
writes to one bucket; a write sooner is refused with 429. 0 switches the limit off.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..tuning import tuning_from_env


@dataclass(frozen=True)
class Limits:
    """Rate limits, in seconds between requests, of the behaviours the strict layer models."""

    # Cloud Storage "Quotas & limits": "Maximum rate of bucket metadata updates per bucket: One
    # update per second" (https://cloud.google.com/storage/quotas).
    bucket_update_interval: float = 1.0

    @classmethod
    def from_env(cls) -> Limits:
        return tuning_from_env(cls, "KUMO_STRICT_GCS_")
