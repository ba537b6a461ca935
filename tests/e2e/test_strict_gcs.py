"""The strict GCS emulator (`kumo.testbed.strictgcs`) and kumo's GCS provider on it.

First the emulator itself, through google-cloud-storage as any client would see it: the bucket
namespace shared between projects (409 with GCS's two messages), listings per project in pages,
settings kept at insert, patch semantics, and one metadata update per second per bucket (429).
Then kumo through the real API server: a name another project holds ends Synced=False naming
spec.externalName and nothing is written, and rapid spec edits of one Bucket converge without a
single error, because kumo spaces its writes to one bucket as GCS requires.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from google.api_core import exceptions as google_errors
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from kumo.providers.base import Kind, ManagedResource, Ownership, ProviderSettings, Retryable
from kumo.providers.gcp import GCPProvider
from kumo.testbed.emulators import GCP_REGION
from kumo.testbed.strictgcs.limits import Limits

from ..specs import bucket_spec
from .conftest import condition, example, unique

pytestmark = pytest.mark.e2e

INTERVAL = Limits.from_env().bucket_update_interval  # the bed's emulator reads the same variable
TARGET_CLOUDS = ("gcp",)  # the scenarios below are GCS's own
T = TypeVar("T")


@pytest.fixture
def cloud() -> str:
    return "gcp"


@pytest.fixture
def project_client(testbed) -> Callable[[str], storage.Client]:
    """A storage client acting in the given project (the emulator knows callers by `project`)."""

    def make(project: str) -> storage.Client:
        return storage.Client(
            project=project,
            credentials=AnonymousCredentials(),
            client_options=ClientOptions(api_endpoint=testbed.env["gcp"]["storage_endpoint"]),
        )

    return make


def fresh_name(prefix: str = "strict") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def fresh_project() -> str:
    return f"other-{uuid.uuid4().hex[:8]}"


# ---------------------------------------------------------------------------- the emulator


def test_a_name_is_global_409_says_whose_it_is(project_client) -> None:
    """Creating a name again answers 409 conflict: "you already own it" in the project that has
    it, "not available" in any other."""
    ours, theirs = project_client(fresh_project()), project_client(fresh_project())
    name = fresh_name()
    theirs.create_bucket(name)

    with pytest.raises(google_errors.Conflict) as taken:
        ours.create_bucket(name)
    with pytest.raises(google_errors.Conflict) as again:
        theirs.create_bucket(name)

    assert "The requested bucket name is not available" in taken.value.message
    assert taken.value.errors[0]["reason"] == "conflict"
    assert "you already own it" in again.value.message


@pytest.mark.parametrize(
    "name", ["My-Bucket", "ab", "goog-assets", "team-google-photos", "team-g00gle", "192.168.5.4", "x" * 64]
)
def test_insert_refuses_a_name_outside_gcs_naming_rules(project_client, name: str) -> None:
    """400 invalid "Invalid bucket name", and no bucket is made."""
    client = project_client(fresh_project())

    with pytest.raises(google_errors.BadRequest) as refused:
        client.create_bucket(name)

    assert refused.value.errors[0]["reason"] == "invalid" and name in refused.value.message
    assert list(client.list_buckets()) == []


def test_listing_holds_only_the_projects_buckets_in_pages(project_client) -> None:
    """buckets.list answers for one project, sorted by name, `maxResults` a page with a
    nextPageToken; another project's buckets never appear."""
    mine, other = project_client(fresh_project()), project_client(fresh_project())
    names = sorted(fresh_name("page") for _ in range(5))
    for name in names:
        mine.create_bucket(name)
    other.create_bucket(fresh_name("theirs"))

    pages = [[bucket.name for bucket in page] for page in mine.list_buckets(page_size=2).pages]

    assert pages == [names[0:2], names[2:4], names[4:5]]
    assert [b.name for b in mine.list_buckets(prefix=names[3])] == [names[3]]


