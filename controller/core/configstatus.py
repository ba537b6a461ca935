"""The status of a ProviderConfig or ClusterProviderConfig: is it usable, and by how many objects.

A config is Ready when three things hold, checked in this order, each failure with its own reason
(kumo/api.py) and the message of whoever refused:

1. its credentials resolve: the config's credentials Secret and key exist
   (`CredentialsNotFound`, with the resolver's message);
2. its provider plugin is installed and loaded (`ProviderNotInstalled`, with the registry's);
3. the plugin's identity check succeeds: one cheap read through the provider's instrumented call
   path (`IdentityCheckFailed`, with the cloud's own message; `IdentityVerified` with the account
   when it succeeds). The check is an optional provider capability (`IdentityCheck` in
   providers/base.py); a plugin without it is Ready once 1 and 2 hold (`CredentialsResolved`),
   and the message says the cloud was not called.

`check` makes those calls; everything else here is pure: `config_status` turns the outcome and the
user count into the status to write, and `needs_write` says whether it differs from what the
object shows, so an unchanged outcome costs no write (conditions keep their lastTransitionTime).
The runtime (controller/runtime/providerconfigs.py) decides when to check and writes the result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol

from kumo.controller.core import conditions as cond
from kumo.controller.core.kubeapi import Kube
from kumo.controller.core.providerconfig import ConfigKey, ProviderConfigError, resolve
from kumo.providers.base import CallHooks, IdentityCheck, Provider, ProviderError, ProviderSettings, Unavailable

from kumo import api


@dataclass(frozen=True)
class ConfigCheck:
    """The outcome of checking one config: the Ready condition's status, reason and message, and
    the account the credentials act as when the cloud said."""

    ready: bool
    reason: str
    message: str
    account: str = ""


class Providers(Protocol):
    """The provider lookup the check needs (providers/registry.py `ProviderRegistry`)."""

    def get(self, name: str) -> Provider: ...


HooksFor = Callable[[ProviderSettings], CallHooks]


def reference(key: ConfigKey) -> dict[str, Any]:
    """A minimal object body referring to the config `key`, as `resolve` reads one: the config
    is resolved exactly as for an object in its namespace that uses it."""
    kind, namespace, name = key
    return {"metadata": {"namespace": namespace}, "spec": {"providerConfigRef": {"kind": kind, "name": name}}}


async def check(
    kube: Kube,
    providers: Providers,
    key: ConfigKey,
    controller_namespace: str,
    hooks_for: HooksFor | None = None,
    caller: str = "",
) -> ConfigCheck:
    """Resolve the config, find its plugin, and run the plugin's identity check if it has one.
    Never writes: the in-use protection is the reconcile's business, not the check's. `caller`
    names the replica in the call, as in the reconciler's (a sharded replica's shard)."""
    try:
        settings = await resolve(kube, reference(key), controller_namespace)
        if caller:
            settings = replace(settings, caller=caller)
        provider = providers.get(settings.provider)
        if not isinstance(provider, IdentityCheck):
            return unchecked(settings.provider)
        identity = await provider.check(settings, hooks_for(settings) if hooks_for else None)
    except (ProviderConfigError, ProviderError) as error:
        return failed(error)
    return ConfigCheck(True, api.IDENTITY_VERIFIED, identity.message, identity.account)


def unchecked(provider: str) -> ConfigCheck:
    return ConfigCheck(
        True,
        api.CREDENTIALS_RESOLVED,
        f"credentials resolve; provider plugin {provider!r} has no identity check, so the cloud was not called",
    )


def failed(error: ProviderConfigError | ProviderError) -> ConfigCheck:
    """The outcome for an error of one of the three steps; the message is the error's own."""
    if isinstance(error, ProviderConfigError):
        return ConfigCheck(False, api.CREDENTIALS_NOT_FOUND, str(error))
    if isinstance(error, Unavailable):
        return ConfigCheck(False, api.PROVIDER_NOT_INSTALLED, str(error))
    return ConfigCheck(False, api.IDENTITY_CHECK_FAILED, f"identity check failed: {error}")


def config_status(
    current: Mapping[str, Any], outcome: ConfigCheck | None, generation: int, users: int
) -> dict[str, Any]:
    """The status to show: the Ready condition from `outcome` (checked against `generation`), and
    the number of objects using the config. Without an outcome yet (not checked since the
    controller started) the current conditions stay as they are."""
    status: dict[str, Any] = {"users": users}
    if outcome is not None:
        ready = cond.Condition(api.READY, outcome.ready, outcome.reason, outcome.message)
        status["conditions"] = cond.merge(current.get("conditions") or [], [ready], generation)
        status["observedGeneration"] = generation
        status["account"] = outcome.account
    return status


def needs_write(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Whether any field of `wanted` differs from the status the object shows."""
    return any(current.get(name) != value for name, value in wanted.items())


def users_message(kind: str, name: str, users: list[str], count: int, shown: int = 5) -> str:
    """The event on a config deleted while in use: which objects hold it (the first few, and how
    many in all), and when it goes."""
    names = ", ".join(users[:shown]) + (f" and {count - shown} more" if count > shown else "")
    return (
        f"{kind} {name} is being deleted but {count} {'object still uses' if count == 1 else 'objects still use'} "
        f"it ({names}); "
        f"the finalizer {api.IN_USE_FINALIZER} keeps it until the last of them is gone"
    )
