"""Fixtures for end-to-end tests of the controller: a running `kumo run`, a ProviderConfig per
cloud pointing at the emulators, and `Kumo`, a small vocabulary for applying manifests and
waiting on conditions through the real API server."""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.providers.base import Kind
from kumo.testbed.bed import TestBed
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.probes import AWS_OTHER_REGION, CLOUDS, CloudProbe, probe_for

from kumo.api import GROUP, PLURALS, VERSION, connection_secret_name

from ..conftest import WATCHED_NAMESPACES

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def ensure_namespace(kube_api: client.ApiClient, name: str) -> None:
    """Create the namespace unless it exists (the controllers' own, shared by every test)."""
    try:
        client.CoreV1Api(kube_api).create_namespace({"metadata": {"name": name}})
    except ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="session")
def controller(testbed: TestBed, kube_api: client.ApiClient, tmp_path_factory) -> Iterator[ControllerProcess]:
    ensure_namespace(kube_api, "kumo-system")
    log_path = tmp_path_factory.mktemp("controller") / "controller.log"
    process = ControllerProcess(
        kubeconfig=testbed.env["kubeconfig"], log_path=log_path, extra_env={"KUMO_NAMESPACES": WATCHED_NAMESPACES}
    ).start()
    yield process
    process.stop()


@dataclass(frozen=True)
class Target:
    """Where a scenario runs: a cloud, and for AWS optionally a region other than the bed's."""

    cloud: str
    region: str = ""

    @property
    def id(self) -> str:
        return f"{self.cloud}-{self.region}" if self.region else self.cloud


TARGETS = [Target(cloud) for cloud in CLOUDS]
OTHER_AWS_REGION = Target("aws", AWS_OTHER_REGION)
# Modules whose scenarios also run with the ProviderConfig in a second AWS region: those where the
# region changes what AWS accepts (create, observe, update, delete and drift of buckets and
# databases; S3 refuses a bucket created through another region's endpoint). The rest run once
# per cloud, which keeps `make test` short (docs/testbed.md, "AWS: S3").
REGIONAL_MODULES = frozenset({"test_controller", "test_drift", "test_strict_s3"})


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "target" not in metafunc.fixturenames:
        return
    clouds = getattr(metafunc.module, "TARGET_CLOUDS", CLOUDS)  # a module may serve fewer clouds
    targets = [target for target in TARGETS if target.cloud in clouds]
    regional = metafunc.module.__name__.rpartition(".")[2] in REGIONAL_MODULES
    if regional and not metafunc.definition.get_closest_marker("bed_region_only"):
        targets.insert(1, OTHER_AWS_REGION)
    metafunc.parametrize("target", targets, ids=[target.id for target in targets])


@pytest.fixture
def cloud(target: Target) -> str:
    return target.cloud


@pytest.fixture
def probe(testbed: TestBed, target: Target) -> CloudProbe:
    return probe_for(target.cloud, testbed.env, target.region)


@pytest.fixture
def kumo(kube_api: client.ApiClient, namespace: str, controller: ControllerProcess) -> Kumo:
    return Kumo(kube_api, namespace, controller)


@pytest.fixture
def provider_config(kumo: Kumo, probe: CloudProbe) -> str:
    """A namespaced ProviderConfig named after the cloud, with credentials from a Secret."""
    secret, config = probe.provider_config(name=probe.cloud)
    kumo.core.create_namespaced_secret(kumo.namespace, secret)
    kumo.create(config)
    return probe.cloud


def example(cloud: str, kind: str, name: str) -> dict[str, Any]:
    """The example manifest for `kind` on `cloud`, renamed so tests never collide."""
    filename = {"Database": "database.yaml", "Bucket": "bucket.yaml"}[kind]
    manifest = yaml.safe_load((EXAMPLES / cloud / filename).read_text())
    manifest["metadata"]["name"] = name
    return manifest


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Kumo:
    """Apply, read, wait on and delete kumo objects in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str, controller: ControllerProcess) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.controller = controller

    def create(self, manifest: dict[str, Any]) -> dict[str, Any]:
        manifest = copy.deepcopy(manifest)
        return self.objects.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[manifest["kind"]], manifest
        )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            return self.objects.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def patch(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        return self.objects.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind], name, patch, _content_type="application/merge-patch+json"
        )

    def delete(self, kind: str, name: str) -> None:
        self.objects.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind], name)

    def secret(self, name: str) -> dict[str, str] | None:
        try:
            secret = self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}

    def connection_secret(self, kind: str, name: str) -> dict[str, str] | None:
        """The data of the Secret a new object of this kind and name publishes to by default
        (the controller's own rule: `<name>-connection` for a Database, `<name>-bucket` for a
        Bucket)."""
        return self.secret(connection_secret_name(Kind(kind), {"metadata": {"name": name}}))

    def events(self, name: str) -> list[client.CoreV1Event]:
        listed = self.core.list_namespaced_event(self.namespace, field_selector=f"involvedObject.name={name}")
        return list(listed.items)

    def wait_for(self, what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
        def log() -> str:
            return "controller log:\n" + "\n".join(self.controller.log_text().splitlines()[-30:])

        return wait_for(what, check, log, timeout, every=0.2)

    def managed(self) -> dict[str, dict[str, Any]]:
        """Every Database and Bucket in the namespace, by name."""
        listed = {}
        for kind in ("Database", "Bucket"):
            items = self.objects.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURALS[kind])["items"]
            listed.update({item["metadata"]["name"]: item for item in items})
        return listed

    def wait_condition(self, kind: str, name: str, type_: str, status: str, timeout: float = 60.0) -> dict:
        def check() -> dict[str, Any] | None:
            obj = self.get(kind, name)
            found = condition(obj, type_) if obj else None
            return obj if found and found["status"] == status else None

        return self.wait_for(f"{kind} {name} {type_}={status}", check, timeout)

    def wait_ready(self, kind: str, name: str, timeout: float = 60.0) -> dict[str, Any]:
        return self.wait_condition(kind, name, "Ready", "True", timeout)

    def wait_gone(self, kind: str, name: str, timeout: float = 60.0) -> None:
        self.wait_for(f"{kind} {name} gone", lambda: self.get(kind, name) is None, timeout)


def wait_for(what: str, check: Callable[[], Any], log: Callable[[], str], timeout: float, every: float) -> Any:
    """check()'s first truthy value; after `timeout`, an AssertionError carrying log()."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}\n{log()}")
        time.sleep(every)


def condition(obj: dict[str, Any], type_: str) -> dict[str, Any] | None:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == type_), None)
