"""Leader election (controller/runtime/leader.py) against an in-memory Lease with resourceVersions, so
every rule is checked without an API server: who may take a Lease, renewal, races, release."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from kumo.controller.runtime.leader import (
    ElectionTiming,
    LeaderElector,
    LeaseConflict,
    LeaseRecord,
    format_micro_time,
    parse_micro_time,
)

NOW = datetime(2026, 11, 22, 5, 0, 0, tzinfo=UTC)
TIMING = ElectionTiming(lease_duration=15, renew_deadline=10, retry_period=2)


class FakeLeaseStore:
    """One Lease, with the API server's optimistic concurrency: a write naming a stale
    resourceVersion (or creating an existing Lease) fails with LeaseConflict."""

    def __init__(self, record: LeaseRecord | None = None) -> None:
        self.record = replace(record, resource_version="1") if record else None
        self.version = 1
        self.writes = 0
        self.interleave: LeaseRecord | None = None  # a rival's write landing between our read and write
        self.fail_reads = False

    async def get(self) -> LeaseRecord | None:
        if self.fail_reads:
            raise ConnectionError("API server unreachable")
        found = self.record
        if self.interleave is not None:
            self._store(self.interleave)
            self.interleave = None
        return found

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        if self.record is not None:
            raise LeaseConflict("already exists")
        return self._store(record)

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        assert self.record is not None
        if record.resource_version != self.record.resource_version:
            raise LeaseConflict("the object has been modified")
        return self._store(record)

    def _store(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.writes += 1
        self.record = replace(record, resource_version=str(self.version))
        return self.record


def held_by(holder: str, renewed: datetime, duration: int = 15) -> LeaseRecord:
    return LeaseRecord(holder=holder, duration_seconds=duration, acquire_time=renewed, renew_time=renewed)


def elector(store: FakeLeaseStore, identity: str = "me", at: datetime = NOW, **kwargs) -> LeaderElector:
    return LeaderElector(store, identity=identity, timing=TIMING, wall_clock=lambda: at, **kwargs)


def acquire(candidate: LeaderElector) -> bool:
    return asyncio.run(candidate.try_acquire_or_renew())


def test_takes_a_lease_nobody_created_yet():
    """The first replica creates the Lease and holds it."""
    store = FakeLeaseStore()
    assert acquire(elector(store)) is True
    assert store.record is not None
    assert (store.record.holder, store.record.duration_seconds, store.record.renew_time) == ("me", 15, NOW)


def test_does_not_take_a_live_lease_held_by_another():
    """A Lease renewed 5 s ago by someone else is theirs: no write, still a standby."""
    store = FakeLeaseStore(held_by("other", NOW - timedelta(seconds=5)))
    candidate = elector(store)
    assert acquire(candidate) is False
    assert store.writes == 0 and store.record is not None and store.record.holder == "other"
    assert candidate.observed_holder == "other"


def test_takes_an_expired_lease_and_counts_the_transition():
    """renewTime + leaseDurationSeconds in the past: the holder is gone, the Lease is ours."""
    store = FakeLeaseStore(replace(held_by("crashed", NOW - timedelta(seconds=16)), transitions=3))
    assert acquire(elector(store)) is True
    assert store.record is not None
    assert (store.record.holder, store.record.transitions, store.record.acquire_time) == ("me", 4, NOW)


def test_takes_a_released_lease_at_once():
    """A Lease whose holder released it (empty holder) is free even though it has not expired."""
    store = FakeLeaseStore(held_by("", NOW - timedelta(seconds=1)))
    assert acquire(elector(store)) is True


def test_renewal_moves_renew_time_and_keeps_acquire_time():
    """Renewing our own Lease updates renewTime only; it is not a leadership transition."""
    store = FakeLeaseStore(held_by("me", NOW - timedelta(seconds=2)))
    assert acquire(elector(store, at=NOW)) is True
    assert store.record is not None
    assert store.record.renew_time == NOW
    assert store.record.acquire_time == NOW - timedelta(seconds=2)
    assert store.record.transitions == 0


def test_losing_a_race_409_leaves_us_a_standby():
    """Two candidates read the same expired Lease; the rival writes first, our update is refused."""
    store = FakeLeaseStore(held_by("crashed", NOW - timedelta(seconds=60)))
    store.interleave = held_by("rival", NOW)
    candidate = elector(store)
    assert acquire(candidate) is False
    assert store.record is not None and store.record.holder == "rival"
    assert candidate.is_leader is False


def test_release_on_stop_frees_the_lease_for_the_next_candidate():
    """A gracefully stopped leader clears the holder, so a standby takes over without waiting."""
    store = FakeLeaseStore()
    leader = elector(store, identity="leader")

    async def lead_then_stop() -> None:
        task = asyncio.create_task(leader.run())
        while not leader.is_leader:
            await asyncio.sleep(0)
        task.cancel()
        await leader.release()

    asyncio.run(lead_then_stop())
    assert store.record is not None and store.record.holder == ""
    assert acquire(elector(store, identity="standby", at=NOW + timedelta(seconds=1))) is True


def test_release_leaves_a_lease_someone_else_took_alone():
    """Release never overwrites another holder, even when we still believed we led."""
    store = FakeLeaseStore(held_by("me", NOW))
    leader = elector(store)
    assert acquire(leader) is True
    leader.is_leader = True
    store.record = replace(held_by("new", NOW), resource_version="99")
    asyncio.run(leader.release())
    assert store.record.holder == "new"


def test_a_leader_that_cannot_renew_within_the_deadline_is_deposed():
    """Renewals fail (API server unreachable) past renew_deadline: on_deposed runs, run() returns."""
    store = FakeLeaseStore()
    events: list[str] = []
    fast = ElectionTiming(lease_duration=3, renew_deadline=0.2, retry_period=0.02)
    leader = LeaderElector(
        store,
        identity="me",
        timing=fast,
        on_elected=lambda: events.append("elected"),
        on_deposed=lambda: events.append("deposed"),
    )

    async def scenario() -> None:
        task = asyncio.create_task(leader.run())
        while not leader.is_leader:
            await asyncio.sleep(0.01)
        store.fail_reads = True
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    assert events == ["elected", "deposed"] and leader.is_leader is False


def test_a_leader_that_sees_another_holder_is_deposed_at_once():
    """Someone else in the Lease (e.g. after our clock stalled): step down on the next renewal."""
    store = FakeLeaseStore()
    deposed: list[str] = []
    fast = ElectionTiming(lease_duration=30, renew_deadline=20, retry_period=0.02)
    leader = LeaderElector(store, identity="me", timing=fast, on_deposed=lambda: deposed.append("yes"))

    async def scenario() -> None:
        task = asyncio.create_task(leader.run())
        while not leader.is_leader:
            await asyncio.sleep(0.01)
        assert store.record is not None
        store.record = replace(held_by("usurper", datetime.now(UTC)), resource_version="77")
        await asyncio.wait_for(task, timeout=2)  # far below the 20 s renew deadline

    asyncio.run(scenario())
    assert deposed == ["yes"]


def test_a_renewal_answered_after_the_deadline_does_not_extend_leadership():
    """The write may land yet its answer come late (frozen process): the lease counts from the try."""
    clock = [100.0]

    class SlowStore(FakeLeaseStore):
        async def update(self, record: LeaseRecord) -> LeaseRecord:
            clock[0] += TIMING.renew_deadline + 1  # the answer arrives after the renew deadline
            return await super().update(record)

    store = SlowStore(held_by("me", NOW))
    leader = LeaderElector(store, identity="me", timing=TIMING, wall_clock=lambda: NOW, monotonic=lambda: clock[0])
    leader.is_leader = True
    assert acquire(leader) is True
    assert leader.holds_fresh_lease() is False


@pytest.mark.parametrize(
    ("duration", "deadline", "period"),
    [(15, 15, 2), (15, 10, 10), (15, 10, 0)],
    ids=["deadline-not-below-duration", "period-not-below-deadline", "zero-period"],
)
def test_inconsistent_timing_is_refused(duration, deadline, period):
    """A renew deadline at or above the lease duration would let two leaders overlap."""
    with pytest.raises(ValueError, match="retry period < renew deadline < lease duration"):
        ElectionTiming(duration, deadline, period)


def test_micro_time_round_trips_in_the_api_server_format():
    """Lease timestamps are written as metav1.MicroTime and read back, with or without fractions."""
    moment = datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    assert format_micro_time(moment) == "2026-01-02T03:04:05.123456Z"
    assert parse_micro_time("2026-01-02T03:04:05.123456Z") == moment
    assert parse_micro_time("2026-01-02T03:04:05Z") == moment.replace(microsecond=0)
    assert parse_micro_time(None) is None


def test_election_is_off_unless_asked_for():
    """A plain `kumo run` makes no Lease writes; KUMO_* variables and flags turn election on and tune it."""
    from kumo.controller.runtime.config import ControllerConfig

    from kumo.cli import _parser

    assert ControllerConfig.from_env({}).leader_elect is False
    config = ControllerConfig.from_env(
        {"KUMO_LEADER_ELECT": "true", "KUMO_LEASE_NAME": "x", "KUMO_LEASE_DURATION": "6", "KUMO_RETRY_PERIOD": "1"}
    )
    assert (config.leader_elect, config.lease_name, config.lease_duration, config.retry_period) == (True, "x", 6, 1.0)
    args = _parser().parse_args(["run", "--leader-elect", "--lease-name=y", "--renew-deadline=4"])
    assert (args.leader_elect, args.lease_name, args.renew_deadline) == (True, "y", 4.0)
    assert _parser().parse_args(["run"]).leader_elect is None  # unset: KUMO_LEADER_ELECT decides
