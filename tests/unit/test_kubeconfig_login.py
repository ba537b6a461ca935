"""kumo's kubeconfig reader and exec credential plugins (controller/runtime/kubeconfig.py,
execplugin.py, login.py): the files merged as kubectl merges them, relative paths against the
file that names them, tokenFile, the context choice, and exec plugins (v1 and v1beta1) run as
client-go runs them, their credential held until it expires or a consumer reports it stale.

Plugins are tiny Python scripts the tests write into tmp_path; each appends a line to a file per
run, so the tests count runs without timing anything."""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import kopf
import pytest
import yaml
from kumo.controller.runtime.execplugin import ExecConfigError, ExecPluginFailed
from kumo.controller.runtime.kubeconfig import KubeconfigError, KubeconfigReader, kubeconfig_files
from kumo.controller.runtime.login import RETRY_DELAY, ClusterLogin

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
SECRET = "s3cr3t-token-value"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def kubeconfig(
    path: Path,
    *,
    clusters: dict[str, dict[str, Any]] | None = None,
    users: dict[str, dict[str, Any]] | None = None,
    contexts: dict[str, dict[str, Any]] | None = None,
    current: str | None = None,
) -> Path:
    document: dict[str, Any] = {"apiVersion": "v1", "kind": "Config"}
    for section, item, entries in (
        ("clusters", "cluster", clusters),
        ("users", "user", users),
        ("contexts", "context", contexts),
    ):
        if entries is not None:
            document[section] = [{"name": name, item: body} for name, body in entries.items()]
    if current is not None:
        document["current-context"] = current
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document))
    return path


def simple(path: Path, user: dict[str, Any], *, cluster: dict[str, Any] | None = None, namespace: str = "") -> Path:
    context = {"cluster": "c", "user": "u", **({"namespace": namespace} if namespace else {})}
    return kubeconfig(
        path,
        clusters={"c": cluster or {"server": "https://c.example:6443"}},
        users={"u": user},
        contexts={"ctx": context},
        current="ctx",
    )


