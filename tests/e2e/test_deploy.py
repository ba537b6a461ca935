"""kumo installed the way an operator installs it: `kubectl apply -k deploy/` against the real API
server, then the controller run under the ServiceAccount that install creates, with exactly its
RBAC, through a whole Database and Bucket life cycle on both clouds.

No kubelet runs here, so the Deployment never starts a Pod; the controller runs as a local process
instead, authenticated by a token minted for the ServiceAccount (TokenRequest API). That is the
same identity and the same RBAC a Pod would get. The namespace these tests use is not `t-*`, so the
session's admin-credentialed controller never acts in it: whatever happens there was done by the
ServiceAccount's controller alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kumo.testbed.bed import TestBed
from kumo.testbed.cluster import kubeconfig_text
from kumo.testbed.controllerproc import ControllerProcess
from kumo.testbed.probes import CloudProbe

from ..conftest import _fresh_namespace, api_client_for
from .conftest import Kumo, example, unique

pytestmark = pytest.mark.e2e

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl") or "kubectl"
SERVICE_ACCOUNT, CONTROLLER_NAMESPACE = "kumo-controller", "kumo-system"
# What the API server says when RBAC refuses a call, as kopf and the kubernetes client log it
# (a bare 403 would also match log timestamps such as 04:31:00,403).
FORBIDDEN = re.compile(r"Forbidden|is forbidden|\(403\)|status=403|'code': 403")


def kubectl(kubeconfig: str, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [KUBECTL, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "KUBECONFIG": kubeconfig},
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def apply_deploy(testbed: TestBed) -> subprocess.CompletedProcess[str]:
    # The test bed installed the same CRDs with the Python client (field manager
    # OpenAPI-Generator). kubectl's YAML parser reads a folded CEL rule in crds/database.yaml with
    # one more line break than PyYAML, so kubectl would take over a field another manager owns
    # with a different value: a conflict. --force-conflicts makes kubectl the owner, as it is on
    # a real cluster where deploy/ is the only installer.
    return kubectl(testbed.env["kubeconfig"], "apply", "-k", str(DEPLOY), "--server-side", "--force-conflicts")


def resource_versions(testbed: TestBed) -> dict[str, str]:
    listed = json.loads(kubectl(testbed.env["kubeconfig"], "get", "-k", str(DEPLOY), "-o", "json").stdout)
    return {
        f"{item['kind']}/{item['metadata']['name']}": item["metadata"]["resourceVersion"] for item in listed["items"]
    }


@pytest.fixture(scope="module")
def installed(testbed: TestBed, kube_api: client.ApiClient) -> subprocess.CompletedProcess[str]:
    """deploy/ applied once for the module; what kubectl reported."""
    return apply_deploy(testbed)


@pytest.fixture(scope="module")
def sa_kubeconfig(
    testbed: TestBed, installed: subprocess.CompletedProcess[str], kube_api: client.ApiClient, tmp_path_factory
) -> str:
    """A kubeconfig that authenticates as system:serviceaccount:kumo-system:kumo-controller."""
    request = {"spec": {"expirationSeconds": 3600}}
    token = (
        client.CoreV1Api(kube_api)
        .create_namespaced_service_account_token(SERVICE_ACCOUNT, CONTROLLER_NAMESPACE, request)
        .status.token
    )
    admin = yaml.safe_load(Path(testbed.env["kubeconfig"]).read_text())
    ca_file = admin["clusters"][0]["cluster"]["certificate-authority"]
    path = tmp_path_factory.mktemp("service-account") / "kubeconfig"
    path.write_text(kubeconfig_text(testbed.env["server"], ca_file, SERVICE_ACCOUNT, token))
    path.chmod(0o600)
    return str(path)


@pytest.fixture(scope="module")
def sa_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace outside the session controller's `t-*` glob."""
    yield from _fresh_namespace(kube_api, "sa")


@pytest.fixture(scope="module")
def sa_controller(sa_kubeconfig: str, sa_namespace: str, tmp_path_factory) -> Iterator[ControllerProcess]:
    """`kumo run` as the ServiceAccount, watching only `sa_namespace`. The cluster id is left
    empty so the controller reads it from kube-system, as it does by default in a cluster."""
    log_path = tmp_path_factory.mktemp("sa-controller") / "controller.log"
    process = ControllerProcess(
        kubeconfig=sa_kubeconfig,
        log_path=log_path,
        cluster_id="",
        extra_env={"KUMO_NAMESPACES": sa_namespace},
    ).start()
    yield process
    process.stop()


def forbidden_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if FORBIDDEN.search(line)]


