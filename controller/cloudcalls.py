"""What the controller wraps around every cloud call a provider makes.

Providers route each SDK call through `CallHooks`: `before` is where pacing happens (a token
bucket per cloud account and region, so reconciles and sweeps together never throttle an
account), `after` is where each call is counted and logged. The counts are what tests and
benchmarks read to prove claims such as "a restart makes no create call".
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field

from kumo.providers.base import CallHooks, CloudCall

log = logging.getLogger("kumo.cloud")


@dataclass
class CloudCallLedger:
    """Counts cloud calls by (provider, service, operation, outcome)."""

    calls: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)

    def record(self, call: CloudCall) -> None:
        self.calls[(call.provider, call.service, call.operation, call.outcome)] += 1
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

    def hooks(self) -> CallHooks:
        return CallHooks(before=None, after=self.record)
