"""A new user's first minutes, as a transcript: `kumo dev up`, then the commands it printed, run
from other directories, until the example is Ready; `kumo status` of it, `kumo plan` of a broken
manifest, an object applied before its ProviderConfig converging once the config exists; then
`kumo dev down` from yet another directory, leaving no process behind. Each `kumo` is a
subprocess with its own per-user state directory (XDG_STATE_HOME), so a developer's own `kumo dev`
bed is never touched.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.testbed.devbed import BED_VARIABLE, DevPaths, default_env_file, find_marked
from kumo.testbed.process import pid_alive

from kumo.api import GROUP, PLURALS, VERSION

from ..conftest import api_client_for

KUMO = [sys.executable, "-m", "kumo.cli"]
SERVERS = ("etcd", "kube-apiserver", "kube-controller-manager", "postgres", "moto", "gcs", "cloudsql")


def _kumo(*words: str, cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*KUMO, *words], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def _printed_commands(stdout: str) -> list[str]:
    """The indented lines after "Next:", as a user would copy them."""
    after = stdout.split("Next:", 1)[1]
    return [line.strip() for line in after.splitlines() if line.startswith("  ") and line.strip()]


def _apply(apply_line: str, kubeconfig: str, cwd: Path, env: dict[str, str]) -> dict:
    """Run the printed `kubectl apply -f FILE`, or do what it does through the client when no
    kubectl is installed; returns the applied manifest."""
    words = shlex.split(apply_line)
    manifest_path = Path(cwd, words[words.index("-f") + 1])
    manifest = yaml.safe_load(manifest_path.read_text())
    if shutil.which("kubectl"):
        applied = subprocess.run(words, cwd=cwd, env={**env, "KUBECONFIG": kubeconfig}, capture_output=True, text=True)
        assert applied.returncode == 0, applied.stderr
    else:
        objects = client.CustomObjectsApi(api_client_for(kubeconfig))
        objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURALS[manifest["kind"]], manifest)
    return manifest


def _wait_ready(kubeconfig: str, manifest: dict, controller_log: Path, timeout: float = 120) -> None:
    objects = client.CustomObjectsApi(api_client_for(kubeconfig))
    plural, name = PLURALS[manifest["kind"]], manifest["metadata"]["name"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            obj = objects.get_namespaced_custom_object(GROUP, VERSION, "default", plural, name)
        except ApiException:
            obj = {}
        conditions = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}
        if conditions.get("Ready", {}).get("status") == "True":
            return
        time.sleep(0.25)
    raise AssertionError(f"{name} not Ready: {obj.get('status')}\n{controller_log.read_text()[-3000:]}")


def _wait_synced_false(objects: client.CustomObjectsApi, name: str, controller_log: Path) -> None:
    """Until the controller has reported the missing ProviderConfig on the object."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURALS["Bucket"], name)
        synced = {c["type"]: c for c in obj.get("status", {}).get("conditions", [])}.get("Synced", {})
        if synced.get("status") == "False":
            assert "later" in synced["message"], synced
            return
        time.sleep(0.25)
    raise AssertionError(f"{name}: no Synced=False for the missing config\n{controller_log.read_text()[-3000:]}")


def _servers(paths: DevPaths) -> dict[int, str]:
    """The servers the state file lists, checked against the processes carrying the marker."""
    recorded = {p["pid"]: p["name"] for p in json.loads(paths.env_file.read_text())["processes"]}
    assert {p.pid for p in find_marked(paths.marker) or [] if p.pid == p.group} == set(recorded)
    return recorded


def test_dev_up_leads_to_a_ready_example_and_down_leaves_nothing(tmp_path):
    where = {name: tmp_path / name for name in ("first", "second", "third")}
    for directory in where.values():
        directory.mkdir()
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    env.pop("KUBECONFIG", None)
    env.pop(BED_VARIABLE, None)
    paths = DevPaths.at(default_env_file(env))

    up = _kumo("dev", "up", cwd=where["first"], env=env, timeout=300)
    try:
        assert up.returncode == 0, up.stderr
        export, run_line, apply_line = _printed_commands(up.stdout)[:3]
        assert export == f"export KUBECONFIG={paths.kubeconfig}"
        kubeconfig = export.split("=", 1)[1]
        servers = _servers(paths)
        assert sorted(servers.values()) == sorted(SERVERS)

        again = _kumo("dev", "up", cwd=where["second"], env=env)
        assert again.returncode == 0 and "already up" in again.stdout, "a second `up` finds the first bed"
        assert _servers(paths) == servers, "and starts nothing"

        status = _kumo("dev", "status", cwd=where["second"], env=env)
        assert status.returncode == 0, status.stdout
        listed = {tuple(line.split()[:3]) for line in status.stdout.splitlines() if line.endswith("running")}
        assert listed == {(name, "pid", str(pid)) for pid, name in servers.items()}, status.stdout

        _run_the_example(run_line, apply_line, kubeconfig, where["second"], env, tmp_path / "controller.log")

        down = _kumo("dev", "down", cwd=where["third"], env=env)
        assert down.returncode == 0, down.stderr
        assert find_marked(paths.marker) == []
        assert not any(pid_alive(pid) for pid in servers)
        assert not paths.env_file.exists() and not paths.kubeconfig.exists()
    finally:
        if find_marked(paths.marker):  # whatever failed, leave no bed behind
            _kumo("dev", "down", cwd=tmp_path, env=env)


