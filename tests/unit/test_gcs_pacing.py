"""`UpdatePacer`: kumo's metadata writes to one GCS bucket keep GCS's one-update-per-second apart
(https://cloud.google.com/storage/quotas), while writes to other buckets never wait for it.

A fake clock stands in for time: each scenario checks how long the pacer chose to wait.
"""

from __future__ import annotations

import asyncio

import pytest
from kumo.providers.gcp.gcs import UpdatePacer


class FakeTime:
    """monotonic() and sleep() over one counter: sleeping moves the clock, nothing really waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


def pacer_on(clock: FakeTime) -> UpdatePacer:
    return UpdatePacer(interval=1.0, clock=clock.monotonic, sleep=clock.sleep)


def write(pacer: UpdatePacer, name: str, clock: FakeTime, takes: float = 0.0) -> None:
    async def send() -> str:
        clock.now += takes  # the request's round trip
        return name

    assert asyncio.run(pacer.write(name, send)) == name


def test_a_second_write_to_one_bucket_waits_out_the_second_from_the_first_answer(clock: FakeTime) -> None:
    """Timed from when the first answer came back (GCS counted it by then), not from its start."""
    pacer = pacer_on(clock)
    write(pacer, "a", clock, takes=0.3)
    clock.now += 0.2
    write(pacer, "a", clock)
    assert clock.sleeps == [pytest.approx(0.8)]


def test_writes_to_other_buckets_and_late_writes_do_not_wait(clock: FakeTime) -> None:
    pacer = pacer_on(clock)
    write(pacer, "a", clock)
    write(pacer, "b", clock)
    clock.now += 1.0
    write(pacer, "a", clock)
    assert clock.sleeps == []


def test_a_failed_write_counts_too(clock: FakeTime) -> None:
    """A refused write (a 429, say) is spaced like any other: kumo never retries faster than GCS allows."""
    pacer = pacer_on(clock)

    async def refused() -> None:
        raise RuntimeError("429")

    with pytest.raises(RuntimeError):
        asyncio.run(pacer.write("a", refused))
    write(pacer, "a", clock)
    assert clock.sleeps == [pytest.approx(1.0)]
