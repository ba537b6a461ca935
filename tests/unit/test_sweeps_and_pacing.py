"""Sweep scheduling helpers and the token bucket that paces cloud calls."""

from __future__ import annotations

import asyncio

import pytest
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.ratelimit import RateLimiters, TokenBucket
from kumo.controller.runtime.scopes import MIN_INTERVAL, SweepScope, parse_interval, scope_of
from kumo.providers.base import Kind, ProviderSettings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90.0), ("90s", 90.0), ("5m", 300.0), ("1h", 3600.0), ("1", MIN_INTERVAL), ("soon", None), (None, None)],
    ids=["bare-seconds", "seconds", "minutes", "hours", "floored-at-minimum", "malformed", "absent"],
)
def test_sweep_interval_annotation_is_parsed_with_a_floor(text, seconds):
    """kumo.dev/sweep-interval accepts s/m/h, never goes below the minimum, ignores junk."""
    assert parse_interval(text) == seconds


def test_objects_group_into_one_scope_per_config_and_kind():
    """Objects sharing a provider config and kind share one sweep; a namespaced config is
    scoped to its namespace, a cluster config is not."""
    cluster_ref = {"spec": {}}
    namespaced = {"spec": {"providerConfigRef": {"kind": "ProviderConfig", "name": "aws"}}}
    assert scope_of(ObjectKey(Kind.DATABASE, "a", "x"), cluster_ref) == scope_of(
        ObjectKey(Kind.DATABASE, "b", "y"), cluster_ref
    )
    assert scope_of(ObjectKey(Kind.DATABASE, "a", "x"), namespaced) == SweepScope(
        "ProviderConfig", "a", "aws", Kind.DATABASE
    )
    assert scope_of(ObjectKey(Kind.DATABASE, "a", "x"), namespaced) != scope_of(
        ObjectKey(Kind.BUCKET, "a", "x"), namespaced
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_allows_a_burst_then_paces_to_the_rate():
    """The first `burst` calls pass at once; the next waits 1/rate per call."""
    clock = FakeClock()

    async def scenario() -> list[float]:
        bucket = TokenBucket(rate=10.0, burst=3.0, clock=clock)
        waits = []
        for _ in range(5):
            waits.append(await bucket.acquire())
            clock.now += waits[-1]
        return waits

    waits = asyncio.run(scenario())
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1) and waits[4] == pytest.approx(0.1)


def test_token_bucket_refills_while_idle():
    """After a quiet period the burst is available again."""
    clock = FakeClock()

    async def scenario() -> float:
        bucket = TokenBucket(rate=1.0, burst=2.0, clock=clock)
        await bucket.acquire()
        await bucket.acquire()
        clock.now += 10
        return await bucket.acquire()

    assert asyncio.run(scenario()) == 0.0


def test_zero_rate_means_unlimited():
    """Rate 0 turns pacing off."""

    async def scenario() -> list[float]:
        bucket = TokenBucket(rate=0.0, burst=0.0)
        return [await bucket.acquire() for _ in range(100)]

    assert set(asyncio.run(scenario())) == {0.0}


def test_one_bucket_per_account_and_region():
    """Calls to the same account and region share a bucket; other accounts or regions do not,
    and credentials never appear in the key."""
    limiters = RateLimiters()
    a = ProviderSettings(
        "aws", region="us-east-1", credentials={"aws_access_key_id": "AK1", "aws_secret_access_key": "s"}
    )
    b = ProviderSettings(
        "aws", region="eu-west-1", credentials={"aws_access_key_id": "AK1", "aws_secret_access_key": "s"}
    )
    doc = ProviderSettings("aws", region="us-east-1", credentials={"document": "[default]\naws_secret_access_key=top"})
    assert limiters.bucket(a.scope_key()) is limiters.bucket(a.scope_key())
    assert limiters.bucket(a.scope_key()) is not limiters.bucket(b.scope_key())
    assert doc.scope_key() != ProviderSettings("aws", region="us-east-1").scope_key()
    assert "top" not in "".join(doc.scope_key())
