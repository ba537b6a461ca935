"""Sweep scopes: which objects one batched cloud read can cover, and which objects are swept.

A scope is a provider config plus a kind: every object in it is observed by the same list call.
The cache (controller/runtime/cache.py) files each object under its scope as watch events arrive, so the
sweeper never walks every cached body to find out what is due.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core.drift import DriftPolicy, policy_of
from kumo.controller.core.providerconfig import DEFAULT_REF
from kumo.controller.core.resources import ObjectKey
from kumo.providers.base import Kind

from kumo.api import ANNOTATION_PAUSED, ANNOTATION_SWEEP_INTERVAL, FINALIZER

MIN_INTERVAL = 5.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


@dataclass(frozen=True, order=True)
class SweepScope:
    """The objects one list call can cover: same provider config, same kind."""

    config_kind: str
    config_namespace: str
    config_name: str
    kind: Kind


def scope_of(key: ObjectKey, body: Mapping[str, Any]) -> SweepScope:
    ref = (body.get("spec") or {}).get("providerConfigRef") or DEFAULT_REF
    kind = ref.get("kind", DEFAULT_REF["kind"])
    namespace = key.namespace if kind == "ProviderConfig" else ""
    return SweepScope(kind, namespace, ref["name"], key.kind)


def parse_interval(text: str | None) -> float | None:
    """'90', '90s', '5m', '1h' -> seconds (at least MIN_INTERVAL); None when absent or malformed."""
    match = _DURATION.match(text or "")
    if not match:
        return None
    return max(MIN_INTERVAL, float(match.group(1)) * _UNITS[match.group(2)])


def own_interval(body: Mapping[str, Any]) -> float | None:
    """The object's own kumo.dev/sweep-interval, if it asks for one."""
    return parse_interval((body["metadata"].get("annotations") or {}).get(ANNOTATION_SWEEP_INTERVAL))


def sweepable(body: Mapping[str, Any], default_policy: DriftPolicy) -> bool:
    """Created by kumo, not being deleted, not paused, and compared at all."""
    meta = body["metadata"]
    return (
        not meta.get("deletionTimestamp")
        and FINALIZER in (meta.get("finalizers") or [])
        and (meta.get("annotations") or {}).get(ANNOTATION_PAUSED) != "true"
        and bool(((body.get("status") or {}).get("atProvider") or {}).get("externalName"))
        and policy_of(body, default_policy) is not DriftPolicy.IGNORE
    )
