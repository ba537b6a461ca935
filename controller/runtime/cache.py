"""The controller's cache of managed objects: the latest body of each, kept small.

Workers reconcile from these bodies and the sweeper compares the cloud with them; at 10,000
objects they are most of the controller's memory. A body as the API server sends it is about
18 KiB of Python dicts, 11 KiB of it `metadata.managedFields`, which kumo never reads. So each
body is cut down to what kumo reads (spec, status, and the metadata below) and held as compact
JSON bytes, decoded only when a worker or a sweep needs it.

Those ~1.2 KB of JSON are mostly the same from one object of a kind to the next (keys, condition
types and reasons, the provider config reference), so each is compressed with zlib, a body of
the same kind as its preset dictionary: about 100 bytes each (issue 17). The dictionary is the
first body of the kind stored with status conditions (a new object's body, without them, would
leave most of a settled body unmatched); bodies stored before there is one stay plain JSON.

Beside the bodies the cache keeps what must be answered without decoding anything: which sweep
scope each object belongs to (and its own interval, if it asks for one), and its Ready and
InSync state for the metrics. Both are refreshed from the same watch event that stores the body.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.controller.core import conditions as cond
from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.providerconfig import ConfigKey, config_key
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.scopes import SweepScope, own_interval, scope_of, sweepable
from kumo.providers.base import Kind

from kumo import api
from kumo.api import IN_SYNC

KEPT_METADATA = (
    "name",
    "namespace",
    "uid",
    "generation",
    "resourceVersion",
    "labels",
    "annotations",
    "finalizers",
    "deletionTimestamp",
)
# kubectl apply's copy of the whole manifest: as big as the spec again, and never read.
DROPPED_ANNOTATIONS = frozenset({"kubectl.kubernetes.io/last-applied-configuration"})


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy of what kumo reads (kopf's body is a live view that changes under us)."""
    meta = body["metadata"]
    kept = {name: meta[name] for name in KEPT_METADATA if meta.get(name) is not None}
    if "annotations" in kept:
        kept["annotations"] = {k: v for k, v in kept["annotations"].items() if k not in DROPPED_ANNOTATIONS}
    return {"metadata": kept, "spec": dict(body.get("spec") or {}), "status": dict(body.get("status") or {})}


def _encode(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


# A 4 KiB window holds a dictionary and a body of the usual size; zlib's state for it is a few
# KiB instead of the ~256 KiB of its defaults, allocated at each compression.
WINDOW_BITS = 12
MEMORY_LEVEL = 5
PLAIN_JSON = b"{"  # what an uncompressed body starts with (this zlib header starts with 0x48)


def _compress(raw: bytes, dictionary: bytes) -> bytes:
    packer = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, WINDOW_BITS, MEMORY_LEVEL, zdict=dictionary)
    return packer.compress(raw) + packer.flush()


def _decompress(packed: bytes, dictionary: bytes) -> bytes:
    return zlib.decompressobj(WINDOW_BITS, zdict=dictionary).decompress(packed)


@dataclass(frozen=True)
class ObjectState:
    """What the metrics report about one object."""

    ready: str  # the Ready condition's status: True, False or Unknown
    drifted: bool  # InSync=False


@dataclass
class ObjectCache:
    default_policy: DriftPolicy = DriftPolicy.CORRECT
    _bodies: dict[ObjectKey, bytes] = field(default_factory=dict)
    _states: dict[ObjectKey, ObjectState] = field(default_factory=dict)
    _scope_of: dict[ObjectKey, SweepScope] = field(default_factory=dict)
    # scope -> its sweepable members -> each member's own sweep interval (None: the default)
    _scopes: dict[SweepScope, dict[ObjectKey, float | None]] = field(default_factory=dict)
    # provider config -> how many cached objects use it (deleting ones included)
    _config_of: dict[ObjectKey, ConfigKey] = field(default_factory=dict)
    _users: Counter[ConfigKey] = field(default_factory=Counter)
    # kind -> the preset dictionary its bodies are compressed with (see the module's docstring)
    _dictionaries: dict[Kind, bytes] = field(default_factory=dict)

    def put(self, key: ObjectKey, body: Mapping[str, Any]) -> dict[str, Any]:
        """Store the latest body; returns the slim copy that was stored."""
        kept = slim(body)
        self._bodies[key] = self._pack(key.kind, kept)
        conditions = kept["status"].get("conditions") or []
        ready, in_sync = cond.find(conditions, api.READY), cond.find(conditions, IN_SYNC)
        self._states[key] = ObjectState(
            ready=ready.get("status", "Unknown") if ready else "Unknown",
            drifted=bool(in_sync and in_sync.get("status") == "False"),
        )
        self._unfile(key)
        self._config_of[key] = config = config_key(kept, key.namespace)
        self._users[config] += 1
        if sweepable(kept, self.default_policy):
            scope = self._scope_of[key] = scope_of(key, kept)
            self._scopes.setdefault(scope, {})[key] = own_interval(kept)
        return kept

    def get(self, key: ObjectKey) -> dict[str, Any] | None:
        """A fresh copy of the latest body: callers may keep or change it freely."""
        stored = self._bodies.get(key)
        if stored is None:
            return None
        if stored.startswith(PLAIN_JSON):
            return json.loads(stored)
        return json.loads(_decompress(stored, self._dictionaries[key.kind]))

    def _pack(self, kind: Kind, body: Mapping[str, Any]) -> bytes:
        raw = _encode(body)
        dictionary = self._dictionaries.get(kind)
        if dictionary is None:
            if not body["status"].get("conditions"):
                return raw
            dictionary = self._dictionaries[kind] = raw
        return _compress(raw, dictionary)

    def pop(self, key: ObjectKey) -> None:
        self._bodies.pop(key, None)
        self._states.pop(key, None)
        self._unfile(key)

    def users(self, config: ConfigKey) -> int:
        """How many cached objects use this provider config."""
        return self._users.get(config, 0)

    def users_of(self, config: ConfigKey) -> list[ObjectKey]:
        """The cached objects using this provider config, sorted (a scan of every object: for
        the rare change of a config, never per event)."""
        if not self._users.get(config):
            return []
        return sorted((key for key, used in list(self._config_of.items()) if used == config), key=str)

    def _unfile(self, key: ObjectKey) -> None:
        config = self._config_of.pop(key, None)
        if config is not None:
            self._users[config] -= 1
            if self._users[config] <= 0:
                del self._users[config]
        scope = self._scope_of.pop(key, None)
        if scope is not None:
            members = self._scopes[scope]
            members.pop(key, None)
            if not members:
                del self._scopes[scope]

    def __contains__(self, key: object) -> bool:
        return key in self._bodies

    def __len__(self) -> int:
        return len(self._bodies)

    def scopes(self) -> Mapping[SweepScope, Mapping[ObjectKey, float | None]]:
        """Every scope with its sweepable members and their own intervals: a live view, to be
        read without awaiting in between."""
        return self._scopes

    def members(self, scope: SweepScope) -> list[ObjectKey]:
        """The scope's sweepable members now (their bodies are decoded one by one, by get())."""
        return list(self._scopes.get(scope, ()))

    def state_counts(self) -> tuple[Counter[tuple[str, str]], Counter[str]]:
        """(kind, Ready status) -> objects, and kind -> objects drifted now."""
        ready: Counter[tuple[str, str]] = Counter()
        drifted: Counter[str] = Counter()
        for key, state in list(self._states.items()):
            ready[(key.kind.value, state.ready)] += 1
            drifted[key.kind.value] += state.drifted
        return ready, drifted
