"""How `kumo run` logs in to the API server: the Pod's ServiceAccount (kopf's own login, first,
as before), else the kubeconfig as kubectl reads it (controller/runtime/kubeconfig.py).

Two consumers log in: kopf's vault (`@kopf.on.login`, for the watches) and kumo's own client
(controller/runtime/kubehttp.py, for reads and writes). Each asks again only when what it holds
stopped working: kopf when its credential expired or drew a 401
(https://kopf.readthedocs.io/en/stable/authentication/), KubeHTTP likewise. So a consumer's
second and later logins mean "the one you gave me is stale", and an exec plugin's credential it
held is replaced by a fresh run of the plugin, while the other consumer's first login reuses the
credential still held. One `ClusterLogin` per process keeps the plugin's credential for both (an
EKS token from `aws eks get-token` lives 15 minutes: an expired token recovers without a restart).

`kumo run` logs in once before kopf starts (`check`), so a kubeconfig that cannot work stops it
at once with the error; later, a failing login is retried (kopf would otherwise stop its
credentials task for good and leave the operator running without watches).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf
from kumo.controller.runtime.execplugin import ExecPluginError
from kumo.controller.runtime.kubeconfig import KubeconfigError, KubeconfigReader

LoginFn = Callable[..., kopf.ConnectionInfo | None]
# What a login can fail with; each message names the file or entry and never holds a secret.
LOGIN_ERRORS = (KubeconfigError, ExecPluginError)
RETRY_DELAY = 10.0  # seconds before kopf tries a failed login again


class ClusterLogin:
    """The process's login: `consumer()` gives each consumer its own login function."""

    def __init__(
        self, kubeconfig: str = "", context: str = "", *, settings: kopf.OperatorSettings | None = None
    ) -> None:
        self.reader = KubeconfigReader(kubeconfig, context)
        self.settings = settings or kopf.OperatorSettings()

    def consumer(self) -> LoginFn:
        """A login function for one consumer, callable as kopf calls login handlers (keyword
        arguments, `settings` among them) or with none at all (KubeHTTP)."""
        given: kopf.ConnectionInfo | None = None  # what this consumer holds, if anything

        def login(*, settings: kopf.OperatorSettings | None = None, **_: Any) -> kopf.ConnectionInfo | None:
            nonlocal given
            settings = settings or self.settings
            given = kopf.login_with_service_account(settings=settings) or self.reader.connection_info(
                stale=given, trust_env=settings.networking.trust_env
            )
            return given

        return login

    def kopf_handler(self) -> LoginFn:
        """kopf's `@kopf.on.login` handler: a failed login is a temporary error, tried again."""
        login = self.consumer()

        def handler(**kwargs: Any) -> kopf.ConnectionInfo | None:
            try:
                return login(**kwargs)
            except LOGIN_ERRORS as error:
                raise kopf.TemporaryError(str(error), delay=RETRY_DELAY) from None

        return handler

    def check(self) -> kopf.ConnectionInfo:
        """Log in once (an exec plugin's credential is then held for the consumers' first logins);
        raises one of LOGIN_ERRORS when there is nothing to log in with or it cannot work."""
        info = self.consumer()()
        if info is None:
            raise KubeconfigError(
                "no Kubernetes credentials: not in a Pod (no ServiceAccount token) and no kubeconfig "
                "(--kubeconfig and KUBECONFIG are unset and ~/.kube/config does not exist)"
            )
        return info
