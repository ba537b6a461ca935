"""The plumbing every provider shares (kumo.providers.plumbing): the instrumented call and the
client cache. The aws and gcp mapping tests check each cloud's error reading through their own
`ServiceCaller`; these scenarios check the shared part once, with a made-up SDK.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from kumo.providers.base import CallHooks, ProviderError, ProviderSettings, Retryable, Terminal
from kumo.providers.plumbing import ClientCache, InstrumentedCaller, SdkErrors, settings_digest

from .fakes import HookRecorder


class FakeSdkError(Exception):
    """An answer from the made-up cloud: an error code and a message."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def translate(error: Exception, operation: str) -> ProviderError:
    assert isinstance(error, FakeSdkError)
    kind = Retryable if error.code == "SlowDown" else Terminal
    return kind(f"{operation}: {error}", code=error.code)


def outcome(error: Exception) -> str:
    """The cloud's code when it answered, else the exception's class (as the aws provider does)."""
    return error.code if isinstance(error, FakeSdkError) else type(error).__name__


FAKE_ERRORS = SdkErrors(answers=(FakeSdkError,), translate=translate, outcome=outcome)


def caller(hooks: HookRecorder | None = None) -> InstrumentedCaller:
    return InstrumentedCaller("fake", "db", FAKE_ERRORS, hooks.hooks() if hooks else CallHooks())


def raising(error: Exception) -> Callable[[], Any]:
    def request() -> Any:
        raise error

    return request


# ---------------------------------------------------------------------------- the instrumented call


def test_a_call_is_paced_first_and_counted_after_with_its_labels() -> None:
    """`before` is awaited before the request, `after` hears provider, service, operation, ok."""
    hooks, seen_by_request = HookRecorder(), []

    def request() -> dict[str, str]:
        seen_by_request.append(list(hooks.events))
        return {"name": "a"}

    answer = asyncio.run(caller(hooks).call("instances.get", request))
    assert answer == {"name": "a"} and seen_by_request == [["before db instances.get"]]
    assert hooks.events == ["before db instances.get", "after ok"]
    call = hooks.calls[0]
    assert (call.provider, call.service, call.operation, call.outcome) == ("fake", "db", "instances.get", "ok")
    assert call.seconds >= 0


def test_the_clouds_refusal_is_translated_with_secrets_masked_and_no_cause() -> None:
    """The cloud's code labels the call; the raised error carries its message with the password
    it echoed masked, and the SDK error is not chained (its text may quote the request)."""
    hooks = HookRecorder()
    echoed = FakeSdkError("InvalidParameter", "password hunter2-long is too weak")
    with pytest.raises(Terminal) as refused:
        asyncio.run(caller(hooks).call("users.update", raising(echoed), secrets=("hunter2-long", "")))
    assert str(refused.value) == "users.update: password *** is too weak"
    assert refused.value.code == "InvalidParameter" and refused.value.__cause__ is None
    assert hooks.events[-1] == "after InvalidParameter"


def test_the_translation_decides_retryable() -> None:
    """Which answers are worth retrying is the cloud's reading, not the wrapper's."""
    with pytest.raises(Retryable) as throttled:
        asyncio.run(caller().call("instances.list", raising(FakeSdkError("SlowDown", "rate exceeded"))))
    assert throttled.value.code == "SlowDown"


@pytest.mark.parametrize(
    ("error", "found"),
    [
        pytest.param(FakeSdkError("NotFound", "no such instance"), None, id="not-found-is-none"),
        pytest.param(FakeSdkError("Denied", "access denied"), Terminal, id="other-answers-still-raise"),
    ],
)
def test_find_turns_only_the_missing_answer_into_none(error: Exception, found: type[Exception] | None) -> None:
    """`find` reports the call either way and returns None only for what `missing` accepts."""
    hooks = HookRecorder()

    def lookup() -> Any:
        return asyncio.run(
            caller(hooks).find("instances.get", raising(error), missing=lambda e: getattr(e, "code", "") == "NotFound")
        )

    if found is None:
        assert lookup() is None
    else:
        with pytest.raises(found):
            lookup()
    assert hooks.events == ["before db instances.get", f"after {error.code}"]  # type: ignore[attr-defined]


def test_a_bug_keeps_its_type_and_traceback_and_is_still_counted() -> None:
    """An exception that is no answer from the cloud is a bug: not translated, but counted."""
    hooks = HookRecorder()
    with pytest.raises(KeyError):
        asyncio.run(caller(hooks).call("instances.get", raising(KeyError("settings"))))
    assert hooks.events == ["before db instances.get", "after KeyError"]


