"""The plumbing every provider shares: the instrumented cloud call and the SDK client cache.

The built-in aws and gcp providers and third-party plugins (examples/provider-plugin) route every
cloud call through `InstrumentedCaller` and keep their SDK clients in a `ClientCache`, so pacing,
metrics, error translation and secret redaction work the same way whatever the cloud:

- `InstrumentedCaller` awaits `CallHooks.before` (the controller's token bucket per account and
  region), runs the blocking SDK call in a worker thread, reports a `CloudCall` to
  `CallHooks.after` (metrics and call counts) however the call ended, and turns the SDK's
  exception into `Retryable` / `NotReady` / `Terminal` with every secret value masked.
- `ClientCache` builds SDK clients once per distinct `ProviderSettings` and service, under a lock,
  and shares them afterwards; rotated credentials make new entries, and old ones are dropped
  beyond `MAX_CACHED_SETTINGS`.

What differs per cloud stays in the provider: which exceptions are the cloud's answers and how
they translate (`SdkErrors`), and how a client is built (the cache's factories).
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar

from .base import CallHooks, CloudCall, ProviderError, ProviderSettings

T = TypeVar("T")

OUTCOME_OK = "ok"  # `CloudCall.outcome` of a call that returned; a metrics label value
REDACTED = "***"
MAX_CACHED_SETTINGS = 64  # rotated credentials make new entries; keep the old ones bounded


def exception_name(error: BaseException) -> str:
    """The outcome a call reports when the SDK gives no better code: the exception's class."""
    return type(error).__name__


def redacted(error: ProviderError, secrets: Collection[str]) -> ProviderError:
    """The same error with every secret value masked, in case the cloud echoed one back."""
    message = str(error)
    for secret in secrets:
        if secret:
            message = message.replace(secret, REDACTED)
    return type(error)(message, code=error.code)


def _never(error: Exception) -> bool:
    return False


# ---------------------------------------------------------------------------- the instrumented call


@dataclass(frozen=True)
class SdkErrors:
    """How one cloud SDK's exceptions read; the only per-cloud part of an instrumented call.

    `answers` are the exception types that are the cloud's (or its SDK's) answer; any other
    exception is a bug in the provider and propagates unchanged, traceback included.
    `translate(error, operation)` makes the `ProviderError` an answer stands for, carrying the
    cloud's own message. `outcome(error)` is what `CloudCall.outcome` reports (the cloud's error
    code or HTTP status): a metrics label, so a small fixed set of values.
    """

    answers: tuple[type[Exception], ...]
    translate: Callable[[Exception, str], ProviderError]
    outcome: Callable[[Exception], str] = exception_name


class _Missing(Exception):
    """Inside `InstrumentedCaller`: the cloud answered "not found" to a `find`."""