def plugin(
    directory: Path, status: dict[str, Any] | None = None, *, api_version: str = V1, exit_code: int = 0, raw: str = ""
) -> Path:
    """A plugin script: records each run (argv, the exec env it saw) as a JSON line in runs.jsonl
    beside it, then prints an ExecCredential with `status` (or `raw`) and exits `exit_code`."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "plugin.py"
    output = raw or json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "status": status or {}})
    script.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "record = {'argv': sys.argv[1:], 'info': json.loads(os.environ['KUBERNETES_EXEC_INFO']),\n"
        "          'greeting': os.environ.get('GREETING')}\n"
        f"with open({str(directory / 'runs.jsonl')!r}, 'a') as runs:\n"
        "    runs.write(json.dumps(record) + '\\n')\n"
        f"sys.stdout.write({output!r})\n"
        f"sys.exit({exit_code})\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def runs(directory: Path) -> list[dict[str, Any]]:
    path = directory / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def read(
    path: Path | str,
    context: str = "",
    stale: kopf.ConnectionInfo | None = None,
    reader: KubeconfigReader | None = None,
) -> kopf.ConnectionInfo:
    reader = reader or KubeconfigReader(str(path), context)
    info = reader.connection_info(stale=stale)
    assert info is not None
    return info


def later(minutes: int) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


# ---------------------------------------------------------------------------- files and merging


def test_the_first_file_to_set_a_value_wins_and_later_files_add_names(tmp_path):
    """KUBECONFIG a:b: a's current-context and a's cluster `c` win; a context only b defines is usable."""
    first = kubeconfig(
        tmp_path / "a" / "config",
        clusters={"c": {"server": "https://first:6443"}},
        users={"u": {"token": "first-token"}},
        contexts={"ctx": {"cluster": "c", "user": "u"}},
        current="ctx",
    )
    second = kubeconfig(
        tmp_path / "b" / "config",
        clusters={"c": {"server": "https://second:6443"}, "other": {"server": "https://other:6443"}},
        users={"u": {"token": "second-token"}},
        contexts={
            "ctx": {"cluster": "other", "user": "u"},
            "more": {"cluster": "other", "user": "u", "namespace": "ns"},
        },
        current="more",
    )
    listed = f"{first}{os.pathsep}{second}"
    info = read(listed)
    assert (info.server, info.token, info.default_namespace) == ("https://first:6443", "first-token", None)
    chosen = read(listed, context="more")
    assert (chosen.server, chosen.token, chosen.default_namespace) == ("https://other:6443", "first-token", "ns")


def test_a_missing_file_of_the_list_is_skipped_but_not_all_of_them(tmp_path):
    present = simple(tmp_path / "config", {"token": "t"})
    assert read(f"{tmp_path / 'absent'}{os.pathsep}{present}").token == "t"
    with pytest.raises(KubeconfigError, match=r"no such file: .*absent"):
        read(tmp_path / "absent")


def test_the_variable_is_read_when_no_flag_is_given_and_home_config_last(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kubeconfig_files("", {}) == ()  # nothing anywhere: no kubeconfig login at all
    home = simple(tmp_path / ".kube" / "config", {"token": "t"})
    assert kubeconfig_files("", {}) == (home,)
    assert kubeconfig_files("", {"KUBECONFIG": f"/x{os.pathsep}/y"}) == (Path("/x"), Path("/y"))
    assert kubeconfig_files("/flag", {"KUBECONFIG": "/x"}) == (Path("/flag"),)


def test_relative_paths_are_relative_to_the_file_that_names_them(tmp_path, monkeypatch):
    """Not to the working directory: the CA, certificate, key and tokenFile sit beside their file."""
    directory = tmp_path / "elsewhere"
    directory.mkdir()
    for name in ("ca.crt", "client.crt", "client.key"):
        (directory / name).write_text(PEM)
    (directory / "token").write_text(SECRET + "\n")
    simple(
        directory / "config",
        {"client-certificate": "client.crt", "client-key": "client.key", "tokenFile": "token"},
        cluster={"server": "https://c:6443", "certificate-authority": "ca.crt"},
    )
    monkeypatch.chdir(tmp_path)
    info = read("elsewhere/config")
    assert Path(str(info.ca_path)) == directory / "ca.crt"
    assert Path(str(info.certificate_path)) == directory / "client.crt"
    assert Path(str(info.private_key_path)) == directory / "client.key"
    assert info.token == SECRET


def test_missing_referenced_files_and_entries_are_errors_that_name_them(tmp_path):
    ca_missing = simple(
        tmp_path / "a" / "config", {"token": "t"}, cluster={"server": "https://c", "certificate-authority": "ca.crt"}
    )
    with pytest.raises(KubeconfigError, match=r"cluster 'c': certificate-authority .*ca\.crt does not exist"):
        read(ca_missing)
    no_user = kubeconfig(
        tmp_path / "b" / "config",
        clusters={"c": {"server": "https://c"}},
        contexts={"ctx": {"cluster": "c", "user": "nobody"}},
        current="ctx",
    )
    with pytest.raises(KubeconfigError, match="context 'ctx': no user named 'nobody'"):
        read(no_user)
    with pytest.raises(KubeconfigError, match="no context named 'elsewhere'"):
        read(no_user, context="elsewhere")
    no_server = simple(tmp_path / "c" / "config", {"token": "t"}, cluster={"certificate-authority-data": "eA=="})
    with pytest.raises(KubeconfigError, match="cluster 'c': server is not set"):
        read(no_server)
    no_current = kubeconfig(tmp_path / "d" / "config", clusters={"c": {"server": "https://c"}})
    with pytest.raises(KubeconfigError, match="no current-context"):
        read(no_current)


def test_conflicting_settings_are_refused_as_kubectl_refuses_them(tmp_path):
    both = simple(tmp_path / "a" / "config", {"token": SECRET, "username": "u", "password": "p"})
    with pytest.raises(KubeconfigError, match="user 'u': set a token or a username and password") as refused:
        read(both)
    assert SECRET not in str(refused.value)
    insecure = simple(
        tmp_path / "b" / "config",
        {"token": "t"},
        cluster={"server": "https://c", "certificate-authority-data": "eA==", "insecure-skip-tls-verify": True},
    )
    with pytest.raises(KubeconfigError, match="insecure-skip-tls-verify"):
        read(insecure)


def test_cluster_and_user_fields_reach_the_connection_info(tmp_path):
    """CA data wins over a CA file and certificate data over a certificate file (client-go's rule);
    proxy-url, basic auth and an auth-provider's cached access-token (which kopf honoured) carry over."""
    (tmp_path / "ca.crt").write_text(PEM)
    path = simple(
        tmp_path / "config",
        {
            "username": "ann",
            "password": "pw",
            "client-certificate-data": base64.b64encode(PEM.encode()).decode(),
            "client-certificate": "missing.crt",
        },
        cluster={
            "server": "https://c:6443",
            "certificate-authority": "ca.crt",
            "certificate-authority-data": "Y2E=",
            "proxy-url": "http://proxy:3128",
        },
    )
    info = read(path)
    assert (info.ca_path, info.ca_data, info.proxy_url) == (None, "Y2E=", "http://proxy:3128")
    assert info.certificate_path is None and info.certificate_data
    assert info.as_http_headers()["Authorization"].startswith("Basic ")
    provider = simple(
        tmp_path / "p" / "config", {"auth-provider": {"name": "oidc", "config": {"access-token": "cached"}}}
    )
    assert read(provider).token == "cached"


def test_token_file_wins_and_is_read_again_at_every_login(tmp_path):
    """A rotated token file is picked up by the next login (after a 401) without a restart."""
    token = tmp_path / "token"
    token.write_text("first")
    path = simple(tmp_path / "config", {"token": "inline", "tokenFile": str(token)})
    reader = KubeconfigReader(str(path))
    assert read(path, reader=reader).token == "first"
    token.write_text("rotated\n")
    assert read(path, reader=reader).token == "rotated"


# ---------------------------------------------------------------------------------- exec plugins


@pytest.mark.parametrize("api_version", [V1, V1BETA1])
def test_an_exec_plugin_token_with_its_args_env_and_exec_info(tmp_path, api_version):
    """v1 and v1beta1 alike: args and the env list reach the plugin; KUBERNETES_EXEC_INFO says
    non-interactive, of the configured version; the returned token logs in."""
    tool = tmp_path / "tool"
    script = plugin(tool, {"token": SECRET, "expirationTimestamp": later(15)}, api_version=api_version)
    mode = {"interactiveMode": "Never"} if api_version == V1 else {}
    path = simple(
        tmp_path / "config",
        {
            "exec": {
                "apiVersion": api_version,
                "command": str(script),
                "args": ["get-token", "--x"],
                "env": [{"name": "GREETING", "value": "hi"}],
                **mode,
            }
        },
    )
    info = read(path)
    assert (
        info.token == SECRET and info.expiration is not None and info.expiration > datetime.datetime.now(datetime.UTC)
    )
    [run] = runs(tool)
    assert run["argv"] == ["get-token", "--x"] and run["greeting"] == "hi"
    assert run["info"] == {"apiVersion": api_version, "kind": "ExecCredential", "spec": {"interactive": False}}


def test_provide_cluster_info_sends_the_cluster_with_the_ca_as_data_and_the_extension_config(tmp_path):
    tool = tmp_path / "tool"
    script = plugin(tool, {"token": "t"})
    (tmp_path / "ca.crt").write_text(PEM)
    cluster = {
        "server": "https://c:6443",
        "certificate-authority": "ca.crt",
        "proxy-url": "http://proxy:3128",
        "extensions": [{"name": "client.authentication.k8s.io/exec", "extension": {"audience": "kumo"}}],
    }
    path = simple(
        tmp_path / "config",
        {
            "exec": {
                "apiVersion": V1,
                "command": str(script),
                "interactiveMode": "IfAvailable",
                "provideClusterInfo": True,
            }
        },
        cluster=cluster,
    )
    read(path)
    sent = runs(tool)[0]["info"]["spec"]["cluster"]
    assert sent["server"] == "https://c:6443" and sent["proxy-url"] == "http://proxy:3128"
    assert base64.b64decode(sent["certificate-authority-data"]).decode() == PEM
    assert sent["config"] == {"audience": "kumo"}


def test_a_relative_exec_command_with_a_path_is_relative_to_the_kubeconfig_and_a_bare_name_is_on_path(
    tmp_path, monkeypatch
):
    plugin(tmp_path / "conf" / "bin", {"token": "from-relative"})
    path = simple(
        tmp_path / "conf" / "config",
        {"exec": {"apiVersion": V1, "command": "bin/plugin.py", "interactiveMode": "Never"}},
    )
    monkeypatch.chdir(tmp_path)
    assert read(path).token == "from-relative"
    monkeypatch.setenv("PATH", f"{tmp_path / 'conf' / 'bin'}{os.pathsep}{os.environ['PATH']}")
    on_path = simple(
        tmp_path / "other" / "config", {"exec": {"apiVersion": V1, "command": "plugin.py", "interactiveMode": "Never"}}
    )
    assert read(on_path).token == "from-relative"


def test_an_exec_client_certificate_replaces_the_static_one(tmp_path):
    script = plugin(
        tmp_path / "tool",
        {"clientCertificateData": PEM, "clientKeyData": "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"},
    )
    (tmp_path / "static.crt").write_text(PEM)
    path = simple(
        tmp_path / "config",
        {
            "client-certificate": "static.crt",
            "exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"},
        },
    )
    info = read(path)
    assert info.certificate_data == PEM and info.certificate_path is None
    assert info.private_key_data and info.token is None and info.expiration is None


