"""The test bed is real: the API server enforces schemas, finalizers, RBAC and streams watches;
the emulators answer the real client libraries over HTTP; `kumo dev` leaves nothing behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import boto3
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from kubernetes import client, watch
from kubernetes.client.rest import ApiException
from kumo.testbed import engines
from kumo.testbed.probes import AWSProbe
from kumo.testbed.process import pid_alive

from ..conftest import api_client_for

pytestmark = pytest.mark.e2e

PROBE_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "probes.testbed.kumo.dev"},
    "spec": {
        "group": "testbed.kumo.dev",
        "names": {"kind": "Probe", "plural": "probes", "singular": "probe"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}},
                            }
                        },
                    }
                },
            }
        ],
    },
}


@pytest.fixture(scope="module")
def probe_crd(kube_api: client.ApiClient) -> str:
    extensions = client.ApiextensionsV1Api(kube_api)
    try:
        extensions.create_custom_resource_definition(PROBE_CRD)
    except ApiException as error:
        if error.status != 409:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition("probes.testbed.kumo.dev")
        if any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or []):
            return "probes"
        time.sleep(0.1)
    raise TimeoutError("probe CRD not established")


def _probe(name: str, size: int) -> dict:
    return {"apiVersion": "testbed.kumo.dev/v1", "kind": "Probe", "metadata": {"name": name}, "spec": {"size": size}}


def test_schema_violation_is_rejected(kube_api, probe_crd, namespace):
    """The API server validates custom objects against the CRD's OpenAPI schema."""
    objects = client.CustomObjectsApi(kube_api)
    with pytest.raises(ApiException) as rejected:
        objects.create_namespaced_custom_object("testbed.kumo.dev", "v1", namespace, "probes", _probe("big", 99))
    assert rejected.value.status == 422
    assert "spec.size" in rejected.value.body


def test_finalizer_blocks_deletion_until_removed(kube_api, probe_crd, namespace):
    """An object with a finalizer is only marked for deletion; removing it completes the delete."""
    objects = client.CustomObjectsApi(kube_api)
    body = _probe("held", 1) | {"metadata": {"name": "held", "finalizers": ["testbed.kumo.dev/hold"]}}
    objects.create_namespaced_custom_object("testbed.kumo.dev", "v1", namespace, "probes", body)
    objects.delete_namespaced_custom_object("testbed.kumo.dev", "v1", namespace, "probes", "held")
    held = objects.get_namespaced_custom_object("testbed.kumo.dev", "v1", namespace, "probes", "held")
    assert held["metadata"]["deletionTimestamp"]
    patch = [{"op": "remove", "path": "/metadata/finalizers"}]
    objects.patch_namespaced_custom_object(
        "testbed.kumo.dev", "v1", namespace, "probes", "held", patch, _content_type="application/json-patch+json"
    )
    with pytest.raises(ApiException) as gone:
        objects.get_namespaced_custom_object("testbed.kumo.dev", "v1", namespace, "probes", "held")
    assert gone.value.status == 404


def test_user_without_rbac_rights_is_forbidden(testbed, kube_api, namespace):
    """RBAC authorization is on: an authenticated user with no bindings gets 403, and a Role
    binding grants exactly what it names."""
    alice = client.CoreV1Api(api_client_for(testbed.env["user_kubeconfigs"]["alice"]))
    with pytest.raises(ApiException) as forbidden:
        alice.list_namespaced_secret(namespace)
    assert forbidden.value.status == 403
    rbac = client.RbacAuthorizationV1Api(kube_api)
    rule = {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}
    rbac.create_namespaced_role(namespace, {"metadata": {"name": "cm-reader"}, "rules": [rule]})
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "alice-cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "User", "name": "alice", "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    deadline = time.monotonic() + 10
    while True:  # the authorizer's informer needs a moment to see the new binding
        try:
            alice.list_namespaced_config_map(namespace)
            break
        except ApiException:
            assert time.monotonic() < deadline, "binding never took effect"
            time.sleep(0.2)
    with pytest.raises(ApiException) as still_forbidden:
        alice.list_namespaced_secret(namespace)
    assert still_forbidden.value.status == 403


def test_controller_manager_runs_and_collects_garbage(testbed, kube_api, namespace):
    """kube-controller-manager runs in the bed: every new namespace gets its `default`
    ServiceAccount, and deleting an owner makes the garbage collector delete its dependent."""
    processes = {p["name"]: p["pid"] for p in testbed.env["processes"]}
    assert pid_alive(processes["kube-controller-manager"])
    core = client.CoreV1Api(kube_api)
    _wait(
        "the default ServiceAccount",
        lambda: _exists(lambda: core.read_namespaced_service_account("default", namespace)),
    )
    owner = core.create_namespaced_config_map(namespace, {"metadata": {"name": "owner"}})
    reference = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid}
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "dependent", "ownerReferences": [reference]}})
    core.delete_namespaced_config_map("owner", namespace)
    _wait(
        "the dependent ConfigMap collected",
        lambda: not _exists(lambda: core.read_namespaced_config_map("dependent", namespace)),
    )


