"""deploy/sharded/, the kustomize variant that runs kumo as three shards of a sharder's ring,
checked in what `kubectl kustomize deploy/sharded/` renders (no API server).

The sharder's side of these objects is its docs/implement-sharding.md (v0.11.0): a
ControllerRing naming the resources, a ClusterRole `sharding:controllerring:<ring>` with list
and patch of them bound to the sharder's ServiceAccount, and shards holding Leases of their own.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from kumo.controller.runtime.config import ControllerConfig
from kumo.controller.runtime.sharding import shard_of

from kumo import api
from kumo.cli import _parser

from .test_deploy_manifests import DEPLOY, EXPECTED_OBJECTS, NAME, NAMESPACE, kustomize

SHARDED = DEPLOY / "sharded"
RING = "kumo"


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return kustomize(SHARDED)


def one(rendered: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    [found] = [d for d in rendered if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def container(rendered: list[dict[str, Any]]) -> dict[str, Any]:
    [found] = one(rendered, "Deployment", NAME)["spec"]["template"]["spec"]["containers"]
    return found


def test_renders_the_base_plus_the_ring_and_the_sharders_grant():
    """Everything deploy/ installs, once each, and the three objects sharding adds."""
    found = Counter((d["kind"], d["metadata"]["name"]) for d in kustomize(SHARDED))
    assert set(found) == EXPECTED_OBJECTS | {
        ("ControllerRing", RING),
        ("ClusterRole", f"sharding:controllerring:{RING}"),
        ("ClusterRoleBinding", f"sharding:controllerring:{RING}"),
    }
    assert max(found.values()) == 1


def test_the_ring_shards_every_managed_kind_with_its_connection_secrets(rendered):
    """The ring names kumo's managed kinds (from kumo/api.py) and, as controlled resources, the
    Secrets kumo owns: each follows its owner onto the owner's shard."""
    ring = one(rendered, "ControllerRing", RING)
    assert ring["apiVersion"] == f"{api.SHARDING_GROUP}/v1alpha1"
    assert len(ring["metadata"]["name"]) <= 63  # part of the shard label's key
    resources = {(r["group"], r["resource"]): r.get("controlledResources") for r in ring["spec"]["resources"]}
    assert resources == {
        (api.GROUP, info.plural): [{"group": "", "resource": "secrets"}] for info in api.MANAGED.values()
    }


def test_the_sharder_may_list_and_patch_the_rings_objects_and_nothing_else(rendered):
    role = one(rendered, "ClusterRole", f"sharding:controllerring:{RING}")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    assert granted == {
        (api.GROUP, "buckets"): {"list", "patch"},
        (api.GROUP, "databases"): {"list", "patch"},
        ("", "secrets"): {"list", "patch"},
    }
    binding = one(rendered, "ClusterRoleBinding", f"sharding:controllerring:{RING}")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "sharder", "namespace": "sharding-system"}]


def test_three_replicas_each_a_shard_named_by_its_pod(rendered):
    """No leader election (every replica is active on its own shard); the ring comes from
    KUMO_SHARD_RING and each shard's name from the Pod's name through the downward API."""
    spec = one(rendered, "Deployment", NAME)["spec"]
    assert spec["replicas"] == 3
    args = _parser().parse_args(container(rendered)["args"])
    assert not args.leader_elect
    env = {e["name"]: e for e in container(rendered)["env"]}
    assert env["KUMO_LEADER_IDENTITY"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    config = ControllerConfig.load(env={"KUMO_SHARD_RING": env["KUMO_SHARD_RING"]["value"]})
    shard = shard_of(config, hostname=lambda: "kumo-controller-7d9c8b6f5-x2x7q")
    assert shard is not None and shard.ring == RING


def test_shard_leases_are_granted_in_the_controllers_namespace_only(rendered):
    """Each shard's Lease lives in kumo-system, where the base Role grants Leases (RBAC cannot
    narrow a grant to the ring's label)."""
    role = one(rendered, "Role", NAME)
    assert role["metadata"]["namespace"] == NAMESPACE
    assert [rule["resources"] for rule in role["rules"]] == [["leases"]]
