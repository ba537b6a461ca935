"""`kumo status` explanations, from sample objects (no cluster)."""

from __future__ import annotations

import pytest
from kumo.controller.core.disposition import Timing

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
                [
                    ("Ready", "False", "Creating", ""),
                    ("Synced", "False", "ReconcileError", "cannot create external resource: Throttling: Rate exceeded"),
                ]
            ),
            False,
            "the cloud refused (cannot create external resource): Throttling: Rate exceeded",
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


TARGET_FORMS = [
    ("kind", "database/orders-db", ("Database", "databases", "orders-db")),
    ("as kubectl get kumo prints it", "database.kumo.dev/orders-db", ("Database", "databases", "orders-db")),
    ("plural", "databases/orders-db", ("Database", "databases", "orders-db")),
    ("qualified plural", "databases.kumo.dev/orders-db", ("Database", "databases", "orders-db")),
    ("short name", "kdb/orders-db", ("Database", "databases", "orders-db")),
    ("legacy short name", "db/orders-db", ("Database", "databases", "orders-db")),
    ("Kind as written in a manifest", "Database/orders-db", ("Database", "databases", "orders-db")),
    ("bucket as kubectl prints it", "bucket.kumo.dev/assets", ("Bucket", "buckets", "assets")),
    ("qualified bucket short name", "kbk.kumo.dev/assets", ("Bucket", "buckets", "assets")),
]


@pytest.mark.parametrize(("target", "expected"), [c[1:] for c in TARGET_FORMS], ids=[c[0] for c in TARGET_FORMS])
def test_every_form_kubectl_prints_is_accepted(target, expected):
    """What `kubectl get kumo` prints can be pasted into `kumo status` as it is."""
    assert parse_target(target) == expected


@pytest.mark.parametrize("target", ["database/", "orders-db", "database/a/b", "deployments.apps/orders-db"])
def test_malformed_targets_say_the_forms_that_work(target):
    """Anything else is refused with the forms kubectl prints."""
    with pytest.raises(ValueError, match=r"database\.kumo\.dev/NAME"):
        parse_target(target)


def test_a_provider_config_target_points_at_kubectl():
    """`kubectl get kumo` lists ProviderConfigs too; kumo status says where to look for those."""
    with pytest.raises(ValueError, match=r"kubectl describe providerconfigs\.kumo\.dev/aws"):
        parse_target("providerconfig.kumo.dev/aws")


# conditions -> the one cause the Why line gives
ONE_WHY = [
    (
        "a failed reconcile explains the Creating it leaves",
        [
            ("Ready", "False", "Creating", "waiting for a successful reconcile"),
            ("Synced", "False", "ReconcileError", "AccessDenied"),
        ],
        "AccessDenied",
    ),
    (
        "a refusal explains the Creating it leaves",
        [
            ("Ready", "False", "Creating", "waiting"),
            ("Synced", "False", "OwnedByAnotherResource", "db-1 belongs to b/x"),
        ],
        "db-1 belongs to b/x",
    ),
    (
        "a missing resource is not one that exists but cannot be used",
        [
            ("Ready", "False", "Unavailable", "db-1 no longer exists in the cloud"),
            ("Synced", "True", "ReconcileSuccess", ""),
            ("InSync", "False", "Missing", "db-1 no longer exists in the cloud"),
        ],
        "under driftPolicy Report kumo does not recreate it",
    ),
    (
        "drift of a Ready object",
        [
            ("Ready", "True", "Available", ""),
            ("Synced", "True", "ReconcileSuccess", ""),
            ("InSync", "False", "Drifted", "drifted: storageGB"),
        ],
        "no longer matches the spec",
    ),
    (
        "paused",
        [("Ready", "True", "Available", ""), ("Synced", "False", "Paused", 'kumo.dev/paused is "true"')],
        'kumo.dev/paused is "true"',
    ),
]


@pytest.mark.parametrize(("conditions", "cause"), [c[1:] for c in ONE_WHY], ids=[c[0] for c in ONE_WHY])
def test_exactly_one_why_and_it_is_the_cause(conditions, cause):
    """However many conditions are not True, one Why line names the one that explains the rest."""
    whys = [line for line in explain(_obj(conditions), [], None).lines if line.startswith("Why:")]
    assert len(whys) == 1 and cause in whys[0], whys


