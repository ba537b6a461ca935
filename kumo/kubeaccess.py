"""How the CLI's commands reach the cluster: with the login `kumo run` would use outside a Pod.

`kumo run`, `kumo plan`, `kumo status` and `kumo drift` all read the kubeconfig through kumo's one
reader (controller/runtime/kubeconfig.py: KUBECONFIG merging, contexts, relative paths,
tokenFile, exec plugins), so they choose the same server, user and namespace; before, the CLI
used the official client's loader and `kumo run` kopf's minimal one, two readings of one file that
could disagree.

`plan` speaks through kumo's own client with that login as it is. `status` and `drift` still
speak through the official client (its typed calls and paging), configured here from the same
login: the same server, TLS settings, proxy and Authorization header. The official client wants
files for TLS material, so inline certificate and key data (kubeconfig `-data` fields, or an exec
plugin's client certificate) are written to a private directory (0700, files 0600) that is
removed when the command exits.
"""

from __future__ import annotations

import atexit
import base64
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import kopf

from kumo.controller.runtime.kubeconfig import KubeconfigError, KubeconfigReader

NO_KUBECONFIG = "no kubeconfig: --kubeconfig and KUBECONFIG are unset and ~/.kube/config does not exist"


def cli_login(kubeconfig: str | None, context: str | None) -> kopf.ConnectionInfo:
    """The login the kubeconfig describes (`kubeconfig`: a flag's value, else KUBECONFIG, else
    ~/.kube/config; `context`: else the current-context)."""
    info = KubeconfigReader(kubeconfig or "", context or "").connection_info()
    if info is None:
        raise KubeconfigError(NO_KUBECONFIG)
    return info


def context_namespace(info: kopf.ConnectionInfo) -> str:
    """The context's namespace, else `default`, as kubectl defaults it."""
    return info.default_namespace or "default"


def official_client(info: kopf.ConnectionInfo) -> Any:
    """An official `kubernetes.client.ApiClient` logged in as `info` says."""
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = info.server
    configuration.verify_ssl = not info.insecure
    configuration.proxy = info.proxy_url
    files = _TLSFiles()
    configuration.ssl_ca_cert = files.path(info.ca_path, info.ca_data, "ca.crt")
    configuration.cert_file = files.path(info.certificate_path, info.certificate_data, "client.crt")
    configuration.key_file = files.path(info.private_key_path, info.private_key_data, "client.key")
    api_client = client.ApiClient(configuration)
    # The very header kumo run sends (bearer token, or basic auth), from kopf's one rule.
    for name, value in info.as_http_headers().items():
        api_client.set_default_header(name, value)
    return api_client


class _TLSFiles:
    """Inline TLS material as files in a private directory, made on first need."""

    def __init__(self) -> None:
        self.directory: Path | None = None

    def path(self, path: Any, data: str | bytes | None, name: str) -> str | None:
        if path:
            return str(path)
        if not data:
            return None
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="kumo-tls-"))  # 0700, this user's only
            atexit.register(shutil.rmtree, self.directory, True)
        target = self.directory / name
        descriptor = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(_pem(data))
        return str(target)


def _pem(data: str | bytes) -> bytes:
    """PEM as given (an exec plugin's), or decoded from a kubeconfig's base64 `-data` field."""
    raw = data.encode() if isinstance(data, str) else data
    return raw if raw.lstrip().startswith(b"-----BEGIN ") else base64.b64decode(raw)
