"""Drift sweeps: one batched read of the cloud per (provider config, kind), not a timer per object.

Per-resource polling costs one cloud read per resource per interval; a sweep costs one paged list
call per 100 RDS instances, 500 Cloud SQL instances or 1000 GCS buckets, whether 10 or 10,000
objects are managed. The sweep compares the listing with the desired state of every object held
in memory and only then touches anything: a steady sweep writes nothing to Kubernetes and
enqueues nothing. Drift is reported (and, under Correct, handed to the reconciler to fix).

The first sweeps run as soon as the cache holds every object that existed at start-up, which is
also how a restarted controller re-checks the objects that were already Ready: a few list calls
instead of one describe per object.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from kumo.controller.core import conditions as cond
from kumo.controller.core.kubeapi import Conflict
from kumo.controller.core.providerconfig import ProviderConfigError
from kumo.controller.core.reconciler import Reconciler
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.cloudcalls import calls_in_context
from kumo.controller.runtime.memory import release_free_memory
from kumo.controller.runtime.metrics import Metrics
from kumo.controller.runtime.scopes import SweepScope, own_interval
from kumo.controller.runtime.workqueue import WorkQueue
from kumo.providers.base import ManagedResource, ProviderError

from kumo import api
from kumo.api import connection_secret_name

log = logging.getLogger(__name__)
LARGE_SWEEP = 500  # resources listed: after such a sweep, free memory goes back to the system


@dataclass
class SweepStats:
    calls: int = 0  # cloud calls this sweep made (list pages, and S3's per-bucket reads)
    listed: int = 0
    compared: int = 0
    drifted: int = 0
    enqueued: int = 0


@dataclass
class Sweeper:
    reconciler: Reconciler
    cache: ObjectCache
    queue: WorkQueue[ObjectKey]
    secret_exists: Callable[[str, str], bool]
    interval: float = 60.0
    concurrency: int = 4
    metrics: Metrics | None = None
    # Set once the cache holds every object that existed at start-up: a sweep before that would
    # cover part of a scope and leave the rest unchecked for a whole interval.
    primed: asyncio.Event = field(default_factory=asyncio.Event)
    _due: dict[SweepScope, float] = field(default_factory=dict)
    _last_assessed: dict[ObjectKey, float] = field(default_factory=dict)
    _running: dict[SweepScope, asyncio.Task[SweepStats]] = field(default_factory=dict)
    _started: bool = False  # the scopes of start-up have been given their first sweep
    completed: int = 0  # sweeps finished since start (for tests and benchmarks)

    async def run(self) -> None:
        semaphore = asyncio.Semaphore(self.concurrency)
        await self.primed.wait()
        while True:
            now = time.monotonic()
            try:
                self._start_due(now, semaphore)
            except Exception:  # a bug here must not end every future sweep in silence
                log.exception("starting the due sweeps failed; trying again")
            await asyncio.sleep(self._sleep_for(now))

    def _start_due(self, now: float, semaphore: asyncio.Semaphore) -> None:
        self._running = {scope: task for scope, task in self._running.items() if not task.done()}
        for scope, members in self.cache.scopes().items():
            interval = min((own or self.interval for own in members.values()), default=self.interval)
            # A scope of start-up is swept at once: that sweep verifies what was Ready before. One
            # that appears later holds objects just reconciled (each observed its resource), so
            # its first sweep is an interval away, not in the middle of their creates.
            due = self._due.setdefault(scope, now if not self._started else now + interval)
            if due > now or scope in self._running:
                continue
            # Jitter only ever shortens the interval: scopes spread out, and a drift is still
            # found within one interval plus the duration of a sweep.
            self._due[scope] = now + interval * random.uniform(0.9, 1.0)  # noqa: S311 - jitter
            self._running[scope] = asyncio.create_task(self._sweep_bounded(semaphore, scope))
        self._started = True

    def _sleep_for(self, now: float) -> float:
        upcoming = [due - now for due in self._due.values()]
        return max(0.05, min([1.0, *upcoming]))

    def _interval_of(self, body: Mapping[str, Any]) -> float:
        return own_interval(body) or self.interval

    async def _sweep_bounded(self, semaphore: asyncio.Semaphore, scope: SweepScope) -> SweepStats:
        async with semaphore:
            started = time.monotonic()
            members = self.cache.members(scope)
            if not members:
                return SweepStats()
            try:
                stats = await self.sweep(scope, members)
            except (ProviderError, ProviderConfigError) as error:
                # The per-object reconciles report configuration and cloud errors; a sweep only logs.
                log.warning("sweep of %s failed: %s", scope, error)
                return SweepStats()
            except Exception:
                log.exception("sweep of %s failed unexpectedly", scope)
                return SweepStats()
            self.completed += 1
            if stats.listed >= LARGE_SWEEP:
                release_free_memory()  # the listing just freed is the controller's largest peak
            if self.metrics is not None:
                self.metrics.sweep_seconds.labels(scope.kind).observe(time.monotonic() - started)
                self.metrics.sweep_size.labels(scope.kind).set(stats.compared)
            log.debug(
                "swept %s of %s %s/%s: %d listed, %d compared, %d drifted, %d enqueued, %d cloud calls in %.3fs",
                scope.kind,
                scope.config_kind,
                scope.config_namespace or "-",
                scope.config_name,
                stats.listed,
                stats.compared,
                stats.drifted,
                stats.enqueued,
                stats.calls,
                time.monotonic() - started,
            )
            return stats

    async def sweep(self, scope: SweepScope, members: list[ObjectKey]) -> SweepStats:
        """One batched observation of the scope, compared with every member that is due.

        Bodies are decoded one at a time, to build the provider's view and again to judge it, so
        a sweep of 10,000 objects never holds 10,000 decoded bodies at once."""
        stats = SweepStats()
        # A member a reconcile has (queued, running, or waiting to look again) is left out of the
        # cloud read: that reconcile observes it, and its answer here would be dropped (below).
        # A scope's first sweep comes with its first objects, all of them still being created,
        # so reading them would only slow their creates down.
        members = [key for key in members if not self.queue.busy(key)]
        first = self.cache.get(members[0]) if members else None
        if first is None:
            return stats
        _, client, settings = await self.reconciler.connect(scope.kind, first)
        resources: list[ManagedResource] = []
        judged: dict[str, tuple[ObjectKey, str]] = {}  # external name -> key, resourceVersion seen
        for key in members:
            body = self.cache.get(key)
            if body is not None:
                resources.append(self.reconciler.resource_for(scope.kind, body, settings))
                judged[resources[-1].external_name] = (key, str(body["metadata"].get("resourceVersion")))
        counted: Counter[str] = Counter()
        token = calls_in_context.set(counted)
        try:
            observations = await client.observe_many(resources)
        finally:
            calls_in_context.reset(token)
        del resources
        stats.calls = sum(counted.values())
        stats.listed = len(judged)
        now = time.monotonic()
        for name, (key, version) in judged.items():
            body = self.cache.get(key)
            # Changed since the listing was asked for (a spec edit, a reconcile's status): judging
            # it against a listing made for the old body could report drift that is not there.
            if body is None or str(body["metadata"].get("resourceVersion")) != version:
                continue
            # Below the scope's jitter (0.9-1.0 x): an object on the scope's own interval is always
            # due; one asking for a longer interval waits for a later sweep.
            if self.queue.busy(key) or now - self._last_assessed.get(key, 0.0) < self._interval_of(body) * 0.8:
                continue  # a reconcile has it, or its own interval has not come round yet
            self._last_assessed[key] = now
            stats.compared += 1
            observation = observations.get(name)
            try:
                needs_reconcile = await self.reconciler.assess_sweep(key, body, observation)
            except Conflict:
                continue  # a reconcile wrote newer status meanwhile; the next sweep looks again
            if observation is not None and observation.drift:
                stats.drifted += 1
            if needs_reconcile or self._secret_missing(key, body):
                stats.enqueued += 1
                self.queue.add(key)
        return stats

    def _secret_missing(self, key: ObjectKey, body: Mapping[str, Any]) -> bool:
        ready = cond.is_true(body.get("status", {}).get("conditions") or [], api.READY)
        return ready and not self.secret_exists(key.namespace, connection_secret_name(key.kind, body))
