"""`kumo drift` and `kumo plan` end to end: the real command in a child process, against the local
API server, the running controller and the emulated clouds.

Drift is made the way an operator would make it, with the cloud's own SDK behind kumo's back,
under driftPolicy Report so the controller only reports it. Plan is checked against what the
controller then really does, and for having written nothing anywhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from kumo.testbed.process import free_port

from .conftest import example, unique

pytestmark = pytest.mark.e2e

CLUSTER_ID = "kumo-testbed"  # what the session's controller runs with (KUMO_CLUSTER_ID)
# Out-of-band changes per cloud: the setting changed, the field kumo reports, its new value.
OUT_OF_BAND = {"aws": ("storageGB", 30), "gcp": ("instanceClass", "db-custom-2-7680")}
INVALID_CLASS = {"aws": "m5.large", "gcp": "db.m5.large"}  # each cloud's class, miswritten or foreign

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(testbed) -> Cli:
    """Run `kumo ARGS...` as a user would, with KUBECONFIG pointing at the test bed."""

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": testbed.env["kubeconfig"]}
        argv = [sys.executable, "-m", "kumo.cli", *args]
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)

    return run


def _json(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert result.stdout, result.stderr
    return dict(json.loads(result.stdout))


def _write(path: Path, manifest: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(manifest))
    return str(path)


def _manifest(cloud: str, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    manifest = example(cloud, "Database", name)
    manifest["metadata"]["namespace"] = namespace
    manifest["spec"].update(spec)
    return manifest


def _drift_out_of_band(probe, external: str) -> None:
    value = OUT_OF_BAND[probe.cloud][1]
    if probe.cloud == "aws":
        probe.wait_database_available(external)  # RDS refuses changes while the instance is busy
        probe.rds.modify_db_instance(DBInstanceIdentifier=external, AllocatedStorage=value, ApplyImmediately=True)
    else:
        body = {"settings": {"tier": value}}
        probe.instances.patch(request={"project": probe.project, "instance": external, "body": body})


def test_drift_report_is_clean_then_names_the_drifted_field(kumo, probe, provider_config, cli):
    """Ready objects report 0 drifted (exit 0); after an out-of-band cloud change under driftPolicy
    Report, -n and -A both list the field with desired and actual values (exit 2)."""
    db, bk = unique("db"), unique("bk")
    for kind, name in (("Database", db), ("Bucket", bk)):
        manifest = example(probe.cloud, kind, name)
        manifest["spec"]["driftPolicy"] = "Report"
        # Without databaseName: under Report, Cloud SQL's database (made once the instance runs)
        # is reported as drift instead of created; see the note on the reconciler's Creating pass.
        manifest["spec"].pop("databaseName", None)
        manifest["metadata"]["annotations"] = {"kumo.dev/sweep-interval": "5s"}  # see drift within the test
        kumo.create(manifest)
    external = kumo.wait_ready("Database", db)["status"]["atProvider"]["externalName"]
    kumo.wait_ready("Bucket", bk)

    clean = cli("drift", "-n", kumo.namespace, "-o", "json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    report = _json(clean)
    assert (report["checked"], report["drifted"]) == (2, 0)
    assert {o["name"]: o["inSync"] for o in report["objects"]} == {db: "True", bk: "True"}

    _drift_out_of_band(probe, external)
    kumo.wait_condition("Database", db, "InSync", "False", timeout=30)

    drifted = cli("drift", "-n", kumo.namespace, "-o", "json")
    assert drifted.returncode == 2, drifted.stderr
    report = _json(drifted)
    assert (report["checked"], report["drifted"]) == (2, 1)
    entry = next(o for o in report["objects"] if o["name"] == db)
    assert entry["reason"] == "Drifted" and entry["externalName"] == external
    field, value = OUT_OF_BAND[probe.cloud]
    reported = {d["field"]: d for d in entry["drift"]}
    assert reported[field]["actual"] == value  # a JSON value, as in status.drift
    assert reported[field]["desired"] != value and reported[field]["since"]

    table = cli("drift", "-n", kumo.namespace)
    assert table.returncode == 2 and table.stdout.splitlines()[-1] == "1 of 2 objects drifted"
    assert f"{kumo.namespace}/{db}" in table.stdout and field in table.stdout

    everywhere = cli("drift", "-A", "-o", "json")
    assert everywhere.returncode == 2, everywhere.stderr
    listed = {(o["namespace"], o["name"]): o for o in _json(everywhere)["objects"]}
    assert listed[(kumo.namespace, db)]["inSync"] == "False"
    assert listed[(kumo.namespace, bk)]["inSync"] == "True"


def test_plan_predicts_create_no_op_and_update_and_writes_nothing(kumo, probe, provider_config, cli, tmp_path):
    """A new manifest plans as create under the very external name the controller then uses (exit
    2); once applied it is a no-op (exit 0); a raised storageGB is an update current -> desired
    (exit 2). No plan changes the object or adds anything to the cloud."""
    name = unique("db")
    manifest = _manifest(probe.cloud, kumo.namespace, name)
    path = _write(tmp_path / "db.yaml", manifest)
    databases = probe.count_databases()

    created = cli("plan", "-f", path, "--cluster-id", CLUSTER_ID, "-o", "json")
    assert created.returncode == 2, created.stderr
    (change,) = _json(created)["changes"]
    assert (change["action"], change["provider"], change["name"]) == ("create", probe.cloud, name)
    fields = {f["field"]: f for f in change["fields"]}
    assert fields["storageGB"] == {"field": "storageGB", "current": None, "desired": 20}
    assert not any("password" in text.lower() for text in (created.stdout, created.stderr))
    assert kumo.get("Database", name) is None and probe.count_databases() == databases

    kumo.create(manifest)
    obj = kumo.wait_ready("Database", name)
    external = obj["status"]["atProvider"]["externalName"]
    assert external == change["externalName"]
    databases = probe.count_databases()
    version = obj["metadata"]["resourceVersion"]

    unchanged = cli("plan", "-f", path, "--cluster-id", CLUSTER_ID)
    assert unchanged.returncode == 0, unchanged.stderr
    assert unchanged.stdout.startswith(f"= no-op Database {kumo.namespace}/{name} ({probe.cloud}: {external})")
    assert "Plan: 0 to create, 0 to update, 1 unchanged, 0 invalid, 0 conflicts." in unchanged.stdout

    bigger = _write(tmp_path / "bigger.yaml", _manifest(probe.cloud, kumo.namespace, name, storageGB=50))
    updated = cli("plan", "-f", bigger, "--cluster-id", CLUSTER_ID, "-o", "json")
    assert updated.returncode == 2, updated.stderr
    (change,) = _json(updated)["changes"]
    assert change["action"] == "update"
    assert change["fields"] == [{"field": "storageGB", "current": 20, "desired": 50}]

    assert kumo.get("Database", name)["metadata"]["resourceVersion"] == version
    assert probe.database(external)["storageGB"] == 20 and probe.count_databases() == databases


def test_plan_refuses_conflicts_and_invalid_values(kumo, probe, provider_config, cli, tmp_path):
    """A manifest whose externalName is another object's resource is a conflict naming the owner,
    and a class the provider rejects is invalid naming the field: each exits 1 with one line on
    stderr, and neither creates anything."""
    owner = unique("db")
    kumo.create(example(probe.cloud, "Database", owner))
    external = kumo.wait_ready("Database", owner)["status"]["atProvider"]["externalName"]
    databases = probe.count_databases()

    copy = unique("copy")
    taken = _write(tmp_path / "copy.yaml", _manifest(probe.cloud, kumo.namespace, copy, externalName=external))
    conflict = cli("plan", "-f", taken, "--cluster-id", CLUSTER_ID, "-o", "json")
    assert conflict.returncode == 1
    (change,) = _json(conflict)["changes"]
    assert change["action"] == "conflict" and f"{kumo.namespace}/{owner}" in change["messages"][0]
    assert conflict.stderr.count("\n") == 1 and "conflict" in conflict.stderr

    wrong = _manifest(probe.cloud, kumo.namespace, unique("bad"), instanceClass=INVALID_CLASS[probe.cloud])
    invalid = cli("plan", "-f", _write(tmp_path / "bad.yaml", wrong), "--cluster-id", CLUSTER_ID)
    assert invalid.returncode == 1
    assert invalid.stdout.startswith(f"x invalid Database {kumo.namespace}/{wrong['metadata']['name']}")
    assert "spec.instanceClass" in invalid.stdout and "1 invalid" in invalid.stdout
    assert invalid.stderr.count("\n") == 1 and "spec.instanceClass" in invalid.stderr

    assert kumo.get("Database", copy) is None and probe.count_databases() == databases


def test_plan_is_as_strict_as_kubectl_apply(kumo, probe, provider_config, cli, tmp_path):
    """Each manifest first goes through the API server's dry run with strict field validation: a
    value the CRD does not allow (`size: huge`) and a misspelt field are invalid with the API
    server's own message (exit 1, one line on stderr), never a create with defaults; a directory
    is read like `kubectl apply -f DIR`; nothing is created."""
    huge = _manifest(probe.cloud, kumo.namespace, unique("huge"), size="huge")
    typo = _manifest(probe.cloud, kumo.namespace, unique("typo"))
    typo["spec"]["storgeGB"] = 30
    folder = tmp_path / "manifests"
    folder.mkdir()
    _write(folder / "1-huge.yaml", huge)
    _write(folder / "2-typo.yml", typo)
    (folder / "README.md").write_text("not a manifest\n")
    databases = probe.count_databases()

    both = cli("plan", "-f", str(folder), "--cluster-id", CLUSTER_ID, "-o", "json")
    assert both.returncode == 1, both.stderr
    changes = _json(both)["changes"]
    assert [(c["name"], c["action"]) for c in changes] == [
        (huge["metadata"]["name"], "invalid"),
        (typo["metadata"]["name"], "invalid"),
    ]
    assert 'spec.size: Unsupported value: "huge"' in changes[0]["messages"][0]
    assert "storgeGB" in changes[1]["messages"][0]

    table = cli("plan", "-f", str(folder / "1-huge.yaml"), "--cluster-id", CLUSTER_ID)
    assert table.returncode == 1
    assert table.stdout.startswith(f"x invalid Database {kumo.namespace}/{huge['metadata']['name']}")
    assert table.stderr.count("\n") == 1 and 'Unsupported value: "huge"' in table.stderr
    assert kumo.get("Database", huge["metadata"]["name"]) is None and probe.count_databases() == databases


def test_plan_skips_other_kinds_and_rejects_a_bad_file(kumo, cli, tmp_path):
    """Documents of other kinds are skipped with a note (exit 0); an unreadable file is one error line."""
    config = {"apiVersion": "kumo.dev/v1alpha1", "kind": "ProviderConfig", "metadata": {"name": "aws"}}
    only_config = cli("plan", "-f", _write(tmp_path / "config.yaml", config), "-n", kumo.namespace)
    assert only_config.returncode == 0, only_config.stderr
    assert "- skipped ProviderConfig aws" in only_config.stdout

    missing = cli("plan", "-f", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("kumo plan: error:") and missing.stderr.count("\n") == 1


def test_unreachable_api_server_is_one_line_and_exit_1(cli, tmp_path):
    """With nothing listening at the kubeconfig's server, both commands exit 1 with one line, no traceback."""
    kubeconfig = tmp_path / "kubeconfig"
    cluster = {"name": "gone", "cluster": {"server": f"https://127.0.0.1:{free_port()}"}}
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u", "namespace": "team-a"}}],
                "current-context": "gone",
            }
        )
    )
    manifest = _write(tmp_path / "db.yaml", _manifest("aws", "team-a", "orders-db"))
    for args in (("drift",), ("drift", "-A", "-o", "json"), ("plan", "-f", manifest, "--cluster-id", CLUSTER_ID)):
        result = cli(*args, "--kubeconfig", str(kubeconfig))
        assert result.returncode == 1, (args, result.stdout, result.stderr)
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        assert "cannot reach the Kubernetes API server" in result.stderr