def test_a_provider_error_raised_in_the_request_passes_as_it_is_labelled_with_its_code() -> None:
    """Credentials found unusable while a client is built (in the worker thread) reach the
    reconciler unchanged; the call is counted under the error's code."""
    hooks = HookRecorder()
    unusable = Terminal("credentials: not a service-account key", code="NoCredentials")
    with pytest.raises(Terminal) as refused:
        asyncio.run(caller(hooks).call("instances.get", raising(unusable)))
    assert refused.value is unusable and hooks.events[-1] == "after NoCredentials"


def test_hooks_are_optional() -> None:
    assert asyncio.run(caller().call("instances.list", lambda: [1, 2])) == [1, 2]


# ---------------------------------------------------------------------------- the client cache


def settings(key_id: str = "AKIA1", region: str = "eu-west-1") -> ProviderSettings:
    return ProviderSettings(
        provider="fake", region=region, credentials={"aws_access_key_id": key_id, "aws_secret_access_key": "s3cr3t"}
    )


@dataclass
class Factory:
    """Builds numbered fake clients and sessions, counting each build."""

    sessions: list[ProviderSettings] = field(default_factory=list)
    clients: list[tuple[Any, str]] = field(default_factory=list)

    def make_shared(self, settings: ProviderSettings) -> str:
        self.sessions.append(settings)
        return f"session-{len(self.sessions)}"

    def make_client(self, shared: Any, settings: ProviderSettings, service: str) -> tuple[Any, str]:
        self.clients.append((shared, service))
        return self.clients[-1]

    def cache(self, max_settings: int = 64) -> ClientCache:
        return ClientCache(self.make_client, make_shared=self.make_shared, max_settings=max_settings)


def test_clients_are_built_once_per_settings_and_service_sharing_one_session() -> None:
    factory = Factory()
    cache = factory.cache()
    first, again, other = (
        cache.client(settings(), "rds"),
        cache.client(settings(), "rds"),
        cache.client(settings(), "s3"),
    )
    assert first is again and first is not other
    assert factory.clients == [("session-1", "rds"), ("session-1", "s3")]  # one session serves both


def test_rotated_credentials_or_another_region_get_their_own_clients() -> None:
    factory = Factory()
    cache = factory.cache()
    clients = {id(cache.client(s, "rds")) for s in (settings(), settings(key_id="AKIA2"), settings(region="us-east-1"))}
    assert len(clients) == 3 and len(factory.sessions) == 3


def test_the_cache_is_bounded_and_drops_the_oldest_settings_first() -> None:
    """Credentials rotated many times do not pile up clients forever."""
    factory = Factory()
    cache = factory.cache(max_settings=2)
    oldest, kept = settings("AKIA1"), settings("AKIA2")
    for each in (oldest, kept, settings("AKIA3")):
        cache.client(each, "rds")
    kept_client = cache.client(kept, "rds")
    cache.client(oldest, "rds")  # evicted: built again
    assert [s.credentials["aws_access_key_id"] for s in factory.sessions] == ["AKIA1", "AKIA2", "AKIA3", "AKIA1"]
    assert kept_client is factory.clients[1]


def test_threads_asking_at_once_share_one_client() -> None:
    """GCP builds clients inside worker threads; concurrent first calls must not build twice."""
    factory, threads = Factory(), 8
    cache = factory.cache()
    start = threading.Barrier(threads)
    got: list[Any] = []

    def ask() -> None:
        start.wait()
        got.append(cache.client(settings(), "sqladmin"))

    workers = [threading.Thread(target=ask) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(factory.clients) == 1 and all(client is got[0] for client in got)


def test_unusable_credentials_cache_nothing() -> None:
    """A session that cannot be built raises to the caller, and the next call tries again."""
    attempts: list[str] = []

    def make_shared(settings: ProviderSettings) -> None:
        attempts.append("session")
        raise Terminal("credentials: need aws_access_key_id", code="NoCredentials")

    cache = ClientCache(lambda shared, settings, service: object(), make_shared=make_shared)
    for _ in range(2):
        with pytest.raises(Terminal):
            cache.client(settings(), "rds")
    assert attempts == ["session", "session"]


def test_the_cache_key_holds_no_credential() -> None:
    assert "s3cr3t" not in settings_digest(settings()) and "AKIA1" not in settings_digest(settings())
