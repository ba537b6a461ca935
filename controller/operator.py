"""The kopf wiring: watches feed a work queue, workers call the one reconcile path.

kopf gives us robust watch streams, start-up and clean-up, and health probes. We deliberately
use only its low-level `on.event` handlers: they make kopf write nothing to the objects (no
progress annotations, no last-handled-configuration copy of the spec, no finalizer of its own),
so every write to Kubernetes is one the reconciler chose, and a steady state costs none.

An event only enqueues its object when something the controller acts on changed: the
generation (a spec edit), the deletion mark, or an annotation kumo reads. Our own status and
finalizer writes come back as events too and are ignored by that rule, which is what keeps a
reconcile from triggering itself.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import kopf
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kumo.providers.base import Kind
from kumo.providers.registry import ProviderRegistry

from kumo import API_GROUP, API_VERSION

from .cloudcalls import CloudCallLedger
from .config import ControllerConfig
from .connection import LABEL_MANAGED_BY, LABEL_OWNER_KIND, LABEL_OWNER_NAME, MANAGED_BY
from .kube import KubeClient
from .reconciler import ANNOTATION_ADOPT, ANNOTATION_ROTATE_PASSWORD, Reconciler, Result
from .resources import KINDS, ObjectKey
from .workqueue import WorkQueue

log = logging.getLogger(__name__)
USER_AGENT = "kumo-controller/0.1"
WATCHED_ANNOTATIONS = (ANNOTATION_ROTATE_PASSWORD, ANNOTATION_ADOPT, "kumo.dev/paused")


def fingerprint(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What must change for an event to be worth a reconcile."""
    meta = body.get("metadata", {})
    annotations = meta.get("annotations") or {}
    return (
        meta.get("uid"),
        meta.get("generation"),
        bool(meta.get("deletionTimestamp")),
        tuple(annotations.get(a) for a in WATCHED_ANNOTATIONS),
    )


@dataclass
class Controller:
    """The in-memory state of a running controller: latest bodies, the queue, the workers."""

    reconciler: Reconciler
    workers: int = 16
    cache: dict[ObjectKey, dict[str, Any]] = field(default_factory=dict)
    queue: WorkQueue[ObjectKey] = field(default_factory=WorkQueue)
    _fingerprints: dict[ObjectKey, tuple[Any, ...]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def on_object_event(self, kind: Kind, event_type: str | None, body: Mapping[str, Any]) -> None:
        meta = body["metadata"]
        key = ObjectKey(kind, meta["namespace"], meta["name"])
        if event_type == "DELETED":
            self.cache.pop(key, None)
            self._fingerprints.pop(key, None)
            self.queue.discard(key)
            self.reconciler.forget(key)
            return
        self.cache[key] = _plain(body)
        mark = fingerprint(body)
        if self._fingerprints.get(key) != mark:
            self._fingerprints[key] = mark
            self.queue.add(key)

    def on_secret_deleted(self, body: Mapping[str, Any]) -> None:
        labels = body["metadata"].get("labels") or {}
        kind = labels.get(LABEL_OWNER_KIND)
        if kind in (Kind.DATABASE.value, Kind.BUCKET.value):
            self.queue.add(ObjectKey(Kind(kind), body["metadata"]["namespace"], labels[LABEL_OWNER_NAME]))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._work(), name=f"kumo-worker-{i}") for i in range(self.workers)]

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
                if body is not None:
                    started = time.monotonic()
                    result = await self.reconciler.reconcile(key, body)
                    log.debug("reconciled %s in %.3fs: %s", key, time.monotonic() - started, _describe(result))
                    self._schedule(key, result)
            except Exception:  # one object's bug must never stop a worker
                log.exception("unexpected error reconciling %s", key)
                self.queue.add_rate_limited(key)
            finally:
                self.queue.done(key)

    def _schedule(self, key: ObjectKey, result: Result) -> None:
        if result.error is not None and result.terminal:
            slow = self.reconciler.timing.terminal_retry * random.uniform(0.8, 1.2)  # noqa: S311
            self.queue.add_after(key, slow)
        elif result.error is not None:
            self.queue.add_rate_limited(key)
        elif result.requeue_after is not None:
            self.queue.forget(key)
            self.queue.add_after(key, result.requeue_after)
        else:
            self.queue.forget(key)


