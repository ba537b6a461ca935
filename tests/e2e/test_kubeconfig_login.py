"""`kumo run` logs in as kubectl does: through a kubeconfig whose user is an exec credential plugin
(as `aws eks get-token`, `gke-gcloud-auth-plugin` or `kubelogin` are) and whose CA and plugin
are given by paths relative to the kubeconfig file, not to the working directory.

The plugin is a script beside the kubeconfig that prints an ExecCredential with the bed's admin
token and records each run in a file; in the second scenario its first run hands out a token the
API server does not know, so the first requests draw a 401 and the controller must run the
plugin again and go on, without a restart. Both end with a Bucket Ready through that controller."""

from __future__ import annotations

import json
import shutil
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from kubernetes import client
from kumo.testbed.bed import TestBed
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.probes import CloudProbe

from ..conftest import _fresh_namespace
from .conftest import Kumo, ensure_namespace, example, unique

pytestmark = pytest.mark.e2e
TARGET_CLOUDS = ("aws",)  # the login is what is tested: one cloud is enough
REJECTED_TOKEN = "not-a-token-the-bed-knows"


def write_plugin_kubeconfig(testbed: TestBed, directory: Path, *, first_token_rejected: bool) -> Path:
    """kubeconfig, pki/ca.crt and bin/token-plugin under `directory`, every path relative."""
    admin = yaml.safe_load(Path(testbed.env["kubeconfig"]).read_text())
    token = admin["users"][0]["user"]["token"]
    (directory / "pki").mkdir(parents=True)
    shutil.copy(admin["clusters"][0]["cluster"]["certificate-authority"], directory / "pki" / "ca.crt")
    (directory / "bin").mkdir()
    (directory / "bin" / "token").write_text(token)
    (directory / "bin" / "token").chmod(0o600)
    plugin = directory / "bin" / "token-plugin"
    plugin.write_text(
        f"#!{sys.executable}\n"
        "import json, os, pathlib\n"
        "here = pathlib.Path(__file__).resolve().parent\n"
        "runs = here / 'runs'\n"
        "count = len(runs.read_text().splitlines()) if runs.exists() else 0\n"
        "with runs.open('a') as record:\n"
        "    record.write(os.environ['KUBERNETES_EXEC_INFO'] + '\\n')\n"
        f"token = {REJECTED_TOKEN!r} if count == 0 and {first_token_rejected!r} else (here / 'token').read_text()\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',\n"
        "                  'status': {'token': token}}))\n"
    )
    plugin.chmod(plugin.stat().st_mode | stat.S_IXUSR)
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "bed", "cluster": {"server": testbed.env["server"], "certificate-authority": "pki/ca.crt"}}
        ],
        "users": [
            {
                "name": "plugin-user",
                "user": {
                    "exec": {
                        "apiVersion": "client.authentication.k8s.io/v1",
                        "command": "./bin/token-plugin",
                        "interactiveMode": "Never",
                        "provideClusterInfo": True,
                    }
                },
            }
        ],
        "contexts": [{"name": "bed", "context": {"cluster": "bed", "user": "plugin-user"}}],
        "current-context": "bed",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    path.chmod(0o600)
    return path


def plugin_runs(kubeconfig: Path) -> list[dict]:
    """The KUBERNETES_EXEC_INFO of each run of the plugin, in order."""
    runs = kubeconfig.parent / "bin" / "runs"
    return [json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else []


@pytest.fixture
def login_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """Not matching the session controller's `t-*`: only this test's controller acts here."""
    yield from _fresh_namespace(kube_api, "login")


@pytest.mark.parametrize("first_token_rejected", [False, True], ids=["plugin-token", "401-then-plugin-again"])
def test_kumo_run_logs_in_through_an_exec_plugin_with_relative_paths(
    testbed: TestBed,
    kube_api: client.ApiClient,
    login_namespace: str,
    probe: CloudProbe,
    tmp_path: Path,
    first_token_rejected: bool,
) -> None:
    ensure_namespace(kube_api, "kumo-system")
    kubeconfig = write_plugin_kubeconfig(testbed, tmp_path / "kube", first_token_rejected=first_token_rejected)
    controller = ControllerProcess(
        kubeconfig=str(kubeconfig),
        log_path=tmp_path / "controller.log",
        # Read from kube-system with the plugin's token, as `kumo run` does by default.
        cluster_id="",
        extra_env={"KUMO_NAMESPACES": login_namespace},
    ).start()
    try:
        kumo = Kumo(kube_api, login_namespace, controller)
        secret, config = probe.provider_config(name=probe.cloud)
        kumo.core.create_namespaced_secret(login_namespace, secret)
        kumo.create(config)
        name = unique("bk")
        kumo.create(example(probe.cloud, "Bucket", name))
        kumo.wait_ready("Bucket", name, timeout=90)
        log = controller.log_text()
    finally:
        controller.stop()

    runs = plugin_runs(kubeconfig)
    assert runs, "the plugin never ran"
    # Asked not to prompt, told the cluster it serves (provideClusterInfo), CA included.
    spec = runs[0]["spec"]
    assert spec["interactive"] is False and spec["cluster"]["server"] == testbed.env["server"]
    assert spec["cluster"]["certificate-authority-data"]
    if first_token_rejected:
        assert len(runs) >= 2, "the rejected token was never replaced"
    else:
        # One run served the start-up check, kopf's watches and kumo's own client alike.
        assert len(runs) == 1, f"the plugin ran {len(runs)} times for a token that never expired"
    token = (kubeconfig.parent / "bin" / "token").read_text()
    assert token not in log and REJECTED_TOKEN not in log
