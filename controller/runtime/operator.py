"""The kopf wiring: watches feed a work queue, workers call the one reconcile path.

kopf gives us robust watch streams, start-up and clean-up, and health probes. We deliberately
use only its low-level `on.event` handlers: they make kopf write nothing to the objects (no
progress annotations, no last-handled-configuration copy of the spec, no finalizer of its own),
so every write to Kubernetes is one the reconciler chose, and a steady state costs none.

An event only enqueues its object when something the controller acts on changed: the
generation (a spec edit), the deletion mark, or an annotation kumo reads. Our own status and
finalizer writes come back as events too and are ignored by that rule, which is what keeps a
reconcile from triggering itself.

With `--leader-elect` several replicas run: all watch and keep the cache and queue current, and
only the holder of the Lease (controller/runtime/leader.py) runs workers and the sweeper.

With `--shard-ring` every replica is active on its own share of the objects (controller/runtime/
sharding.py): it holds a shard Lease of its own, its watches and start-up listing ask only for the
objects labelled for it, a worker acknowledges a drain instead of reconciling, and the reconciler
re-checks the assignment before every cloud mutation.

Secrets: kopf's watch and the start-up listing ask the API server only for kumo's connection
Secrets (`connection_secrets_selector`), so no other Secret of the cluster reaches the process
(nor kopf's memory of every object it watches). The credentials Secrets provider configs name
have a watch each (controller/runtime/secretwatch.py, run by ProviderConfigs).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import functools
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import kopf
from kumo.controller.core import conditions as cond
from kumo.controller.core.connection import edited
from kumo.controller.core.drift import DriftPolicy
from kumo.controller.core.kubeapi import NotFound
from kumo.controller.core.providerconfig import ConfigKey, config_key
from kumo.controller.core.reconciler import Reconciler, Result
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.cloudcalls import CloudCalls
from kumo.controller.runtime.config import ControllerConfig
from kumo.controller.runtime.kube import KubeClient
from kumo.controller.runtime.kubehttp import DEFAULT_TIMEOUT, KubeHTTP
from kumo.controller.runtime.leader import ElectionTiming, KubeLeaseStore, LeaderElector
from kumo.controller.runtime.login import ClusterLogin, LoginFn
from kumo.controller.runtime.memory import EventOnlyMemories
from kumo.controller.runtime.metrics import Metrics
from kumo.controller.runtime.namespaces import watched
from kumo.controller.runtime.providerconfigs import ProviderConfigs
from kumo.controller.runtime.ratelimit import RateLimiters
from kumo.controller.runtime.sharding import Shard, ShardAssignment, shard_lease_store, shard_of, used_anywhere
from kumo.controller.runtime.sweeps import Sweeper
from kumo.controller.runtime.workqueue import WorkQueue
from kumo.providers.base import Kind
from kumo.providers.registry import ProviderRegistry

from kumo import api
from kumo.api import (
    ANNOTATION_ADOPT,
    ANNOTATION_PAUSED,
    ANNOTATION_ROTATE_PASSWORD,
    ANNOTATION_ROTATION,
    CLUSTER_PROVIDER_CONFIG,
    FINALIZER,
    GROUP,
    IN_USE_FINALIZER,
    LABEL_MANAGED_BY,
    LABEL_OWNER_KIND,
    LABEL_OWNER_NAME,
    MANAGED,
    MANAGED_BY,
    PROVIDER_CONFIG,
    VERSION,
    connection_secret_name,
)
from kumo.version import kumo_version

log = logging.getLogger(__name__)
USER_AGENT = f"kumo-controller/{kumo_version()}"
WATCHED_ANNOTATIONS = (ANNOTATION_ROTATE_PASSWORD, ANNOTATION_ADOPT, ANNOTATION_PAUSED)
EXIT_DEPOSED = 3  # a leader that lost its Lease exits; its supervisor restarts it as a standby


def fingerprint(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must change for an event to be worth a reconcile (or, sharded, a drain's
    acknowledgement: a drain label appearing counts too)."""
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        bool(meta.get("deletionTimestamp")),
        tuple(annotations.get(a) for a in WATCHED_ANNOTATIONS),
        any(label.startswith(api.DRAIN_LABEL_PREFIX) for label in meta.get("labels") or {}),
    )