def test_the_credential_is_held_until_it_expires_or_a_consumer_reports_it_stale(tmp_path):
    """Two consumers (kopf's vault, KubeHTTP) share one run; a consumer whose login comes back
    (its credential drew a 401) gets a fresh run; the other keeps the fresh one."""
    tool = tmp_path / "tool"
    script = plugin(tool, {"token": SECRET, "expirationTimestamp": later(15)})
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"}})
    login = ClusterLogin(str(path))
    watches, client = login.consumer(), login.consumer()
    first = watches()
    assert client() == first and len(runs(tool)) == 1  # one run serves both
    assert client() is not None and len(runs(tool)) == 2  # the client's second login: its token was rejected
    assert watches() is not None and len(runs(tool)) == 3  # so was the watches' (the same one)
    assert login.reader.credentials.runs == 3


def test_an_expired_credential_runs_the_plugin_again(tmp_path):
    tool = tmp_path / "tool"
    script = plugin(tool, {"token": SECRET, "expirationTimestamp": "2020-01-01T00:00:00Z"})
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"}})
    reader = KubeconfigReader(str(path))
    assert read(path, reader=reader).expiration == datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    read(path, reader=reader)
    assert len(runs(tool)) == 2


def test_without_an_expiration_the_credential_is_held_until_reported_stale(tmp_path):
    tool = tmp_path / "tool"
    script = plugin(tool, {"token": SECRET})
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"}})
    reader = KubeconfigReader(str(path))
    held = read(path, reader=reader)
    assert read(path, reader=reader).token == SECRET and len(runs(tool)) == 1
    read(path, reader=reader, stale=held)
    assert len(runs(tool)) == 2


