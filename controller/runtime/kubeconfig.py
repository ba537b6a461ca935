"""kumo's one reading of a kubeconfig, as kubectl reads it, for `kumo run` and the CLI.

kopf's own kubeconfig login is deliberately minimal (no exec plugins, no tokenFile, no relative
paths, no context choice), and the official client is kept out of `kumo run` (issue 16), so kumo
reads kubeconfigs itself, by the documented rules
(https://kubernetes.io/docs/concepts/configuration/organize-cluster-access-kubeconfig/ and
client-go's clientcmd loading rules):

- the files: `--kubeconfig`/`KUBECONFIG` as a list of paths (os.pathsep), else ~/.kube/config;
  files that do not exist are skipped, but not all of them;
- merging: the first file to set `current-context` wins, and the first file to define a cluster,
  user or context of a name wins for that name (entries are not merged field by field);
- the context: `--context` when given, else current-context; its namespace is the default one;
- relative paths (certificate-authority, client-certificate, client-key, tokenFile, and an exec
  command that contains a path separator) are relative to the directory of the file that defines
  the entry, not to the working directory;
- cluster: server, certificate-authority(-data) (data wins over a file, as in client-go),
  insecure-skip-tls-verify, proxy-url; user: token, tokenFile (read at every login, so a rotated
  file is picked up; it wins over token), client-certificate(-data), client-key(-data),
  username + password, an auth-provider's cached `access-token` (kopf's login honoured it), and
  exec plugins (controller/runtime/execplugin.py).

The result is the `kopf.ConnectionInfo` kopf's watches and kumo's client (kubehttp.py) log in
with. Errors name the file, context, cluster or user entry and the field; they never include a
credential's value.
"""

from __future__ import annotations

import base64
import datetime
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kopf
import yaml
from kumo.controller.runtime.execplugin import ExecCredential, ExecCredentials, ExecPlugin, cluster_info

log = logging.getLogger(__name__)
KUBECONFIG_ENV = "KUBECONFIG"
DEFAULT_KUBECONFIG = "~/.kube/config"
NAMED_SECTIONS = ("clusters", "users", "contexts")
SECTION_ITEM = {"clusters": "cluster", "users": "user", "contexts": "context"}


class KubeconfigError(Exception):
    """A kubeconfig that cannot describe a login: unreadable, or missing what the chosen context
    needs. The message names the file or entry and the field, never a credential's value."""


@dataclass(frozen=True)
class Entry:
    """One named cluster, user or context, with the file that defined it (relative paths in it
    are relative to that file's directory)."""

    name: str
    body: Mapping[str, Any]
    origin: Path

    def path(self, key: str) -> str | None:
        """The entry's file path field `key`, resolved against the defining file's directory."""
        value = self.body.get(key)
        if not value:
            return None
        return _resolved(str(value), self.origin)


@dataclass
class Kubeconfig:
    """The merged view of one or more kubeconfig files."""

    files: tuple[Path, ...]
    current_context: str = ""
    clusters: dict[str, Entry] = field(default_factory=dict)
    users: dict[str, Entry] = field(default_factory=dict)
    contexts: dict[str, Entry] = field(default_factory=dict)

    def add(self, path: Path, document: Mapping[str, Any]) -> None:
        """Merge one file in: what earlier files set stays."""
        self.current_context = self.current_context or str(document.get("current-context") or "")
        for section in NAMED_SECTIONS:
            held: dict[str, Entry] = getattr(self, section)
            for item in document.get(section) or []:
                if not isinstance(item, Mapping) or not item.get("name"):
                    raise KubeconfigError(f"kubeconfig {path}: every entry of {section} needs a name")
                body = item.get(SECTION_ITEM[section]) or {}
                if not isinstance(body, Mapping):
                    raise KubeconfigError(f"kubeconfig {path}: {section} entry {item['name']!r} is not a mapping")
                held.setdefault(str(item["name"]), Entry(str(item["name"]), body, path))

    def where(self) -> str:
        return ", ".join(str(path) for path in self.files)


def kubeconfig_files(kubeconfig: str = "", environ: Mapping[str, str] | None = None) -> tuple[Path, ...]:
    """The files to read: `kubeconfig` (a flag's value, or a KUBECONFIG-style list), else the
    KUBECONFIG variable, else ~/.kube/config when it exists; () when there is none at all."""
    environ = os.environ if environ is None else environ
    listed = kubeconfig or environ.get(KUBECONFIG_ENV, "")
    if not listed.strip():
        default = Path(DEFAULT_KUBECONFIG).expanduser()
        return (default,) if default.exists() else ()
    return tuple(Path(part.strip()).expanduser() for part in listed.split(os.pathsep) if part.strip())


