"""Shared pytest fixtures: one test bed per session, a fresh namespace per test.

The test bed (real kube-apiserver + etcd, moto, the GCS emulator and kumo's Cloud SQL emulator)
is started once for the whole session, or reused from a running `kumo dev up` when
`KUMO_TESTBED_ENV` points at its env file. Unit tests never touch it: the fixtures start it only
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


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestBed]:
    env_file = os.environ.get("KUMO_TESTBED_ENV")
    if env_file:
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


def _fresh_namespace(kube_api: client.ApiClient, prefix: str) -> Iterator[str]:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    core = client.CoreV1Api(kube_api)
    core.create_namespace({"metadata": {"name": name}})
    yield name
    _release_kumo_objects(kube_api, name)
    # No controller-manager runs, so the namespace stays Terminating; that is harmless here.
    core.delete_namespace(name)


def _release_kumo_objects(kube_api: client.ApiClient, namespace: str) -> None:
    """Drop what a test left behind without making the controller clean the cloud up: the
    namespace never finishes terminating here, and its objects would keep being reconciled."""
    objects = client.CustomObjectsApi(kube_api)
    for plural in ("databases", "buckets"):
        for item in objects.list_namespaced_custom_object("kumo.dev", "v1alpha1", namespace, plural)["items"]:
            name = item["metadata"]["name"]
            patch = {"metadata": {"finalizers": None}}
            try:
                objects.patch_namespaced_custom_object(
                    "kumo.dev", "v1alpha1", namespace, plural, name, patch, _content_type="application/merge-patch+json"
                )
                objects.delete_namespaced_custom_object("kumo.dev", "v1alpha1", namespace, plural, name)
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
