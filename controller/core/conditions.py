"""Status conditions in the standard metav1.Condition shape, and the reasons kumo uses.

Two condition types, as in Crossplane: **Ready** says whether the cloud resource can be used,
**Synced** whether the last reconcile succeeded. `lastTransitionTime` only moves when the status
flips, so re-deriving the same condition produces an identical status and no write.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kumo.api import CONDITION_ORDER


@dataclass(frozen=True)
class Condition:
    type: str
    status: bool | None  # None is "Unknown"
    reason: str
    message: str = ""

    def to_dict(self, generation: int, now: str, previous: Mapping[str, Any] | None) -> dict[str, Any]:
        status = {True: "True", False: "False", None: "Unknown"}[self.status]
        unchanged = previous is not None and previous.get("status") == status
        return {
            "type": self.type,
            "status": status,
            "reason": self.reason,
            "message": self.message[:32768],
            "observedGeneration": generation,
            "lastTransitionTime": previous.get("lastTransitionTime", now) if unchanged and previous else now,
        }


def now_rfc3339() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(current: Iterable[Mapping[str, Any]], updates: Iterable[Condition], generation: int) -> list[dict[str, Any]]:
    """The new conditions list: `updates` replace conditions of the same type, others stay."""
    by_type = {c["type"]: dict(c) for c in current}
    now = now_rfc3339()
    for condition in updates:
        by_type[condition.type] = condition.to_dict(generation, now, by_type.get(condition.type))
    order = {type_: rank for rank, type_ in enumerate(CONDITION_ORDER)}
    return sorted(by_type.values(), key=lambda c: (order.get(c["type"], 9), c["type"]))


def find(conditions: Iterable[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    return next((c for c in conditions if c.get("type") == type_), None)


def is_true(conditions: Iterable[Mapping[str, Any]], type_: str) -> bool:
    found = find(conditions, type_)
    return bool(found and found.get("status") == "True")
