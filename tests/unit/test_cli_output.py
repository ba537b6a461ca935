"""`kumo drift` and `kumo plan` without a server: what status and observations turn into (rows,
actions, fields), how the table and the JSON read, and which exit code each outcome gives."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

import kopf
import pytest
from kumo.controller.core.resources import managed_resource
from kumo.controller.runtime.kube import KubeClient
from kumo.controller.runtime.kubehttp import KubeHTTP
from kumo.providers.aws import rds, s3
from kumo.providers.base import FieldDrift, Kind, Observation, Ownership
from kumo.providers.gcp import cloudsql, gcs

from kumo import cli
from kumo.driftreport import (
    EXIT_DRIFTED,
    EXIT_IN_SYNC,
    DriftEntry,
    DriftReport,
    ObjectDrift,
    build_report,
    object_drift,
)
from kumo.driftreport import render_json as drift_json
from kumo.driftreport import render_table as drift_table
from kumo.plan import (
    CANNOT_CORRECT,
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_NO_CHANGES,
    KNOWN_AFTER_APPLY,
    PLACEHOLDER_UID,
    REPORT_ONLY,
    SENSITIVE,
    Action,
    ApiRefusal,
    Change,
    FieldChange,
    Plan,
    PlanInputError,
    PlanKube,
    Target,
    dry_run_body,
    judge,
    load_documents,
    managed_kind,
)
from kumo.plan import render_json as plan_json
from kumo.plan import render_table as plan_table

from ..specs import defaulted_spec

# ---------------------------------------------------------------------- drift: reading status


def status_body(name: str, conditions: list[dict[str, Any]], drift: list[dict[str, str]] | None = None) -> dict:
    status: dict[str, Any] = {"conditions": conditions, "atProvider": {"externalName": f"t-{name}-1a2b3c4d"}}
    if drift is not None:
        status["drift"] = drift
    return {"metadata": {"namespace": "team-a", "name": name}, "status": status}


def in_sync(status: str, reason: str, message: str = "") -> dict[str, str]:
    return {
        "type": "InSync",
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": "2025-01-02T03:04:05Z",
    }


STORAGE_DRIFT = {"field": "storageGB", "desired": 20, "actual": 30, "since": "2025-01-02T03:04:05Z"}
READY = {"type": "Ready", "status": "True", "reason": "Available"}

STATUS_CASES = [
    ("drifted", [READY, in_sync("False", "Drifted")], [STORAGE_DRIFT], True, "False", 1),
    ("missing", [in_sync("False", "Missing", "gone")], [], True, "False", 0),
    ("up-to-date", [READY, in_sync("True", "UpToDate")], [], False, "True", 0),
    ("ignored", [READY, in_sync("Unknown", "Ignored")], None, False, "Unknown", 0),
    ("never-compared", [READY], None, False, "", 0),
    # a stale drift list under InSync=True is not reported as drift
    ("stale-entries-when-in-sync", [in_sync("True", "UpToDate")], [STORAGE_DRIFT], False, "True", 0),
]


@pytest.mark.parametrize(
    ("case", "conditions", "drift", "drifted", "state", "entries"), STATUS_CASES, ids=[c[0] for c in STATUS_CASES]
)
def test_status_is_read_into_one_report_row(case, conditions, drift, drifted, state, entries):
    """Only InSync=False counts as drifted, with exactly the status.drift entries it carries."""
    found = object_drift("Database", status_body("orders", conditions, drift))
    assert (found.drifted, found.in_sync, len(found.drift)) == (drifted, state, entries)
    assert found.external_name == "t-orders-1a2b3c4d" and found.object_ref == "team-a/orders"


def _row(name: str, state: str, reason: str = "", *entries: DriftEntry, kind: str = "Database") -> ObjectDrift:
    return ObjectDrift(kind, "team-a", name, f"ext-{name}", state, reason, since="2025-01-02T03:04:05Z", drift=entries)


ENTRY = DriftEntry("storageGB", 20, 30, "2025-01-02T03:04:05Z")
TIER = DriftEntry("instanceClass", "db.t3.micro", "db.m5.large", "2025-01-02T03:04:06Z")

DRIFT_EXIT_CASES = [
    ("nothing-listed", [], EXIT_IN_SYNC, "0 of 0 objects drifted"),
    ("all-in-sync", [_row("a", "True"), _row("b", "True")], EXIT_IN_SYNC, "0 of 2 objects drifted"),
    ("one-drifted", [_row("a", "False", "Drifted", ENTRY), _row("b", "True")], EXIT_DRIFTED, "1 of 2 objects drifted"),
    ("missing-counts", [_row("a", "False", "Missing")], EXIT_DRIFTED, "1 of 1 objects drifted"),
    (
        "ignored-and-uncompared-are-noted-not-drifted",
        [_row("a", "Unknown", "Ignored"), _row("b", ""), _row("c", "True")],
        EXIT_IN_SYNC,
        "0 of 3 objects drifted (1 ignored, 1 not compared yet)",
    ),
]


@pytest.mark.parametrize(("case", "rows", "code", "summary"), DRIFT_EXIT_CASES, ids=[c[0] for c in DRIFT_EXIT_CASES])
def test_drift_exit_code_and_summary(case, rows, code, summary):
    """Exit 2 exactly when something drifted (like terraform's -detailed-exitcode); the summary counts."""
    report = DriftReport(tuple(rows))
    assert report.exit_code == code
    assert drift_table(report).splitlines()[-1] == summary


def test_drift_table_lists_each_field_under_one_object_heading():
    """A table: header, one aligned row per drifted field, a Missing row, and the summary."""
    report = DriftReport(
        (
            _row("orders", "False", "Drifted", ENTRY, TIER),
            _row("logs", "False", "Missing", kind="Bucket"),
            _row("fine", "True"),
        )
    )
    lines = drift_table(report).splitlines()
    assert lines[0].split() == ["KIND", "OBJECT", "REASON", "FIELD", "DESIRED", "ACTUAL", "SINCE"]
    assert lines[1].split() == ["Database", "team-a/orders", "Drifted", "storageGB", "20", "30", ENTRY.since]
    assert lines[2].split() == ["instanceClass", '"db.t3.micro"', '"db.m5.large"', TIER.since]
    assert lines[3].split() == ["Bucket", "team-a/logs", "Missing", "-", "exists", "missing", "2025-01-02T03:04:05Z"]
    assert lines[-1] == "2 of 3 objects drifted"
    assert lines[1].index("storageGB") == lines[2].index("instanceClass") == lines[0].index("FIELD"), "aligned"
    assert "fine" not in drift_table(report)


def test_drift_json_lists_every_checked_object_with_its_in_sync_state():
    """JSON: every checked object (drifted or not) with inSync, and the counts."""
    report = build_report(
        [
            ("Database", status_body("orders", [in_sync("False", "Drifted")], [STORAGE_DRIFT])),
            ("Bucket", status_body("assets", [in_sync("True", "UpToDate")])),
            ("Bucket", status_body("new", [])),
        ]
    )
    document = json.loads(drift_json(report))
    assert (document["drifted"], document["checked"]) == (1, 3)
    by_name = {o["name"]: o for o in document["objects"]}
    assert by_name["orders"]["drift"] == [STORAGE_DRIFT] and by_name["orders"]["reason"] == "Drifted"
    assert by_name["assets"]["inSync"] == "True" and by_name["assets"]["drift"] == []
    assert by_name["new"]["inSync"] is None
    assert [o["kind"] for o in document["objects"]] == ["Bucket", "Bucket", "Database"]  # ordered


# ---------------------------------------------------------------------- plan: deciding


TARGET = Target("Database", "team-a", "orders-db", "team-a-orders-db-1a2b3c4d", "aws")
LIVE_UID = "0b6f3c1e-live"
ME = Ownership(LIVE_UID, "team-a", "orders-db", "c-1")
OTHER = Ownership("9f9f-other", "team-b", "billing-db", "c-1")
DESIRED = {
    "instanceClass": "db.t3.micro",
    "storageGB": 20,
    "tags": {"kumo.dev/owner-uid": PLACEHOLDER_UID, "kumo.dev/owner-name": "orders-db"},
}


def seen(owner: Ownership | None, *drift: FieldDrift, ready: bool = True) -> Observation:
    return Observation(TARGET.external_name, "available" if ready else "creating", ready, owner, drift=drift)


def applied(uid: str | None, adopt: bool = False) -> dict[str, Any]:
    """The object as the dry run answers: live uid (a new one's placeholder), annotations."""
    annotations = {"kumo.dev/adopt": "true"} if adopt else {}
    meta = {"name": TARGET.name, "namespace": TARGET.namespace, "uid": uid or PLACEHOLDER_UID}
    return {"metadata": {**meta, "generation": 1, "annotations": annotations}, "spec": {}}


def planned(observation: Observation | None, live_uid: str | None, adopt: bool = False) -> Change:
    return judge(TARGET, DESIRED, observation, body=applied(live_uid, adopt), cluster_id="c-1")


JUDGE_CASES = [
    ("absent-is-create", None, None, False, Action.CREATE, 3, ""),
    ("own-resource-without-drift-is-no-op", seen(ME), LIVE_UID, False, Action.NOOP, 0, ""),
    (
        "own-resource-with-drift-is-update",
        seen(ME, FieldDrift("storageGB", 50, 20)),
        LIVE_UID,
        False,
        Action.UPDATE,
        1,
        "",
    ),
    ("another-objects-resource-is-conflict", seen(OTHER), LIVE_UID, False, Action.CONFLICT, 0, "team-b/billing-db"),
    ("new-manifest-over-owned-resource-is-conflict", seen(ME), None, False, Action.CONFLICT, 0, "team-a/orders-db"),
    ("unmanaged-resource-is-conflict", seen(None), LIVE_UID, False, Action.CONFLICT, 0, "kumo.dev/adopt"),
    (
        "unmanaged-resource-with-adopt-is-update",
        seen(None, FieldDrift("tags", {"kumo.dev/owner-uid": LIVE_UID}, {"kumo.dev/owner-uid": None})),
        LIVE_UID,
        True,
        Action.UPDATE,
        1,
        "adopts",
    ),
    ("still-provisioning-is-said", seen(ME, ready=False), LIVE_UID, False, Action.NOOP, 0, "not ready yet"),
]


@pytest.mark.parametrize(
    ("case", "observation", "live_uid", "adopt", "action", "fields", "message"),
    JUDGE_CASES,
    ids=[c[0] for c in JUDGE_CASES],
)
def test_judge_decides_like_the_reconciler(case, observation, live_uid, adopt, action, fields, message):
    """Absent -> create; ours -> update / no-op; someone else's or unmanaged -> conflict (unless adopting)."""
    change = planned(observation, live_uid, adopt)
    assert change.action is action
    assert len(change.fields) == fields
    assert message in " ".join(change.messages)


def test_create_lists_every_desired_field_with_the_uid_known_after_apply():
    """A create shows each setting's value; the not-yet-assigned uid is shown as known after apply."""
    change = planned(None, None)
    assert [(f.field, f.current) for f in change.fields] == [
        ("instanceClass", None),
        ("storageGB", None),
        ("tags", None),
    ]
    assert change.fields[2].desired["kumo.dev/owner-uid"] == KNOWN_AFTER_APPLY
    assert PLACEHOLDER_UID not in plan_table(Plan((change,)))


def test_update_carries_current_and_desired_per_drifted_field():
    """An update names each drifted field with the cloud's value and the spec's value."""
    change = planned(seen(ME, FieldDrift("storageGB", 50, 20)), LIVE_UID)
    assert change.fields == (FieldChange("storageGB", 20, 50),)


def test_fields_applying_leaves_alone_say_why_in_table_and_json():
    """Report-only and uncorrectable drift is shown with its note and does not count as a change;
    a field applying writes carries no note (the JSON stays as it was for those)."""
    change = Change(
        TARGET,
        Action.NOOP,
        (
            FieldChange("instanceClass", "db.t3.small", "db.t3.micro", REPORT_ONLY),
            FieldChange("storageGB", 50, 20, CANNOT_CORRECT + ": raise the spec to match"),
        ),
    )
    plan = Plan((change,))
    lines = plan_table(plan).splitlines()
    assert lines[1] == '    instanceClass: "db.t3.small" -> "db.t3.micro"  (report only, not changed)'
    assert lines[2] == "    storageGB: 50 -> 20  (cannot be corrected: raise the spec to match)"
    assert plan.exit_code == EXIT_NO_CHANGES
    fields = json.loads(plan_json(plan))["changes"][0]["fields"]
    assert fields[0]["note"] == REPORT_ONLY
    updated = json.loads(plan_json(Plan((Change(TARGET, Action.UPDATE, (FieldChange("storageGB", 20, 50),)),))))
    assert updated["changes"][0]["fields"] == [{"field": "storageGB", "current": 20, "desired": 50}]


def test_a_secret_looking_field_is_never_shown():
    """Should a provider ever render a password into desired(), the plan shows (sensitive) instead."""
    body = applied(None)
    change = judge(TARGET, {"masterPassword": "hunter2hunter2", "storageGB": 20}, None, body=body, cluster_id="c-1")
    rendered = plan_table(Plan((change,))) + plan_json(Plan((change,)))
    assert "hunter2" not in rendered and SENSITIVE in rendered


def _resource(kind: Kind, spec: dict[str, Any]):
    body = {"metadata": {"namespace": "team-a", "name": "x", "uid": "u-1"}, "spec": defaulted_spec(kind, spec)}
    return managed_resource(kind, body, "c-1")


DESIRED_RENDERERS = [
    ("aws-rds", rds.desired_settings, Kind.DATABASE),
    ("gcp-cloudsql", cloudsql.desired_settings, Kind.DATABASE),
    ("aws-s3", s3.desired_settings, Kind.BUCKET),
    ("gcp-gcs", gcs.desired_settings, Kind.BUCKET),
]


@pytest.mark.parametrize(("case", "render", "kind"), DESIRED_RENDERERS, ids=[c[0] for c in DESIRED_RENDERERS])
def test_built_in_providers_render_no_secret_into_desired(case, render, kind):
    """What `kumo plan` prints comes from desired(): it must hold no password or credential."""
    spec = {"engine": "postgres", "version": "16", "databaseName": "orders"} if kind is Kind.DATABASE else {}
    text = json.dumps(render(_resource(kind, spec)), default=str).lower()
    assert not any(word in text for word in ("password", "secret", "credential"))


# ---------------------------------------------------------------------- plan: exit codes and output


def _change(action: Action, name: str = "orders-db", *fields: FieldChange, messages: tuple[str, ...] = ()) -> Change:
    return Change(Target("Database", "team-a", name, f"team-a-{name}-1a2b3c4d", "aws"), action, fields, messages)


PLAN_EXIT_CASES = [
    ("empty", [], EXIT_NO_CHANGES),
    ("only-no-ops", [Action.NOOP, Action.NOOP], EXIT_NO_CHANGES),
    ("a-create", [Action.NOOP, Action.CREATE], EXIT_CHANGES),
    ("an-update", [Action.UPDATE], EXIT_CHANGES),
    ("invalid-beats-changes", [Action.CREATE, Action.INVALID], EXIT_ERROR),
    ("conflict-beats-changes", [Action.UPDATE, Action.CONFLICT], EXIT_ERROR),
    ("error-is-an-error", [Action.ERROR], EXIT_ERROR),
]


@pytest.mark.parametrize(("case", "actions", "code"), PLAN_EXIT_CASES, ids=[c[0] for c in PLAN_EXIT_CASES])
def test_plan_exit_code(case, actions, code):
    """0 nothing to do, 2 creates or updates to make, 1 when any manifest cannot be applied as written."""
    assert Plan(tuple(_change(a, f"db-{i}") for i, a in enumerate(actions))).exit_code == code


def test_plan_table_reads_like_terraform():
    """Symbol, action, object and external name; indented fields; the summary line last."""
    plan = Plan(
        (
            _change(Action.CREATE, "orders-db", FieldChange("storageGB", None, 20), FieldChange("engine", None, "pg")),
            _change(Action.UPDATE, "billing-db", FieldChange("storageGB", 20, 50)),
            _change(Action.NOOP, "stable-db"),
            _change(Action.CONFLICT, "copy-db", messages=("x belongs to team-b/billing-db",)),
            _change(
                Action.INVALID, "bad-db", messages=("spec.instanceClass: 'm5.large' is not an RDS instance class",)
            ),
        ),
        skipped=("ProviderConfig aws (f.yaml#1): kumo plan covers kumo.dev Databases and Buckets only",),
    )
    lines = plan_table(plan).splitlines()
    assert lines[:3] == [
        "+ create Database team-a/orders-db (aws: team-a-orders-db-1a2b3c4d)",
        "    storageGB: 20",
        '    engine: "pg"',
    ]
    assert lines[3:5] == [
        "~ update Database team-a/billing-db (aws: team-a-billing-db-1a2b3c4d)",
        "    storageGB: 20 -> 50",
    ]
    assert lines[5].startswith("= no-op Database team-a/stable-db")
    assert lines[6].startswith("! conflict Database team-a/copy-db") and "team-b/billing-db" in lines[7]
    assert lines[8].startswith("x invalid Database team-a/bad-db") and "spec.instanceClass" in lines[9]
    assert lines[10].startswith("- skipped ProviderConfig aws")
    assert lines[-1] == "Plan: 1 to create, 1 to update, 1 unchanged, 1 invalid, 1 conflicts."


def test_plan_summary_mentions_failures_only_when_there_are_some():
    """A plan that could not look at an object says so in the summary and in one problem line."""
    failed = Plan((_change(Action.ERROR, messages=("cloud unreachable",)),))
    assert plan_table(failed).splitlines()[-1].endswith("0 conflicts, 1 failed.")
    assert failed.problem_line() == "Database team-a/orders-db could not be planned: cloud unreachable"
    assert "failed" not in plan_table(Plan(()))


def test_plan_json_has_changes_fields_and_summary():
    """JSON: one entry per object with its action and fields (current null for a create), and counts."""
    plan = Plan(
        (
            _change(Action.CREATE, "a", FieldChange("storageGB", None, 20)),
            _change(Action.UPDATE, "b", FieldChange("storageGB", 20, 50)),
        )
    )
    document = json.loads(plan_json(plan))
    assert document["summary"] == {"create": 1, "update": 1, "unchanged": 0, "invalid": 0, "conflict": 0, "error": 0}
    first, second = document["changes"]
    assert set(first) == {"kind", "namespace", "name", "externalName", "provider", "action", "fields", "messages"}
    assert first["action"] == "create" and first["fields"] == [{"field": "storageGB", "current": None, "desired": 20}]
    assert second["action"] == "update" and second["fields"][0] == {"field": "storageGB", "current": 20, "desired": 50}


# ---------------------------------------------------------------------- plan: input


KIND_CASES = [
    ("database", {"apiVersion": "kumo.dev/v1alpha1", "kind": "Database"}, Kind.DATABASE),
    ("bucket", {"apiVersion": "kumo.dev/v1alpha1", "kind": "Bucket"}, Kind.BUCKET),
    ("provider-config", {"apiVersion": "kumo.dev/v1alpha1", "kind": "ProviderConfig"}, None),
    ("someone-elses-database", {"apiVersion": "example.com/v1", "kind": "Database"}, None),
    ("secret", {"apiVersion": "v1", "kind": "Secret"}, None),
]


@pytest.mark.parametrize(("case", "document", "kind"), KIND_CASES, ids=[c[0] for c in KIND_CASES])
def test_only_kumo_databases_and_buckets_are_planned(case, document, kind):
    """Other kinds (and other groups' Databases) are skipped, not planned."""
    assert managed_kind(document) == kind


BAD_FILES = [
    ("missing-file", None, "No such file"),
    ("broken-yaml", "kind: [Database\n", "not valid YAML"),
    ("scalar-document", "just text\n", "not a mapping"),
]


@pytest.mark.parametrize(("case", "text", "message"), BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_bad_manifest_files_are_one_clear_error(tmp_path, case, text, message):
    """A file that cannot be read or parsed stops the plan before any call, naming the file."""
    path = tmp_path / "manifest.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(PlanInputError, match=message) as raised:
        load_documents([str(path)])
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


def test_a_directory_is_read_like_kubectl(tmp_path):
    """`-f DIR` reads its *.yaml, *.yml and *.json files in name order, nothing else, not
    recursively; a directory with none of them is an error naming it."""
    (tmp_path / "b.yaml").write_text("kind: Bucket\n")
    (tmp_path / "a.json").write_text('{"kind": "Database"}')
    (tmp_path / "c.yml").write_text("kind: Secret\n")
    (tmp_path / "notes.txt").write_text("kind: ConfigMap\n")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "d.yaml").write_text("kind: Namespace\n")
    documents = load_documents([str(tmp_path)])
    assert [d.body["kind"] for d in documents] == ["Database", "Bucket", "Secret"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(PlanInputError, match=r"no \.yaml, \.yml, \.json files"):
        load_documents([str(tmp_path / "empty")])


def test_the_dry_run_merges_metadata_like_kubectl_apply():
    """An existing object is sent as its live self with the manifest's fields: the manifest's
    annotations and labels win, others stay, and the live resourceVersion guards it; every
    top-level field of the manifest goes along, so a misspelt one reaches strict validation."""
    manifest = {
        "apiVersion": "kumo.dev/v1alpha1",
        "kind": "Database",
        "metadata": {"name": "orders", "annotations": {"kumo.dev/adopt": "true"}},
        "spec": {"engine": "postgres"},
        "sepc": {"size": "large"},
    }
    live = {
        "metadata": {
            "name": "orders",
            "namespace": "team-a",
            "uid": "u-1",
            "resourceVersion": "42",
            "generation": 3,
            "annotations": {"kumo.dev/paused": "true"},
            "managedFields": [{"manager": "kubectl"}],
        },
        "spec": {"engine": "mysql"},
        "status": {"observedGeneration": 3},
    }
    sent = dry_run_body(manifest, live, "team-a")
    assert sent["spec"] == {"engine": "postgres"} and sent["sepc"] == {"size": "large"} and "status" not in sent
    assert sent["metadata"]["annotations"] == {"kumo.dev/paused": "true", "kumo.dev/adopt": "true"}
    assert (sent["metadata"]["resourceVersion"], sent["metadata"]["uid"]) == ("42", "u-1")
    assert "managedFields" not in sent["metadata"]
    assert dry_run_body(manifest, None, "team-b")["metadata"] == {
        "name": "orders",
        "namespace": "team-b",
        "annotations": {"kumo.dev/adopt": "true"},
    }


@pytest.mark.parametrize(
    ("status", "action"), [(400, Action.INVALID), (422, Action.INVALID), (403, Action.ERROR), (404, Action.ERROR)]
)
def test_what_the_api_server_refuses_is_invalid(status, action):
    """Strict field validation (400) and the CRD schema (422) make the manifest invalid as
    written; a refusal of the look itself (403 RBAC, 404 no CRD) is an error."""
    assert ApiRefusal(status, "Kubernetes API ...").action is action


def test_every_document_of_every_file_is_read(tmp_path):
    """Multi-document files and several -f flags all count; empty documents are dropped."""
    (tmp_path / "a.yaml").write_text("kind: Database\n---\n---\nkind: Bucket\n")
    (tmp_path / "b.yaml").write_text("kind: Secret\n")
    documents = load_documents([str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")])
    assert [d.body["kind"] for d in documents] == ["Database", "Bucket", "Secret"]
    assert documents[1].source.endswith("a.yaml#3")


USAGE_CASES = [
    ("drift-unknown-flag", ["drift", "--bogus"]),
    ("drift-namespace-and-all", ["drift", "-n", "a", "-A"]),
    ("plan-without-file", ["plan"]),
    ("plan-bad-output", ["plan", "-f", "x.yaml", "-o", "yaml"]),
]


@pytest.mark.parametrize(("case", "argv"), USAGE_CASES, ids=[c[0] for c in USAGE_CASES])
def test_usage_errors_exit_1_not_2(case, argv, capsys):
    """2 means "drift / changes found" for these commands, so a usage mistake must not look like it."""
    assert cli.main(argv) == 1
    assert "usage:" in capsys.readouterr().err


def test_a_reader_that_leaves_early_is_not_an_error(monkeypatch):
    """`kumo drift | head -1`: the closed pipe ends the command quietly with exit 0."""

    def handler(args):
        raise BrokenPipeError

    parser = argparse.ArgumentParser()
    parser.set_defaults(handler=handler)
    monkeypatch.setattr(cli, "_parser", lambda: parser)
    assert cli.main([]) == 0


def test_plan_takes_no_in_use_finalizer():
    """Resolving a provider config as the controller does would put the in-use finalizer on a
    namespaced ProviderConfig and its Secret; the plan's client makes neither write (no request
    at all: the API client points nowhere)."""
    nowhere = kopf.ConnectionInfo(server="http://127.0.0.1:9")
    kube = PlanKube(KubeHTTP(lambda: nowhere, user_agent="kumo-plan/test"))
    for write in ("set_provider_config_finalizers", "set_secret_finalizers"):
        assert write in vars(KubeClient), f"KubeClient.{write} was renamed: PlanKube no longer overrides it"
        assert asyncio.run(getattr(kube, write)("team-a", "aws", [], ["kumo.dev/in-use"])) is None


def test_kumo_dev_without_the_test_bed_says_where_to_get_it(monkeypatch, capsys):
    """The production wheel and image leave the test bed out: `kumo dev` names the install step
    instead of failing with a traceback."""
    import kumo.testbed

    # As if the module were absent: None in sys.modules makes its import fail, and the package
    # must not hand out one imported earlier in this session.
    monkeypatch.setitem(sys.modules, "kumo.testbed.devbed", None)
    monkeypatch.delattr(kumo.testbed, "devbed", raising=False)
    with pytest.raises(SystemExit) as exited:
        cli.main(["dev", "status"])
    message = str(exited.value.code)
    assert "the test bed is not installed" in message
    assert "pip install -e testbed" in message


def test_plan_status_and_drift_log_in_with_the_kubeconfigs_server_ca_and_token(tmp_path, monkeypatch):
    """`kumo plan` reads the kubeconfig with kumo's own reader, as `kumo run` does, and hands the
    login to kumo's own client; status and drift get the official client configured from the
    same login (before: each read the file its own way)."""
    from kumo.kubeaccess import cli_login

    monkeypatch.delenv("KUBECONFIG", raising=False)
    ca = tmp_path / "ca.crt"
    ca.write_text("not read until a request is made")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'https://127.0.0.1:6443', certificate-authority: '{ca}'}}}}]\n"
        "users: [{name: u, user: {token: s3cret}}]\n"
        "contexts: [{name: c, context: {cluster: k, user: u, namespace: team-a}}]\n"
    )
    credentials = cli_login(str(kubeconfig), None)
    assert credentials.default_namespace == "team-a" and credentials.server == "https://127.0.0.1:6443"
    assert credentials.as_http_headers() == {"Authorization": "Bearer s3cret"}
    assert str(credentials.ca_path) == str(ca) and not credentials.insecure
    api_client, namespace = cli._kube_access(str(kubeconfig), None)
    assert namespace == "team-a" and api_client.configuration.host == "https://127.0.0.1:6443"
    assert api_client.configuration.ssl_ca_cert == str(ca)
    assert api_client.default_headers["Authorization"] == "Bearer s3cret"
