"""Ownership and adoption through the real controller: a resource tagged for another owner is
never touched, an unowned one is adopted only when asked, and ObserveOnly never writes."""

from __future__ import annotations

import uuid

import pytest

from .conftest import condition, example, unique

pytestmark = pytest.mark.e2e


def _existing_bucket(probe, owner_uid: str | None) -> tuple[str, dict[str, str]]:
    """A bucket made directly in the cloud, optionally tagged as another kumo object's."""
    name = f"pre-{uuid.uuid4().hex[:10]}"
    if probe.cloud == "aws":
        probe.s3.create_bucket(Bucket=name)
        tags = {"kumo.dev/owner-uid": owner_uid, "kumo.dev/owner-name": "other"} if owner_uid else {"team": "x"}
        probe.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]})
    else:
        tags = {"kumo-owner-uid": owner_uid, "kumo-owner-name": "other"} if owner_uid else {"team": "x"}
        bucket = probe.gcs.bucket(name)
        bucket.labels = tags
        probe.gcs.create_bucket(bucket)  # GCS keeps labels sent with the insert
    return name, tags


def _manifest(probe, name: str, external: str, **annotations: str) -> dict:
    manifest = example(probe.cloud, "Bucket", name)
    manifest["spec"]["externalName"] = external
    manifest["metadata"]["annotations"] = annotations
    return manifest


def test_resource_owned_by_another_object_is_never_modified_or_deleted(kumo, probe, provider_config):
    """Same name, other owner: Synced=False OwnedByAnotherResource with an event; the cloud tags
    stay as they were, and deleting the object leaves the bucket in place."""
    external, tags = _existing_bucket(probe, owner_uid=str(uuid.uuid4()))
    name = unique("bk")
    kumo.create(_manifest(probe, name, external))
    obj = kumo.wait_condition("Bucket", name, "Synced", "False")
    assert condition(obj, "Synced")["reason"] == "OwnedByAnotherResource"
    kumo.wait_for("event", lambda: any(e.reason == "OwnedByAnotherResource" for e in kumo.events(name)))
    assert probe.bucket(external)["labels"] == tags
    kumo.delete("Bucket", name)
    kumo.wait_gone("Bucket", name)
    assert probe.bucket(external)["labels"] == tags


@pytest.mark.parametrize("adopt", [False, True], ids=["not-asked", "adopt-annotation"])
def test_unowned_resource_is_adopted_only_when_asked(kumo, probe, provider_config, adopt):
    """An existing untagged bucket is refused unless kumo.dev/adopt is "true"; adoption tags it."""
    external, _ = _existing_bucket(probe, owner_uid=None)
    name = unique("bk")
    annotations = {"kumo.dev/adopt": "true"} if adopt else {}
    kumo.create(_manifest(probe, name, external, **annotations))
    if not adopt:
        obj = kumo.wait_condition("Bucket", name, "Synced", "False")
        assert "kumo.dev/adopt" in condition(obj, "Synced")["message"]
        assert "team" in probe.bucket(external)["labels"] and len(probe.bucket(external)["labels"]) == 1
        return
    obj = kumo.wait_ready("Bucket", name)
    uid_key = "kumo.dev/owner-uid" if probe.cloud == "aws" else "kumo-owner-uid"
    kumo.wait_for("owner tags written", lambda: probe.bucket(external)["labels"].get(uid_key) == obj["metadata"]["uid"])


def test_observe_only_reports_and_never_writes(kumo, probe, provider_config):
    """ObserveOnly on someone else's bucket: Ready with drift reported, no tag written, no
    Secret, and deleting the object leaves the bucket alone."""
    external, tags = _existing_bucket(probe, owner_uid=str(uuid.uuid4()))
    name = unique("bk")
    manifest = _manifest(probe, name, external)
    manifest["spec"]["managementPolicy"] = "ObserveOnly"
    kumo.create(manifest)
    obj = kumo.wait_ready("Bucket", name)
    assert condition(obj, "InSync")["reason"] == "Drifted" and "ObserveOnly" in condition(obj, "Synced")["message"]
    assert probe.bucket(external)["labels"] == tags and kumo.connection_secret("Bucket", name) is None
    kumo.delete("Bucket", name)
    kumo.wait_gone("Bucket", name)
    assert probe.bucket(external) is not None
