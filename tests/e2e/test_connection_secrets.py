"""Connection Secrets that are always valid, always kumo's own, and always agree with the cloud.

Each scenario is what a user of a real cluster would run into: a name too long for the label
kumo writes (refused at admission, not failing forever in the log), a Database and a Bucket
sharing a name (each gets its own Secret), a Secret name someone else already holds (nothing is
created in the cloud), a password edited in the Secret (set on the instance: an app connecting
with the Secret's uri works), a rotation (no conflict and no traceback in the controller log),
and a Kubernetes refusal nobody foresaw (a Secret quota: shown in Synced, not only in the log).
"""

from __future__ import annotations

import base64
import uuid

import pytest
from google.cloud import sqladmin_v1beta4 as sqladmin
from kubernetes.client.rest import ApiException
from kumo.testbed import engines

from .conftest import GROUP, PLURALS, VERSION, Kumo, condition, example, unique

ROTATE = "kumo.dev/rotate-password"


def _exists(probe, kind: str, external: str) -> bool:
    if kind == "Bucket":
        return probe.bucket(external) is not None
    if probe.cloud == "gcp":
        # Cloud SQL answers a read of a name it never saw with 403, as the real API does
        # (docs/testbed.md); the project's listing says whether it is there.
        listed = probe.instances.list(request=sqladmin.SqlInstancesListRequest(project=probe.project))
        return external in [instance.name for instance in listed.items]
    return probe.database(external) is not None


def _name_of_length(length: int) -> str:
    stem = unique("n")
    return stem + "a" * (length - len(stem))


@pytest.mark.parametrize("kind", ["Database", "Bucket"])
def test_a_name_too_long_for_the_secrets_label_is_refused_at_admission(kumo: Kumo, kind):
    """metadata.name becomes the value of the kumo.dev/owner-name label on the Secret (at most
    63 characters): a longer name used to be accepted and then fail forever in the log only, a
    Bucket's cloud bucket already created. Now the API server refuses it and says why; 63
    characters pass admission."""
    manifest = example("aws", kind, _name_of_length(64))
    with pytest.raises(ApiException) as refused:
        kumo.create(manifest)
    assert refused.value.status == 422
    assert "metadata.name must be at most 63 characters" in refused.value.body
    assert "label value" in refused.value.body
    manifest["metadata"]["name"] = _name_of_length(63)
    kumo.objects.create_namespaced_custom_object(GROUP, VERSION, kumo.namespace, PLURALS[kind], manifest, dry_run="All")


def test_an_explicit_secret_name_must_be_a_valid_secret_name(kumo: Kumo):
    manifest = example("aws", "Bucket", unique("bk"))
    manifest["spec"]["writeConnectionSecretToRef"] = {"name": "Not_A_Secret_Name"}
    with pytest.raises(ApiException) as refused:
        kumo.create(manifest)
    assert refused.value.status == 422 and "writeConnectionSecretToRef.name" in refused.value.body


def test_a_bucket_with_the_longest_name_is_ready_with_its_secret(kumo: Kumo, probe, provider_config):
    """The limit is the right one: a 63-character name reconciles, labels and all."""
    name = _name_of_length(63)
    kumo.create(example(probe.cloud, "Bucket", name))
    obj = kumo.wait_ready("Bucket", name)
    assert obj["status"]["connectionSecret"] == f"{name}-bucket"
    secret = kumo.core.read_namespaced_secret(f"{name}-bucket", kumo.namespace)
    assert secret.metadata.labels["kumo.dev/owner-name"] == name
    assert probe.bucket(base64.b64decode(secret.data["bucket"]).decode()) is not None


def test_a_database_and_a_bucket_of_the_same_name_each_get_their_own_secret(kumo: Kumo, probe, provider_config):
    """Both used to default to `<name>-connection`: the second stayed Synced=False ("exists and
    is not owned by this Bucket") with its cloud bucket already created."""
    name = unique("shop")
    kumo.create(example(probe.cloud, "Bucket", name))
    kumo.create(example(probe.cloud, "Database", name))
    bucket = kumo.wait_ready("Bucket", name)
    database = kumo.wait_ready("Database", name, timeout=120)
    assert condition(bucket, "Synced")["status"] == "True" and condition(database, "Synced")["status"] == "True"
    assert (bucket["status"]["connectionSecret"], database["status"]["connectionSecret"]) == (
        f"{name}-bucket",
        f"{name}-connection",
    )
    assert kumo.secret(f"{name}-bucket")["bucket"] == bucket["status"]["atProvider"]["externalName"]
    assert "password" in kumo.secret(f"{name}-connection")
    assert probe.bucket(bucket["status"]["atProvider"]["externalName"]) is not None


@pytest.mark.parametrize("kind", ["Bucket", "Database"])
def test_a_secret_name_held_by_someone_else_creates_nothing_in_the_cloud(kumo: Kumo, probe, provider_config, kind):
    """A Secret kumo would write already exists and is not this object's: Synced=False saying
    so, and no cloud resource it could never publish (a Bucket used to create its bucket first)."""
    taken = unique("taken")
    kumo.core.create_namespaced_secret(
        kumo.namespace, {"metadata": {"name": taken}, "stringData": {"owner": "another app"}}
    )
    name = unique(kind.lower()[:2])
    manifest = example(probe.cloud, kind, name)
    external = unique(f"{name}-x")
    manifest["spec"].update({"writeConnectionSecretToRef": {"name": taken}, "externalName": external})
    kumo.create(manifest)
    obj = kumo.wait_condition(kind, name, "Synced", "False")
    message = condition(obj, "Synced")["message"]
    assert taken in message and "not owned" in message
    assert any(e.reason == "CannotPublishConnectionDetails" and taken in e.message for e in kumo.events(name))
    assert not _exists(probe, kind, external), f"{kind} created {external} in the cloud although it cannot publish it"
    assert kumo.secret(taken) == {"owner": "another app"}
    kumo.delete(kind, name)
    kumo.wait_gone(kind, name)
    assert kumo.secret(taken) == {"owner": "another app"}