@pytest.mark.parametrize(
    ("exec_spec", "message"),
    [
        (
            {"apiVersion": V1, "command": "x", "interactiveMode": "Always"},
            "user 'u': exec: interactiveMode Always needs a terminal",
        ),
        (
            {"apiVersion": V1, "command": "x"},
            "user 'u': exec: interactiveMode must be set for apiVersion client.authentication.k8s.io/v1",
        ),
        (
            {"apiVersion": "client.authentication.k8s.io/v1alpha1", "command": "x", "interactiveMode": "Never"},
            "apiVersion 'client.authentication.k8s.io/v1alpha1' is not supported",
        ),
        ({"apiVersion": V1, "interactiveMode": "Never"}, "user 'u': exec: command is not set"),
        (
            {
                "apiVersion": V1,
                "command": "kumo-no-such-plugin",
                "interactiveMode": "Never",
                "installHint": "Install it with: brew install it",
            },
            "user 'u': exec plugin 'kumo-no-such-plugin' not found or not executable. Install it with: brew install it",
        ),
    ],
    ids=["always-interactive", "v1-without-mode", "v1alpha1", "no-command", "not-installed"],
)
def test_exec_entries_that_cannot_work_are_refused_naming_the_user(tmp_path, exec_spec, message):
    path = simple(tmp_path / "config", {"exec": exec_spec})
    with pytest.raises(ExecConfigError) as refused:
        read(path)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("status", "raw", "exit_code", "message"),
    [
        ({"token": SECRET}, "", 3, "exited with status 3"),
        (None, f"token={SECRET}", 0, "printed no JSON ExecCredential"),
        ({"clientCertificateData": PEM}, "", 0, "only one of clientCertificateData and clientKeyData"),
        ({}, "", 0, "neither a token nor a client certificate"),
        ({"token": SECRET, "expirationTimestamp": "soon"}, "", 0, "not RFC 3339"),
    ],
    ids=["exit-status", "not-json", "half-a-pair", "empty-status", "bad-expiry"],
)
def test_a_failing_plugin_is_an_error_naming_the_user_and_never_the_secret(tmp_path, status, raw, exit_code, message):
    script = plugin(tmp_path / "tool", status, raw=raw, exit_code=exit_code)
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"}})
    with pytest.raises(ExecPluginFailed) as failed:
        read(path)
    assert message in str(failed.value) and "user 'u'" in str(failed.value)
    assert SECRET not in str(failed.value) and SECRET not in repr(failed.value)


