"""kubeconfig exec credential plugins, as client-go runs them, for `kumo run` and the CLI.

A kubeconfig user may name a command that prints the credential instead of holding one: EKS
(`aws eks get-token`), GKE (`gke-gcloud-auth-plugin`), AKS and OIDC (`kubelogin`). The contract is
client-go's (https://kubernetes.io/docs/reference/access-authn-authz/authentication/#client-go-credential-plugins,
types at https://kubernetes.io/docs/reference/config-api/client-authentication.v1/):

- the command is looked up on PATH when it has no path separator, else taken as a path (a
  relative one against the kubeconfig file that names it: the reader resolves that);
- it runs with the process environment plus the entry's `env` list, and `KUBERNETES_EXEC_INFO`
  holding an ExecCredential whose `spec.interactive` says whether it may prompt (never, here: a
  controller has no terminal) and, with `provideClusterInfo`, `spec.cluster`;
- it prints an ExecCredential of the same apiVersion whose `status` holds a `token` or a
  `clientCertificateData` + `clientKeyData` pair, optionally with an `expirationTimestamp`;
- the credential is used until that timestamp, or, without one, until the API server answers 401;
  then the command runs again.

`ExecCredentials` keeps that cache for the whole process, so kopf's watches and kumo's own client
(controller/runtime/kubehttp.py) share one credential and the command runs once per renewal, not
once per consumer. No credential value ever enters an error message or a log line.
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf

EXEC_INFO_ENV = "KUBERNETES_EXEC_INFO"
EXEC_KIND = "ExecCredential"
SUPPORTED_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
# v1 makes interactiveMode mandatory; older versions default it to IfAvailable (client-go's
# clientcmd/api/v1 defaults and validation).
API_VERSIONS_WITH_DEFAULT_MODE = ("client.authentication.k8s.io/v1beta1",)
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
# The kubeconfig cluster extension whose value reaches the plugin as spec.cluster.config.
CLUSTER_CONFIG_EXTENSION = "client.authentication.k8s.io/exec"
# client-go waits for the plugin as long as it takes; a controller cannot wait forever for a
# command that hangs (on a network call, or on a prompt it should not have made).
EXEC_TIMEOUT = 60.0  # seconds


class ExecPluginError(Exception):
    """A plugin that gave no credential; the message names the kubeconfig user entry."""


class ExecConfigError(ExecPluginError):
    """An exec entry that cannot work as written: a missing field, an unsupported apiVersion, a
    command that is not installed, or a plugin that insists on a terminal."""


class ExecPluginFailed(ExecPluginError):
    """The plugin ran and failed, timed out, or printed no usable ExecCredential (perhaps a
    network hiccup on the way to the cloud's token service: another run may succeed)."""


@dataclass(frozen=True)
class ExecPlugin:
    """One kubeconfig `user.exec` entry, validated, its command resolved to an executable."""

    user: str  # the kubeconfig user entry's name, for errors
    api_version: str
    command: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    provide_cluster_info: bool = False
    install_hint: str = ""

    @classmethod
    def parse(cls, user: str, spec: Mapping[str, Any]) -> ExecPlugin:
        """The entry as client-go validates it; `command` must already be resolved against the
        defining file when it holds a path separator (see kubeconfig.py)."""
        where = f"kubeconfig user {user!r}: exec"
        api_version = str(spec.get("apiVersion") or "")
        if api_version not in SUPPORTED_API_VERSIONS:
            raise ExecConfigError(
                f"{where}: apiVersion {api_version!r} is not supported (use one of {', '.join(SUPPORTED_API_VERSIONS)})"
            )
        _check_interactive_mode(where, api_version, spec.get("interactiveMode"))
        command = str(spec.get("command") or "")
        if not command:
            raise ExecConfigError(f"{where}: command is not set")
        return cls(
            user=user,
            api_version=api_version,
            command=command,
            args=tuple(str(arg) for arg in spec.get("args") or ()),
            env=_environment(where, spec.get("env")),
            provide_cluster_info=bool(spec.get("provideClusterInfo")),
            install_hint=str(spec.get("installHint") or ""),
        )

    def executable(self) -> str:
        """The command's path: looked up on PATH unless it names a path, as Go's exec.Command does."""
        if os.sep in self.command:
            found = self.command if os.access(self.command, os.X_OK) and Path(self.command).is_file() else None
        else:
            found = shutil.which(self.command)
        if found is None:
            hint = f" {self.install_hint.strip()}" if self.install_hint.strip() else ""
            raise ExecConfigError(
                f"kubeconfig user {self.user!r}: exec plugin {self.command!r} not found or not executable.{hint}"
            )
        return found

    def exec_info(self, cluster: Mapping[str, Any] | None) -> str:
        """KUBERNETES_EXEC_INFO: never interactive; the cluster only when the entry asks for it."""
        spec: dict[str, Any] = {"interactive": False}
        if self.provide_cluster_info and cluster is not None:
            spec["cluster"] = dict(cluster)
        return json.dumps({"apiVersion": self.api_version, "kind": EXEC_KIND, "spec": spec})

    def run(self, cluster: Mapping[str, Any] | None = None) -> ExecCredential:
        """Run the command once and read its ExecCredential. Its stderr is passed through, as
        kubectl does, so the plugin's own explanation reaches the log."""
        executable = self.executable()
        environment = {**os.environ, **dict(self.env), EXEC_INFO_ENV: self.exec_info(cluster)}
        name = f"kubeconfig user {self.user!r}: exec plugin {self.command!r}"
        try:
            # The command is the user's own kubeconfig's, run as kubectl runs it: trusted input.
            finished = subprocess.run(  # noqa: S603
                [executable, *self.args],
                env=environment,
                stdin=subprocess.DEVNULL,  # no terminal: a plugin that tries to prompt fails instead of hanging
                stdout=subprocess.PIPE,
                timeout=EXEC_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ExecPluginFailed(f"{name} did not finish within {EXEC_TIMEOUT:.0f}s") from None
        except OSError as error:  # e.g. a script whose interpreter is missing
            raise ExecPluginFailed(f"{name} could not start: {error.strerror or error}") from None
        if finished.returncode != 0:
            hint = f" {self.install_hint.strip()}" if self.install_hint.strip() else ""
            raise ExecPluginFailed(f"{name} exited with status {finished.returncode} (its stderr is in the log).{hint}")
        return ExecCredential.parse(finished.stdout, self.api_version, name)


def _check_interactive_mode(where: str, api_version: str, mode: Any) -> None:
    """Never and IfAvailable run without a terminal (kumo says `interactive: false`); Always cannot."""
    mode = mode or ("IfAvailable" if api_version in API_VERSIONS_WITH_DEFAULT_MODE else "")
    if not mode:
        raise ExecConfigError(f"{where}: interactiveMode must be set for apiVersion {api_version}")
    if mode not in INTERACTIVE_MODES:
        raise ExecConfigError(f"{where}: interactiveMode {mode!r} is not one of {', '.join(INTERACTIVE_MODES)}")
    if mode == "Always":
        raise ExecConfigError(
            f"{where}: interactiveMode Always needs a terminal to prompt on, which a controller does not have; "
            "use a plugin configuration that logs in without prompting (interactiveMode Never or IfAvailable)"
        )


def _environment(where: str, listed: Any) -> tuple[tuple[str, str], ...]:
    """The entry's `env` list as (name, value) pairs, added to the process environment."""
    pairs = []
    for variable in listed or []:
        if not isinstance(variable, Mapping) or not variable.get("name"):
            raise ExecConfigError(f"{where}: every env entry needs a name and a value")
        pairs.append((str(variable["name"]), str(variable.get("value") or "")))
    return tuple(pairs)


@dataclass(frozen=True)
class ExecCredential:
    """What a plugin printed: a bearer token and/or a client certificate, and until when.
    The values never appear in repr (kopf and asyncio may log objects they hold)."""

    token: str | None = field(default=None, repr=False)
    client_certificate_data: str | None = field(default=None, repr=False)
    client_key_data: str | None = field(default=None, repr=False)
    expiration: datetime.datetime | None = None  # timezone-aware; None: until a 401

    @classmethod
    def parse(cls, output: bytes, api_version: str, name: str) -> ExecCredential:
        """The ExecCredential in `output`, checked as client-go checks it. Errors describe the
        shape of what was wrong, never the output itself (it may hold a token)."""
        try:
            document = json.loads(output or b"null")
        except ValueError:
            raise ExecPluginFailed(f"{name} printed no JSON ExecCredential on stdout") from None
        if not isinstance(document, Mapping) or document.get("kind") != EXEC_KIND:
            raise ExecPluginFailed(f"{name} printed no ExecCredential (kind {EXEC_KIND})")
        if document.get("apiVersion") != api_version:
            raise ExecPluginFailed(
                f"{name} answered with apiVersion {document.get('apiVersion')!r}, not the configured {api_version}"
            )
        status = document.get("status")
        if not isinstance(status, Mapping):
            raise ExecPluginFailed(f"{name} returned an ExecCredential without status")
        token = status.get("token") or None
        certificate, key = status.get("clientCertificateData") or None, status.get("clientKeyData") or None
        if bool(certificate) != bool(key):
            raise ExecPluginFailed(f"{name} returned only one of clientCertificateData and clientKeyData")
        if not token and not certificate:
            raise ExecPluginFailed(f"{name} returned neither a token nor a client certificate and key")
        return cls(
            token=str(token) if token else None,
            client_certificate_data=str(certificate) if certificate else None,
            client_key_data=str(key) if key else None,
            expiration=_timestamp(status.get("expirationTimestamp"), name),
        )

    def expired(self, now: datetime.datetime | None = None) -> bool:
        if self.expiration is None:
            return False
        return (now or datetime.datetime.now(datetime.UTC)) >= self.expiration

    def held_by(self, info: kopf.ConnectionInfo | None) -> bool:
        """Whether `info` was built from this credential (so a consumer reporting `info` as
        rejected or expired is reporting this one)."""
        return (
            info is not None
            and info.token == self.token
            and info.certificate_data == self.client_certificate_data
            and info.private_key_data == self.client_key_data
        )


def _timestamp(value: Any, name: str) -> datetime.datetime | None:
    """An RFC 3339 expirationTimestamp as an aware datetime (UTC when it names no zone)."""
    if not value:
        return None
    try:
        moment = datetime.datetime.fromisoformat(str(value))
    except ValueError:
        raise ExecPluginFailed(f"{name} returned an expirationTimestamp that is not RFC 3339: {value!r}") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=datetime.UTC)


def cluster_info(
    cluster: Mapping[str, Any], ca_bytes: bytes | None, extensions: Sequence[Mapping[str, Any]] = ()
) -> dict[str, Any]:
    """spec.cluster for a plugin with provideClusterInfo: the kubeconfig cluster's fields under
    their kubeconfig names, the CA always as data (base64, as JSON carries []byte), and the value
    of the cluster's `client.authentication.k8s.io/exec` extension as `config`."""
    info: dict[str, Any] = {"server": cluster.get("server", "")}
    for name in ("tls-server-name", "insecure-skip-tls-verify", "proxy-url", "disable-compression"):
        if cluster.get(name):
            info[name] = cluster[name]
    if ca_bytes:
        info["certificate-authority-data"] = base64.b64encode(ca_bytes).decode()
    for extension in extensions:
        if isinstance(extension, Mapping) and extension.get("name") == CLUSTER_CONFIG_EXTENSION:
            info["config"] = extension.get("extension")
    return info


class ExecCredentials:
    """The process's exec credentials, one per plugin invocation shape (user, command, args, env,
    cluster), each kept until it expires or a consumer reports it rejected. Thread-safe: kopf logs
    in from an executor thread and kumo's client from another; the plugin runs once for both."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._held: dict[tuple[Any, ...], ExecCredential] = {}
        self.runs = 0  # how many times a plugin ran (for tests and debugging)

    def get(
        self, plugin: ExecPlugin, cluster: Mapping[str, Any] | None, stale: kopf.ConnectionInfo | None = None
    ) -> ExecCredential:
        """The held credential, unless it expired or it is what `stale` carried (the consumer
        found it rejected, or its own copy expired): then the plugin runs again."""
        key = (plugin, json.dumps(cluster, sort_keys=True, default=str) if plugin.provide_cluster_info else "")
        with self._lock:
            held = self._held.get(key)
            if held is not None and not held.expired() and not held.held_by(stale):
                return held
            self._held.pop(key, None)
            self.runs += 1
            fresh = plugin.run(cluster)
            self._held[key] = fresh
            return fresh
