"""Drift verdict (controller/core/driftverdict.py): for each policy and situation, which drifted
fields the controller updates, which it only reports, which it cannot correct. One row per
scenario with the reason it exists; the reconciler, the drift sweep and `kumo plan` all call it."""

from __future__ import annotations

import pytest
from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.driftverdict import (
    Absent,
    Situation,
    judge,
    judge_absent,
    settings_digest,
    situation_of,
    spec_changed,
)
from kumo.providers.base import FieldDrift

SIZE = FieldDrift("instanceClass", "db.t3.micro", "db.t3.small")
DISK = FieldDrift("storageGB", 20, 50, correctable=False)  # grown in the cloud: cannot shrink
BOTH = (SIZE, DISK)
CORRECT, REPORT, IGNORE = DriftPolicy.CORRECT, DriftPolicy.REPORT, DriftPolicy.IGNORE


def names(fields):
    return tuple(item.field for item in fields)


# name, situation -> (updated, reported only, uncorrectable, status.drift lists)
C, D = "instanceClass", "storageGB"
# fmt: off
CASES = [
    ("Correct: out-of-band drift is put back", Situation(CORRECT, False), (C,), (), (D,), (D,)),
    ("Report: nothing written, everything reported", Situation(REPORT, False), (), (C,), (D,), (C, D)),
    ("Report: a spec edit is applied all the same", Situation(REPORT, True), (C,), (), (D,), (D,)),
    ("Ignore: not compared", Situation(IGNORE, False), (), (), (), ()),
    ("Ignore: a spec edit is applied, drift still unreported", Situation(IGNORE, True), (C,), (), (D,), ()),
    ("paused: nothing looked at, nothing written", Situation(CORRECT, True, paused=True), (), (), (), ()),
    ("ObserveOnly: reported as under Report", Situation(CORRECT, False, observe_only=True), (), (C,), (D,), (C, D)),
    ("ObserveOnly: a spec edit writes nothing", Situation(CORRECT, True, observe_only=True), (), (C,), (D,), (C, D)),
    ("ObserveOnly overrides Ignore", Situation(IGNORE, False, observe_only=True), (), (C,), (D,), (C, D)),
]
# fmt: on


@pytest.mark.parametrize(
    ("situation", "update", "report_only", "uncorrectable", "reported"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_verdict(situation, update, report_only, uncorrectable, reported):
    verdict = judge(BOTH, situation)
    assert names(verdict.update) == update
    assert names(verdict.report_only) == report_only
    assert names(verdict.uncorrectable) == uncorrectable
    assert names(verdict.reported) == reported
    assert verdict.needs_update == bool(update)


def test_only_uncorrectable_drift_needs_no_update():
    """A grown disk alone never makes a cloud call (there is nothing the cloud can do)."""
    verdict = judge((DISK,), Situation(CORRECT, True))
    assert not verdict.needs_update and names(verdict.reported) == ("storageGB",)


# name, existed (recorded in status), situation -> what happens
# fmt: off
ABSENT = [
    ("never existed: create", False, Situation(REPORT, False), Absent.CREATE),
    ("deleted outside kumo, Correct: recreate", True, Situation(CORRECT, False), Absent.RECREATE),
    ("deleted outside kumo, Ignore: recreate", True, Situation(IGNORE, False), Absent.RECREATE),
    ("deleted outside kumo, Report: reported missing", True, Situation(REPORT, False), Absent.REPORT_MISSING),
    ("deleted outside kumo, Report with a spec edit: recreate", True, Situation(REPORT, True), Absent.RECREATE),
    ("ObserveOnly never creates", False, Situation(CORRECT, True, observe_only=True), Absent.OBSERVE_ONLY),
    ("paused looks at nothing", False, Situation(CORRECT, True, paused=True), Absent.PAUSED),
]
# fmt: on


@pytest.mark.parametrize(("existed", "situation", "absent"), [c[1:] for c in ABSENT], ids=[c[0] for c in ABSENT])
def test_absent(existed, situation, absent):
    assert judge_absent(existed, situation) is absent


def test_situation_is_read_from_the_object():
    """Policy (or the default), spec edit, paused and ObserveOnly come from the object."""
    body = {
        "metadata": {"generation": 3, "annotations": {"kumo.dev/paused": "true"}},
        "spec": {"driftPolicy": "Report", "managementPolicy": "ObserveOnly"},
        "status": {"observedGeneration": 2},
    }
    assert situation_of(body, CORRECT) == Situation(REPORT, True, paused=True, observe_only=True)
    settled = {"metadata": {"generation": 2}, "spec": {}, "status": {"observedGeneration": 2}}
    assert situation_of(settled, IGNORE) == Situation(IGNORE, False)
    assert situation_of({"metadata": {"generation": 1}, "spec": {}}, CORRECT).spec_changed


def _object(generation: int, spec: dict, applied_spec: dict | None, observed: int = 1) -> dict:
    status: dict = {"observedGeneration": observed}
    if applied_spec is not None:
        status["settingsDigest"] = settings_digest(applied_spec)
    return {"metadata": {"generation": generation}, "spec": spec, "status": status}


APPLIED = {"engine": "postgres", "storageGB": 20, "driftPolicy": "Correct", "deletionPolicy": "Delete"}


@pytest.mark.parametrize(
    ("why", "body", "changed"),
    [
        ("nothing new since the last apply", _object(1, APPLIED, APPLIED), False),
        ("a cloud setting edited", _object(2, {**APPLIED, "storageGB": 40}, APPLIED), True),
        (
            "only driftPolicy edited: no request to the cloud",
            _object(2, {**APPLIED, "driftPolicy": "Report"}, APPLIED),
            False,
        ),
        ("only deletionPolicy edited", _object(2, {**APPLIED, "deletionPolicy": "Retain"}, APPLIED), False),
        ("a new generation without a recorded digest (older release)", _object(2, APPLIED, None), True),
        ("a new object, never applied", _object(1, APPLIED, None, observed=0), True),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_spec_changed_means_cloud_settings_changed(why, body, changed):
    assert spec_changed(body) is changed
    assert situation_of(body, CORRECT).spec_changed is changed


def test_switching_to_report_keeps_the_drift_there_is():
    """The issue's case: driftPolicy Correct -> Report while drift exists reports it, never
    reverts it (before, the new generation counted as a spec edit and the whole spec was reapplied)."""
    body = _object(2, {**APPLIED, "driftPolicy": "Report"}, APPLIED)
    verdict = judge((SIZE,), situation_of(body, CORRECT))
    assert not verdict.update and names(verdict.report_only) == ("instanceClass",)