def load(files: Sequence[Path]) -> Kubeconfig:
    """The merged kubeconfig of `files`, skipping those that do not exist (not all of them)."""
    merged = Kubeconfig(tuple(files))
    found = 0
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            continue  # client-go skips a missing file of the list
        except OSError as error:
            raise KubeconfigError(f"kubeconfig {path}: cannot read it: {error.strerror or error}") from None
        try:
            document = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            raise KubeconfigError(f"kubeconfig {path}: not valid YAML: {_first_line(error)}") from None
        if not isinstance(document, Mapping):
            raise KubeconfigError(f"kubeconfig {path}: not a kubeconfig (a mapping with clusters, users, contexts)")
        # Absolute, symlinks kept: client-go resolves relative paths against the directory of
        # the path it was given (filepath.Abs), not of a symlink's target.
        merged.add(path.absolute(), document)
        found += 1
    if files and not found:
        raise KubeconfigError(f"kubeconfig: no such file: {merged.where()}")
    return merged


@dataclass(frozen=True)
class Target:
    """What a context chooses: its cluster, its user (None: anonymous), its namespace."""

    context: str
    cluster: Entry
    user: Entry | None
    namespace: str | None


def choose(config: Kubeconfig, context: str = "") -> Target:
    """The context `context`, else the current-context, with the entries it names."""
    name = context or config.current_context
    if not name:
        raise KubeconfigError(f"kubeconfig {config.where()}: no current-context is set and no --context was given")
    chosen = config.contexts.get(name)
    if chosen is None:
        raise KubeconfigError(f"kubeconfig {config.where()}: no context named {name!r}")
    cluster_name = str(chosen.body.get("cluster") or "")
    cluster = config.clusters.get(cluster_name)
    if cluster is None:
        raise KubeconfigError(f"kubeconfig context {name!r}: no cluster named {cluster_name!r}")
    if not cluster.body.get("server"):
        raise KubeconfigError(f"kubeconfig cluster {cluster_name!r}: server is not set")
    user_name = str(chosen.body.get("user") or "")
    user = config.users.get(user_name) if user_name else None
    if user_name and user is None:
        raise KubeconfigError(f"kubeconfig context {name!r}: no user named {user_name!r}")
    return Target(name, cluster, user, str(chosen.body.get("namespace") or "") or None)


