"""`kumo status` explanations, from sample objects (no cluster)."""

from __future__ import annotations

import pytest

from kumo.status import explain, parse_target, render


def _obj(conditions=None, at=None, generation=1, observed=1, **spec):
    status = {"observedGeneration": observed, "atProvider": at or {}}
    if conditions is not None:
        status["conditions"] = [
            {"type": t, "status": s, "reason": r, "message": m, "lastTransitionTime": "2026-01-01T00:00:00Z"}
            for t, s, r, m in conditions
        ]
    return {
        "kind": "Database",
        "metadata": {"name": "orders", "namespace": "shop", "generation": generation},
        "spec": spec,
        "status": status,
    }


@pytest.mark.parametrize(
    ("obj", "ready", "says"),
    [
        (_obj(), False, "has not reported on it yet"),
        (
            _obj([("Ready", "False", "Creating", "cloud state: creating")], {"state": "creating"}),
            False,
            "still creating it (cloud state: creating)",
        ),
        (
            _obj(
                [("Ready", "False", "Creating", ""), ("Synced", "False", "ReconcileError", "Throttling: Rate exceeded")]
            ),
            False,
            "failed with the cloud's message: Throttling: Rate exceeded",
        ),
        (
            _obj([("Synced", "False", "InvalidSpec", "spec.instanceClass: unknown")]),
            False,
            "refused the spec before calling the cloud: spec.instanceClass",
        ),
        (
            _obj([("Synced", "False", "OwnedByAnotherResource", "db-1 belongs to team-b/x")]),
            False,
            "never modifies or deletes what another object owns",
        ),
        (
            _obj([("Ready", "True", "Available", ""), ("InSync", "False", "Drifted", "drifted: storageGB")]),
            True,
            "no longer matches the spec: drifted: storageGB",
        ),
        (_obj([("Ready", "True", "Available", "")], generation=3, observed=2), True, "generation 3 is not applied yet"),
    ],
    ids=[
        "never-reconciled",
        "creating",
        "cloud-error",
        "invalid-spec",
        "owned-by-another",
        "drifted",
        "stale-generation",
    ],
)
def test_explanations_name_the_cause_in_plain_words(obj, ready, says):
    """Each situation a user asks about gets its own plain-words reason."""
    explanation = explain(obj, [], None)
    assert explanation.ready is ready
    assert says in render(explanation)


def test_secret_is_shown_by_key_names_only():
    """The Secret line lists key names, never values; events are listed newest last."""
    obj = _obj([("Ready", "True", "Available", "")])
    events = [{"type": "Normal", "reason": "CreatedExternalResource", "message": "Creating database x"}]
    text = render(explain(obj, events, ["host", "password", "uri"]))
    assert "keys host, password, uri" in text and "CreatedExternalResource" in text


@pytest.mark.parametrize(
    ("target", "expected"),
    [("database/orders", ("Database", "databases", "orders")), ("kbk/assets", ("Bucket", "buckets", "assets"))],
    ids=["kind-name", "short-name"],
)
def test_targets_accept_kinds_and_short_names(target, expected):
    """KIND/NAME takes kinds, plurals and the CRDs' short names."""
    assert parse_target(target) == expected


def test_bad_target_says_what_is_expected():
    """A malformed target is refused with the expected form."""
    with pytest.raises(ValueError, match="KIND/NAME"):
        parse_target("pods/x")
