"""A rate-limited work queue of object keys, after client-go's workqueue.

Watch events only say "look at this object again"; the queue turns a burst of them into one
reconcile. A key is never processed by two workers at once: if it is added while being
processed, it is marked dirty and queued again when the worker is done. Delayed adds keep only
the earliest pending time per key, so a requeue can never pile up timers. Failures back off per
key, exponentially with jitter, up to a cap; a success forgets the key's failures. Keys coming
back from a timed requeue go ahead of fresh ones, so work already begun finishes first.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Hashable, Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

K = TypeVar("K", bound=Hashable)


class RetryPace(Protocol):
    """Seconds to wait after the n-th failure in a row (`Backoff`, or the reconciler's pace for
    the error it met)."""

    def delay(self, failures: int) -> float: ...


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with full-range jitter in [0.5, 1.0] of the step."""

    base: float = 1.0
    cap: float = 300.0

    def delay(self, failures: int) -> float:
        step = min(self.cap, self.base * (2 ** max(0, failures - 1)))
        return step * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography


@dataclass
class WorkQueue(Generic[K]):
    backoff: Backoff = field(default_factory=Backoff)
    # (lane, arrival, key): FIFO within a lane; lane 0 is for timed requeues (see add()).
    _queue: asyncio.PriorityQueue[tuple[int, int, K]] = field(default_factory=asyncio.PriorityQueue)
    _arrivals: Iterator[int] = field(default_factory=itertools.count)
    _queued: set[K] = field(default_factory=set)
    _processing: set[K] = field(default_factory=set)
    _dirty: set[K] = field(default_factory=set)
    _timers: dict[K, tuple[float, asyncio.TimerHandle]] = field(default_factory=dict)
    _failures: dict[K, int] = field(default_factory=dict)
    _shutdown: bool = False

    def add(self, key: K, *, resumed: bool = False) -> None:
        """Queue a key. `resumed` keys (a timed requeue: a resource provisioning, a retry) go
        ahead of fresh ones: work already begun finishes first instead of waiting behind a
        burst of new objects, which is what makes a multi-pass create slow at scale."""
        if self._shutdown:
            return
        self._cancel_timer(key)
        if key in self._processing:
            self._dirty.add(key)
        elif key not in self._queued:
            self._queued.add(key)
            self._queue.put_nowait((0 if resumed else 1, next(self._arrivals), key))

    def add_after(self, key: K, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay
        pending = self._timers.get(key)
        if pending and pending[0] <= due:
            return
        if pending:
            pending[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key: K, pace: RetryPace | None = None) -> float:
        """Requeue after a failure, at `pace` (the queue's own backoff if None) given how many
        failures in a row the key has had; returns the delay chosen."""
        self._failures[key] = self._failures.get(key, 0) + 1
        delay = (pace or self.backoff).delay(self._failures[key])
        self.add_after(key, delay)
        return delay

    def failures(self, key: K) -> int:
        return self._failures.get(key, 0)

    def busy(self, key: K) -> bool:
        """Queued, being processed, or waiting for a timed requeue."""
        return key in self._queued or key in self._processing or key in self._timers

    def forget(self, key: K) -> None:
        self._failures.pop(key, None)

    async def get(self) -> K:
        _, _, key = await self._queue.get()
        self._queued.discard(key)
        self._processing.add(key)
        return key

    def done(self, key: K) -> None:
        self._processing.discard(key)
        if key in self._dirty:
            self._dirty.discard(key)
            self.add(key)

    def discard(self, key: K) -> None:
        """Drop pending timers and failure history of a key whose object is gone."""
        self._cancel_timer(key)
        self._failures.pop(key, None)

    def shutdown(self) -> None:
        self._shutdown = True
        for _, handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    def __len__(self) -> int:
        return self._queue.qsize()

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.add(key, resumed=True)

    def _cancel_timer(self, key: K) -> None:
        pending = self._timers.pop(key, None)
        if pending:
            pending[1].cancel()