@dataclass
class Controller:
    """The in-memory state of a running controller: latest bodies, the queue, the workers."""

    reconciler: Reconciler
    workers: int = ControllerConfig.workers
    sweep_interval: float = ControllerConfig.sweep_interval
    sweep_concurrency: int = ControllerConfig.sweep_concurrency
    metrics: Metrics | None = None
    cache: ObjectCache = field(default_factory=ObjectCache)
    queue: WorkQueue[ObjectKey] = field(default_factory=WorkQueue)
    sweeper: Sweeper | None = None
    # With leader election: asked before every reconcile, so a leader that froze and woke up
    # after losing the lease does not start new work before its elector notices.
    may_act: Callable[[], bool] = lambda: True
    # With --shard-ring: this replica's shard (the watches deliver only its objects), and the
    # client its drain acknowledgements and cross-shard usage checks go through.
    shard: Shard | None = None
    kube: KubeClient | None = None
    # (namespace, name) of every kumo connection Secret -> the rotation request it answers
    secrets: dict[tuple[str, str], str] = field(default_factory=dict)
    # Those of them whose password is not the one kumo wrote (a user edited it)
    edited_secrets: set[tuple[str, str]] = field(default_factory=set)
    # Set when prime() has filled the cache with everything that existed at start-up.
    primed: asyncio.Event = field(default_factory=asyncio.Event)
    # What prime() listed and the watches have not delivered yet: see confirm_primed().
    _unconfirmed: set[ObjectKey] = field(default_factory=set)
    _unconfirmed_secrets: dict[tuple[str, str], ObjectKey | None] = field(default_factory=dict)
    _confirmed: int = 0  # how many of those the watches have delivered so far
    _fingerprints: dict[ObjectKey, tuple[Any, ...]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _releases: set[asyncio.Task[None]] = field(default_factory=set)
    _loop: asyncio.AbstractEventLoop | None = None  # set by prime(): the cache is complete from then on

    def on_object_event(self, kind: Kind, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = ObjectKey(kind, meta["namespace"], meta["name"])
        if key in self._unconfirmed:
            self._unconfirmed.discard(key)
            self._confirmed += 1
        if event_type == "DELETED":
            self._forget(key)
            self._release_if_unused(config_key(body))
            return
        self.cache.put(key, body)
        mark = fingerprint(body)
        if self._fingerprints.get(key) == mark:
            return
        self._fingerprints[key] = mark
        if self.shard is not None and self.shard.draining(body):
            self.queue.add(key)  # a worker acknowledges it: never while a reconcile of it runs
            return
        if event_type is None and self._settled(key, body):
            return  # listed at start-up and already done: the first sweep verifies it in bulk
        self.queue.add(key)

    def on_provider_config_event(self, body: Mapping[str, Any]) -> None:
        """A namespaced ProviderConfig held in use and being deleted is released as soon as no
        object uses it (also after a restart, when the watch's first listing delivers it)."""
        meta = body["metadata"]
        if meta.get("deletionTimestamp") and IN_USE_FINALIZER in (meta.get("finalizers") or []):
            self._release_if_unused(("ProviderConfig", meta["namespace"], meta["name"]))

    def _release_if_unused(self, config: ConfigKey) -> None:
        if config[0] != "ProviderConfig" or self.cache.users(config) or self._loop is None or self._loop.is_closed():
            return
        # A task of its own, so the watch event is not held up by the API call (thread-safe
        # scheduling keeps this correct for a caller off the loop too).
        self._loop.call_soon_threadsafe(self._start_release, config)

    def _start_release(self, config: ConfigKey) -> None:
        task = asyncio.create_task(self._release(config), name=f"kumo-release-{config[1]}/{config[2]}")
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, config: ConfigKey) -> None:
        if not self.may_act():
            return  # a standby: the leader sees the same events and releases it
        try:
            if self.shard is not None and await used_anywhere(self._kube(), config):
                return  # this shard's last user went, another shard's have not (or it is moving)
            await self.reconciler.release_config(config)
        except Exception:  # the next event about the config or its last user tries again
            log.exception("could not release ProviderConfig %s/%s", config[1], config[2])

    def _forget(self, key: ObjectKey) -> None:
        self.cache.pop(key)
        self._fingerprints.pop(key, None)
        self.queue.discard(key)
        self.reconciler.forget(key)

    def _settled(self, key: ObjectKey, body: Mapping[str, Any]) -> bool:
        """Ready and in sync with its current generation, with its Secret answering the current
        rotation request: nothing a per-object reconcile would change."""
        meta, status = body["metadata"], body.get("status") or {}
        conditions = status.get("conditions") or []
        rotation = (meta.get("annotations") or {}).get(ANNOTATION_ROTATE_PASSWORD, "")
        where = (key.namespace, connection_secret_name(key.kind, body))
        secret = None if where in self.edited_secrets else self.secrets.get(where)
        return (
            not meta.get("deletionTimestamp")
            and FINALIZER in (meta.get("finalizers") or [])
            and status.get("observedGeneration") == meta.get("generation")
            and cond.is_true(conditions, api.READY)
            and cond.is_true(conditions, api.SYNCED)
            and secret is not None
            and (key.kind is not Kind.DATABASE or secret == rotation)
        )

    def on_secret_event(self, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        where = (meta["namespace"], meta["name"])
        if self._unconfirmed_secrets.pop(where, False) is not False:
            self._confirmed += 1
        if self.shard is not None and event_type == "DELETED":
            self._deleted_or_moved(where, _secret_owner(meta))
            return
        moved_away = False
        if self.shard is not None and not self.shard.owns(body):
            # The watch asks for this shard's Secrets only, so this is a relabel the watch has
            # not caught up with yet: another shard's Secret is as absent here as a deleted one.
            event_type = "DELETED"
            moved_away = True
        elif self.shard is not None and self.shard.draining(body):
            self._acknowledge_secret_drain(where)
            event_type = "DELETED"
        if event_type != "DELETED":
            self.secrets[where] = (meta.get("annotations") or {}).get(ANNOTATION_ROTATION, "")
            if not _password_edited(body):
                self.edited_secrets.discard(where)
                return
            # A user wrote another password into the Secret: set it on the instance now rather
            # than at the next sweep (which also catches it: see secret_exists).
            self.edited_secrets.add(where)
            owner = _secret_owner(meta)
            if owner is not None and owner in self.cache:
                self.queue.add(owner)
            return
        self.edited_secrets.discard(where)
        # A Secret the sharder moved on is not gone: its owner is moving too (the sharder moves
        # the Secret at once, the owner after this shard acknowledges its drain). A reconcile of
        # the owner here would write this shard's label back on it, a Secret now another shard's.
        self._secret_gone(where, None if moved_away else _secret_owner(meta))

    def _deleted_or_moved(self, where: tuple[str, str], owner: ObjectKey | None) -> None:
        """Sharded, the API server sends DELETED both for a Secret deleted and for one that stopped
        matching the watch's selector: the sharder moved it to its owner's next shard, ahead of
        the owner, which moves once this shard acknowledges its drain (the API server's watch cache
        turns an object leaving a watch's selection into DELETED with its last matching state:
        k8s.io/apiserver/pkg/storage/cacher/cache_watcher.go, convertToWatchEvent). Gone from
        this shard either way; only a read tells
        whether the owner must write it again: a reconcile here for a moved Secret would put this
        shard's label back on it."""
        self.edited_secrets.discard(where)
        self.secrets.pop(where, None)
        if owner is None or owner not in self.cache:
            return

        async def requeue_if_deleted() -> None:
            try:
                found = await self._kube().read_secret(*where)
            except Exception as error:  # the next sweep finds the Secret missing and reconciles
                log.warning("could not read Secret %s/%s after it left the watch: %s", *where, error)
                return
            if found is None and where not in self.secrets:  # not written again meanwhile
                self._secret_gone(where, owner)

        self._spawn(requeue_if_deleted(), f"kumo-secret-left-{where[0]}/{where[1]}")

    def _acknowledge_secret_drain(self, where: tuple[str, str]) -> None:
        """A connection Secret the sharder moves: remove both labels (nothing else waits on it)."""
        assert self.shard is not None
        patch = self.shard.acknowledgement()

        async def acknowledge() -> None:
            try:
                await self._kube().patch_secret_metadata(*where, patch)
            except Exception as error:  # the sharder drains it again on its next sync
                log.warning("could not acknowledge the drain of Secret %s/%s: %s", *where, error)

        self._spawn(acknowledge(), f"kumo-drain-secret-{where[0]}/{where[1]}")

    def _kube(self) -> KubeClient:
        assert self.kube is not None, "a sharded Controller is given its KubeClient"
        return self.kube

    def _spawn(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """A short task of its own, kept until it ends (a watch handler must not wait on it)."""
        task = asyncio.create_task(work, name=name)
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    def _secret_gone(self, where: tuple[str, str], owner: ObjectKey | None) -> None:
        self.secrets.pop(where, None)
        if owner is not None and owner in self.cache:
            self.queue.add(owner)

    # ------------------------------------------------------------------ start-up

    async def prime(self, kube: KubeClient, namespaces: Sequence[str]) -> None:
        """Before the watches start: list the Secrets, then the objects, as they are now.

        Start-up decisions then see complete facts (an object is only left to the first sweep
        when its Secret is known to exist), and the first sweep of each scope covers every
        object in it. Pages keep the memory bounded; Secret data is never read here.
        """
        started = time.monotonic()
        self._loop = None
        secrets_selector = connection_secrets_selector(self.shard)
        objects_selector = self.shard.selector if self.shard else ""
        for namespace in _list_namespaces(namespaces):
            async for meta in kube.list_secret_metadata(namespace, secrets_selector):
                if watched(meta["namespace"], namespaces):
                    where = (meta["namespace"], meta["name"])
                    self.secrets[where] = (meta.get("annotations") or {}).get(ANNOTATION_ROTATION, "")
                    self._unconfirmed_secrets[where] = _secret_owner(meta)
            for kind in MANAGED:
                async for body in kube.list_objects(kind, namespace, label_selector=objects_selector):
                    if watched(body["metadata"]["namespace"], namespaces):
                        self.on_object_event(kind, None, body)
                        self._unconfirmed.add(ObjectKey(kind, body["metadata"]["namespace"], body["metadata"]["name"]))
        self.primed.set()
        self._loop = asyncio.get_running_loop()
        log.info(
            "start-up listing: %d objects (%d to reconcile), %d connection Secrets in %.1fs",
            len(self.cache),
            len(self.queue),
            len(self.secrets),
            time.monotonic() - started,
        )

    async def confirm_primed(self, kube: KubeClient, quiet: float = 5.0, patience: float = 120.0) -> None:
        """Drop what was deleted between prime()'s listing and the watches' own.

        Such an object or Secret never reaches the watches, not even as a deletion. Everything
        else prime() listed is delivered by the watches' initial listings; once those have gone
        quiet, whatever is left is looked up one by one (usually nothing is left).
        """
        started = time.monotonic()
        # None until the watches have delivered something: their start may take a while.
        last_change = started if self._confirmed else None
        confirmed = self._confirmed
        while (self._unconfirmed or self._unconfirmed_secrets) and time.monotonic() - started < patience:
            if last_change is not None and time.monotonic() - last_change >= quiet:
                break
            await asyncio.sleep(min(1.0, quiet) or 0.01)
            if self._confirmed != confirmed:
                confirmed, last_change = self._confirmed, time.monotonic()
        for key in list(self._unconfirmed):
            if await kube.get_object(key) is None:
                log.info("%s was deleted while the controller started", key)
                self._forget(key)
            self._unconfirmed.discard(key)
        for where, owner in list(self._unconfirmed_secrets.items()):
            if await kube.read_secret(*where) is None:
                self._secret_gone(where, owner)
            self._unconfirmed_secrets.pop(where, None)

    def secret_exists(self, namespace: str, name: str) -> bool:
        """The Secret is there as kumo wrote it (a password edited by a user counts as missing:
        the sweep then sends its object to a reconcile, which sets that password)."""
        return (namespace, name) in self.secrets and (namespace, name) not in self.edited_secrets

    def watch(self, work: Coroutine[Any, Any, None], name: str) -> None:
        """Run a background task for the controller's lifetime (stop() cancels it)."""
        self._tasks.append(asyncio.create_task(work, name=name))

    def start(self) -> None:
        self._tasks += [asyncio.create_task(self._work(), name=f"kumo-worker-{i}") for i in range(self.workers)]
        self.sweeper = Sweeper(
            self.reconciler,
            self.cache,
            self.queue,
            self.secret_exists,
            interval=self.sweep_interval,
            concurrency=self.sweep_concurrency,
            metrics=self.metrics,
            primed=self.primed,
        )
        self._tasks.append(asyncio.create_task(self.sweeper.run(), name="kumo-sweeper"))
        if self.metrics is not None:
            self._tasks.append(asyncio.create_task(self._refresh_gauges(), name="kumo-gauges"))

    async def _refresh_gauges(self, every: float = 5.0) -> None:
        assert self.metrics is not None
        while True:
            counts, drifted = self.cache.state_counts()
            for kind in Kind:
                for ready_status in ("True", "False", "Unknown"):
                    self.metrics.objects.labels(kind.value, ready_status).set(counts[(kind.value, ready_status)])
                self.metrics.drifted.labels(kind.value).set(drifted[kind.value])
            await asyncio.sleep(every)

    async def stop(self) -> None:
        self.queue.shutdown()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _work(self) -> None:
        while True:
            key = await self.queue.get()
            try:
                body = self.cache.get(key)
                if body is not None and not self.may_act():
                    self.queue.add_after(key, 1.0)  # keep it for whoever leads next
                elif body is not None and self.shard is not None and self.shard.draining(body):
                    await self._acknowledge_drain(key)
                elif body is not None:
                    started = time.monotonic()
                    result = await self.reconciler.reconcile(key, body)
                    took = time.monotonic() - started
                    log.debug("reconciled %s in %.3fs: %s", key, took, _describe(result))
                    self._observe(key, result, took)
                    if result.dropped and self._drained_meanwhile(key):
                        # The drain label arrived during the pass and the guard stopped it: the
                        # event that queued the key again is the only one the drain sends, so
                        # acknowledge now (forgetting it would leave the object waiting on this
                        # shard's acknowledgement until a restart or the sharder's next sync).
                        await self._acknowledge_drain(key)
                    elif result.dropped:
                        self._forget(key)  # assigned elsewhere meanwhile: its shard has it now
                    else:
                        self._schedule(key, result)
            except Exception:  # one object's bug must never stop a worker
                log.exception("unexpected error reconciling %s", key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def _drained_meanwhile(self, key: ObjectKey) -> bool:
        """The cache's latest body of `key` is still this shard's, with the drain label on it."""
        body = self.cache.get(key)
        return body is not None and self.shard is not None and self.shard.draining(body) and self.may_act()

    async def _acknowledge_drain(self, key: ObjectKey) -> None:
        """The sharder is moving the object: no further cloud call for it from here, both labels
        removed in one patch (the acknowledgement), and the object forgotten. Runs in the key's
        worker, so no reconcile of it is in flight."""
        assert self.shard is not None
        try:
            await self._kube().patch_object_metadata(key, self.shard.acknowledgement())
        except NotFound:
            pass  # deleted meanwhile: nothing left to hand over
        except Exception as error:  # e.g. the API server unreachable: try again, still no cloud call
            log.warning("could not acknowledge the drain of %s: %s", key, error)
            self.queue.add_rate_limited(key)
            return
        log.info("%s: drain acknowledged, handed over to its next shard", key)
        self._forget(key)
        self.queue.forget(key)

    def _observe(self, key: ObjectKey, result: Result, took: float) -> None:
        if self.metrics is None:
            return
        self.metrics.reconcile_seconds.labels(key.kind.value).observe(took)
        if result.error is not None:
            self.metrics.reconcile_errors.labels(key.kind.value, "terminal" if result.terminal else "retryable").inc()

    def _schedule(self, key: ObjectKey, result: Result) -> None:
        if result.error is not None:
            # The reconciler chose the pace for the error it met (controller/core/disposition.py).
            self.queue.add_rate_limited(key, result.retry)
        elif result.requeue_after is not None:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
        else:
            self.queue.forget(key)


def _describe(result: Result) -> str:
    if result.error is not None:
        return f"{'terminal' if result.terminal else 'retryable'} error"
    return f"requeue in {result.requeue_after:.1f}s" if result.requeue_after is not None else "done"


def _password_edited(body: Mapping[str, Any]) -> bool:
    """A Database Secret whose password differs from the one kumo recorded writing."""
    meta, data = body["metadata"], body.get("data") or {}
    owners = [ref.get("uid", "") for ref in meta.get("ownerReferences") or [] if ref.get("kind") == Kind.DATABASE.value]
    if not owners or not data.get("password"):
        return False
    try:
        password = base64.b64decode(data["password"]).decode()
    except (ValueError, UnicodeDecodeError):
        return True  # not even text: certainly not kumo's
    return edited(meta.get("annotations") or {}, owners[0], password)


def _secret_owner(meta: Mapping[str, Any]) -> ObjectKey | None:
    labels = meta.get("labels") or {}
    kind = labels.get(LABEL_OWNER_KIND)
    if kind not in (Kind.DATABASE.value, Kind.BUCKET.value) or not labels.get(LABEL_OWNER_NAME):
        return None
    return ObjectKey(Kind(kind), meta["namespace"], labels[LABEL_OWNER_NAME])


def connection_secrets_selector(shard: Shard | None) -> str:
    """The label selector of the Secrets kopf watches and prime() lists: kumo's connection
    Secrets, sharded only this shard's."""
    return shard.secret_selector if shard is not None else f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def _list_namespaces(patterns: Sequence[str]) -> list[str | None]:
    """Where prime() lists: each namespace kopf watches by name, or everywhere (None) when kopf
    serves the whole cluster or namespace globs (then namespaces.watched() filters)."""
    if patterns and not any(set("!*?,") & set(pattern) for pattern in patterns):
        return list(patterns)
    return [None]


def kube_http(config: ControllerConfig, settings: kopf.OperatorSettings, login: LoginFn) -> KubeHTTP:
    """kumo's own Kubernetes calls: as many connections as `--threads` allows, kopf's request
    timeout, and a User-Agent that lets audit logs and benchmarks attribute our writes."""
    return KubeHTTP(
        functools.partial(login, settings=settings),
        user_agent=USER_AGENT,
        pool_size=config.threads,
        timeout=settings.networking.request_timeout or DEFAULT_TIMEOUT,
    )


def build_registry(
    config: ControllerConfig, providers: ProviderRegistry, cluster_login: ClusterLogin | None = None
) -> kopf.OperatorRegistry:
    """All of kumo's kopf handlers, on a registry of their own (no module-level state). The
    watches and kumo's own calls log in through `cluster_login` (controller/runtime/login.py)."""
    registry = kopf.OperatorRegistry()
    cluster_login = cluster_login or ClusterLogin(config.kubeconfig, config.context)
    memo: dict[str, Controller] = {}
    configs: dict[str, ProviderConfigs] = {}  # the provider configs' status, usage and requeues
    election: dict[str, tuple[LeaderElector, asyncio.Task[None]]] = {}
    memo_http: dict[str, KubeHTTP] = {}

    kopf.on.login(registry=registry, id="login")(cluster_login.kopf_handler())

    @kopf.on.startup(registry=registry, id="start-controller")
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # events are posted by the reconciler, deliberately
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(config.threads, "kumo-io"))
        memo_http["http"] = http = kube_http(config, settings, cluster_login.consumer())
        kube = KubeClient(http)
        cluster_id = config.cluster_id or await kube.namespace_uid("kube-system")
        metrics = Metrics()
        if config.metrics_port:
            metrics.serve(config.metrics_port, config.health_host)
        cloud_calls = CloudCalls(RateLimiters(config.cloud_rate, config.cloud_burst), metrics)
        shard = shard_of(config)
        reconciler = Reconciler(
            kube,
            providers,
            cluster_id=cluster_id,
            controller_namespace=config.controller_namespace,
            hooks_for=cloud_calls.hooks_for,
            default_drift_policy=DriftPolicy(config.drift_policy),
            on_event=metrics.count_event if metrics else None,
            caller=shard.identity if shard is not None else "",
        )
        if shard is not None:
            for info in MANAGED.values():  # the API server sends this replica its objects only
                settings.watching.label_selectors[GROUP, VERSION, info.plural] = shard.selector
        settings.watching.label_selectors["", "v1", "secrets"] = connection_secrets_selector(shard)
        memo["controller"] = controller = Controller(
            reconciler,
            shard=shard,
            kube=kube,
            workers=config.workers,
            sweep_interval=config.sweep_interval,
            sweep_concurrency=config.sweep_concurrency,
            metrics=metrics,
            cache=ObjectCache(DriftPolicy(config.drift_policy)),
        )
        # kopf starts the watches only after this handler returns: prime() lists first.
        await controller.prime(kube, config.namespaces)
        controller.watch(controller.confirm_primed(kube), "kumo-confirm-start-up-listing")
        configs["watcher"] = watcher = ProviderConfigs(
            kube,
            reconciler,
            controller.cache,
            controller.queue,
            may_act=lambda: controller.may_act(),
            sharded=shard is not None,
            watch_api=http,
        )
        controller.watch(watcher.run(), "kumo-provider-configs")
        if config.leader_elect or shard is not None:
            elector = _elector(config, http, controller, shard)
            controller.may_act = elector.holds_fresh_lease
            if shard is not None:
                reconciler.assignment = ShardAssignment(shard, controller.cache, elector.holds_fresh_lease)
            campaign = asyncio.create_task(elector.run(), name="kumo-leader-election")
            campaign.add_done_callback(_exit_if_election_failed)
            election["elector"] = (elector, campaign)
        else:
            controller.start()
        log.info(
            "kumo %s controller started: cluster id %s, %d workers, sweeps every %.0fs, drift policy %s%s",
            kumo_version(),
            cluster_id,
            config.workers,
            config.sweep_interval,
            config.drift_policy,
            _waits_for(config, shard),
        )

    @kopf.on.cleanup(registry=registry, id="stop-controller")
    async def cleanup(**_: Any) -> None:
        if "elector" in election:
            election["elector"][1].cancel()  # no renewal may race the release below
        if "controller" in memo:
            await memo["controller"].stop()
        if "elector" in election:
            await election["elector"][0].release()  # after the workers stopped: hand over at once
        if "http" in memo_http:
            await memo_http.pop("http").close()

    for kind, info in MANAGED.items():
        _watch(registry, memo, kind, info.plural)

    # Every watch handler is a coroutine: kopf runs a plain function in a thread of its executor,
    # where updating the cache, the queue and the Secret index races the sweeper and the workers
    # on the event loop: a scope changing size in a thread while the sweeper iterated it raised
    # in the sweeper, and no scope was swept again.
    # The Secret watch is label-selected by the API server (startup sets the selector): every
    # Secret it delivers is one of kumo's, hence no `labels=` filter here, and the DEBUG line
    # names each Secret that reached the controller.
    @kopf.on.event("v1", "secrets", registry=registry, id="watch-secrets")
    async def secret_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        meta = body["metadata"]
        log.debug("Secret %s/%s: %s", meta.get("namespace"), meta.get("name"), event.get("type") or "listed")
        if "controller" in memo:
            memo["controller"].on_secret_event(event.get("type"), body)

    @kopf.on.event(GROUP, VERSION, PROVIDER_CONFIG.plural, registry=registry, id="watch-providerconfigs")
    async def provider_config_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        if "controller" in memo:
            memo["controller"].on_provider_config_event(body)
        if "watcher" in configs:
            configs["watcher"].on_config_event(PROVIDER_CONFIG.kind, event.get("type"), body)

    @kopf.on.event(GROUP, VERSION, CLUSTER_PROVIDER_CONFIG.plural, registry=registry, id="watch-clusterproviderconfigs")
    async def cluster_provider_config_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        if "watcher" in configs:
            configs["watcher"].on_config_event(CLUSTER_PROVIDER_CONFIG.kind, event.get("type"), body)

    return registry


def _elector(config: ControllerConfig, http: KubeHTTP, controller: Controller, shard: Shard | None) -> LeaderElector:
    """Elected: start workers and sweeper (the watches have kept the cache and queue current).
    Deposed: exit at once, because only ending the process stops cloud calls already running in
    worker threads; the supervisor (the Deployment) brings the process back as a standby.
    Sharded, the Lease is the shard's own (named after it, labelled with its ring) and the same
    rules hold: act only while holding it."""
    timing = ElectionTiming(config.lease_duration, config.renew_deadline, config.retry_period)
    where = (http, config.controller_namespace)
    if shard is None:
        store = KubeLeaseStore(*where, config.lease_name, request_timeout=config.retry_period)
    else:
        store = shard_lease_store(shard, *where, shard.identity, request_timeout=config.retry_period)
    identity = shard.identity if shard is not None else config.leader_identity or None
    return LeaderElector(store, identity=identity, timing=timing, on_elected=controller.start, on_deposed=_exit_deposed)


def _waits_for(config: ControllerConfig, shard: Shard | None) -> str:
    """The start-up line's note on what the replica waits for before acting."""
    if shard is not None:
        return f", shard {shard.identity} of ring {shard.ring}, acting once it holds its Lease"
    if config.leader_elect:
        return f", standby until it holds Lease {config.controller_namespace}/{config.lease_name}"
    return ""


def _exit_if_election_failed(campaign: asyncio.Task[None]) -> None:
    """A bug in the election must not leave a leader acting without renewing its Lease."""
    if not campaign.cancelled() and campaign.exception() is not None:
        log.error("leader election failed, exiting", exc_info=campaign.exception())
        _exit_deposed()


def _exit_deposed() -> None:
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_DEPOSED)


def _watch(registry: kopf.OperatorRegistry, memo: dict[str, Controller], kind: Kind, plural: str) -> None:
    @kopf.on.event(GROUP, VERSION, plural, registry=registry, id=f"watch-{plural}")
    async def object_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        if "controller" in memo:
            memo["controller"].on_object_event(kind, event.get("type"), body)


async def run(config: ControllerConfig, stop_flag: asyncio.Event | None = None) -> None:
    """Run the controller until `stop_flag` is set or the process is signalled. A login that
    cannot work raises one of login.LOGIN_ERRORS before kopf starts (kopf would retry it forever)."""
    cluster_login = ClusterLogin(config.kubeconfig, config.context)
    await asyncio.to_thread(cluster_login.check)  # may run an exec plugin: off the loop
    providers = ProviderRegistry.discover(lazy=True)  # a cloud's SDK is imported when first configured
    registry = build_registry(config, providers, cluster_login)
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=(f"http://{config.health_host}:{config.health_port}/healthz" if config.health_port else None),
        stop_flag=stop_flag,
        memories=EventOnlyMemories(),  # kumo's handlers are all on.event: kopf keeps no record per object
    )