def test_insert_keeps_the_settings_sent_with_it(project_client) -> None:
    """Versioning, labels, public access prevention and lifecycle sent with buckets.insert are
    what the bucket reads back; the location comes back upper-case."""
    client = project_client(fresh_project())
    bucket = client.bucket(fresh_name())
    bucket.versioning_enabled = True
    bucket.labels = {"team": "a"}
    bucket.iam_configuration.uniform_bucket_level_access_enabled = True
    bucket.iam_configuration.public_access_prevention = "enforced"
    bucket.add_lifecycle_delete_rule(age=30)
    client.create_bucket(bucket, location="europe-west1")

    read = client.get_bucket(bucket.name)

    assert read.versioning_enabled is True and read.labels == {"team": "a"}
    assert read.iam_configuration.public_access_prevention == "enforced"
    assert [rule["condition"] for rule in read.lifecycle_rules] == [{"age": 30}]
    assert read.location == "EUROPE-WEST1"


def test_patch_merges_labels_and_null_removes_one(project_client) -> None:
    """A patch carrying some labels keeps the others; a label sent as null is removed."""
    client = project_client(fresh_project())
    bucket = client.bucket(fresh_name())
    bucket.labels = {"keep": "1", "drop": "2"}
    client.create_bucket(bucket)
    time.sleep(INTERVAL)

    patch = client.bucket(bucket.name)  # a fresh object: sends only what is set below
    patch._patch_property("labels", {"drop": None, "new": "3"})
    patch.patch()

    assert client.get_bucket(bucket.name).labels == {"keep": "1", "new": "3"}


@pytest.mark.skipif(INTERVAL <= 0, reason="KUMO_STRICT_GCS_BUCKET_UPDATE_INTERVAL switches the limit off")
def test_a_second_metadata_update_within_the_interval_is_429(project_client) -> None:
    """One metadata update per second per bucket: a patch right after the insert is refused with
    429 rateLimitExceeded and changes nothing; once the interval has passed it is taken."""
    client = project_client(fresh_project())
    bucket = client.create_bucket(fresh_name())
    bucket.labels = {"team": "a"}

    with pytest.raises(google_errors.TooManyRequests) as refused:
        bucket.patch()
    assert refused.value.errors[0]["reason"] == "rateLimitExceeded"
    assert client.get_bucket(bucket.name).labels == {}

    time.sleep(INTERVAL)
    bucket.patch()
    assert client.get_bucket(bucket.name).labels == {"team": "a"}


# ---------------------------------------------------------------------------- kumo on it


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coroutine)


@pytest.mark.skipif(INTERVAL <= 0, reason="KUMO_STRICT_GCS_BUCKET_UPDATE_INTERVAL switches the limit off")
def test_kumo_update_right_after_another_writer_is_retryable_and_changes_nothing(testbed, project_client) -> None:
    """Someone else updated the bucket a moment ago: kumo's correction meets GCS's 429 and comes
    back `Retryable` with Google's reason (the controller tries again later), the bucket keeps
    their value; after the interval the same update applies."""
    project = fresh_project()
    endpoints = {"storage": testbed.env["gcp"]["storage_endpoint"]}
    settings = ProviderSettings(provider="gcp", project=project, region=GCP_REGION, endpoints=endpoints)
    gcs = GCPProvider().client(Kind.BUCKET, settings)
    name = fresh_name("kumo")
    resource = ManagedResource(
        Kind.BUCKET, name, Ownership(str(uuid.uuid4()), "team-a", name, "c-test"), bucket_spec(versioning=True)
    )
    run(gcs.create(resource, None))
    time.sleep(INTERVAL)
    theirs = project_client(project).bucket(name)
    theirs.versioning_enabled = False
    theirs.patch()
    drifted = run(gcs.observe(resource))
    assert drifted is not None and [d.field for d in drifted.drift] == ["versioning"]

    with pytest.raises(Retryable) as throttled:
        run(gcs.update(resource, drifted.drift))
    assert throttled.value.code == "rateLimitExceeded"
    assert project_client(project).get_bucket(name).versioning_enabled is False

    time.sleep(INTERVAL)
    assert run(gcs.update(resource, drifted.drift)).changed == ("versioning",)
    assert project_client(project).get_bucket(name).versioning_enabled is True


