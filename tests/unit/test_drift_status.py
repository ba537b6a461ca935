"""status.drift entries: JSON values, a stable shortening of long ones, and the JSON-text form
that earlier releases stored read as the same drift."""

from __future__ import annotations

import json

from kumo.controller.core import drift
from kumo.providers.base import FieldDrift

EARLIER, NOW = "2025-01-02T03:04:05Z", "2026-11-28T10:00:00Z"
TAGS_DESIRED = {"team": "payments", "kumo.dev/owner-name": "orders-db"}
TAGS_ACTUAL = {"team": "billing", "kumo.dev/owner-name": "orders-db"}
DRIFT = (
    FieldDrift("storageGB", 20, 30, correctable=False),
    FieldDrift("instanceClass", "db.t3.micro", "db.t3.small"),
    FieldDrift("tags", TAGS_DESIRED, TAGS_ACTUAL),
    FieldDrift("versioning", True, False),
)


def test_values_are_stored_as_json_values_of_their_own_type() -> None:
    assessment = drift.assess(DRIFT, [], NOW)
    assert assessment.entries == [
        {"field": "storageGB", "desired": 20, "actual": 30, "since": NOW},
        {"field": "instanceClass", "desired": "db.t3.micro", "actual": "db.t3.small", "since": NOW},
        {"field": "tags", "desired": TAGS_DESIRED, "actual": TAGS_ACTUAL, "since": NOW},
        {"field": "versioning", "desired": True, "actual": False, "since": NOW},
    ]
    assert assessment.new_fields == ("storageGB", "instanceClass", "tags", "versioning")
    # The message still quotes each value as JSON text, as before.
    assert 'instanceClass (desired "db.t3.micro", actual "db.t3.small")' in assessment.condition.message
    assert "storageGB (desired 20, actual 30; cannot be put back in place" in assessment.condition.message


def test_steady_drift_as_read_back_from_the_api_server_is_unchanged() -> None:
    """What the API server returns (the entries through JSON) compares equal: no write, no event."""
    first = drift.assess(DRIFT, [], EARLIER)
    read_back = json.loads(json.dumps(first.entries))
    again = drift.assess(DRIFT, read_back, NOW)
    assert again.entries == read_back and again.new_fields == ()


def test_entries_in_the_earlier_json_text_form_are_the_same_drift() -> None:
    old_form = [
        {"field": "storageGB", "desired": "20", "actual": "30", "since": EARLIER},
        {"field": "instanceClass", "desired": '"db.t3.micro"', "actual": '"db.t3.small"', "since": EARLIER},
        {
            "field": "tags",
            "desired": json.dumps(TAGS_DESIRED, sort_keys=True, separators=(",", ":")),
            "actual": json.dumps(TAGS_ACTUAL, sort_keys=True, separators=(",", ":")),
            "since": EARLIER,
        },
        {"field": "versioning", "desired": "true", "actual": "false", "since": EARLIER},
    ]
    assessment = drift.assess(DRIFT, old_form, NOW)
    assert assessment.new_fields == ()
    assert [entry["since"] for entry in assessment.entries] == [EARLIER] * 4
    assert assessment.entries == drift.assess(DRIFT, [], EARLIER).entries  # rewritten in the new form


def test_an_old_form_entry_with_another_actual_value_is_new_drift() -> None:
    old_form = [{"field": "storageGB", "desired": "20", "actual": "25", "since": EARLIER}]
    assessment = drift.assess(DRIFT[:1], old_form, NOW)
    assert assessment.new_fields == ("storageGB",) and assessment.entries[0]["since"] == NOW


def test_an_old_form_entry_cut_at_256_characters_is_still_recognised() -> None:
    desired = {f"key-{i:03}": "x" * 20 for i in range(20)}
    actual = {**desired, "key-000": "changed"}
    text = json.dumps(actual, sort_keys=True, separators=(",", ":"))
    assert len(text) > 256
    old_form = [
        {
            "field": "tags",
            "desired": json.dumps(desired, sort_keys=True, separators=(",", ":"))[:253] + "...",
            "actual": text[:253] + "...",
            "since": EARLIER,
        }
    ]
    assessment = drift.assess([FieldDrift("tags", desired, actual)], old_form, NOW)
    assert assessment.new_fields == () and assessment.entries[0]["actual"] == actual


def test_a_long_map_keeps_the_differing_keys_and_counts_the_rest() -> None:
    desired = {f"tag-{i:03}": "v" * 40 for i in range(100)}
    actual = {**desired, "tag-099": "changed", "zz-extra": "added"}
    del actual["tag-050"]
    stored = drift.stored_value(actual, desired)
    assert len(json.dumps(stored, separators=(",", ":"))) <= drift.MAX_STORED_TEXT
    assert stored["tag-099"] == "changed" and stored["zz-extra"] == "added"
    kept = len(stored) - 1
    assert stored[drift.OMITTED] == f"{len(actual) - kept} more keys not shown"
    assert drift.stored_value(actual, desired) == stored  # the same every time: a steady drift stays equal
    shown_desired = drift.stored_value(desired, actual)
    assert shown_desired["tag-050"] == desired["tag-050"] and shown_desired["tag-099"] == desired["tag-099"]


def test_long_lists_and_strings_are_shortened_with_a_note() -> None:
    items = [f"item-{i:04}" for i in range(500)]
    stored = drift.stored_value(items)
    assert stored[: len(stored) - 1] == items[: len(stored) - 1]
    assert stored[-1] == f"{drift.OMITTED} {500 - (len(stored) - 1)} more items not shown"
    text = drift.stored_value("y" * 5000)
    assert len(text) == drift.MAX_STORED_TEXT and text.endswith("...")
    assert drift.stored_value((1, 2)) == [1, 2]  # what JSON can hold, as the API server returns it


def test_unset_values_are_left_out_as_the_merge_patch_of_status_would() -> None:
    """status is written as a JSON merge patch, where null removes a key: an entry holding a null
    would read back without it, differ, and be rewritten at every look."""
    assessment = drift.assess([FieldDrift("lifecycleExpireDays", 30, None)], [], NOW)
    assert assessment.entries == [{"field": "lifecycleExpireDays", "desired": 30, "since": NOW}]
    again = drift.assess([FieldDrift("lifecycleExpireDays", 30, None)], assessment.entries, NOW)
    assert again.entries == assessment.entries and again.new_fields == ()
    assert drift.stored_value({"algorithm": "aws:kms", "keyId": None}) == {"algorithm": "aws:kms"}
    old_form = [{"field": "lifecycleExpireDays", "desired": "30", "actual": "null", "since": EARLIER}]
    assert drift.assess([FieldDrift("lifecycleExpireDays", 30, None)], old_form, NOW).new_fields == ()
