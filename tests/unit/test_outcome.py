"""Outcomes of reconcile steps and the status write they add up to (controller/core/outcome.py)."""

from __future__ import annotations

from kumo.controller.core import conditions as cond
from kumo.controller.core.outcome import Outcome, Result, Subject, status_patch
from kumo.controller.core.resources import ObjectKey
from kumo.providers.base import Kind

from kumo import api

KEY = ObjectKey(Kind.BUCKET, "team-a", "assets")
READY = cond.Condition(api.READY, True, api.AVAILABLE)
SYNCED = cond.Condition(api.SYNCED, True, api.RECONCILE_SUCCESS)


def subject(status: dict | None = None) -> Subject:
    meta = {"name": "assets", "namespace": "team-a", "uid": "u-1", "generation": 3}
    return Subject(KEY, {"metadata": meta, "spec": {}, "status": status or {}})


def test_later_steps_add_conditions_and_win_where_both_speak():
    """Conditions and events accumulate in order; atProvider, drift and result: the last said;
    one step that cannot have the spec applied yet holds observedGeneration back."""
    first = Outcome(conditions=(READY,), at_provider={"state": "creating"}, spec_applied=False, result=Result(2.0))
    later = Outcome(conditions=(SYNCED,), at_provider={"state": "available"}, published=True)
    total = first + later
    assert total.conditions == (READY, SYNCED) and total.at_provider == {"state": "available"}
    assert total.published and not total.spec_applied and total.result == Result(2.0)


def test_a_pass_that_changes_nothing_writes_nothing():
    report = Outcome(conditions=(READY, SYNCED), at_provider={"externalName": "b-1", "state": "available"})
    written = status_patch(subject(), report)
    assert written is not None and written["observedGeneration"] == 3
    assert written["connectionSecret"] == "assets-bucket"
    assert status_patch(subject(written), report) is None


def test_a_failed_sync_keeps_the_observed_generation():
    failed = cond.Condition(api.SYNCED, False, api.RECONCILE_ERROR, "cannot create external resource: quota")
    written = status_patch(subject({"observedGeneration": 2}), Outcome(conditions=(failed,)))
    assert written is not None and written["observedGeneration"] == 2
