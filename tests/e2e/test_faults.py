"""Fault injection: every cloud call of the controller goes through a FaultProxy that answers a
fifth of them with 503, 500, throttling or a dropped connection. Every object must still
converge to Ready with its Secret, and the cloud calls it takes must stay within a small
multiple of what the same workload costs without faults, measured first in the same test.

`KUMO_FAULT_OBJECTS` (default 40) sets the size of the faulted workload; the full run is
`KUMO_FAULT_OBJECTS=100 pytest tests/e2e/test_faults.py`.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kumo.testbed.bed import TestBed
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.faultproxy import FaultProxy
from kumo.testbed.probes import probe_for

from ..conftest import _fresh_namespace
from .conftest import Kumo, example
from .test_chaos import KINDS, _reason, _settled, own_controller

pytestmark = pytest.mark.e2e

OBJECTS = int(os.environ.get("KUMO_FAULT_OBJECTS", "40"))
BASELINE_OBJECTS = 8  # two per (cloud, kind): enough for a per-object figure, cheap
FAILURE_RATE = float(os.environ.get("KUMO_FAULT_RATE", "0.2"))
# With a fifth of requests failing, the SDKs' own retries cost 1/(1-0.2) = 1.25x, and a failed
# reconcile pass repeats its reads. Three times the fault-free cost leaves room for both and
# still catches a retry storm (a loop that re-creates, or retries without backoff).
BOUND_FACTOR = 3.0
ABSOLUTE_BOUND = 30


@pytest.fixture
def fault_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """Not matching the session controller's `t-*`: only this test's controller acts here."""
    yield from _fresh_namespace(kube_api, "faults")


@pytest.fixture
def proxies(testbed: TestBed) -> Iterator[dict[str, FaultProxy]]:
    """One FaultProxy per emulator, forwarding faithfully until the test raises the rate."""
    upstreams = {
        "aws": testbed.env["aws"]["endpoint"],
        "gcs": testbed.env["gcp"]["storage_endpoint"],
        "cloudsql": testbed.env["gcp"]["sqladmin_endpoint"],
    }
    started = {
        name: FaultProxy(url, failure_rate=0.0, seed=i + 1).start() for i, (name, url) in enumerate(upstreams.items())
    }
    yield started
    for proxy in started.values():
        proxy.stop()


@pytest.fixture
def fault_controller(testbed, kube_api, fault_namespace, tmp_path) -> Iterator[ControllerProcess]:
    process = own_controller(testbed, kube_api, fault_namespace, tmp_path)
    # Sweeps every 60 s, the default: the call counts are then those of reconciles, not a
    # function of how long the workload takes.
    process.extra_env["KUMO_SWEEP_INTERVAL"] = "60"
    process.start()
    yield process
    process.stop()


def test_every_object_converges_through_injected_faults_at_bounded_call_cost(
    testbed, kube_api, fault_namespace, proxies, fault_controller
):
    """A fifth of cloud requests fail (503/500/throttle/drop): all objects still become Ready
    with their Secrets, at under 3x the fault-free calls per object (and under 30)."""
    kumo = Kumo(kube_api, fault_namespace, fault_controller)
    env = copy.deepcopy(testbed.env)
    env["aws"]["endpoint"] = proxies["aws"].endpoint
    env["gcp"]["storage_endpoint"] = proxies["gcs"].endpoint
    env["gcp"]["sqladmin_endpoint"] = proxies["cloudsql"].endpoint
    for cloud in ("aws", "gcp"):
        secret, config = probe_for(cloud, env).provider_config(name=cloud)
        kumo.core.create_namespaced_secret(fault_namespace, secret)
        kumo.create(config)

    baseline = _run_workload(kumo, proxies, "base", BASELINE_OBJECTS)
    for proxy in proxies.values():
        proxy.failure_rate = FAILURE_RATE
    faulted = _run_workload(kumo, proxies, "flt", OBJECTS)
    for proxy in proxies.values():
        proxy.failure_rate = 0.0

    base_per_object = baseline["requests"] / BASELINE_OBJECTS
    faulted_per_object = faulted["requests"] / OBJECTS
    print(
        f"\nno faults: {BASELINE_OBJECTS} objects settled in {baseline['seconds']:.1f}s, "
        f"{baseline['requests']} cloud requests = {base_per_object:.1f} per object\n"
        f"faults at {FAILURE_RATE:.0%}: {OBJECTS} objects settled in {faulted['seconds']:.1f}s, "
        f"{faulted['requests']} cloud requests = {faulted_per_object:.1f} per object, "
        f"{faulted['faults']} faults injected"
    )
    for name, proxy in proxies.items():
        print(f"  {name:8} {proxy.summary()}")
    for finding in [*baseline["pending"], *faulted["pending"]][:20]:
        print(f"  - not converged: {finding}")
    assert baseline["pending"] == [], baseline["pending"]
    assert faulted["pending"] == [], faulted["pending"]
    assert faulted["faults"] > 0
    assert faulted_per_object < min(ABSOLUTE_BOUND, BOUND_FACTOR * base_per_object), (
        faulted_per_object,
        base_per_object,
    )


def _run_workload(kumo: Kumo, proxies: dict[str, FaultProxy], prefix: str, count: int) -> dict[str, Any]:
    """Create `count` objects over both clouds and wait until each is Ready with its Secret, or
    until only objects refused as OwnedByAnotherResource (retried after 5 minutes only) are left
    for 15 s, or the timeout. Returns the requests and faults the proxies saw meanwhile, and the
    objects still pending."""
    before = {name: (p.requests, p.fault_count) for name, p in proxies.items()}
    started = time.monotonic()
    names = []
    for i in range(count):
        cloud, kind = KINDS[i % 4]
        name = f"{prefix}-{cloud}-{kind[:2].lower()}-{i}"
        kumo.create(example(cloud, kind, name))
        names.append((kind, name))
    deadline = started + 60 + 3 * count
    stuck_since: float | None = None
    while True:
        listed = kumo.managed()
        pending = [f"{n}: {_reason(listed.get(n))}" for _, n in names if not _settled(listed.get(n))]
        refused_only = bool(pending) and all(p.endswith(": OwnedByAnotherResource") for p in pending)
        stuck_since = (stuck_since or time.monotonic()) if refused_only else None
        if not pending or time.monotonic() > deadline or (stuck_since and time.monotonic() - stuck_since > 15):
            break
        time.sleep(0.5)
    seconds = time.monotonic() - started
    if not pending:
        time.sleep(3)  # requeues already scheduled (a poll after Ready) still count towards the cost
    for kind, name in names:
        secret = kumo.connection_secret(kind, name)
        key = "password" if kind == "Database" else "bucket"
        if not (secret and secret.get(key)) and not any(p.startswith(f"{name}:") for p in pending):
            pending.append(f"{name}: Ready without a connection Secret holding {key}")
    requests = sum(p.requests - before[n][0] for n, p in proxies.items())
    faults = sum(p.fault_count - before[n][1] for n, p in proxies.items())
    return {"requests": requests, "faults": faults, "seconds": seconds, "pending": pending}
