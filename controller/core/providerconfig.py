"""Resolving a managed object's providerConfigRef into `ProviderSettings`.

Tenancy lives here. A namespaced ProviderConfig is only looked up in the object's own namespace
and only reads its credentials Secret from that same namespace; a ClusterProviderConfig reads its
credentials Secret from the controller's own namespace. No reference ever names another
namespace, so a user in namespace A cannot point kumo at a Secret in namespace B.

In-use protection: while objects use a namespaced ProviderConfig, it and its credentials Secret
carry the finalizer `kumo.dev/in-use`. Deleting a namespace deletes everything in it at once; without
the finalizer the credentials would be gone before kumo could delete the cloud resources of the
namespace's Databases and Buckets, and those (and so the namespace) would be stuck for ever; the
same failure reported against Config Connector
(https://github.com/GoogleCloudPlatform/k8s-config-connector/issues/375) and Crossplane
(https://github.com/crossplane/crossplane/issues/4661, whose answer is the same kind of in-use
finalizer on ProviderConfigs). The finalizer is added when an object's reconcile resolves the
config, and removed (`release`) when the last object using it is gone.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.controller.core.kubeapi import Conflict, Kube, NotFound
from kumo.providers.base import ProviderSettings

from kumo.api import IN_USE_FINALIZER

DEFAULT_REF = {"kind": "ClusterProviderConfig", "name": "default"}


class ProviderConfigError(Exception):
    """The reference cannot be resolved (missing config, Secret or key): the user must act."""


ConfigKey = tuple[str, str, str]


def config_key(body: Mapping[str, Any], namespace: str | None = None) -> ConfigKey:
    """(kind, namespace, name) of the config an object uses; namespace "" for a cluster config."""
    ref = (body.get("spec") or {}).get("providerConfigRef") or DEFAULT_REF
    kind = ref.get("kind", DEFAULT_REF["kind"])
    namespace = body["metadata"]["namespace"] if namespace is None else namespace
    return kind, namespace if kind == "ProviderConfig" else "", ref["name"]


@dataclass
class RecentConfigs:
    """Resolved provider configs, reused for `ttl` seconds.

    Each reconcile pass needs its object's settings; resolving afresh is two GETs (the config and
    its credentials Secret), so a burst of 1,000 new objects on one config would read the same two
    objects thousands of times. A changed config or a rotated credential still takes effect
    within `ttl`, without a restart. Failures are never kept: a config created after the error
    is used at the next attempt.
    """

    ttl: float = 10.0
    clock: Callable[[], float] = time.monotonic
    # key -> (when resolved, settings, whether the in-use protection was checked then)
    _entries: dict[ConfigKey, tuple[float, ProviderSettings, bool]] = field(default_factory=dict)

    async def resolve(
        self, kube: Kube, body: Mapping[str, Any], controller_namespace: str, *, protect: bool = False
    ) -> ProviderSettings:
        key = config_key(body)
        kept = self._entries.get(key)
        if kept is not None and self.clock() - kept[0] < self.ttl and (kept[2] or not protect):
            return kept[1]
        settings = await resolve(kube, body, controller_namespace, protect=protect)
        self._entries[key] = (self.clock(), settings, protect)
        return settings

    def forget(self, key: ConfigKey) -> None:
        """The next resolve reads the config again (and checks its protection again)."""
        self._entries.pop(key, None)


async def resolve(
    kube: Kube, body: Mapping[str, Any], controller_namespace: str, *, protect: bool = False
) -> ProviderSettings:
    """The settings of the object's config; with `protect`, a namespaced ProviderConfig and its
    credentials Secret get the in-use finalizer if they lack it (one write each, once)."""
    kind, _, name = config_key(body)
    namespace = body["metadata"]["namespace"]
    try:
        config = await kube.get_provider_config(kind, namespace, name)
    except NotFound:
        raise ProviderConfigError(await _not_found(kube, kind, namespace, name)) from None
    spec = config.get("spec", {})
    # A cluster config outlives any namespace. A config already being deleted cannot take a new
    # finalizer, and holding its Secret alone could strand the Secret: release() finds the Secret
    # through the config. Either way it is used while it lasts.
    protect = protect and kind == "ProviderConfig" and not config["metadata"].get("deletionTimestamp")
    if protect:
        await _hold(
            config["metadata"], lambda now, wanted: kube.set_provider_config_finalizers(namespace, name, now, wanted)
        )
    secret_namespace = namespace if kind == "ProviderConfig" else controller_namespace
    credentials = await _credentials(kube, spec.get("credentials") or {}, secret_namespace, kind, name, protect)
    return ProviderSettings(
        provider=spec["provider"],
        region=spec.get("region", ""),
        project=spec.get("project", ""),
        credentials=credentials,
        endpoints=dict(spec.get("endpoints") or {}),
        provider_options=dict(spec.get("providerOptions") or {}),
    )


async def _not_found(kube: Kube, kind: str, namespace: str, name: str) -> str:
    """Why the reference does not resolve, and, when a config of the other kind has that name
    (the usual mix-up: `providerConfigRef: {name: aws}` means the ClusterProviderConfig aws, as the
    kind defaults to ClusterProviderConfig), which kind to set instead."""
    other = "ClusterProviderConfig" if kind == "ProviderConfig" else "ProviderConfig"
    if kind == "ProviderConfig":
        missing = f"spec.providerConfigRef: ProviderConfig {name!r} not found in namespace {namespace}"
        there = f"a ClusterProviderConfig {name!r} exists"
    else:
        missing = f"spec.providerConfigRef: ClusterProviderConfig {name!r} not found"
        there = f"a ProviderConfig {name!r} exists in namespace {namespace} (kind defaults to ClusterProviderConfig)"
    try:
        await kube.get_provider_config(other, namespace, name)
    except NotFound:
        return missing
    return f"{missing}; {there}: set kind: {other}"


async def _credentials(
    kube: Kube, spec: Mapping[str, Any], namespace: str, kind: str, name: str, protect: bool = False
) -> dict[str, str]:
    if spec.get("source", "Environment") != "Secret":
        return {}  # the environment's default chain: IRSA, Workload Identity, instance roles
    ref = spec.get("secretRef") or {}
    secret = await kube.read_secret(namespace, ref.get("name", ""))
    if secret is None:
        raise ProviderConfigError(f"{kind} {name!r}: credentials Secret {namespace}/{ref.get('name')} not found")
    if protect:
        meta = secret["metadata"]
        await _hold(meta, lambda now, wanted: kube.set_secret_finalizers(namespace, meta["name"], now, wanted))
    data = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    key = ref.get("key")
    if not key:
        return data
    if key not in data:
        raise ProviderConfigError(
            f"{kind} {name!r}: key {key!r} not found in credentials Secret {namespace}/{ref['name']}"
        )
    return {"document": data[key]}


SetFinalizers = Callable[[list[str], list[str]], Awaitable[None]]


async def _hold(meta: Mapping[str, Any], set_finalizers: SetFinalizers) -> None:
    """Add the in-use finalizer unless present. An object already being deleted cannot take a
    new finalizer (the API server refuses it)."""
    current = list(meta.get("finalizers") or [])
    if IN_USE_FINALIZER not in current and not meta.get("deletionTimestamp"):
        await set_finalizers(current, [*current, IN_USE_FINALIZER])


async def release(kube: Kube, namespace: str, name: str, attempts: int = 3) -> None:
    """Remove the in-use finalizer from a namespaced ProviderConfig and its credentials Secret:
    no object uses them any more. The Secret goes first, so a crash in between leaves the config
    held, and the config's next watch event (its deletion) brings kumo back here. A finalizer
    list someone else changed meanwhile (`Conflict`) is read again."""
    for attempt in range(1, attempts + 1):
        try:
            await _release_once(kube, namespace, name)
            return
        except Conflict:
            if attempt == attempts:
                raise


async def _release_once(kube: Kube, namespace: str, name: str) -> None:
    try:
        config = await kube.get_provider_config("ProviderConfig", namespace, name)
    except NotFound:
        return
    credentials = (config.get("spec") or {}).get("credentials") or {}
    if credentials.get("source") == "Secret":
        secret = await kube.read_secret(namespace, (credentials.get("secretRef") or {}).get("name", ""))
        held = list(((secret or {}).get("metadata") or {}).get("finalizers") or [])
        if secret is not None and IN_USE_FINALIZER in held:
            wanted = [f for f in held if f != IN_USE_FINALIZER]
            await kube.set_secret_finalizers(namespace, secret["metadata"]["name"], held, wanted)
    held = list(config["metadata"].get("finalizers") or [])
    if IN_USE_FINALIZER in held:
        wanted = [f for f in held if f != IN_USE_FINALIZER]
        await kube.set_provider_config_finalizers(namespace, name, held, wanted)