def _run_the_example(
    run_line: str, apply_line: str, kubeconfig: str, cwd: Path, env: dict[str, str], log_path: Path
) -> None:
    """The printed `kumo run` in the background, the printed apply, until the object is Ready."""
    with log_path.open("wb") as log:
        controller = subprocess.Popen(
            shlex.split(run_line),
            cwd=cwd,
            env={**env, "KUBECONFIG": kubeconfig},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        manifest = _apply(apply_line, kubeconfig, cwd, env)
        _wait_ready(kubeconfig, manifest, log_path)
        _the_next_minutes(manifest, kubeconfig, cwd, {**env, "KUBECONFIG": kubeconfig}, log_path)
    finally:
        controller.terminate()
        controller.wait(timeout=30)


def _the_next_minutes(manifest: dict, kubeconfig: str, cwd: Path, env: dict[str, str], log_path: Path) -> None:
    """What a new user does next: `kumo status` of the example, `kumo plan` of a broken manifest
    (refused with the API server's own message, as kubectl apply would be), and an object applied
    before its ProviderConfig, which converges once the config is created."""
    kind, name = manifest["kind"].lower(), manifest["metadata"]["name"]
    status = _kumo("status", f"{kind}/{name}", cwd=cwd, env=env)
    assert status.returncode == 0 and "is Ready" in status.stdout, status.stdout + status.stderr

    broken = {**manifest, "spec": {**manifest["spec"], "size": "huge"}}
    broken_file = cwd / "broken.yaml"
    broken_file.write_text(yaml.safe_dump(broken))
    plan = _kumo("plan", "-f", str(broken_file), cwd=cwd, env=env)
    assert plan.returncode == 1, plan.stdout + plan.stderr
    assert 'Unsupported value: "huge"' in plan.stdout, plan.stdout

    objects = client.CustomObjectsApi(api_client_for(kubeconfig))
    early = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Bucket",
        "metadata": {"name": "early-assets", "namespace": "default"},
        "spec": {"providerConfigRef": {"kind": "ProviderConfig", "name": "later"}},
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURALS["Bucket"], early)
    _wait_synced_false(objects, "early-assets", log_path)
    config = objects.get_namespaced_custom_object(GROUP, VERSION, "default", PLURALS["ProviderConfig"], "aws")
    later = {key: config[key] for key in ("apiVersion", "kind", "spec")}
    later["metadata"] = {"name": "later", "namespace": "default"}
    objects.create_namespaced_custom_object(GROUP, VERSION, "default", PLURALS["ProviderConfig"], later)
    _wait_ready(kubeconfig, early, log_path, timeout=60)


def test_down_stops_a_bed_whose_state_file_was_lost(tmp_path):
    """Processes of a bed whose env.json is gone are found by their marker: `status` lists them,
    `down` stops them (a server's children too) instead of saying nothing runs."""
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
    paths = DevPaths.at(default_env_file(env))
    server = subprocess.Popen(
        ["sh", "-c", "sleep 300 & sleep 300; wait"],
        env={**env, BED_VARIABLE: paths.marker},
        start_new_session=True,
    )
    try:
        while len(find_marked(paths.marker) or []) < 3:  # sh and its two sleeps
            time.sleep(0.05)
        status = _kumo("dev", "status", cwd=tmp_path, env=env)
        assert status.returncode == 1 and f"sh (pid {server.pid})" in status.stdout, status.stdout
        down = _kumo("dev", "down", cwd=tmp_path, env=env)
        assert down.returncode == 0, down.stderr
        assert "no test bed running" not in down.stdout
        assert find_marked(paths.marker) == []
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
