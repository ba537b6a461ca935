"""Leader election on a coordination.k8s.io/v1 Lease, so several replicas can run and one acts.

Used by controller/runtime/operator.py when `--leader-elect` is on. Every replica watches and keeps its
cache warm; only the holder of the Lease runs workers and the sweeper.

The algorithm is client-go's, reduced to what kumo needs:

* A candidate takes the Lease when it does not exist, when nobody holds it (a leader released
  it on shutdown), when it has expired (renewTime + leaseDurationSeconds is in the past), or
  when it already holds it. Every write is a create or an update carrying the resourceVersion it
  read, so of two candidates racing for the same Lease exactly one wins; the other gets 409 and
  stays a standby.
* The leader renews every `retry_period`. If no renewal has succeeded for `renew_deadline`, or
  the Lease names someone else, it has lost leadership and must stop acting at once.
* On a graceful stop the leader releases the Lease (empty holder), so a standby takes over on
  its next try instead of waiting for the Lease to expire.

Clock assumption: expiry compares renewTime, written with the leader's wall clock, against the
candidate's wall clock. That is safe while the clocks of the machines running replicas differ by
less than `lease_duration - renew_deadline` (5 s by default): the leader gives up after
`renew_deadline` on its own monotonic clock, before any candidate can see the Lease expire.
Nodes kept in sync by NTP are well inside that margin.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from kumo.controller.core.kubeapi import Conflict, NotFound
from kumo.controller.runtime.kubehttp import KubeHTTP

log = logging.getLogger(__name__)

MICRO_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # metav1.MicroTime: 2006-01-02T15:04:05.000000Z
DEFAULT_LEASE_NAME = "kumo-controller"


def format_micro_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(MICRO_TIME_FORMAT)


def parse_micro_time(text: str | None) -> datetime | None:
    """A Lease timestamp; the API server writes microseconds, older writers may omit them."""
    if not text:
        return None
    for pattern in (MICRO_TIME_FORMAT, "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.strptime(text, pattern).replace(tzinfo=UTC)
        except ValueError:
            continue
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def default_identity() -> str:
    """Unique per process, readable in `kubectl get lease -o yaml`: hostname (the Pod name in a
    cluster), pid, and a random suffix so a restarted process never mistakes the Lease of its
    previous life for its own."""
    return f"{socket.gethostname()}_{os.getpid()}_{secrets.token_hex(3)}"


@dataclass(frozen=True)
class LeaseRecord:
    """The spec of a Lease plus the resourceVersion it was read at."""

    holder: str = ""  # empty: free (released by its last holder)
    duration_seconds: int = 15
    acquire_time: datetime | None = None
    renew_time: datetime | None = None
    transitions: int = 0
    resource_version: str = ""

    def expired(self, now: datetime) -> bool:
        if self.renew_time is None:
            return True
        return self.renew_time + timedelta(seconds=self.duration_seconds) < now


class LeaseConflict(Exception):
    """Someone else wrote the Lease since we read it (HTTP 409): they won this round."""


class LeaseStore(Protocol):
    """The three calls election needs; KubeLeaseStore in production, a dict in unit tests."""

    async def get(self) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord) -> LeaseRecord: ...

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        """Write `record` only if the Lease is still at `record.resource_version`, else raise
        LeaseConflict."""
        ...


class KubeLeaseStore:
    """One Lease through the coordination.k8s.io/v1 REST API, over kubehttp."""

    def __init__(self, http: KubeHTTP, namespace: str, name: str, request_timeout: float) -> None:
        self.http = http
        self.namespace = namespace
        self.name = name
        self.request_timeout = request_timeout
        self.collection = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    async def get(self) -> LeaseRecord | None:
        try:
            raw = await self.http.request("GET", f"{self.collection}/{self.name}", timeout=self.request_timeout)
        except NotFound:
            return None
        return _record(raw)

    async def create(self, record: LeaseRecord) -> LeaseRecord:
        return _record(await self._write("POST", self.collection, record))

    async def update(self, record: LeaseRecord) -> LeaseRecord:
        return _record(await self._write("PUT", f"{self.collection}/{self.name}", record))

    async def _write(self, method: str, path: str, record: LeaseRecord) -> dict[str, Any]:
        try:
            return await self.http.request(method, path, body=self._body(record), timeout=self.request_timeout)
        except Conflict as error:  # 409: created or updated by someone else since we read it
            raise LeaseConflict(str(error)) from None

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version:
            metadata["resourceVersion"] = record.resource_version
        spec: dict[str, Any] = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.duration_seconds,
            "leaseTransitions": record.transitions,
        }
        if record.acquire_time is not None:
            spec["acquireTime"] = format_micro_time(record.acquire_time)
        if record.renew_time is not None:
            spec["renewTime"] = format_micro_time(record.renew_time)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}


def _record(raw: dict[str, Any]) -> LeaseRecord:
    spec = raw.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=parse_micro_time(spec.get("acquireTime")),
        renew_time=parse_micro_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        resource_version=str((raw.get("metadata") or {}).get("resourceVersion") or ""),
    )


@dataclass(frozen=True)
class ElectionTiming:
    lease_duration: int = 15  # seconds a standby waits after the last renewal before taking over
    renew_deadline: float = 10.0  # seconds the leader keeps acting without a successful renewal
    retry_period: float = 2.0  # seconds between tries (standby) and renewals (leader)

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "leader election needs 0 < retry period < renew deadline < lease duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )


Callback = Callable[[], Awaitable[None] | None]


class LeaderElector:
    """Campaign for one Lease until elected, then keep renewing it until stopped or deposed.

    `on_elected` runs once when this process becomes leader. `on_deposed` runs once when it
    loses leadership without having released it; after it, `run` returns and this elector never
    campaigns again: a deposed leader may have stale work in flight, so the caller is expected
    to end the process and come back as a fresh standby.
    """

    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str | None = None,
        timing: ElectionTiming | None = None,
        on_elected: Callback | None = None,
        on_deposed: Callback | None = None,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.identity = identity or default_identity()
        self.timing = timing or ElectionTiming()
        self.on_elected = on_elected
        self.on_deposed = on_deposed
        self.wall_clock = wall_clock
        self.monotonic = monotonic
        self.is_leader = False
        self.observed_holder = ""
        self._last_renewal = 0.0

    async def try_acquire_or_renew(self) -> bool:
        """One round: take or renew the Lease if the rules allow. True when we hold it now."""
        now, started = self.wall_clock(), self.monotonic()
        current = await self.store.get()
        ours = LeaseRecord(
            holder=self.identity,
            duration_seconds=self.timing.lease_duration,
            acquire_time=now,
            renew_time=now,
        )
        try:
            if current is None:
                await self.store.create(ours)
                return self._held(started)
            self.observed_holder = current.holder
            if current.holder == self.identity:
                ours = replace(ours, acquire_time=current.acquire_time or now, transitions=current.transitions)
            elif current.holder and not current.expired(now):
                return False
            else:
                ours = replace(ours, transitions=current.transitions + 1)
            await self.store.update(replace(ours, resource_version=current.resource_version))
        except LeaseConflict:
            log.debug("lease write lost a race (409): %s stays a standby", self.identity)
            return False
        return self._held(started)

    def _held(self, started: float) -> bool:
        # Counted from when the round started, not when the answer came: a write that reaches the
        # API server and whose answer is delayed (a frozen process, a slow network) must not
        # extend our leadership past what the Lease on the server grants.
        self.observed_holder = self.identity
        self._last_renewal = started
        return True

    def holds_fresh_lease(self) -> bool:
        return self.is_leader and self._fresh()

    def _fresh(self) -> bool:
        return self.monotonic() - self._last_renewal < self.timing.renew_deadline

    async def run(self) -> None:
        """Campaign, then lead. Returns only after losing leadership (cancel it to stop)."""
        while not self.is_leader:
            if await self._attempt(self.timing.retry_period * 2) and self._fresh():
                self.is_leader = True
                log.info("became leader: %s holds the lease", self.identity)
                await _call(self.on_elected)
            else:
                await asyncio.sleep(self.timing.retry_period)
        while True:
            await asyncio.sleep(self.timing.retry_period)
            remaining = self.timing.renew_deadline - (self.monotonic() - self._last_renewal)
            renewed = remaining > 0 and await self._attempt(remaining)
            if renewed and self.holds_fresh_lease():
                continue
            if self.observed_holder not in ("", self.identity):
                reason = f"the lease is held by {self.observed_holder}"
            elif self.monotonic() - self._last_renewal >= self.timing.renew_deadline:
                reason = f"no renewal for {self.timing.renew_deadline:.0f}s"
            else:
                continue  # a failed try inside the deadline: try again next period
            self.is_leader = False
            log.info("lost leadership: %s stops acting (%s)", self.identity, reason)
            await _call(self.on_deposed)
            return

    async def _attempt(self, timeout: float) -> bool:
        try:
            return await asyncio.wait_for(self.try_acquire_or_renew(), timeout)
        except (TimeoutError, LeaseConflict):
            return False
        except Exception as error:  # an unreachable API server is a failed try, not a crash
            log.warning("lease %s: try failed: %s", self.identity, error)
            return False

    async def release(self) -> None:
        """Give the Lease up at once (graceful shutdown), if we still hold it."""
        if not self.is_leader:
            return
        self.is_leader = False
        try:
            current = await self.store.get()
            if current is None or current.holder != self.identity:
                return
            now = self.wall_clock()
            # client-go's release: no holder and a 1 s duration, so any candidate takes it now.
            freed = replace(current, holder="", duration_seconds=1, renew_time=now, acquire_time=now)
            await self.store.update(freed)
            log.info("released the lease: %s", self.identity)
        except Exception as error:  # the Lease will expire on its own; never block shutdown on it
            log.warning("could not release the lease (%s); it expires by itself", error)


async def _call(callback: Callback | None) -> None:
    if callback is not None:
        outcome = callback()
        if outcome is not None:
            await outcome