def test_a_plugin_answering_in_another_api_version_is_refused(tmp_path):
    script = plugin(tmp_path / "tool", {"token": SECRET}, api_version=V1BETA1)
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"}})
    with pytest.raises(ExecPluginFailed, match=r"answered with apiVersion '\S+/v1beta1', not the configured"):
        read(path)


def test_credential_values_stay_out_of_reprs(tmp_path):
    from kumo.controller.runtime.execplugin import ExecCredential

    credential = ExecCredential(token=SECRET, client_certificate_data=PEM, client_key_data="KEY")
    assert SECRET not in repr(credential) and "KEY" not in repr(credential)


# ------------------------------------------------------------------------------------ the login


def test_the_service_account_login_stays_first(tmp_path, monkeypatch):
    in_pod = kopf.ConnectionInfo(server="https://kubernetes.default.svc", token="sa")
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: in_pod)
    path = simple(tmp_path / "config", {"token": "t"})
    assert ClusterLogin(str(path)).consumer()(settings=kopf.OperatorSettings()) is in_pod


def test_outside_a_pod_the_kubeconfig_logs_in_with_kopfs_trust_env(tmp_path, monkeypatch):
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    settings = kopf.OperatorSettings()
    settings.networking.trust_env = True
    path = simple(tmp_path / "config", {"token": "t"}, namespace="team")
    info = ClusterLogin(str(path), "ctx").consumer()(settings=settings, logger=None)
    assert info is not None and info.trust_env and info.default_namespace == "team"
    assert info.as_http_headers() == {"Authorization": "Bearer t"}


def test_kumo_run_checks_the_login_before_starting_and_kopf_retries_a_later_failure(tmp_path, monkeypatch):
    """Before kopf starts, a kubeconfig that cannot work is an error `kumo run` exits with; once
    running, kopf's login handler raises a temporary error (kopf tries again) instead of a
    permanent one (kopf would stop its credentials task and keep running without watches)."""
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(KubeconfigError, match="no Kubernetes credentials: not in a Pod"):
        ClusterLogin().check()
    failing = plugin(tmp_path / "tool", {"token": SECRET}, exit_code=1)
    path = simple(
        tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(failing), "interactiveMode": "Never"}}
    )
    with pytest.raises(ExecPluginFailed, match="exited with status 1"):
        ClusterLogin(str(path)).check()
    with pytest.raises(kopf.TemporaryError, match=r"user 'u': exec plugin .* exited with status 1") as retried:
        ClusterLogin(str(path)).kopf_handler()(settings=kopf.OperatorSettings(), logger=None)
    assert retried.value.delay == RETRY_DELAY


