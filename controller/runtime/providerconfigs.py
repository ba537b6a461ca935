"""ProviderConfigs and ClusterProviderConfigs as reconciled objects: status, requeues, usage.

kopf's watches on both kinds feed `ProviderConfigs`; it keeps a small index of every config
(generation, deletion mark, finalizers, status, the credentials Secret it names), watches each
credentials Secret a config names on a watch of its own (controller/runtime/secretwatch.py:
kopf's Secret watch asks only for kumo's connection Secrets) for as long as one does, and:

- **requeues the users at once** when a config appears, its spec changes, it goes, or its
  credentials Secret appears, changes or goes: the reconciler's resolved-config entry is dropped
  (controller/core/providerconfig.py `RecentConfigs`) and every cached object using the config is
  queued with its failure count reset. An object whose config was missing converges as soon as
  the user applies it, and a changed endpoint or credential applies at the next reconcile, not
  at the next sweep;
- **checks each config** (controller/core/configstatus.py: credentials resolve, plugin installed,
  identity call) when it appears or changes and every `recheck_every` seconds after, and writes
  status (Ready condition, account, user count) only when it changed;
- **tracks usage of ClusterProviderConfigs**: the in-use finalizer is added once objects use one
  and removed when it is being deleted and the last of them is gone (namespaced ProviderConfigs
  get theirs from the reconcile, which must hold them before any cloud call; a
  ClusterProviderConfig only has to outlive its users, and the cache knows those within a tick);
  a config deleted while in use gets one Warning event naming the objects that hold it.
  With --namespace, only the objects of the watched namespaces count: a ClusterProviderConfig
  shared with another controller instance serving other namespaces is held only by this one's.

Writes happen on the leader only (`may_act`; sharded, on every replica: see `sharded`), from one
loop that wakes on every change and at least every `tick` seconds; the handlers themselves only
update the index and the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.controller.core import configstatus
from kumo.controller.core.configstatus import ConfigCheck
from kumo.controller.core.kubeapi import Conflict, KubeError, NotFound
from kumo.controller.core.providerconfig import ConfigKey
from kumo.controller.core.reconciler import Reconciler
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.kube import KubeClient
from kumo.controller.runtime.secretwatch import SecretRef, SecretWatches, WatchTransport
from kumo.controller.runtime.sharding import used_anywhere
from kumo.controller.runtime.workqueue import WorkQueue

from kumo import api
from kumo.api import API_VERSION, CLUSTER_PROVIDER_CONFIG, IN_USE_FINALIZER, PROVIDER_CONFIG

log = logging.getLogger(__name__)

RECHECK_EVERY = 300.0  # seconds between identity checks of an unchanged config
TICK = 2.0  # seconds between passes over user counts and finalizers when nothing wakes the loop
CHECK_TIMEOUT = 60.0  # an identity check that has not answered by then counts as failed
CHECK_CONCURRENCY = 4
CLUSTER_EVENTS_NAMESPACE = "default"  # where kubectl looks for events of cluster-scoped objects
USERS_NAMED = 5  # objects named in an in-use event; the rest are counted


@dataclass
class _Config:
    """What the loop needs of one config, from its latest watch event."""

    uid: str
    generation: int
    deleting: bool
    finalizers: list[str]
    status: dict[str, Any]
    secret: SecretRef | None


def _indexed(kind: str, body: Mapping[str, Any], controller_namespace: str) -> _Config:
    meta, spec = body["metadata"], body.get("spec") or {}
    credentials = spec.get("credentials") or {}
    secret = None
    if credentials.get("source") == "Secret" and (credentials.get("secretRef") or {}).get("name"):
        # The same rule as the resolver's: a ClusterProviderConfig's Secret is in the controller's namespace.
        namespace = meta["namespace"] if kind == PROVIDER_CONFIG.kind else controller_namespace
        secret = (namespace, credentials["secretRef"]["name"])
    return _Config(
        uid=meta.get("uid", ""),
        generation=int(meta.get("generation") or 0),
        deleting=bool(meta.get("deletionTimestamp")),
        finalizers=list(meta.get("finalizers") or []),
        status=dict(body.get("status") or {}),
        secret=secret,
    )


def config_key_of(kind: str, body: Mapping[str, Any]) -> ConfigKey:
    meta = body["metadata"]
    return kind, meta.get("namespace") or "", meta["name"]


def _data_digest(body: Mapping[str, Any]) -> str:
    """Identifies a Secret's content without keeping it (finalizer and label edits leave it)."""
    data = sorted((body.get("data") or {}).items())
    return hashlib.sha256(repr(data).encode()).hexdigest()


