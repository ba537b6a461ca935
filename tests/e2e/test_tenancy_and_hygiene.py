"""Tenancy and secret hygiene, through the real controller.

- A user in namespace A cannot make kumo read a credential Secret in namespace B, nor write a
  connection Secret anywhere but A: no reference in kumo's API can name another namespace.
- No generated password appears in the controller's log (all levels), in Events, or in the
  status, annotations or spec of any object, after creating, rotating and recreating them.
"""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from kubernetes import client
from kumo.testbed.probes import probe_for

from .conftest import Kumo, condition, example, unique

pytestmark = pytest.mark.e2e


@pytest.fixture
def other_namespace(kube_api: client.ApiClient):
    from ..conftest import _fresh_namespace

    yield from _fresh_namespace(kube_api, "t")


def test_provider_config_cannot_reach_credentials_in_another_namespace(kumo: Kumo, testbed, other_namespace):
    """A ProviderConfig in A naming a Secret that exists only in B is refused (not found in A),
    and nothing is created in the cloud."""
    probe = probe_for("aws", testbed.env)
    secret, config = probe.provider_config(name="aws")
    kumo.core.create_namespaced_secret(other_namespace, secret)  # the credentials live in B only
    kumo.create(config)  # the config in A points at that Secret's name
    before = probe.count_databases()
    name = unique("db")
    kumo.create(example("aws", "Database", name))
    obj = kumo.wait_condition("Database", name, "Synced", "False")
    message = condition(obj, "Synced")["message"]
    assert f"{kumo.namespace}/aws-credentials not found" in message, message
    assert probe.count_databases() == before


def test_namespaced_provider_config_is_not_usable_from_another_namespace(kumo: Kumo, testbed, other_namespace):
    """An object in B referencing a ProviderConfig that exists only in A gets 'not found in B'."""
    probe = probe_for("aws", testbed.env)
    secret, config = probe.provider_config(name="aws")
    kumo.core.create_namespaced_secret(kumo.namespace, secret)
    kumo.create(config)
    other = Kumo(kumo.objects.api_client, other_namespace, kumo.controller)
    name = unique("db")
    other.create(example("aws", "Database", name))
    obj = other.wait_condition("Database", name, "Synced", "False")
    assert f"ProviderConfig 'aws' not found in namespace {other_namespace}" in condition(obj, "Synced")["message"]


def test_connection_secret_is_written_only_in_the_objects_namespace(kumo: Kumo, probe, provider_config, cloud):
    """The connection Secret lands next to its object: a `namespace` smuggled into
    writeConnectionSecretToRef is pruned by the schema and nothing is written elsewhere."""
    name = unique("bk")
    manifest = example(cloud, "Bucket", name)
    manifest["spec"]["writeConnectionSecretToRef"] = {"name": f"{name}-creds", "namespace": "kube-system"}
    stored = kumo.create(manifest)
    assert stored["spec"]["writeConnectionSecretToRef"] == {"name": f"{name}-creds"}
    kumo.wait_ready("Bucket", name)
    assert kumo.secret(f"{name}-creds") is not None
    with pytest.raises(client.exceptions.ApiException) as absent:
        kumo.core.read_namespaced_secret(f"{name}-creds", "kube-system")
    assert absent.value.status == 404


def test_no_password_leaks_into_logs_events_status_or_specs(kumo: Kumo, probe, provider_config, cloud, kube_api):
    """After create, rotation and a deleted Secret, no password kumo generated is found in the
    controller log, any Event, or the status/annotations/spec of any kumo object."""
    name = unique("db")
    kumo.create(example(cloud, "Database", name))
    kumo.wait_ready("Database", name)
    kumo.patch("Database", name, {"metadata": {"annotations": {"kumo.dev/rotate-password": str(uuid.uuid4())}}})
    first = kumo.secret(f"{name}-connection")["password"]
    kumo.wait_for("rotated", lambda: kumo.secret(f"{name}-connection")["password"] != first)
    kumo.core.delete_namespaced_secret(f"{name}-connection", kumo.namespace)
    kumo.wait_for("recreated", lambda: "uri" in (kumo.secret(f"{name}-connection") or {}))

    passwords = _all_kumo_passwords(kube_api) | {first}  # the rotated-away one must not leak either
    assert len(passwords) >= 2
    haystacks = {
        "controller log": kumo.controller.log_text(),
        "events": json.dumps(
            [e.to_dict() for e in client.CoreV1Api(kube_api).list_event_for_all_namespaces().items], default=str
        ),
        "kumo objects": json.dumps(_all_kumo_objects(kube_api)),
    }
    for where, text in haystacks.items():
        leaked = [p for p in passwords if p in text]
        assert not leaked, f"{len(leaked)} password(s) found in {where}"


def _all_kumo_passwords(kube_api: client.ApiClient) -> set[str]:
    secrets = (
        client.CoreV1Api(kube_api)
        .list_secret_for_all_namespaces(label_selector="app.kubernetes.io/managed-by=kumo")
        .items
    )
    return {base64.b64decode(s.data["password"]).decode() for s in secrets if (s.data or {}).get("password")}


def _all_kumo_objects(kube_api: client.ApiClient) -> list[dict]:
    objects = client.CustomObjectsApi(kube_api)
    return [
        item
        for plural in ("databases", "buckets")
        for item in objects.list_cluster_custom_object("kumo.dev", "v1alpha1", plural)["items"]
    ]
