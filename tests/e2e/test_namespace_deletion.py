"""Deleting things the way a cluster does: the namespace controller and the garbage collector of
the test bed's kube-controller-manager, not a test calling delete on each object.

`kubectl delete namespace` deletes everything in the namespace at once, the ProviderConfigs and
their credentials Secrets included; Kubernetes then waits for each object's finalizers
(https://kubernetes.io/docs/tasks/administer-cluster/namespaces/#deleting-a-namespace,
https://kubernetes.io/docs/concepts/overview/working-with-objects/finalizers/). kumo must still
reach both clouds to delete what `deletionPolicy: Delete` asks for, keep what `Retain` keeps, and
let the namespace go. The same shape of bug left namespaces stuck under Config Connector
(https://github.com/GoogleCloudPlatform/k8s-config-connector/issues/375) and Crossplane
(https://github.com/crossplane/crossplane/issues/4661).
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from kumo.testbed.probes import CLOUDS, probe_for

from kumo.api import IN_USE_FINALIZER

from .conftest import example, unique

pytestmark = pytest.mark.e2e

# Strict RDS and Cloud SQL take a few seconds per state change; the namespace waits for them all.
NAMESPACE_GONE_TIMEOUT = 240.0


def _external(obj: dict[str, Any]) -> str:
    return str(obj["status"]["atProvider"]["externalName"])


def _namespace_exists(core: client.CoreV1Api, name: str) -> bool:
    try:
        core.read_namespace(name)
    except ApiException as error:
        if error.status == 404:
            return False
        raise
    return True


def test_deleting_a_namespace_cleans_up_both_clouds(kumo, testbed):
    """A namespace with Databases and Buckets on AWS and GCP, half `Delete`, half `Retain`, is
    deleted: the Delete ones leave the clouds, the Retain ones stay, the namespace is gone."""
    probes = {cloud: probe_for(cloud, testbed.env) for cloud in CLOUDS}
    for cloud, probe in probes.items():
        secret, config = probe.provider_config(name=cloud)
        kumo.core.create_namespaced_secret(kumo.namespace, secret)
        kumo.create(config)
    made: dict[str, tuple[str, str, str]] = {}  # name -> (cloud, kind, deletionPolicy)
    for cloud in CLOUDS:
        for kind in ("Database", "Bucket"):
            for policy in ("Delete", "Retain"):
                name = unique(f"{cloud}-{kind.lower()[:2]}-{policy.lower()}")
                manifest = example(cloud, kind, name)
                manifest["spec"]["deletionPolicy"] = policy
                kumo.create(manifest)
                made[name] = (cloud, kind, policy)
    external = {name: _external(kumo.wait_ready(kind, name, timeout=180)) for name, (_, kind, _) in made.items()}
    for cloud in CLOUDS:
        config = kumo.objects.get_namespaced_custom_object(
            "kumo.dev", "v1alpha1", kumo.namespace, "providerconfigs", cloud
        )
        assert IN_USE_FINALIZER in config["metadata"]["finalizers"], "a ProviderConfig in use is not protected"

    marker = len(kumo.controller.log_text())
    kumo.core.delete_namespace(kumo.namespace)
    kumo.wait_for(
        f"namespace {kumo.namespace} gone",
        lambda: not _namespace_exists(kumo.core, kumo.namespace),
        timeout=NAMESPACE_GONE_TIMEOUT,
    )

    for name, (cloud, kind, policy) in made.items():
        look = probes[cloud].database if kind == "Database" else probes[cloud].bucket
        found = look(external[name])
        if policy == "Retain":
            assert found is not None, f"{kind} {name} ({cloud}, Retain) was deleted from the cloud"
        else:
            assert found is None, f"{kind} {name} ({cloud}, Delete) is still in the cloud: {found}"
    log = kumo.controller.log_text()[marker:]
    assert "Traceback" not in log, log
    assert not re.search(rf"reconcile of \S+/{kumo.namespace}/\S+ failed", log), log


def test_foreground_deletion_collects_the_secret_first(kumo, probe, provider_config):
    """`kubectl delete --cascade=foreground`: the garbage collector deletes the connection Secret
    while the object still exists (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#foreground-deletion).
    kumo does not bring the Secret back for an object being deleted, deletes the cloud resource
    and lets the object go."""
    db = unique("db")
    kumo.create(example(probe.cloud, "Database", db))
    external = _external(kumo.wait_ready("Database", db, timeout=180))
    assert kumo.secret(f"{db}-connection") is not None
    kumo.objects.delete_namespaced_custom_object(
        "kumo.dev", "v1alpha1", kumo.namespace, "databases", db, propagation_policy="Foreground"
    )
    kumo.wait_gone("Database", db, timeout=180)
    assert kumo.secret(f"{db}-connection") is None
    assert probe.database(external) is None


def test_stale_secret_is_collected_and_the_new_object_gets_its_own(kumo, probe, provider_config):
    """A Bucket whose finalizer was stripped by hand (the usual escape hatch) is recreated under the
    same name. Its old connection Secret names the old object's uid as owner, so the garbage
    collector deletes it while the new object lives
    (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#owners-dependents);
    kumo then writes the new object's own Secret instead of staying stuck on a Secret it does
    not own."""
    bk = unique("bk")
    kumo.create(example(probe.cloud, "Bucket", bk))
    old = kumo.wait_ready("Bucket", bk)
    assert kumo.connection_secret("Bucket", bk) is not None
    kumo.patch("Bucket", bk, {"metadata": {"finalizers": None}})
    kumo.delete("Bucket", bk)
    kumo.wait_gone("Bucket", bk)
    manifest = example(probe.cloud, "Bucket", bk)
    manifest["spec"]["externalName"] = unique(f"{bk}-again")  # the first bucket stays, tagged for the old uid
    new_uid = kumo.create(manifest)["metadata"]["uid"]
    assert new_uid != old["metadata"]["uid"]

    def owned_by_new_object() -> bool:
        try:
            secret = kumo.core.read_namespaced_secret(f"{bk}-bucket", kumo.namespace)
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return [ref.uid for ref in secret.metadata.owner_references or []] == [new_uid]

    kumo.wait_for("the new object's own connection Secret", owned_by_new_object, timeout=90)
    kumo.wait_ready("Bucket", bk)
    assert (kumo.connection_secret("Bucket", bk) or {}).get("bucket") == manifest["spec"]["externalName"]