def test_status_explains_ready_and_failing_objects(kumo, probe, provider_config, cloud, testbed):
    """`kumo status` exits 0 for a Ready object and 3 with the provider's reason for one that
    cannot be created."""
    ready = unique("db")
    kumo.create(example(cloud, "Database", ready))
    kumo.wait_ready("Database", ready)
    env = {**os.environ, "KUBECONFIG": testbed.env["kubeconfig"]}
    command = [sys.executable, "-m", "kumo.cli", "status", "-n", kumo.namespace]
    shown = subprocess.run([*command, f"database/{ready}"], capture_output=True, text=True, env=env, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "is Ready" in shown.stdout and "keys " in shown.stdout and "password" in shown.stdout
    secret = kumo.secret(f"{ready}-connection")
    assert secret["password"] not in shown.stdout
    # As `kubectl get kumo` prints it: pasted as it is.
    printed = f"database.kumo.dev/{ready}"
    pasted = subprocess.run([*command, printed], capture_output=True, text=True, env=env, timeout=60)
    assert pasted.returncode == 0 and pasted.stdout.splitlines()[0] == shown.stdout.splitlines()[0], pasted.stderr
    broken = unique("db")
    manifest = example(cloud, "Database", broken)
    manifest["spec"]["instanceClass"] = "m5.large" if cloud == "aws" else "db.m5.large"
    kumo.create(manifest)
    kumo.wait_condition("Database", broken, "Synced", "False")
    failing = subprocess.run([*command, f"database/{broken}"], capture_output=True, text=True, env=env, timeout=60)
    assert failing.returncode == 3
    assert "refused the spec before calling the cloud" in failing.stdout and "instanceClass" in failing.stdout


def test_kumo_works_as_a_kubectl_plugin(kumo, testbed):
    """With `kubectl-kumo` on PATH (installed with kumo), `kubectl kumo drift` runs kumo."""
    bin_dir = Path(sys.executable).parent
    kubectl = bin_dir / "kubectl"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["KUBECONFIG"] = testbed.env["kubeconfig"]
    listed = subprocess.run([str(kubectl), "plugin", "list"], capture_output=True, text=True, env=env, timeout=60)
    assert "kubectl-kumo" in listed.stdout
    report = subprocess.run(
        [str(kubectl), "kumo", "drift", "-n", kumo.namespace, "-o", "json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["drifted"] == 0
