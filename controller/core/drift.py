"""Drift: how a difference between the spec and the cloud is reported, and what is done about it.

`spec.driftPolicy` (or the controller-wide default) decides:

- **Correct** — put the cloud back to the spec (the default);
- **Report** — never touch the cloud, only report: condition InSync=False, `status.drift`, one
  Warning event per newly seen drift;
- **Ignore** — do not compare settings at all.

The same assessment runs whether the observation came from a single reconcile or from a batched
sweep, so both write identical status and the sweep can stay a pure comparison.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core import conditions as cond
from kumo.providers.base import FieldDrift

from kumo.api import DRIFTED, IGNORED, IN_SYNC, MISSING, UP_TO_DATE

MAX_VALUE_TEXT = 256


class DriftPolicy(enum.StrEnum):
    CORRECT = "Correct"
    REPORT = "Report"
    IGNORE = "Ignore"


def policy_of(body: Mapping[str, Any], default: DriftPolicy) -> DriftPolicy:
    value = (body.get("spec") or {}).get("driftPolicy")
    return DriftPolicy(value) if value else default


@dataclass(frozen=True)
class DriftAssessment:
    """The InSync condition and `status.drift` entries for one observation."""

    condition: cond.Condition
    entries: list[dict[str, str]]
    new_fields: tuple[str, ...]  # drifted now and not reported before: worth one event

    @property
    def drifted(self) -> bool:
        return bool(self.entries)


def assess(drift: Iterable[FieldDrift], previous: Iterable[Mapping[str, Any]], now: str) -> DriftAssessment:
    """Compare the drift seen now with what status already reports.

    An entry keeps its `since` while the same field stays drifted to the same actual value, so
    a steady drift produces identical status (no write) and no repeated event.
    """
    drift = tuple(drift)
    before = {entry.get("field"): entry for entry in previous}
    entries, new_fields = [], []
    for item in drift:
        desired, actual = _text(item.desired), _text(item.actual)
        old = before.get(item.field)
        unchanged = old is not None and old.get("actual") == actual and old.get("desired") == desired
        if not unchanged:
            new_fields.append(item.field)
        since = str(old.get("since", now)) if unchanged and old else now
        entries.append({"field": item.field, "desired": desired, "actual": actual, "since": since})
    if not entries:
        return DriftAssessment(cond.Condition(IN_SYNC, True, UP_TO_DATE), [], ())
    why = {item.field: why_uncorrectable(item) for item in drift if not item.correctable}
    summary = ", ".join(
        f"{e['field']} (desired {e['desired']}, actual {e['actual']}"
        + (f"; {why[e['field']]}" if e["field"] in why else "")
        + ")"
        for e in entries
    )
    return DriftAssessment(cond.Condition(IN_SYNC, False, DRIFTED, f"drifted: {summary}"), entries, tuple(new_fields))


def why_uncorrectable(item: FieldDrift) -> str:
    """Why a drifted field stays as it is, for the InSync message and `kumo plan`."""
    return item.reason or "cannot be put back in place: raise the spec to match"


def missing(external_name: str) -> cond.Condition:
    return cond.Condition(IN_SYNC, False, MISSING, f"{external_name} no longer exists in the cloud")


def ignored() -> cond.Condition:
    return cond.Condition(IN_SYNC, None, IGNORED, "spec.driftPolicy is Ignore: settings are not compared")


def _text(value: Any) -> str:
    """Values as compact JSON text (the CRD stores them as strings), cut to a readable length."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return text if len(text) <= MAX_VALUE_TEXT else text[: MAX_VALUE_TEXT - 3] + "..."