def test_the_check_holds_the_credential_for_the_consumers_first_logins(tmp_path, monkeypatch):
    monkeypatch.setattr(kopf, "login_with_service_account", lambda **_: None)
    tool = tmp_path / "tool"
    script = plugin(tool, {"token": SECRET})
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": str(script), "interactiveMode": "Never"}})
    login = ClusterLogin(str(path))
    checked = login.check()
    assert login.kopf_handler()(settings=kopf.OperatorSettings()) == checked == login.consumer()()
    assert len(runs(tool)) == 1


# -------------------------------------------------------------------------------------- the CLI


def test_the_cli_reaches_the_cluster_kumo_run_would_reach(tmp_path, monkeypatch):
    """status and drift (the official client) and plan (kumo's client) log in from the same reading:
    the same server and header, inline TLS data as private files, the context's namespace."""
    from kumo.kubeaccess import cli_login, context_namespace, official_client

    monkeypatch.delenv("KUBECONFIG", raising=False)
    key = "-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n"
    path = simple(
        tmp_path / "config",
        {
            "token": SECRET,
            "client-certificate-data": base64.b64encode(PEM.encode()).decode(),
            "client-key-data": base64.b64encode(key.encode()).decode(),
        },
        cluster={"server": "https://c:6443", "certificate-authority-data": base64.b64encode(PEM.encode()).decode()},
        namespace="team-a",
    )
    info = cli_login(str(path), None)
    assert context_namespace(info) == "team-a"
    configuration = (api_client := official_client(info)).configuration
    assert configuration.host == "https://c:6443" and configuration.verify_ssl
    assert api_client.default_headers["Authorization"] == f"Bearer {SECRET}"
    written = [Path(configuration.ssl_ca_cert), Path(configuration.cert_file), Path(configuration.key_file)]
    assert [file.read_text() for file in written] == [PEM, PEM, key]
    assert all(stat.S_IMODE(file.stat().st_mode) == 0o600 for file in written)
    assert stat.S_IMODE(written[0].parent.stat().st_mode) == 0o700


def test_the_cli_says_when_there_is_no_kubeconfig(tmp_path, monkeypatch):
    from kumo.kubeaccess import cli_login

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    with pytest.raises(KubeconfigError, match="no kubeconfig"):
        cli_login(None, None)


# --------------------------------------------------------------- kumo's client renewing its login


def kube_http_scenario(login: Any, scenario: Any, *, accepted: frozenset[str] = frozenset({"t1", "t2"})) -> list[str]:
    """Run `scenario(http, url)` against a server that answers 401 to any token not in
    `accepted`; returns the Authorization header of each request it got."""
    import asyncio

    from aiohttp import web
    from aiohttp.test_utils import TestServer
    from kumo.controller.runtime.kubehttp import KubeHTTP

    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        seen.append(header)
        if header.removeprefix("Bearer ") not in accepted:
            return web.json_response({"kind": "Status", "code": 401, "message": "Unauthorized"}, status=401)
        return web.json_response({"kind": "Namespace", "metadata": {"uid": "u"}})

    async def run() -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        async with TestServer(app) as server:
            http = KubeHTTP(lambda: login(str(server.make_url(""))), user_agent="kumo-test", pool_size=4)
            try:
                await scenario(http)
            finally:
                await http.close()

    asyncio.run(run())
    return seen


def test_requests_rejected_together_log_in_once():
    """Ten requests drawing 401 at once renew the login once (an exec plugin runs once, not ten
    times), and each is retried with the new token."""
    import asyncio

    tokens = iter(["expired", "t1", "unused"])
    logins: list[str] = []

    def login(url: str) -> kopf.ConnectionInfo:
        logins.append(token := next(tokens))
        return kopf.ConnectionInfo(server=url, token=token)

    async def scenario(http: Any) -> None:
        answers = await asyncio.gather(*(http.request("GET", "/api/v1/namespaces/kube-system") for _ in range(10)))
        assert all(answer["metadata"]["uid"] == "u" for answer in answers)

    seen = kube_http_scenario(login, scenario)
    assert logins == ["expired", "t1"]
    assert seen.count("Bearer t1") == 10


