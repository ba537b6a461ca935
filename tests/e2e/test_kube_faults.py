"""Kubernetes faults: the API server restarting under a running controller (every watch drops),
and writes that conflict with someone else's. The controller recovers without losing or
duplicating work."""

from __future__ import annotations

import contextlib
import threading
import time

import pytest
from kubernetes.client.rest import ApiException
from kumo.testbed.process import ManagedProcess

from .conftest import condition, example, unique

pytestmark = pytest.mark.e2e


def _apiserver(testbed) -> ManagedProcess:
    found = [p for p in testbed.processes if p.name == "kube-apiserver"]
    if not found:
        pytest.skip("the test bed was reused from an env file; only a bed started here can be restarted")
    return found[0]


def _wait_api(kumo, timeout: float = 60.0) -> None:
    def answers() -> bool:
        try:
            kumo.core.list_namespaced_secret(kumo.namespace, limit=1)
            return True
        except Exception:
            return False

    kumo.wait_for("API server answering again", answers, timeout=timeout)


def test_api_server_restart_drops_every_watch_and_nothing_is_lost_or_duplicated(kumo, probe, provider_config, testbed):
    """Stop the API server (etcd keeps the data) and start it again: objects applied before keep
    their single cloud resource, and an object applied after the restart is reconciled, so the
    controller's watches came back."""
    before = unique("bk")
    kumo.create(example(probe.cloud, "Bucket", before))
    external = kumo.wait_ready("Bucket", before)["status"]["atProvider"]["externalName"]
    apiserver = _apiserver(testbed)
    apiserver.stop()
    time.sleep(3)  # long enough for every watch and request of the controller to fail
    apiserver.start(timeout=120)
    _wait_api(kumo)
    after = unique("bk")
    kumo.create(example(probe.cloud, "Bucket", after))
    kumo.wait_ready("Bucket", after, timeout=120)
    assert condition(kumo.get("Bucket", before), "Ready")["status"] == "True"
    assert kumo.get("Bucket", before)["status"]["atProvider"]["externalName"] == external
    assert probe.bucket(external) is not None
    assert kumo.controller.process is not None and kumo.controller.process.alive(), "the controller survived"


def test_conflicting_finalizer_writes_are_retried_not_lost(kumo, probe, provider_config):
    """Another actor edits the finalizer list while kumo adds its own: kumo's guarded patch fails
    on the conflict, is retried, and both finalizers end up there; deletion then waits for the
    foreign finalizer only after kumo's cleanup."""
    name = unique("bk")
    manifest = example(probe.cloud, "Bucket", name)
    manifest["metadata"]["finalizers"] = ["example.com/first"]
    stop = threading.Event()

    def churn() -> None:
        # Flip a second foreign finalizer on and off as fast as the API allows.
        flag = False
        while not stop.is_set():
            flag = not flag
            current = (kumo.get("Bucket", name) or {}).get("metadata", {}).get("finalizers", [])
            wanted = [f for f in current if f != "example.com/churn"] + (["example.com/churn"] if flag else [])
            with contextlib.suppress(ApiException):  # losing a race is the point
                kumo.patch("Bucket", name, {"metadata": {"finalizers": wanted, "resourceVersion": None}})
            time.sleep(0.02)

    kumo.create(manifest)
    worker = threading.Thread(target=churn, daemon=True)
    worker.start()
    try:
        obj = kumo.wait_ready("Bucket", name, timeout=90)
    finally:
        stop.set()
        worker.join(timeout=10)
    finalizers = kumo.get("Bucket", name)["metadata"]["finalizers"]
    assert "kumo.dev/cleanup" in finalizers and "example.com/first" in finalizers
    external = obj["status"]["atProvider"]["externalName"]
    kumo.delete("Bucket", name)
    kumo.wait_for("cloud bucket deleted", lambda: probe.bucket(external) is None, timeout=60)
    kumo.wait_for(
        "only the foreign finalizer left",
        lambda: (
            kumo.get("Bucket", name)["metadata"]["finalizers"] == ["example.com/first"]
            or kumo.get("Bucket", name)["metadata"]["finalizers"] == ["example.com/first", "example.com/churn"]
        ),
    )
    kumo.patch("Bucket", name, {"metadata": {"finalizers": None}})
    kumo.wait_gone("Bucket", name)