def _describe(result: Result) -> str:
    if result.error is not None:
        return f"{'terminal' if result.terminal else 'retryable'} error"
    return f"requeue in {result.requeue_after:.1f}s" if result.requeue_after is not None else "done"


def _plain(body: Mapping[str, Any]) -> dict[str, Any]:
    """A detached copy: kopf's body is a live view that changes under us."""
    return {
        "metadata": dict(body["metadata"]),
        "spec": dict(body.get("spec") or {}),
        "status": dict(body.get("status") or {}),
    }


def api_client(config: ControllerConfig) -> k8s.ApiClient:
    configuration = k8s.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)
    except k8s_config.ConfigException:
        k8s_config.load_kube_config(config_file=config.kubeconfig or None, client_configuration=configuration)
    configuration.connection_pool_maxsize = config.threads
    api = k8s.ApiClient(configuration)
    api.user_agent = USER_AGENT  # lets audit logs and benchmarks attribute our writes
    return api


def build_registry(config: ControllerConfig, providers: ProviderRegistry) -> kopf.OperatorRegistry:
    """All of kumo's kopf handlers, on a registry of their own (no module-level state)."""
    registry = kopf.OperatorRegistry()
    memo: dict[str, Controller] = {}

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        settings.posting.enabled = False  # events are posted by the reconciler, deliberately
        settings.watching.server_timeout = 300
        settings.networking.request_timeout = 60
        loop = asyncio.get_running_loop()
        loop.set_default_executor(concurrent.futures.ThreadPoolExecutor(config.threads, "kumo-io"))
        kube = KubeClient(api_client(config))
        cluster_id = config.cluster_id or await kube.namespace_uid("kube-system")
        ledger = CloudCallLedger()
        reconciler = Reconciler(
            kube,
            providers,
            cluster_id=cluster_id,
            controller_namespace=config.controller_namespace,
            hooks=ledger.hooks(),
        )
        memo["controller"] = controller = Controller(reconciler, workers=config.workers)
        controller.start()
        log.info("kumo controller started: cluster id %s, %d workers", cluster_id, config.workers)

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        if "controller" in memo:
            await memo["controller"].stop()

    for kind, info in KINDS.items():
        _watch(registry, memo, kind, info.plural)

    @kopf.on.event("v1", "secrets", labels={LABEL_MANAGED_BY: MANAGED_BY}, registry=registry)
    def secret_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        if event.get("type") == "DELETED" and "controller" in memo:
            memo["controller"].on_secret_deleted(body)

    return registry


def _watch(registry: kopf.OperatorRegistry, memo: dict[str, Controller], kind: Kind, plural: str) -> None:
    @kopf.on.event(API_GROUP, API_VERSION, plural, registry=registry, id=f"watch-{plural}")
    def object_event(event: Mapping[str, Any], body: Mapping[str, Any], **_: Any) -> None:
        if "controller" in memo:
            memo["controller"].on_object_event(kind, event.get("type"), body)


async def run(config: ControllerConfig, stop_flag: asyncio.Event | None = None) -> None:
    """Run the controller until `stop_flag` is set or the process is signalled."""
    providers = ProviderRegistry.discover()
    registry = build_registry(config, providers)
    await kopf.operator(
        registry=registry,
        standalone=True,
        clusterwide=not config.namespaces,
        namespaces=list(config.namespaces),
        liveness_endpoint=(f"http://{config.health_host}:{config.health_port}/healthz" if config.health_port else None),
        stop_flag=stop_flag,
    )