@pytest.mark.parametrize("adopt", [False, True], ids=["plain", "adopt-annotation"])
def test_bucket_whose_name_another_project_holds_is_refused_and_untouched(
    kumo, probe, provider_config, project_client, adopt
) -> None:
    """spec.externalName names a bucket of another project: Synced=False with a message naming
    the bucket and spec.externalName, even when adoption is asked for; their bucket keeps its
    labels, ours holds no such bucket, no Secret appears, and deleting the object leaves theirs."""
    theirs = project_client(fresh_project())
    external = fresh_name("taken")
    bucket = theirs.bucket(external)
    bucket.labels = {"owner": "them"}
    theirs.create_bucket(bucket)
    name = unique("bk")
    manifest = example("gcp", "Bucket", name)
    manifest["spec"]["externalName"] = external
    if adopt:
        manifest["metadata"]["annotations"] = {"kumo.dev/adopt": "true"}

    kumo.create(manifest)
    obj = kumo.wait_condition("Bucket", name, "Synced", "False")

    message = condition(obj, "Synced")["message"]
    assert external in message and "another project" in message and "spec.externalName" in message
    assert theirs.get_bucket(external).labels == {"owner": "them"}
    assert external not in [b.name for b in probe.gcs.list_buckets(prefix=external)]
    assert kumo.connection_secret("Bucket", name) is None
    kumo.delete("Bucket", name)
    kumo.wait_gone("Bucket", name)
    assert theirs.get_bucket(external).labels == {"owner": "them"}


def test_bucket_whose_explicit_name_gcs_refuses_is_an_invalid_spec(kumo, provider_config) -> None:
    """spec.externalName holds a close misspelling of "google", which the CRD's rules let
    through and GCS refuses: the Bucket says so before any cloud call (InvalidSpec naming
    spec.externalName and the rule) instead of passing on the insert's "Invalid bucket name".
    (A derived name never holds one: tests/e2e/test_naming_rules.py.)"""
    name = unique("misspelt")
    manifest = example("gcp", "Bucket", name)
    manifest["spec"]["externalName"] = f"team-g00gle-{uuid.uuid4().hex[:6]}"
    kumo.create(manifest)

    obj = kumo.wait_condition("Bucket", name, "Synced", "False")

    synced = condition(obj, "Synced")
    assert synced["reason"] == "InvalidSpec", synced
    assert "spec.externalName" in synced["message"] and "close misspelling" in synced["message"], synced


def test_rapid_spec_edits_of_one_bucket_converge_without_errors(kumo, probe, provider_config) -> None:
    """Five label edits in a row, each sooner than GCS takes a bucket update: the bucket ends
    with the last one, the object is Synced for its last generation, and no Warning event (no
    429 from GCS) was ever posted for it."""
    name = unique("bk")
    kumo.create(example("gcp", "Bucket", name))
    external = kumo.wait_ready("Bucket", name)["status"]["atProvider"]["externalName"]

    for edit in range(1, 6):
        kumo.patch("Bucket", name, {"spec": {"labels": {"team": f"edit-{edit}"}}})

    kumo.wait_for("last edit in the cloud", lambda: probe.bucket(external)["labels"].get("team") == "edit-5")

    def synced_at_last_generation() -> dict | None:
        obj = kumo.get("Bucket", name)
        synced = condition(obj, "Synced") if obj else None
        done = synced and synced["status"] == "True"
        return obj if done and obj["status"].get("observedGeneration") == obj["metadata"]["generation"] else None

    kumo.wait_for("Synced at the last generation", synced_at_last_generation)
    warnings = [f"{e.reason}: {e.message}" for e in kumo.events(name) if e.type == "Warning"]
    assert warnings == []