def test_apply_accepts_every_object(
    testbed: TestBed, installed: subprocess.CompletedProcess[str], kube_api: client.ApiClient
) -> None:
    """`kubectl apply -k deploy/ --server-side` is accepted, without warnings, for every object, each then readable."""
    output = kubectl(testbed.env["kubeconfig"], "kustomize", str(DEPLOY)).stdout
    rendered = [doc for doc in yaml.safe_load_all(output) if doc]
    assert rendered
    for doc in rendered:
        group = doc["apiVersion"].rpartition("/")[0]
        resource = f"{doc['kind'].lower()}.{group}" if group else doc["kind"].lower()
        name = doc["metadata"]["name"]
        assert f"{resource}/{name} serverside-applied" in installed.stdout.splitlines(), f"{resource}/{name}"
        where = ["-n", doc["metadata"]["namespace"]] if "namespace" in doc["metadata"] else []
        got = json.loads(kubectl(testbed.env["kubeconfig"], "get", resource, name, *where, "-o", "json").stdout)
        assert got["metadata"]["uid"], f"{resource}/{name} not readable"
    # e.g. "Warning: would violate PodSecurity": the Pod template must pass kumo-system's policy.
    assert "Warning" not in installed.stderr, installed.stderr
    established = client.ApiextensionsV1Api(kube_api).read_custom_resource_definition("databases.kumo.dev")
    assert any(c.type == "Established" and c.status == "True" for c in established.status.conditions)


def test_second_apply_changes_nothing(testbed: TestBed, installed: subprocess.CompletedProcess[str]) -> None:
    """Applying deploy/ again is a no-op: no object's resourceVersion moves."""
    before = resource_versions(testbed)
    apply_deploy(testbed)
    assert resource_versions(testbed) == before