def _exists(read) -> bool:
    try:
        read()
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def _wait(what: str, check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.2)


def test_watch_streams_changes(kube_api, namespace):
    """A watch delivers ADDED, MODIFIED and DELETED events as they happen."""
    core = client.CoreV1Api(kube_api)
    seen: list[tuple[str, str]] = []
    started = threading.Event()

    def follow() -> None:
        stream = watch.Watch()
        started.set()
        for event in stream.stream(core.list_namespaced_config_map, namespace, timeout_seconds=15):
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                stream.stop()

    watcher = threading.Thread(target=follow, daemon=True)
    watcher.start()
    started.wait()
    time.sleep(0.5)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "w"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("w", namespace, {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", namespace)
    watcher.join(timeout=20)
    assert [t for t, name in seen if name == "w"] == ["ADDED", "MODIFIED", "DELETED"]


def test_moto_serves_boto3_over_http_as_strictly_as_aws(testbed):
    """boto3 reaches moto's S3 and RDS through endpoint_url, as the AWS provider does; an RDS
    instance is `creating` without an endpoint at first, as on AWS, and once available its
    endpoint reaches a real PostgreSQL server that takes the master password."""
    aws = testbed.env["aws"]
    common = {
        "endpoint_url": aws["endpoint"],
        "region_name": aws["region"],
        "aws_access_key_id": aws["access_key_id"],
        "aws_secret_access_key": aws["secret_access_key"],
    }
    s3 = boto3.client("s3", **common)
    bucket = f"probe-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert s3.get_object(Bucket=bucket, Key="k")["Body"].read() == b"v"
    rds = boto3.client("rds", **common)
    name = f"probe-{uuid.uuid4().hex[:8]}"
    rds.create_db_instance(
        DBInstanceIdentifier=name,
        Engine="postgres",
        DBInstanceClass="db.t3.micro",
        AllocatedStorage=20,
        MasterUsername="probe",
        MasterUserPassword="probe-password-1",
        DBName="probe",
    )
    described = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    assert described["DBInstanceStatus"] == "creating" and "Endpoint" not in described
    AWSProbe(testbed.env).wait_database_available(name)
    endpoint = rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["Endpoint"]
    uri = f"postgresql://probe:probe-password-1@{endpoint['Address']}:{endpoint['Port']}/probe"
    assert engines.app_round_trip(uri)
    rds.delete_db_instance(DBInstanceIdentifier=name, SkipFinalSnapshot=True)


def test_gcs_emulator_serves_google_cloud_storage(testbed):
    """google-cloud-storage talks to the emulator; settings sent with the insert are kept."""
    gcp = testbed.env["gcp"]
    gcs = storage.Client(
        project=gcp["project"],
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=gcp["storage_endpoint"]),
    )
    bucket = gcs.bucket(f"probe-{uuid.uuid4().hex[:8]}")
    bucket.versioning_enabled = True
    bucket.labels = {"team": "a"}
    gcs.create_bucket(bucket)
    reread = gcs.get_bucket(bucket.name)
    assert reread.versioning_enabled is True
    assert reread.labels == {"team": "a"}
    reread.blob("k").upload_from_string(b"v")
    assert reread.blob("k").download_as_bytes() == b"v"


def test_dev_up_and_down_leave_no_stray_process(tmp_path):
    """`kumo dev up` starts every server in the background; `kumo dev down` stops all of them and
    removes the temporary data directory."""
    env_file = tmp_path / "env.json"
    cmd = [sys.executable, "-m", "kumo.cli", "dev"]
    up = subprocess.run([*cmd, "up", "--env-file", str(env_file)], capture_output=True, text=True, timeout=300)
    assert up.returncode == 0, up.stderr
    env = json.loads(env_file.read_text())
    pids = [p["pid"] for p in env["processes"]]
    names = {"etcd", "kube-apiserver", "kube-controller-manager", "postgres", "moto", "gcs", "cloudsql"}
    assert {p["name"] for p in env["processes"]} == names
    assert all(pid_alive(pid) for pid in pids)
    status = subprocess.run([*cmd, "status", "--env-file", str(env_file)], capture_output=True, text=True)
    assert status.returncode == 0 and status.stdout.count("running") == len(names)
    down = subprocess.run([*cmd, "down", "--env-file", str(env_file)], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0, down.stderr
    assert not any(pid_alive(pid) for pid in pids)
    assert not Path(env["workdir"]).exists()
    assert not env_file.exists()
    leftovers = subprocess.run(["pgrep", "-f", env["workdir"]], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", f"processes still using the work dir: {leftovers.stdout}"
    assert os.environ.get("KUBECONFIG") != env["kubeconfig"]
