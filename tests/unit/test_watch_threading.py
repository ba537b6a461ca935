"""Watch events and sweeps share one thread: the event loop.

kopf runs a watch handler written as a plain function in a thread of its executor. The
controller's handlers update the object cache, the work queue and the Secret index, which the
sweeper and the workers read on the event loop; from a thread, a cache update could land in the
middle of the sweeper iterating a scope, and the exception ended the sweeper for good (the bench
saw no scope swept at 10,000 objects). So every watch handler is a coroutine, and the sweeper
outlives a failure of its own.
"""

from __future__ import annotations

import asyncio
import inspect

from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.config import ControllerConfig
from kumo.controller.runtime.operator import build_registry
from kumo.controller.runtime.sweeps import Sweeper
from kumo.controller.runtime.workqueue import WorkQueue
from kumo.providers.base import Kind
from kumo.providers.registry import ProviderRegistry

from .test_cache_and_startup import JudgingReconciler, ListingClient, _bucket


def test_every_watch_handler_runs_on_the_event_loop() -> None:
    """kopf awaits a coroutine handler on the loop; a plain function would run in a thread."""
    registry = build_registry(ControllerConfig(), ProviderRegistry())
    handlers = registry._watching.get_all_handlers()
    ids = {handler.id for handler in handlers}
    assert {"watch-databases", "watch-buckets", "watch-secrets"} <= ids
    in_threads = [handler.id for handler in handlers if not inspect.iscoroutinefunction(handler.fn)]
    assert in_threads == []


class FailingOnce(ObjectCache):
    """A cache whose scopes cannot be read the first time, as when a dict changes size while
    it is iterated."""

    failed = False

    def scopes(self):
        if not self.failed:
            self.failed = True
            raise RuntimeError("dictionary changed size during iteration")
        return super().scopes()


class Announcing(JudgingReconciler):
    def __init__(self, client: ListingClient) -> None:
        super().__init__(client)
        self.swept = asyncio.Event()

    async def assess_sweep(self, key, body, observation):
        self.swept.set()
        return await super().assess_sweep(key, body, observation)


def test_the_sweeper_keeps_sweeping_after_a_failure_to_start_sweeps() -> None:
    """One failed round logs the error; the next round sweeps the scope as usual."""
    cache = FailingOnce()
    key = ObjectKey(Kind.BUCKET, "team", "a")
    cache.put(key, _bucket("a"))

    async def scenario() -> list[tuple[str, str]]:
        reconciler = Announcing(ListingClient(cache, []))
        sweeper = Sweeper(reconciler, cache, WorkQueue(), lambda namespace, name: True)
        sweeper.primed.set()
        running = asyncio.create_task(sweeper.run())
        try:
            await asyncio.wait_for(reconciler.swept.wait(), 60)  # a guard against hanging, not a measure
        finally:
            running.cancel()
        return list(reconciler.judged)

    assert asyncio.run(scenario()) == [("a", "7")]
    assert cache.failed  # the first round did fail
