"""Pacing cloud calls: one token bucket per cloud account and region.

Reconciles and sweeps share the bucket of the account they call, so a burst of creates and a
sweep together can never exceed the rate the operator configured, which is how retry storms and
sweeps stop throttling a whole account. Waiting happens in the event loop (no thread blocks).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """`rate` tokens per second, holding at most `burst`. `acquire()` returns the time waited."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _tokens: float | None = None  # None until first use; negative while callers owe tokens
    _stamp: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def acquire(self) -> float:
        if self.rate <= 0:
            return 0.0  # unlimited
        async with self._lock:  # first come, first served: waiters queue in order
            wait = self._reserve()
            if wait > 0:
                await asyncio.sleep(wait)
            return wait

    def _reserve(self) -> float:
        now = self.clock()
        tokens = self.burst if self._tokens is None else self._tokens
        tokens = min(self.burst, tokens + (now - self._stamp) * self.rate) - 1
        self._tokens, self._stamp = tokens, now
        return 0.0 if tokens >= 0 else -tokens / self.rate


@dataclass
class RateLimiters:
    """The buckets by (provider, account, region), created on first use."""

    rate: float = 50.0
    burst: float = 100.0
    buckets: dict[tuple[str, str, str], TokenBucket] = field(default_factory=dict)

    def bucket(self, scope: tuple[str, str, str]) -> TokenBucket:
        if scope not in self.buckets:
            self.buckets[scope] = TokenBucket(self.rate, self.burst)
        return self.buckets[scope]
