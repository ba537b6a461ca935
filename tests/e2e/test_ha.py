"""High availability: two `kumo run --leader-elect` processes against the real API server.

Each test runs its own pair of controllers, on a Lease of its own, watching only its own
namespace (not `t-*`, so the session controller never touches it). The take-over times are
printed, not asserted: speed targets belong in the benchmarks.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.testbed.bed import TestBed
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.probes import probe_for

from ..conftest import _fresh_namespace
from .conftest import Kumo, ensure_namespace, example, unique, wait_for

pytestmark = pytest.mark.e2e

CONTROLLER_NAMESPACE = "kumo-system"
LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD = 6, 4, 1  # seconds: small, so the tests are quick
ELECTION_ENV = {
    "KUMO_LEADER_ELECT": "true",
    "KUMO_LEASE_DURATION": str(LEASE_DURATION),
    "KUMO_RENEW_DEADLINE": str(RENEW_DEADLINE),
    "KUMO_RETRY_PERIOD": str(RETRY_PERIOD),
}
BECAME_LEADER, RECONCILED = "became leader", "reconciled "
LOG_TIME_FORMAT = "%Y-%m-%d %H:%M:%S,%f"  # controller/runtime/logs.py text format: asctime first


@pytest.fixture
def ha_namespace(kube_api: client.ApiClient, testbed: TestBed) -> Iterator[str]:
    """A fresh namespace with an AWS ProviderConfig named `aws`, watched by no other controller."""
    core = client.CoreV1Api(kube_api)
    ensure_namespace(kube_api, CONTROLLER_NAMESPACE)
    for name in _fresh_namespace(kube_api, "ha"):
        secret, config = probe_for("aws", testbed.env).provider_config(name="aws")
        core.create_namespaced_secret(name, secret)
        client.CustomObjectsApi(kube_api).create_namespaced_custom_object(
            "kumo.dev", "v1alpha1", name, "providerconfigs", config
        )
        yield name


@pytest.fixture
def pair(
    testbed: TestBed, kube_api: client.ApiClient, ha_namespace: str, tmp_path: Path
) -> Iterator[list[ControllerProcess]]:
    """Two controllers competing for a Lease of this test's own, both started (leader or standby)."""
    lease = unique("kumo-ha")
    env = {**ELECTION_ENV, "KUMO_NAMESPACES": ha_namespace, "KUMO_LEASE_NAME": lease}
    processes = [
        ControllerProcess(kubeconfig=testbed.env["kubeconfig"], log_path=tmp_path / f"{replica}.log", extra_env=env)
        for replica in ("a", "b")
    ]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.stop()
        try:
            client.CoordinationV1Api(kube_api).delete_namespaced_lease(lease, CONTROLLER_NAMESPACE)
        except ApiException as error:
            if error.status != 404:
                raise


def wait_until(what: str, check, processes: list[ControllerProcess], timeout: float = 60.0):
    def logs() -> str:
        return "\n".join(f"--- {p.log_path.name}\n" + "\n".join(p.log_text().splitlines()[-20:]) for p in processes)

    return wait_for(what, check, logs, timeout, every=0.1)


def leaders(processes: list[ControllerProcess]) -> list[ControllerProcess]:
    return [p for p in processes if BECAME_LEADER in p.log_text()]


def the_one_leader(processes: list[ControllerProcess]) -> tuple[ControllerProcess, ControllerProcess]:
    leader = wait_until("a leader", lambda: leaders(processes), processes)[0]
    time.sleep(2)  # two retry periods: a second leader, if the election were broken, would show by now
    assert leaders(processes) == [leader]
    standby = next(p for p in processes if p is not leader)
    return leader, standby


def became_leader_at(process: ControllerProcess) -> datetime:
    line = next(line for line in process.log_text().splitlines() if BECAME_LEADER in line)
    return datetime.strptime(line[:23], LOG_TIME_FORMAT)


def create_bucket_and_wait_ready(kube_api: client.ApiClient, namespace: str, leader: ControllerProcess) -> str:
    kumo = Kumo(kube_api, namespace, leader)
    name = unique("ha-bucket")
    kumo.create(example("aws", "Bucket", name))
    kumo.wait_ready("Bucket", name, timeout=90)
    return name


def reconciled(process: ControllerProcess, name: str = "") -> bool:
    return any(RECONCILED in line and name in line for line in process.log_text().splitlines())


def test_only_the_leader_reconciles_and_a_standby_takes_over_after_sigkill(kube_api, ha_namespace, pair):
    """One leader reconciles while the standby only watches; SIGKILL it and the standby takes over."""
    leader, standby = the_one_leader(pair)
    first = create_bucket_and_wait_ready(kube_api, ha_namespace, leader)
    assert reconciled(leader, first)
    assert not reconciled(standby), standby.log_text()

    killed_at = datetime.now()
    leader.kill()
    wait_until("the standby to become leader", lambda: BECAME_LEADER in standby.log_text(), pair)
    took = (became_leader_at(standby) - killed_at).total_seconds()
    print(f"\ntake-over after SIGKILL of the leader: {took:.2f}s (lease duration {LEASE_DURATION}s)")

    second = create_bucket_and_wait_ready(kube_api, ha_namespace, standby)
    assert reconciled(standby, second)


def test_a_gracefully_stopped_leader_hands_over_without_waiting_for_expiry(kube_api, ha_namespace, pair):
    """SIGTERM releases the Lease, so the standby is elected well before the Lease would expire."""
    leader, standby = the_one_leader(pair)
    stopped_at = datetime.now()
    leader.stop()
    assert "released the lease" in leader.log_text()
    wait_until("the standby to become leader", lambda: BECAME_LEADER in standby.log_text(), pair)
    took = (became_leader_at(standby) - stopped_at).total_seconds()
    print(f"\ntake-over after graceful stop of the leader: {took:.2f}s (retry period {RETRY_PERIOD}s)")

    name = create_bucket_and_wait_ready(kube_api, ha_namespace, standby)
    assert reconciled(standby, name)


def test_a_frozen_leader_steps_down_when_it_wakes(kube_api, ha_namespace, pair):
    """A leader paused past its Lease (SIGSTOP) finds a new leader on waking and exits unheard."""
    leader, standby = the_one_leader(pair)
    assert leader.process is not None
    os.killpg(leader.process.pid, signal.SIGSTOP)
    try:
        wait_until("the standby to become leader", lambda: BECAME_LEADER in standby.log_text(), pair)
        name = create_bucket_and_wait_ready(kube_api, ha_namespace, standby)
    finally:
        os.killpg(leader.process.pid, signal.SIGCONT)
    wait_until("the old leader to step down", lambda: "lost leadership" in leader.log_text(), pair, timeout=30)
    wait_until("the old leader to exit", lambda: not leader.process or not leader.process.alive(), pair, timeout=30)
    assert not reconciled(leader, name), leader.log_text()