def test_a_password_edited_in_the_secret_is_set_on_the_instance(kumo: Kumo, probe, provider_config, cloud):
    """The Secret is what apps read, so it is the truth for the password: a value a user writes
    there is set on the instance (like a rotation) and the uri follows, at once through the
    Secret watch. It used to stay in the Secret while the instance kept the old one."""
    name = unique("ed")
    kumo.create(example(cloud, "Database", name))
    kumo.wait_ready("Database", name, timeout=120)
    before = kumo.wait_for("the Secret's uri", lambda: (s := kumo.secret(f"{name}-connection")) and "uri" in s and s)
    assert engines.connects(before["uri"])
    edited = f"Edited-{uuid.uuid4().hex[:20]}"
    kumo.core.patch_namespaced_secret(f"{name}-connection", kumo.namespace, {"stringData": {"password": edited}})

    def agreed() -> dict[str, str] | None:
        secret = kumo.secret(f"{name}-connection") or {}
        fresh = secret.get("password") == edited and edited in secret.get("uri", "")
        return secret if fresh and engines.connects(secret["uri"]) else None

    after = kumo.wait_for("the edited password to connect through the Secret's uri", agreed, timeout=120)
    assert not engines.connects(before["uri"]), "the password replaced in the Secret still connects"
    obj = kumo.wait_ready("Database", name)
    assert condition(obj, "Synced")["status"] == "True"
    assert any(e.reason == "PasswordSet" for e in kumo.events(name))
    assert after["password"] == edited


def test_a_rotation_writes_the_secret_without_a_conflict_or_a_traceback(kumo: Kumo, probe, provider_config, cloud):
    """Every rotation used to fail once with 409 on the Secret (a resourceVersion kept from the
    write-ahead step) and succeed on retry, with a traceback in the log each time."""
    name = unique("rot")
    kumo.create(example(cloud, "Database", name))
    kumo.wait_ready("Database", name, timeout=120)
    before = kumo.secret(f"{name}-connection")
    log_start = len(kumo.controller.log_text())
    kumo.patch("Database", name, {"metadata": {"annotations": {ROTATE: str(uuid.uuid4())}}})

    def rotated() -> dict[str, str] | None:
        secret = kumo.secret(f"{name}-connection") or {}
        fresh = secret.get("password") not in (None, before["password"]) and secret["password"] in secret.get("uri", "")
        return secret if fresh and engines.connects(secret["uri"]) else None

    kumo.wait_for("the rotated password to connect", rotated, timeout=120)
    kumo.wait_ready("Database", name)
    key = f"Database/{kumo.namespace}/{name}"
    lines = [line for line in kumo.controller.log_text()[log_start:].splitlines() if key in line]
    assert not [line for line in lines if "409" in line or "Conflict" in line or "unexpected" in line], lines
    assert condition(kumo.get("Database", name), "Synced")["status"] == "True"


def test_a_kubernetes_refusal_nobody_foresaw_shows_in_synced(kumo: Kumo, probe, provider_config):
    """A ResourceQuota that allows no more Secrets
    (https://kubernetes.io/docs/concepts/policy/resource-quotas/) refuses the Secret a Database
    stores its password in: that used to escape the reconcile as "unexpected error" in the log
    only (no condition, no event). Now it is Synced=False with the API server's message and an
    event; nothing is created in the cloud; once the quota is lifted the Database becomes Ready."""
    quota = {"metadata": {"name": "no-more-secrets"}, "spec": {"hard": {"secrets": "0"}}}
    kumo.core.create_namespaced_resource_quota(kumo.namespace, quota)
    # The API server's quota admission enforces status.hard against status.used, which the
    # quota controller writes; the bed runs no quota controller, so the test writes what it would.
    used = len(kumo.core.list_namespaced_secret(kumo.namespace).items)
    kumo.core.patch_namespaced_resource_quota_status(
        "no-more-secrets", kumo.namespace, {"status": {"hard": {"secrets": "0"}, "used": {"secrets": str(used)}}}
    )
    name = unique("db")
    manifest = example(probe.cloud, "Database", name)
    external = manifest["spec"]["externalName"] = unique(f"{name}-x")
    try:
        kumo.create(manifest)
        obj = kumo.wait_condition("Database", name, "Synced", "False")
        message = condition(obj, "Synced")["message"]
        assert "quota" in message and f"{name}-connection" in message, message
        assert any(e.reason == "CannotPublishConnectionDetails" and "quota" in e.message for e in kumo.events(name))
        assert not _exists(probe, "Database", external)
    finally:
        kumo.core.delete_namespaced_resource_quota("no-more-secrets", kumo.namespace)
    kumo.wait_ready("Database", name, timeout=180)
    assert "password" in kumo.secret(f"{name}-connection")