def _cluster_provider_config(probe: CloudProbe, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The probe's ProviderConfig as a ClusterProviderConfig, its Secret in kumo-system."""
    secret, config = probe.provider_config(name=name)
    secret["metadata"]["namespace"] = CONTROLLER_NAMESPACE
    config["kind"] = "ClusterProviderConfig"
    return secret, config


def test_controller_runs_with_only_its_rbac(
    kube_api: client.ApiClient, sa_namespace: str, sa_controller: ControllerProcess, probe: CloudProbe, cloud: str
) -> None:
    """As kumo-controller, the controller creates, readies and deletes a Database (ProviderConfig)
    and a Bucket (ClusterProviderConfig) with their Secrets and Events, and is never refused."""
    kumo = Kumo(kube_api, sa_namespace, sa_controller)
    secret, config = probe.provider_config(name=cloud)
    kumo.core.create_namespaced_secret(sa_namespace, secret)
    kumo.create(config)
    cluster_secret, cluster_config = _cluster_provider_config(probe, f"sa-{cloud}-{uuid.uuid4().hex[:6]}")
    cluster_name = cluster_config["metadata"]["name"]
    objects = client.CustomObjectsApi(kube_api)
    kumo.core.create_namespaced_secret(CONTROLLER_NAMESPACE, cluster_secret)
    objects.create_cluster_custom_object("kumo.dev", "v1alpha1", "clusterproviderconfigs", cluster_config)
    try:
        db, bk = unique(f"{cloud}-db"), unique(f"{cloud}-bk")
        bucket = example(cloud, "Bucket", bk)
        bucket["spec"]["providerConfigRef"] = {"kind": "ClusterProviderConfig", "name": cluster_name}
        kumo.create(example(cloud, "Database", db))
        kumo.create(bucket)
        kumo.wait_ready("Database", db, timeout=120)
        kumo.wait_ready("Bucket", bk, timeout=120)
        assert (kumo.secret(f"{db}-connection") or {}).get("password")
        assert (kumo.connection_secret("Bucket", bk) or {}).get("bucket")
        assert kumo.events(db), "no Event posted about the Database"
        kumo.delete("Database", db)
        kumo.delete("Bucket", bk)
        kumo.wait_gone("Database", db, timeout=120)
        kumo.wait_gone("Bucket", bk, timeout=120)
        assert kumo.secret(f"{db}-connection") is None and kumo.connection_secret("Bucket", bk) is None
    finally:
        objects.delete_cluster_custom_object("kumo.dev", "v1alpha1", "clusterproviderconfigs", cluster_name)
        kumo.core.delete_namespaced_secret(cluster_secret["metadata"]["name"], CONTROLLER_NAMESPACE)
    assert sa_controller.process is not None, "the controller stopped"
    assert forbidden_lines(sa_controller.log_text()) == []


# (verb, group, resource, subresource, namespace, name): what the ServiceAccount may do.
ALLOWED = {
    "watch Databases in every namespace": ("watch", "kumo.dev", "databases", "", "", ""),
    "patch a Database's finalizers": ("patch", "kumo.dev", "databases", "", "team-a", "orders"),
    "list Buckets at start-up": ("list", "kumo.dev", "buckets", "", "", ""),
    "read a Bucket the watch never delivered": ("get", "kumo.dev", "buckets", "", "team-a", "assets"),
    "patch a Bucket's status": ("patch", "kumo.dev", "buckets", "status", "team-a", "assets"),
    "read a ProviderConfig": ("get", "kumo.dev", "providerconfigs", "", "team-a", "aws"),
    "read a ClusterProviderConfig": ("get", "kumo.dev", "clusterproviderconfigs", "", "", "default"),
    "watch ClusterProviderConfigs": ("watch", "kumo.dev", "clusterproviderconfigs", "", "", ""),
    "hold a ClusterProviderConfig in use": ("patch", "kumo.dev", "clusterproviderconfigs", "", "", "default"),
    "patch a ProviderConfig's status": ("patch", "kumo.dev", "providerconfigs", "status", "team-a", "aws"),
    "patch a ClusterProviderConfig's status": ("patch", "kumo.dev", "clusterproviderconfigs", "status", "", "default"),
    "create a connection Secret": ("create", "", "secrets", "", "team-a", ""),
    "replace a connection Secret": ("update", "", "secrets", "", "team-a", "orders-connection"),
    "delete a connection Secret": ("delete", "", "secrets", "", "team-a", "orders-connection"),
    "watch kumo's Secrets cluster-wide": ("watch", "", "secrets", "", "", ""),
    "post an Event": ("create", "", "events", "", "team-a", ""),
    "read kube-system for the cluster id": ("get", "", "namespaces", "", "", "kube-system"),
    "watch CRDs (kopf)": ("watch", "apiextensions.k8s.io", "customresourcedefinitions", "", "", ""),
    "take a Lease in kumo-system": ("create", "coordination.k8s.io", "leases", "", CONTROLLER_NAMESPACE, ""),
}
DENIED = {
    "create Pods": ("create", "", "pods", "", "team-a", ""),
    "exec into Pods": ("create", "", "pods", "exec", "team-a", "app"),
    "delete namespaces": ("delete", "", "namespaces", "", "", "team-a"),
    "read Nodes": ("get", "", "nodes", "", "", "node-1"),
    "create ClusterRoleBindings": ("create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", ""),
    "escalate its ClusterRole": ("escalate", "rbac.authorization.k8s.io", "clusterroles", "", "", "kumo-controller"),
    "impersonate users": ("impersonate", "", "users", "", "", "admin"),
    "mint ServiceAccount tokens": ("create", "", "serviceaccounts", "token", CONTROLLER_NAMESPACE, SERVICE_ACCOUNT),
    "create Databases (users do that)": ("create", "kumo.dev", "databases", "", "team-a", ""),
    "delete Databases (users do that)": ("delete", "kumo.dev", "databases", "", "team-a", "orders"),
    "change a ProviderConfig": ("update", "kumo.dev", "providerconfigs", "", "team-a", "aws"),
    "change a CRD": ("update", "apiextensions.k8s.io", "customresourcedefinitions", "", "", "databases.kumo.dev"),
    "patch Events (it only posts new ones)": ("patch", "", "events", "", "team-a", "x"),
    "take a Lease outside kumo-system": ("create", "coordination.k8s.io", "leases", "", "team-a", ""),
    "read ConfigMaps": ("get", "", "configmaps", "", "team-a", "settings"),
}


def _allowed(api: client.ApiClient, verb: str, group: str, resource: str, sub: str, ns: str, name: str) -> bool:
    attributes = {"verb": verb, "group": group, "resource": resource}
    attributes |= {k: v for k, v in (("subresource", sub), ("namespace", ns), ("name", name)) if v}
    review = client.AuthorizationV1Api(api).create_self_subject_access_review(
        {"spec": {"resourceAttributes": attributes}}
    )
    return bool(review.status.allowed)


@pytest.mark.parametrize("case", [*ALLOWED, *DENIED])
def test_service_account_gets_only_what_kumo_needs(sa_kubeconfig: str, case: str) -> None:
    """The API server answers the ServiceAccount's access reviews yes for kumo's calls, no otherwise."""
    expected = case in ALLOWED
    assert _allowed(api_client_for(sa_kubeconfig), *(ALLOWED if expected else DENIED)[case]) is expected, case


def test_kubectl_auth_can_i_agrees(sa_kubeconfig: str) -> None:
    """`kubectl auth can-i` as the ServiceAccount: yes to patching Databases, no to creating Pods."""
    yes = subprocess.run(
        [KUBECTL, "auth", "can-i", "patch", "databases.kumo.dev", "-n", "team-a"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": sa_kubeconfig},
        check=False,
    )
    no = subprocess.run(
        [KUBECTL, "auth", "can-i", "create", "pods", "-n", "team-a"],
        capture_output=True,
        text=True,
        env={**os.environ, "KUBECONFIG": sa_kubeconfig},
        check=False,
    )
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    assert (no.returncode, no.stdout.strip()) == (1, "no")
