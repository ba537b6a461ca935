"""Shared pytest fixtures: one test bed per session, a fresh namespace per test.

The test bed (real kube-apiserver, kube-controller-manager and etcd, moto, the GCS emulator and
kumo's Cloud SQL emulator) is started once for the whole session, or reused from a running
`kumo dev up` when `KUMO_TESTBED_ENV` points at its env file. Unit tests never touch it: the fixtures start it only
when an e2e test asks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config
from kumo.testbed.bed import TestBed, install_crds

from kumo.api import IN_USE_FINALIZER


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestBed]:
    """The session's bed; under pytest-xdist (`make test`) each worker has a bed of its own."""
    env_file = os.environ.get("KUMO_TESTBED_ENV")
    if env_file:
        if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")) > 1:
            # Each worker starts a controller of its own: two would reconcile the same objects.
            pytest.fail("a reused test bed (KUMO_TESTBED_ENV) serves one pytest worker: run with -n 0")
        yield TestBed.from_env_file(Path(env_file))
        return
    bed = TestBed.start(progress=True, audit_log=True)
    try:
        yield bed
    finally:
        bed.stop()


def api_client_for(kubeconfig: str) -> client.ApiClient:
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    return client.ApiClient(configuration)


@pytest.fixture(scope="session")
def kube_api(testbed: TestBed) -> client.ApiClient:
    """Cluster-admin access to the local API server, with kumo's CRDs installed."""
    api = api_client_for(testbed.env["kubeconfig"])
    install_crds(api)
    return api


# The controller started by the e2e fixtures watches only namespaces matching this glob, so tests
# that exercise the API server alone (schemas, status subresource) can use other namespaces.
WATCHED_NAMESPACES = "t-*"
MERGE_PATCH = "application/merge-patch+json"


def _fresh_namespace(kube_api: client.ApiClient, prefix: str) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    _release_kumo_objects(kube_api, name)
    # The test bed's namespace controller removes the namespace and its content in the
    # background; no test waits for that (tests/e2e/test_namespace_deletion.py does, on purpose,
    # and leaves nothing to delete here).
    try:
        core.delete_namespace(name)
    except client.exceptions.ApiException as error:
        if error.status != 404:
            raise


def _release_kumo_objects(kube_api: client.ApiClient, namespace: str) -> None:
    """Drop what a test left behind without making the controller clean the cloud up.

    Still needed with a namespace controller in the bed: left alone, the controller would delete
    every test's cloud resources in the background while later tests run and count cloud calls,
    and a namespace that a per-test controller watched (HA, ServiceAccount and fault tests start
    their own) would stay Terminating once that controller has stopped, held by kumo's
    finalizers. So the objects lose their finalizers here, and a namespaced ProviderConfig and
    Secret lose kumo's in-use finalizer.
    """
    objects = client.CustomObjectsApi(kube_api)
    core = client.CoreV1Api(kube_api)
    patch = {"metadata": {"finalizers": None}}
    for plural in ("databases", "buckets"):
        for item in objects.list_namespaced_custom_object("kumo.dev", "v1alpha1", namespace, plural)["items"]:
            name = item["metadata"]["name"]
            try:
                objects.patch_namespaced_custom_object(
                    "kumo.dev", "v1alpha1", namespace, plural, name, patch, _content_type=MERGE_PATCH
                )
                objects.delete_namespaced_custom_object("kumo.dev", "v1alpha1", namespace, plural, name)
            except client.exceptions.ApiException as error:
                if error.status != 404:
                    raise
    held = [
        ("providerconfigs", item["metadata"])
        for item in objects.list_namespaced_custom_object("kumo.dev", "v1alpha1", namespace, "providerconfigs")["items"]
    ]
    held += [
        ("secrets", {"name": s.metadata.name, "finalizers": s.metadata.finalizers})
        for s in core.list_namespaced_secret(namespace).items
    ]
    for plural, meta in held:
        if IN_USE_FINALIZER not in (meta.get("finalizers") or []):
            continue
        unheld = {"metadata": {"finalizers": [f for f in meta["finalizers"] if f != IN_USE_FINALIZER]}}
        try:
            if plural == "secrets":
                core.patch_namespaced_secret(meta["name"], namespace, unheld, _content_type=MERGE_PATCH)
            else:
                objects.patch_namespaced_custom_object(
                    "kumo.dev", "v1alpha1", namespace, plural, meta["name"], unheld, _content_type=MERGE_PATCH
                )
        except client.exceptions.ApiException as error:
            if error.status != 404:
                raise


@pytest.fixture
def namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace the test controller watches."""
    yield from _fresh_namespace(kube_api, "t")


@pytest.fixture
def unwatched_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace no controller acts in: what a test writes there stays as written."""
    yield from _fresh_namespace(kube_api, "q")