def test_an_expired_credential_is_renewed_before_it_is_sent():
    """A credential whose expiration passed (an exec plugin's expirationTimestamp) is replaced
    before the next request, not after a 401."""
    past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    given = iter([("t1", past), ("t2", None)])

    def login(url: str) -> kopf.ConnectionInfo:
        token, expiration = next(given)
        return kopf.ConnectionInfo(server=url, token=token, expiration=expiration)

    async def scenario(http: Any) -> None:
        for _ in range(3):
            await http.request("GET", "/api/v1/namespaces/kube-system")

    assert kube_http_scenario(login, scenario) == ["Bearer t1", "Bearer t2", "Bearer t2"]


def test_a_new_client_certificate_gets_a_new_connection_pool():
    """TLS material lives in the pool's TLS context: a login bringing another client certificate
    (an exec plugin's, renewed) gets a new pool; a new token alone keeps the pool."""
    import unittest.mock

    logins = iter(
        [{"token": "rejected"}, {"token": "t1"}, {"token": "t2", "certificate_data": PEM, "private_key_data": PEM}]
    )
    holder: dict[str, Any] = {}
    pools: list[Any] = []  # the pool in use when each login is asked for, then the last one

    def login(url: str) -> kopf.ConnectionInfo:
        pools.append(holder["http"]._session)
        return kopf.ConnectionInfo(server=url, **next(logins))

    async def scenario(http: Any) -> None:
        holder["http"] = http
        path = "/api/v1/namespaces/kube-system"
        await http.request("GET", path)  # rejected -> t1: a new token, the same pool
        http._credentials = dataclasses.replace(http._credentials, token="rejected")
        await http.request("GET", path)  # rejected -> t2 with a certificate: a new pool
        pools.append(http._session)

    # Plain HTTP: the certificate is compared, never loaded.
    with unittest.mock.patch.object(kopf.ConnectionInfo, "as_ssl_context", lambda self: False):
        kube_http_scenario(login, scenario)
    first, renewed, rotated, last = pools
    assert first is None and renewed is not None and rotated is renewed  # one pool for two tokens
    assert last is not rotated


def test_the_kubeconfig_proxy_url_carries_kumos_requests():
    """proxy-url: the request goes to the proxy, naming the API server it is for."""
    seen_hosts: list[str] = []

    def login(url: str) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server="http://kube-api.invalid:6443", token="t1", proxy_url=url)

    async def scenario(http: Any) -> None:
        answer = await http.request("GET", "/api/v1/namespaces/kube-system")
        seen_hosts.append(answer["metadata"]["uid"])

    assert kube_http_scenario(login, scenario) == ["Bearer t1"] and seen_hosts == ["u"]


def test_damaged_inline_data_is_named_and_never_quoted(tmp_path):
    path = simple(
        tmp_path / "config", {"token": "t", "client-key-data": f"{SECRET}!!", "client-certificate-data": "eA=="}
    )
    with pytest.raises(KubeconfigError, match="user 'u': client-key-data is not base64") as refused:
        read(path)
    assert SECRET not in str(refused.value)


def test_kumo_run_with_a_kubeconfig_that_cannot_work_exits_1_with_one_line(tmp_path):
    """The first-hour trap: a plugin that insists on prompting stops `kumo run` at once, saying
    which user entry and why, instead of a controller waiting on a login that never comes."""
    import subprocess

    if Path("/var/run/secrets/kubernetes.io/serviceaccount/token").exists():
        pytest.skip("inside a Pod the ServiceAccount login comes first")
    path = simple(tmp_path / "config", {"exec": {"apiVersion": V1, "command": "x", "interactiveMode": "Always"}})
    environment = {**os.environ, "HOME": str(tmp_path)}
    environment.pop("KUBECONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "kumo.cli", "run", "--kubeconfig", str(path)],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("kumo run: error: kubeconfig user 'u': exec: interactiveMode Always needs a terminal")
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