class KubeconfigReader:
    """Reads the kubeconfig at every login (cheap, and a rotated token file or an edited file is
    picked up); exec plugins' credentials are held across logins by `credentials`."""

    def __init__(self, kubeconfig: str = "", context: str = "", credentials: ExecCredentials | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.context = context
        self.credentials = credentials or ExecCredentials()

    def files(self) -> tuple[Path, ...]:
        return kubeconfig_files(self.kubeconfig)

    def target(self) -> Target | None:
        """The chosen context's entries, or None when there is no kubeconfig at all."""
        files = self.files()
        return choose(load(files), self.context) if files else None

    def connection_info(
        self, stale: kopf.ConnectionInfo | None = None, *, trust_env: bool = False
    ) -> kopf.ConnectionInfo | None:
        """The login the kubeconfig describes, or None when there is none. `stale`: what this
        consumer was given last time and now found rejected (401) or expired: an exec plugin's
        credential it carried is not handed out again."""
        target = self.target()
        return None if target is None else self._connection_info(target, stale, trust_env)

    def _connection_info(
        self, target: Target, stale: kopf.ConnectionInfo | None, trust_env: bool
    ) -> kopf.ConnectionInfo:
        cluster = target.cluster
        insecure = bool(cluster.body.get("insecure-skip-tls-verify"))
        ca_data = _inline(cluster, "certificate-authority-data", f"cluster {cluster.name!r}")
        ca_path = None if ca_data else cluster.path("certificate-authority")
        if insecure and (ca_data or ca_path):
            raise KubeconfigError(
                f"kubeconfig cluster {cluster.name!r}: certificate-authority and insecure-skip-tls-verify "
                "cannot both be set (kubectl refuses it too)"
            )
        if ca_path is not None:
            _readable(ca_path, f"cluster {cluster.name!r}", "certificate-authority")
        if cluster.body.get("tls-server-name"):
            log.warning(
                "kubeconfig cluster %r sets tls-server-name, which kumo does not support: the server's certificate "
                "must name the host of %s",
                cluster.name,
                cluster.body["server"],
            )
        user = _user_login(target.user, self.credentials, stale, lambda: _cluster_info(cluster, ca_path, ca_data))
        return kopf.ConnectionInfo(
            server=str(cluster.body["server"]),
            ca_path=ca_path,
            ca_data=ca_data,
            insecure=insecure or None,
            proxy_url=str(cluster.body.get("proxy-url") or "") or None,
            default_namespace=target.namespace,
            trust_env=trust_env,
            **user.fields(),
        )


@dataclass
class _UserLogin:
    """A user entry's credentials as ConnectionInfo fields."""

    token: str | None = None
    username: str | None = None
    password: str | None = None
    certificate_path: str | None = None
    certificate_data: str | None = None
    private_key_path: str | None = None
    private_key_data: str | None = None
    expiration: datetime.datetime | None = None

    def fields(self) -> dict[str, Any]:
        return {name: value for name, value in vars(self).items() if value is not None}

    def use(self, credential: ExecCredential) -> None:
        """An exec plugin's credential replaces the entry's static one of the same kind."""
        if credential.token:
            self.token = credential.token
        if credential.client_certificate_data:
            self.certificate_data, self.certificate_path = credential.client_certificate_data, None
            self.private_key_data, self.private_key_path = credential.client_key_data, None
        self.expiration = credential.expiration


def _user_login(
    user: Entry | None,
    credentials: ExecCredentials,
    stale: kopf.ConnectionInfo | None,
    cluster: Callable[[], dict[str, Any]],
) -> _UserLogin:
    """The user entry's static credentials, then its exec plugin's (None: anonymous, and the
    API server decides what that may do)."""
    if user is None:
        return _UserLogin()
    body, where = user.body, f"user {user.name!r}"
    login = _UserLogin(
        token=_static_token(user),
        username=str(body.get("username") or "") or None,
        password=str(body.get("password") or "") or None,
    )
    if login.token and login.username:
        raise KubeconfigError(f"kubeconfig {where}: set a token or a username and password, not both")
    # Inline data wins over a file, for the certificate and the key alike: client-go's rule
    # ("client-cert-data and client-cert are both specified ... client-cert-data will override").
    login.certificate_data = _inline(user, "client-certificate-data", where)
    login.certificate_path = None if login.certificate_data else user.path("client-certificate")
    login.private_key_data = _inline(user, "client-key-data", where)
    login.private_key_path = None if login.private_key_data else user.path("client-key")
    for path, key in ((login.certificate_path, "client-certificate"), (login.private_key_path, "client-key")):
        if path is not None:
            _readable(path, where, key)
    if body.get("exec"):
        if body.get("auth-provider"):
            raise KubeconfigError(f"kubeconfig {where}: auth-provider and exec cannot both be set")
        plugin = _exec_plugin(user)
        login.use(credentials.get(plugin, cluster() if plugin.provide_cluster_info else None, stale))
    return login


def _static_token(user: Entry) -> str | None:
    """tokenFile (read now: a rotated file is picked up at the next login), else token, else an
    auth-provider's cached access-token, as kopf's own kubeconfig login honoured it."""
    token_file = user.path("tokenFile")
    if token_file:
        try:
            return Path(token_file).read_text(encoding="utf-8").strip() or None
        except OSError as error:
            raise KubeconfigError(
                f"kubeconfig user {user.name!r}: tokenFile {token_file}: {error.strerror or error}"
            ) from None
    provider = user.body.get("auth-provider")
    provider_config = (provider.get("config") or {}) if isinstance(provider, Mapping) else {}
    return str(user.body.get("token") or provider_config.get("access-token") or "") or None


def _exec_plugin(user: Entry) -> ExecPlugin:
    spec = user.body["exec"]
    if not isinstance(spec, Mapping):
        raise KubeconfigError(f"kubeconfig user {user.name!r}: exec is not a mapping")
    command = str(spec.get("command") or "")
    if os.sep in command:  # a path, not a name to look up on PATH: relative to the defining file
        command = _resolved(command, user.origin)
    return ExecPlugin.parse(user.name, {**spec, "command": command})


def _resolved(path: str, origin: Path) -> str:
    return path if Path(path).is_absolute() else str(origin.parent / path)


def _cluster_info(cluster: Entry, ca_path: str | None, ca_data: Any) -> dict[str, Any]:
    """spec.cluster for a plugin: the CA as bytes whichever way the kubeconfig gives it."""
    ca_bytes: bytes | None = None
    if ca_data:
        ca_bytes = base64.b64decode(ca_data)
    elif ca_path:
        ca_bytes = Path(ca_path).read_bytes()
    return cluster_info(cluster.body, ca_bytes, cluster.body.get("extensions") or ())


def _inline(entry: Entry, key: str, where: str) -> str | None:
    """A `-data` field: base64 of PEM in a kubeconfig. Checked here, so a damaged one is named
    (its value never is) instead of failing later inside the TLS setup."""
    value = entry.body.get(key)
    if not value:
        return None
    text = "".join(str(value).split())
    try:
        base64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error is one
        raise KubeconfigError(f"kubeconfig {where}: {key} is not base64") from None
    return text


def _readable(path: str, where: str, key: str) -> None:
    """A referenced file must exist now: a clear error beats the TLS library's."""
    if not os.access(path, os.R_OK):
        raise KubeconfigError(f"kubeconfig {where}: {key} {path} does not exist or is not readable")


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
