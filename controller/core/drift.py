"""Drift: how a difference between the spec and the cloud is reported, and what is done about it.

`spec.driftPolicy` (or the controller-wide default) decides:

- **Correct** — put the cloud back to the spec (the default);
- **Report** — never touch the cloud, only report: condition InSync=False, `status.drift`, one
  Warning event per newly seen drift;
- **Ignore** — do not compare settings at all.

The same assessment runs whether the observation came from a single reconcile or from a batched
sweep, so both write identical status and the sweep can stay a pure comparison.

`status.drift` holds each value as the JSON value it is (a number, a string, a map of tags), so
`kubectl get -o yaml` and `jq` read it as such. A value too long to read in a status is shortened
the same way each time (`stored_value`), so a steady drift still compares equal. Earlier releases
stored the values as JSON-encoded text (`"20"`, `'"db.t3.micro"'`): such an entry counts as the same
drift when its text is what they would have written, so an upgrade keeps `since`, posts no event,
and rewrites the entry in the new form once.
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

# A value stored in status.drift is at most this much compact JSON (a map of 50 tags fits)...
MAX_STORED_TEXT = 2048
# ... and at most this much of it is quoted in the InSync message, which lists every field.
MAX_MESSAGE_TEXT = 256


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
    entries: list[dict[str, Any]]
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
        desired, actual = stored_value(item.desired, item.actual), stored_value(item.actual, item.desired)
        old = before.get(item.field)
        unchanged = (
            old is not None
            and _same(old.get("actual"), actual, item.actual)
            and _same(old.get("desired"), desired, item.desired)
        )
        if not unchanged:
            new_fields.append(item.field)
        since = str(old.get("since", now)) if unchanged and old else now
        entry = {"field": item.field, "desired": desired, "actual": actual, "since": since}
        # An unset value is left out: status is written as a JSON merge patch, where null means
        # "remove" (RFC 7386), so a null would never be read back and every look would rewrite it.
        entries.append({key: value for key, value in entry.items() if value is not None})
    if not entries:
        return DriftAssessment(cond.Condition(IN_SYNC, True, UP_TO_DATE), [], ())
    summary = ", ".join(
        f"{item.field} (desired {value_text(item.desired)}, actual {value_text(item.actual)}"
        + ("" if item.correctable else f"; {why_uncorrectable(item)}")
        + ")"
        for item in drift
    )
    return DriftAssessment(cond.Condition(IN_SYNC, False, DRIFTED, f"drifted: {summary}"), entries, tuple(new_fields))


def why_uncorrectable(item: FieldDrift) -> str:
    """Why a drifted field stays as it is, for the InSync message and `kumo plan`."""
    return item.reason or "cannot be put back in place: raise the spec to match"


def missing(external_name: str) -> cond.Condition:
    return cond.Condition(IN_SYNC, False, MISSING, f"{external_name} no longer exists in the cloud")


def ignored() -> cond.Condition:
    return cond.Condition(IN_SYNC, None, IGNORED, "spec.driftPolicy is Ignore: settings are not compared")


def value_text(value: Any) -> str:
    """A value as compact JSON text, cut to a readable length: how messages and tables show it."""
    text = _compact(value)
    return text if len(text) <= MAX_MESSAGE_TEXT else text[: MAX_MESSAGE_TEXT - 3] + "..."


def stored_value(value: Any, other: Any = None) -> Any:
    """`value` as a JSON value for status.drift (`other` is the value it is compared with).

    Within MAX_STORED_TEXT it is kept whole. Beyond that a map keeps the keys whose values differ
    from `other` first, then the others in key order, as many as fit, and says how many it left
    out under the key "..."; a list keeps its first items and ends with such a note; a string is
    cut and ends with "...". The same inputs always give the same result.
    """
    # As the API server will return it: tuples become lists, what JSON cannot hold becomes text,
    # and null map values are gone (a JSON merge patch removes them).
    value = _without_nulls(json.loads(_compact(value)))
    if len(_compact(value)) <= MAX_STORED_TEXT:
        return value
    if isinstance(value, dict):
        theirs = json.loads(_compact(other)) if isinstance(other, Mapping) else {}
        differing = sorted(key for key in value if key not in theirs or theirs[key] != value[key])
        kept = _fitting([(key, value[key]) for key in differing + sorted(set(value) - set(differing))])
        return {**dict(kept), OMITTED: f"{len(value) - len(kept)} more keys not shown"}
    if isinstance(value, list):
        items = _fitting(list(enumerate(value)))
        return [item for _, item in items] + [f"{OMITTED} {len(value) - len(items)} more items not shown"]
    if isinstance(value, str):
        return value[: MAX_STORED_TEXT - 3] + "..."
    return value  # a number or a boolean is never that long


OMITTED = "..."


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


def _fitting(pairs: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """The leading pairs whose values fit in MAX_STORED_TEXT together (one too long is skipped)."""
    budget, kept = MAX_STORED_TEXT - 64, []  # room for the note on what was left out
    for key, item in pairs:
        size = len(_compact(key)) + len(_compact(item)) + 2
        if size <= budget:
            kept.append((key, item))
            budget -= size
    return kept


def _same(stored: Any, value: Any, raw: Any) -> bool:
    """`stored` (read from status) records `value`: in this form, or in the JSON text form earlier
    releases wrote (compact JSON of the raw value, cut at 256 characters)."""
    return stored == value or (isinstance(stored, str) and stored == _legacy_text(raw))


def _legacy_text(value: Any) -> str:
    text = _compact(value)
    return text if len(text) <= 256 else text[:253] + "..."


def _compact(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
