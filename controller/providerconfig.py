"""Resolving a managed object's providerConfigRef into `ProviderSettings`.

Tenancy lives here. A namespaced ProviderConfig is only looked up in the object's own namespace
and only reads its credentials Secret from that same namespace; a ClusterProviderConfig reads its
credentials Secret from the controller's own namespace. No reference ever names another
namespace, so a user in namespace A cannot point kumo at a Secret in namespace B.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.providers.base import ProviderSettings

from .kube import KubeClient, NotFound

DEFAULT_REF = {"kind": "ClusterProviderConfig", "name": "default"}


class ProviderConfigError(Exception):
    """The reference cannot be resolved (missing config, Secret or key): the user must act."""


def config_key(body: Mapping[str, Any]) -> tuple[str, str, str]:
    """(kind, namespace, name) of the config an object uses; namespace "" for a cluster config."""
    ref = body.get("spec", {}).get("providerConfigRef") or DEFAULT_REF
    kind = ref.get("kind", DEFAULT_REF["kind"])
    return kind, body["metadata"]["namespace"] if kind == "ProviderConfig" else "", ref["name"]


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
    _entries: dict[tuple[str, str, str], tuple[float, ProviderSettings]] = field(default_factory=dict)

    async def resolve(self, kube: KubeClient, body: Mapping[str, Any], controller_namespace: str) -> ProviderSettings:
        key = config_key(body)
        kept = self._entries.get(key)
        if kept is not None and self.clock() - kept[0] < self.ttl:
            return kept[1]
        settings = await resolve(kube, body, controller_namespace)
        self._entries[key] = (self.clock(), settings)
        return settings


async def resolve(kube: KubeClient, body: Mapping[str, Any], controller_namespace: str) -> ProviderSettings:
    kind, _, name = config_key(body)
    namespace = body["metadata"]["namespace"]
    try:
        config = await kube.get_provider_config(kind, namespace, name)
    except NotFound:
        where = f" in namespace {namespace}" if kind == "ProviderConfig" else ""
        raise ProviderConfigError(f"spec.providerConfigRef: {kind} {name!r} not found{where}") from None
    spec = config.get("spec", {})
    secret_namespace = namespace if kind == "ProviderConfig" else controller_namespace
    credentials = await _credentials(kube, spec.get("credentials") or {}, secret_namespace, kind, name)
    return ProviderSettings(
        provider=spec["provider"],
        region=spec.get("region", ""),
        project=spec.get("project", ""),
        credentials=credentials,
        endpoints=dict(spec.get("endpoints") or {}),
        provider_options=dict(spec.get("providerOptions") or {}),
    )


async def _credentials(
    kube: KubeClient, spec: Mapping[str, Any], namespace: str, kind: str, name: str
) -> dict[str, str]:
    if spec.get("source", "Environment") != "Secret":
        return {}  # the environment's default chain: IRSA, Workload Identity, instance roles
    ref = spec.get("secretRef") or {}
    secret = await kube.read_secret(namespace, ref.get("name", ""))
    if secret is None:
        raise ProviderConfigError(f"{kind} {name!r}: credentials Secret {namespace}/{ref.get('name')} not found")
    data = {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}
    key = ref.get("key")
    if not key:
        return data
    if key not in data:
        raise ProviderConfigError(
            f"{kind} {name!r}: key {key!r} not found in credentials Secret {namespace}/{ref['name']}"
        )
    return {"document": data[key]}