def _describe(key: ConfigKey) -> str:
    kind, namespace, name = key
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


@dataclass
class ProviderConfigs:
    """The configs' index, the requeue of their users, and the loop that checks and writes."""

    kube: KubeClient
    reconciler: Reconciler
    cache: ObjectCache
    queue: WorkQueue[ObjectKey]
    may_act: Callable[[], bool] = lambda: True
    # With --shard-ring every replica runs this loop and knows only its own shard's users: the user
    # count is then left out of status (replicas would overwrite each other's counts), and the
    # in-use finalizer is given up only once no object in the cluster uses the config.
    sharded: bool = False
    recheck_every: float = RECHECK_EVERY
    tick: float = TICK
    # How a config is checked; None: configstatus.check through the reconciler (tests pass their own).
    checker: Callable[[ConfigKey], Awaitable[ConfigCheck]] | None = None
    # Where the credentials Secrets configs name are watched, one watch each, in any namespace
    # (kopf's --namespace does not limit them); None: not at all (unit tests deliver the events).
    watch_api: WatchTransport | None = None
    _configs: dict[ConfigKey, _Config] = field(default_factory=dict)
    _secret_users: dict[SecretRef, set[ConfigKey]] = field(default_factory=dict)
    _secret_digests: dict[SecretRef, str] = field(default_factory=dict)
    _due: set[ConfigKey] = field(default_factory=set)  # to check at the next pass
    _checked_at: dict[ConfigKey, float] = field(default_factory=dict)
    _outcomes: dict[ConfigKey, tuple[int, ConfigCheck]] = field(default_factory=dict)  # generation checked
    clock: Callable[[], float] = time.monotonic
    _written: dict[ConfigKey, dict[str, Any]] = field(default_factory=dict)  # since the last watch event
    _written_at: dict[ConfigKey, float] = field(default_factory=dict)  # clock() of the last status write
    _warned: set[ConfigKey] = field(default_factory=set)  # in-use event posted for this deletion
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _watches: SecretWatches | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.watch_api is not None:
            self._watches = SecretWatches(self.watch_api, self.on_secret_event)

    # ------------------------------------------------------------------ watch events (event loop)

    def on_config_event(self, kind: str, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A config was listed (`event_type` None: the watch's initial listing), added, changed
        or deleted."""
        key = config_key_of(kind, body)
        if event_type == "DELETED":
            self._drop(key)
            self._changed(key, "was deleted")
            return
        config = _indexed(kind, body, self.reconciler.controller_namespace)
        previous = self._configs.get(key)
        self._index_secret(key, previous.secret if previous else None, config.secret)
        self._configs[key] = config
        self._written.pop(key, None)  # the event shows the status as it is now
        if previous is None or previous.generation != config.generation:
            self._due.add(key)
            # A config first seen in a watch's listing (event None) is one that existed when the
            # controller started: its users are reconciled or swept anyway. One seen before and
            # listed again with a new generation changed while the watch was reconnecting.
            if event_type is not None or previous is not None:
                self._changed(key, "was created" if previous is None else "changed")
        self._wake.set()

    def on_secret_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        """A credentials Secret was listed (`event_type` None), added, changed or deleted; one no
        config names (any more) is ignored."""
        meta = body["metadata"]
        where = (meta.get("namespace") or "", meta["name"])
        configs = self._secret_users.get(where)
        if not configs:
            return
        digest = "" if event_type == "DELETED" else _data_digest(body)
        previous = self._secret_digests.get(where)
        self._secret_digests[where] = digest
        # Unknown before (the config was indexed after the Secret's last event): only its creation
        # or deletion is news; a MODIFIED may be kumo's own in-use finalizer.
        unknown = previous is None and event_type not in ("ADDED", "DELETED")
        if previous == digest or unknown:
            return
        for key in sorted(configs):
            self._due.add(key)
            self._changed(key, f"credentials Secret {where[0]}/{where[1]} {'was deleted' if not digest else 'changed'}")
        self._wake.set()

    def _changed(self, key: ConfigKey, what: str) -> None:
        """Apply a change at once: resolve afresh, reconcile every user now."""
        self.reconciler.configs.forget(key)
        users = self.cache.users_of(key)
        for user in users:
            self.queue.forget(user)
            self.queue.add(user)
        if users:
            log.info("%s %s: %d object(s) using it requeued", _describe(key), what, len(users))

    def _drop(self, key: ConfigKey) -> None:
        gone = self._configs.pop(key, None)
        self._index_secret(key, gone.secret if gone else None, None)
        self._checked_at.pop(key, None)
        self._outcomes.pop(key, None)
        self._written.pop(key, None)
        self._due.discard(key)
        self._warned.discard(key)

    def _index_secret(self, key: ConfigKey, before: SecretRef | None, after: SecretRef | None) -> None:
        if before == after:
            return
        if before is not None and before in self._secret_users:
            self._secret_users[before].discard(key)
            if not self._secret_users[before]:
                del self._secret_users[before]
                self._secret_digests.pop(before, None)
                if self._watches is not None:
                    self._watches.unfollow(before)
        if after is not None:
            self._secret_users.setdefault(after, set()).add(key)
            if self._watches is not None:
                self._watches.follow(after)  # once per Secret, however many configs name it

    # ------------------------------------------------------------------ the loop (leader only)

    async def run(self) -> None:
        """Check, protect and write status, on every change and every `tick` seconds (until
        cancelled, which also ends the credentials Secrets' watches)."""
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.tick)
                self._wake.clear()
                if not self.may_act():
                    continue  # a standby keeps the index current; the leader writes
                try:
                    await self.run_pass()
                except Exception:  # one bad pass must not end the loop
                    log.exception("provider config pass failed")
        finally:
            if self._watches is not None:
                await self._watches.stop()

    async def run_pass(self) -> None:
        now = time.monotonic()
        due = [
            key
            for key in list(self._configs)
            if key in self._due or now - self._checked_at.get(key, -math.inf) >= self.recheck_every
        ]
        self._due.difference_update(due)
        limit = asyncio.Semaphore(CHECK_CONCURRENCY)
        await asyncio.gather(*(self._check(key, limit) for key in due))
        for key, config in list(self._configs.items()):
            users = self.cache.users(key)
            try:
                await self._protect(key, config, users)
                await self._warn_in_use(key, config, users)
                await self._write_status(key, config, users)
            except NotFound:
                continue  # deleted meanwhile: its DELETED event drops it
            except KubeError as error:
                log.warning("%s: %s", _describe(key), error)

    async def _check(self, key: ConfigKey, limit: asyncio.Semaphore) -> None:
        config = self._configs.get(key)
        if config is None:
            return
        async with limit:
            try:
                outcome = await asyncio.wait_for((self.checker or self._check_through_reconciler)(key), CHECK_TIMEOUT)
            except TimeoutError:
                outcome = ConfigCheck(False, api.IDENTITY_CHECK_FAILED, f"no answer within {CHECK_TIMEOUT:.0f}s")
            except Exception as error:  # a Kubernetes refusal reading the Secret, or a bug
                log.warning("checking %s failed", _describe(key), exc_info=not isinstance(error, KubeError))
                outcome = ConfigCheck(False, api.IDENTITY_CHECK_FAILED, f"{type(error).__name__}: {error}")
        self._checked_at[key] = time.monotonic()
        self._outcomes[key] = (config.generation, outcome)
        log.debug("%s checked: %s %s", _describe(key), outcome.reason, outcome.message)

    async def _check_through_reconciler(self, key: ConfigKey) -> ConfigCheck:
        """The check with the reconciler's Kubernetes access, plugins and call hooks."""
        reconciler = self.reconciler
        return await configstatus.check(
            reconciler.kube,
            reconciler.providers,
            key,
            reconciler.controller_namespace,
            reconciler.hooks_for,
            caller=reconciler.caller,
        )

    async def _write_status(self, key: ConfigKey, config: _Config, users: int) -> None:
        current = {**config.status, **self._written.get(key, {})}
        generation, outcome = self._outcomes.get(key, (config.generation, None))
        wanted = configstatus.config_status(current, outcome, generation, users)
        if self.sharded:
            wanted.pop("users")
        if not configstatus.needs_write(current, wanted):
            return
        if self._count_only(key, current, wanted):
            return  # a later pass, within `tick`, writes the count as it is by then
        kind, namespace, name = key
        await self.kube.patch_provider_config_status(kind, namespace, name, wanted)
        self._written[key] = wanted
        self._written_at[key] = self.clock()

    def _count_only(self, key: ConfigKey, current: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
        """Whether the only news is the user count and the status was written less than `tick`
        ago. While objects arrive in a burst each status write's own watch event wakes the loop,
        which found the count changed again: one write per config per `tick` instead (7 -> 2
        writes while 50 Buckets were applied at once)."""
        if any(current.get(name) != value for name, value in wanted.items() if name != "users"):
            return False
        return self.clock() - self._written_at.get(key, -math.inf) < self.tick

    async def _protect(self, key: ConfigKey, config: _Config, users: int) -> None:
        """A ClusterProviderConfig takes the in-use finalizer when objects use it, and gives it up
        when it is being deleted and none does any more (not before: a config used on and off
        would otherwise cost two writes each time)."""
        if key[0] != CLUSTER_PROVIDER_CONFIG.kind:
            return
        held = IN_USE_FINALIZER in config.finalizers
        if users and not held and not config.deleting:
            wanted = [*config.finalizers, IN_USE_FINALIZER]
        elif not users and held and config.deleting:
            if self.sharded and await used_anywhere(self.kube, key):
                return  # another shard's objects still use it
            wanted = [f for f in config.finalizers if f != IN_USE_FINALIZER]
            log.info("%s: no object uses it any more, in-use protection released", _describe(key))
        else:
            return
        try:
            await self.kube.set_cluster_provider_config_finalizers(key[2], config.finalizers, wanted)
        except Conflict:
            return  # changed meanwhile: its event brings the new list, the next pass decides again
        config.finalizers = wanted  # until the event confirms it: no second patch meanwhile

    async def _warn_in_use(self, key: ConfigKey, config: _Config, users: int) -> None:
        """One Warning event per deletion of a config in use, naming what holds it."""
        if not config.deleting or not users or key in self._warned:
            return
        self._warned.add(key)
        holders = [f"{user.kind} {user.namespace}/{user.name}" for user in self.cache.users_of(key)]
        message = configstatus.users_message(key[0], key[2], holders, users, USERS_NAMED)
        await self._post_event(key, config.uid, api.EVENT_CONFIG_IN_USE, message)
        log.info("%s", message)

    async def _post_event(self, key: ConfigKey, uid: str, reason: str, message: str) -> None:
        kind, namespace, name = key
        where = namespace or CLUSTER_EVENTS_NAMESPACE
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        involved = {"apiVersion": API_VERSION, "kind": kind, "name": name, "uid": uid}
        if namespace:
            involved["namespace"] = namespace
        event = {
            "metadata": {"generateName": f"{name}.", "namespace": where},
            "involvedObject": involved,
            "type": api.WARNING,
            "reason": reason,
            "message": message[:1024],
            "source": {"component": self.kube.component},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": self.kube.component,
        }
        try:
            await self.kube.create_event(where, event)
        except KubeError as error:  # an event is never worth failing the pass for
            log.warning("could not post event %s on %s: %s", reason, _describe(key), error)