def _deleting(message: str | None) -> dict:
    conditions = [("Ready", "True", "Available", "")]
    if message is not None:
        conditions.append(("Synced", "False", "ReconcileError", message))
    obj = _obj(conditions, {"externalName": "shop-orders-1a2b3c4d", "provider": "aws"})
    obj["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return obj


def test_an_object_stuck_deleting_says_so_and_what_to_do():
    """A deletion the cloud refuses (deletion protection) is named as stuck, with how to turn the
    protection off in the cloud (kumo applies no spec change while deleting) or to keep the
    resource and let the object go."""
    refused = "cannot delete external resource: InvalidParameterCombination: Cannot delete protected DB Instance"
    explanation = explain(_deleting(refused), [], None)
    text = render(explanation)
    assert explanation.headline.startswith("Database shop/orders is being deleted")
    assert not explanation.ready
    assert "Why: it is stuck deleting: the cloud refuses to delete shop-orders-1a2b3c4d" in text
    assert "aws rds modify-db-instance --db-instance-identifier shop-orders-1a2b3c4d --no-deletion-protection" in text
    assert "gcloud" not in text and '"deletionPolicy":"Retain"' in text
    assert "kubectl -n shop patch databases.kumo.dev orders" in text
    assert sum(line.startswith("Why:") for line in explanation.lines) == 1


def test_a_deletion_under_way_says_what_it_waits_for():
    """A deletion not refused says kumo deletes (or keeps) the resource, then the object goes."""
    text = render(explain(_deleting(None), [], None))
    assert "Why: it is being deleted; kumo deletes shop-orders-1a2b3c4d" in text and "stuck" not in text


WHOSE_ERROR = [
    ("the cloud's answer", "cannot update external resource: AccessDenied: not authorized", "the cloud refused"),
    ("the cloud's answer to a password", "cannot set master password: InvalidParameterValue", "the cloud refused"),
    (
        "kumo's configuration",
        "cannot connect to provider: spec.providerConfigRef: ProviderConfig 'aws' not found in namespace shop",
        "This is kumo's configuration, not the cloud",
    ),
    ("kumo's Kubernetes write", "cannot publish connection details: Kubernetes API 403 Forbidden", "kumo's own step"),
    ("a bug in kumo", "cannot reconcile: unexpected error: KeyError: 'x'", "a bug in kumo"),
    ("an older controller's message", "Throttling: Rate exceeded", "the last attempt failed: Throttling"),
]


@pytest.mark.parametrize(("message", "says"), [c[1:] for c in WHOSE_ERROR], ids=[c[0] for c in WHOSE_ERROR])
def test_a_failure_says_whose_error_it_is(message, says):
    """The step a failure names says whether the cloud answered or kumo itself could not go on."""
    text = render(explain(_obj([("Synced", "False", "ReconcileError", message)]), [], None))
    assert says in text
    assert ("the cloud refused" in text) == (says == "the cloud refused")


def test_promised_delays_are_the_controllers_own():
    """The retry and sweep delays quoted are the controller's defaults, not restated numbers."""
    timing = Timing()
    invalid = render(explain(_obj([("Synced", "False", "InvalidSpec", "spec.size")]), [], None))
    assert f"about every {timing.terminal_retry / 60:g} minutes" in invalid
    failed = render(
        explain(_obj([("Synced", "False", "ReconcileError", "cannot observe external resource: 5xx")]), [], None)
    )
    assert f"({timing.backoff_first:g} s doubling, at most {timing.backoff_cap / 60:g} minutes)" in failed
    config = "cannot connect to provider: spec.providerConfigRef: ProviderConfig 'aws' not found"
    missing = render(explain(_obj([("Synced", "False", "ReconcileError", config)]), [], None))
    assert (
        f"within seconds ({timing.config_retry_first:g} s doubling, at most {timing.config_retry_cap:g} s)" in missing
    )
