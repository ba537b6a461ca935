"""What the controller wraps around every cloud call a provider makes.

Providers route each SDK call through `CallHooks`. `before` paces the call with the token bucket
of its cloud account and region (reconciles and sweeps share it); `after` counts and logs it and
feeds the metrics. The counts are what tests and benchmarks read to prove claims such as "a
restart makes no create call" or "a sweep costs one call per page".
"""

from __future__ import annotations

import contextvars
import logging
from collections import Counter
from dataclasses import dataclass, field

from kumo.controller.runtime.metrics import Metrics
from kumo.controller.runtime.ratelimit import RateLimiters
from kumo.providers.base import CallHooks, CloudCall, ProviderSettings

log = logging.getLogger("kumo.cloud")

# Set by a drift sweep around its work, so the calls it causes are counted as its own even while
# other sweeps and reconciles call the same cloud concurrently (context follows the task).
calls_in_context: contextvars.ContextVar[Counter[str] | None] = contextvars.ContextVar("kumo_calls", default=None)


@dataclass
class CloudCalls:
    """Pacing, counting and metrics for every cloud call, by (provider, service, operation, outcome)."""

    limiters: RateLimiters = field(default_factory=RateLimiters)
    metrics: Metrics | None = None
    calls: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    _hooks: dict[tuple[str, str, str], CallHooks] = field(default_factory=dict)

    def record(self, call: CloudCall) -> None:
        self.calls[(call.provider, call.service, call.operation, call.outcome)] += 1
        in_context = calls_in_context.get()
        if in_context is not None:
            in_context[call.operation] += 1
        if self.metrics is not None:
            self.metrics.record_call(call)
        log.debug(
            "cloud call %s %s %s -> %s in %.3fs",
            call.provider,
            call.service,
            call.operation,
            call.outcome,
            call.seconds,
        )

    def count(self, operation: str | None = None) -> int:
        return sum(n for (_, _, op, _), n in self.calls.items() if operation in (None, op))

    def hooks_for(self, settings: ProviderSettings) -> CallHooks:
        """The hooks for one account and region (cached, so clients built from them are reused)."""
        scope = settings.scope_key()
        if scope not in self._hooks:
            bucket = self.limiters.bucket(scope)

            async def before(service: str, operation: str) -> None:
                waited = await bucket.acquire()
                if waited and self.metrics is not None:
                    self.metrics.ratelimit_wait.labels(settings.provider, settings.region).inc(waited)

            self._hooks[scope] = CallHooks(before=before, after=self.record)
        return self._hooks[scope]