@dataclass(frozen=True)
class InstrumentedCaller:
    """Every call to one service of one cloud goes through here, paced and counted.

    `service` and each `operation` become metric labels: name them as the cloud's API does
    (``rds`` / ``DescribeDBInstances``, ``sqladmin`` / ``instances.get``), never after a resource.
    `blocking` is a function making exactly one request; it runs in a worker thread.
    """

    provider: str
    service: str
    errors: SdkErrors
    hooks: CallHooks = field(default_factory=CallHooks)

    async def call(self, operation: str, blocking: Callable[[], T], *, secrets: Collection[str] = ()) -> T:
        """Run one request; raise the translated `ProviderError` when the cloud refuses it.
        `secrets` (a password sent in the request) are masked in any message raised."""
        return await self._run(operation, blocking, secrets=secrets, missing=_never)

    async def find(
        self,
        operation: str,
        blocking: Callable[[], T],
        *,
        missing: Callable[[Exception], bool],
        secrets: Collection[str] = (),
    ) -> T | None:
        """Run one request; None when `missing(error)` says the answer means "not found"."""
        try:
            return await self._run(operation, blocking, secrets=secrets, missing=missing)
        except _Missing:
            return None

    async def _run(
        self,
        operation: str,
        blocking: Callable[[], T],
        *,
        secrets: Collection[str],
        missing: Callable[[Exception], bool],
    ) -> T:
        if self.hooks.before is not None:
            await self.hooks.before(self.service, operation)
        started = time.monotonic()
        try:
            result = await asyncio.to_thread(blocking)
        except ProviderError as error:  # raised on purpose in the thread (e.g. credentials, found building a client)
            self._report(operation, error.code or exception_name(error), started)
            raise
        except Exception as error:
            self._report(operation, self.errors.outcome(error), started)
            if not isinstance(error, self.errors.answers):
                raise  # a bug, not an answer from the cloud: keep its traceback
            if missing(error):
                raise _Missing from None
            # `from None`: the SDK's own text (botocore's validation report quotes parameter
            # values, passwords included) must not ride along as the cause in logged tracebacks.
            raise redacted(self.errors.translate(error, operation), secrets) from None
        self._report(operation, OUTCOME_OK, started)
        return result

    def _report(self, operation: str, outcome: str, started: float) -> None:
        if self.hooks.after is not None:
            seconds = time.monotonic() - started
            self.hooks.after(CloudCall(self.provider, self.service, operation, outcome, seconds))


# ---------------------------------------------------------------------------- the client cache


def settings_digest(settings: ProviderSettings) -> str:
    """A digest identifying what an SDK client depends on, so no credential sits in a key."""
    parts = (
        settings.provider,
        settings.project,
        settings.region,
        sorted(settings.credentials.items()),
        sorted(settings.endpoints.items()),
        settings.caller,
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def user_agent_suffix(settings: ProviderSettings) -> str:
    """What an SDK client adds to its User-Agent to name the replica calling ("" when unnamed):
    `kumo-shard/<name>`, one product token as RFC 9110 section 10.1.5 describes them."""
    return f"kumo-shard/{settings.caller}" if settings.caller else ""


def _nothing_shared(settings: ProviderSettings) -> None:
    return None


@dataclass
class _SettingsEntry:
    shared: Any  # what the clients of one settings share (a boto3 Session); used under the lock only
    clients: dict[str, Any] = field(default_factory=dict)


class ClientCache:
    """SDK clients per provider settings and service, built once under a lock, shared afterwards.

    `make_client(shared, settings, service)` builds one client; `make_shared(settings)` builds,
    once per settings, what that settings' clients share (boto3's Session, which is not
    thread-safe, while the clients it makes are). Both run under the cache's lock, so a cache may
    be used from the event loop and from worker threads alike; a client built in a worker
    thread (Application Default Credentials may probe the metadata server) blocks only that
    thread. At most `max_settings` settings are kept, the oldest dropped first.
    """

    def __init__(
        self,
        make_client: Callable[[Any, ProviderSettings, str], Any],
        *,
        make_shared: Callable[[ProviderSettings], Any] = _nothing_shared,
        max_settings: int = MAX_CACHED_SETTINGS,
    ) -> None:
        self._make_client = make_client
        self._make_shared = make_shared
        self._max_settings = max_settings
        self._lock = threading.Lock()
        self._entries: dict[str, _SettingsEntry] = {}

    def client(self, settings: ProviderSettings, service: str) -> Any:
        key = settings_digest(settings)
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._new_entry(key, settings)
            if service not in entry.clients:
                entry.clients[service] = self._make_client(entry.shared, settings, service)
            return entry.clients[service]

    def _new_entry(self, key: str, settings: ProviderSettings) -> _SettingsEntry:
        shared = self._make_shared(settings)  # may raise (bad credentials): nothing is evicted then
        if len(self._entries) >= self._max_settings:
            self._entries.pop(next(iter(self._entries)))  # the oldest
        entry = self._entries[key] = _SettingsEntry(shared)
        return entry
