"""The generic reconciler's order of operations, against an in-memory cloud and API server.

Each test is one scenario; its docstring says what it proves.
"""

from __future__ import annotations

import asyncio
import base64
import copy
from typing import Any

import pytest
from kumo.controller.core import conditions as cond
from kumo.controller.core.kubeapi import KubeError, NotFound
from kumo.controller.core.reconciler import Reconciler
from kumo.controller.core.resources import ObjectKey, derived_external_name
from kumo.providers.base import Kind, NotReady, Ownership, Retryable, Terminal
from kumo.providers.registry import ProviderRegistry

from kumo import api
from kumo.api import FINALIZER

from ..specs import defaulted_spec
from .fakes import CloudRecord, FakeCloud, FakeCloudClient, FakeKube, secret_body

NS, NAME, UID, CLUSTER = "team-a", "orders", "uid-1", "cluster-1"
EXTERNAL = derived_external_name(NS, NAME, CLUSTER)
SECRET = f"{NAME}-connection"


class World:
    """One object, the fake API server and the fake cloud, and a reconcile() that feeds the
    reconciler the object as the API server now has it (status and finalizers included)."""

    def __init__(self, kind: Kind = Kind.DATABASE, **cloud: Any) -> None:
        self.journal: list[tuple[str, ...]] = []
        self.kube = FakeKube(self.journal)
        self.cloud = FakeCloud(self.journal, **cloud)
        self.kube.provider_configs[("ClusterProviderConfig", "", "default")] = {"spec": {"provider": "fake"}}
        self.reconciler = Reconciler(
            self.kube,  # type: ignore[arg-type]
            ProviderRegistry(providers={"fake": self.cloud}),  # type: ignore[dict-item]
            cluster_id=CLUSTER,
            controller_namespace="kumo-system",
        )
        self.kind = kind
        minimal = {"engine": "postgres", "version": "16"} if kind is Kind.DATABASE else {}
        spec = defaulted_spec(kind, minimal)  # as the API server stores it
        self.body: dict[str, Any] = {
            "metadata": {"name": NAME, "namespace": NS, "uid": UID, "generation": 1, "annotations": {}},
            "spec": spec,
            "status": {},
        }

    @property
    def key(self) -> ObjectKey:
        return ObjectKey(self.kind, NS, NAME)

    def reconcile(self):
        body = copy.deepcopy(self.body)
        body["metadata"]["finalizers"] = self.kube.finalizers.get(NAME, [])
        body["status"] = self.kube.statuses.get(NAME, {})
        return asyncio.run(self.reconciler.reconcile(self.key, body))

    def condition(self, type_: str) -> dict[str, Any]:
        found = cond.find(self.kube.statuses[NAME]["conditions"], type_)
        assert found is not None
        return dict(found)

    def ours(self, **kwargs: Any) -> CloudRecord:
        return CloudRecord(Ownership(UID, NS, NAME, CLUSTER), {"storageGB": 20, "versioning": None}, **kwargs)


def entries(journal, prefix):
    return [e for e in journal if e[0] == prefix]


def test_new_database_stores_password_before_creating():
    """The Secret with the password is written before the cloud create call, and the instance
    gets exactly that password: a crash in between can never lose it."""
    world = World()
    result = world.reconcile()
    order = [e[0] for e in world.journal if e[0] in ("kube:create-secret", "cloud:create")]
    assert order == ["kube:create-secret", "cloud:create"]
    assert world.cloud.records[EXTERNAL].password == world.kube.secret_value(NS, SECRET, "password")
    assert world.kube.finalizers[NAME] == [FINALIZER]
    assert world.condition("Ready")["status"] == "True"
    assert world.condition("Synced")["reason"] == api.RECONCILE_SUCCESS
    assert result.requeue_after is None and result.error is None


@pytest.mark.parametrize("kind", [Kind.DATABASE, Kind.BUCKET])
def test_a_create_that_describes_the_resource_saves_the_second_look(kind):
    """When the create's answer already describes the resource, the pass finishes on it: one
    observe (before the create) instead of two, and the object is Ready all the same."""
    world = World(kind, create_describes=True)
    world.reconcile()
    assert [e[0] for e in world.journal if e[0].startswith("cloud:")] == ["cloud:observe", "cloud:create"]
    assert world.condition("Ready")["status"] == "True"


def test_connection_secret_has_every_key_and_a_driver_ready_uri():
    """The Secret carries host, port, username, password, database, engine and uri, and the uri
    is built from exactly those values."""
    world = World()
    world.reconcile()
    value = lambda key: world.kube.secret_value(NS, SECRET, key)  # noqa: E731
    assert value("host") == f"{EXTERNAL}.db.example" and value("port") == "5432"
    assert value("username") == "kumo" and value("engine") == "postgres" and value("database") == "app"
    assert value("uri") == f"postgresql://kumo:{value('password')}@{EXTERNAL}.db.example:5432/app"
    annotations = world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]
    assert annotations["kumo.dev/password-state"] == "applied"


def test_steady_state_makes_no_kubernetes_writes():
    """A second reconcile of an unchanged, Ready object writes nothing to Kubernetes."""
    world = World()
    world.reconcile()
    before = len(world.kube.writes)
    world.reconcile()
    assert len(world.kube.writes) == before


def test_writes_to_reach_ready():
    """A new Database reaches Ready with finalizer, Secret (password), Secret (connection
    details), status and one Created event: five writes; a Bucket needs four."""
    database, bucket = World(), World(Kind.BUCKET)
    database.reconcile()
    bucket.reconcile()
    assert len(database.kube.writes) == 5, database.kube.writes
    assert len(bucket.kube.writes) == 4, bucket.kube.writes


@pytest.mark.parametrize(
    ("kind", "initial_state", "announced"),
    [
        pytest.param(Kind.BUCKET, "available", False, id="bucket-usable-at-once"),
        pytest.param(Kind.BUCKET, "creating", True, id="bucket-still-provisioning"),
        pytest.param(Kind.DATABASE, "available", True, id="database-with-its-first-password"),
    ],
)
def test_a_create_the_status_already_tells_posts_no_created_event(kind, initial_state, announced):
    """A resource the create's answer shows usable, without a password, reaches Ready in three
    writes (finalizer, Secret, status): the status says when and what was created, so no
    CreatedExternalResource event. One that provisions or takes its first password gets it."""
    world = World(kind, create_describes=True, initial_state=initial_state)
    world.reconcile()
    assert (api.EVENT_CREATED in reasons(world)) is announced
    if not announced:
        assert len(world.kube.writes) == 3, world.kube.writes
        assert world.condition("Ready")["status"] == "True"
        assert world.kube.statuses[NAME]["atProvider"]["externalName"] == EXTERNAL


def test_restart_finds_existing_resource_and_creates_nothing():
    """After a restart the object is reconciled again: the resource is observed, not created,
    and the known password is not reset."""
    world = World()
    world.reconcile()
    world.journal.clear()
    world.reconciler = Reconciler(
        world.kube,
        world.reconciler.providers,
        cluster_id=CLUSTER,  # type: ignore[arg-type]
        controller_namespace="kumo-system",
    )
    world.reconcile()
    assert entries(world.journal, "cloud:create") == []
    assert entries(world.journal, "cloud:set-password") == []


def test_crash_after_create_before_secret_update_resets_nothing_twice():
    """A crash after the create call leaves the password 'pending'; the next reconcile sets it
    on the instance once (idempotent) and marks it applied."""
    world = World()
    world.cloud.failing["observe"] = Retryable("connection reset")
    world.reconcile()  # Secret written with a pending password, then the observe fails
    del world.cloud.failing["observe"]
    world.cloud.records[EXTERNAL] = world.ours(password=world.kube.secret_value(NS, SECRET, "password"))
    world.reconcile()
    assert len(entries(world.journal, "cloud:set-password")) == 1
    assert world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]["kumo.dev/password-state"] == "applied"
    world.reconcile()
    assert len(entries(world.journal, "cloud:set-password")) == 1


def test_provider_that_creates_users_separately_gets_the_password_once_ready():
    """When the create call does not set the password (Cloud SQL), set_password follows once the
    resource is ready, with the password stored before the create."""
    world = World(create_sets_password=False, initial_state="creating")
    world.reconcile()
    assert world.cloud.records[EXTERNAL].password is None
    world.cloud.records[EXTERNAL].state = "available"
    world.reconcile()
    assert world.cloud.records[EXTERNAL].password == world.kube.secret_value(NS, SECRET, "password")
    assert len(entries(world.journal, "cloud:set-password")) == 1


def test_a_password_the_create_set_is_not_sent_again_once_the_instance_is_ready():
    """RDS takes the password in CreateDBInstance and then stays `creating` for minutes: the pass
    that created it records the password as applied, so no later pass resets it."""
    world = World(initial_state="creating")
    world.reconcile()
    assert world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]["kumo.dev/password-state"] == "applied"
    world.cloud.records[EXTERNAL].state = "available"
    world.reconcile()
    assert world.condition("Ready")["status"] == "True"
    assert entries(world.journal, "cloud:set-password") == []


@pytest.mark.parametrize("sets_password", [True, False], ids=["rds-style", "cloudsql-style"])
def test_resource_deleted_out_of_band_is_recreated_with_the_stored_password(sets_password):
    """A resource deleted behind kumo's back is created again under the same name, and the
    password in the Secret (unchanged) works on the new instance."""
    world = World(create_sets_password=sets_password)
    world.reconcile()
    stored = world.kube.secret_value(NS, SECRET, "password")
    world.cloud.records.clear()
    world.reconcile()
    world.reconcile()
    assert world.kube.secret_value(NS, SECRET, "password") == stored
    assert world.cloud.records[EXTERNAL].password == stored
    assert len(entries(world.journal, "cloud:create")) == 2


def test_resource_owned_by_another_object_is_left_alone():
    """Same external name, other owner: no update, no delete, Synced=False naming the owner."""
    world = World()
    world.cloud.records[EXTERNAL] = CloudRecord(Ownership("uid-other", "team-b", "x", CLUSTER), {"storageGB": 99})
    result = world.reconcile()
    assert entries(world.journal, "cloud:update") == [] and entries(world.journal, "cloud:create") == []
    synced = world.condition("Synced")
    assert synced["status"] == "False" and synced["reason"] == api.OWNED_BY_ANOTHER
    assert "team-b/x" in synced["message"]
    assert result.terminal


@pytest.mark.parametrize(("adopt", "adopted"), [("", False), ("true", True)], ids=["refused", "adopted-on-request"])
def test_unowned_resource_is_adopted_only_when_asked(adopt, adopted):
    """An existing resource without kumo tags under a user-chosen spec.externalName is adopted only
    with the adopt annotation; the adopting update writes our ownership tags."""
    world = World()
    world.body["spec"]["externalName"] = "legacy-db"
    world.body["metadata"]["annotations"]["kumo.dev/adopt"] = adopt
    world.cloud.records["legacy-db"] = CloudRecord(None, {"storageGB": 20, "versioning": None})
    world.reconcile()
    owner = world.cloud.records["legacy-db"].owner
    assert (owner is not None and owner.uid == UID) is adopted


def reasons(world):
    return [reason for _, reason, _ in world.kube.events]


def test_own_resource_left_untagged_by_a_crash_is_claimed_and_deleted_not_leaked():
    """A crash between creating a bucket and tagging it leaves an untagged resource under this
    object's derived name: the next pass claims it (tags as drift), and deletion deletes it."""
    world = World(Kind.BUCKET)
    world.cloud.records[EXTERNAL] = CloudRecord(None, {"storageGB": None, "versioning": None})
    world.reconcile()
    assert world.cloud.records[EXTERNAL].owner is not None and world.cloud.records[EXTERNAL].owner.uid == UID
    world.cloud.records[EXTERNAL].owner = None  # and once more untagged, then deleted
    _mark_deleted(world)
    world.reconcile()
    assert EXTERNAL not in world.cloud.records


def test_untagged_resource_under_a_user_chosen_name_still_needs_adoption():
    """With spec.externalName set, an untagged resource may be anybody's: refused without adopt."""
    world = World(Kind.BUCKET)
    world.body["spec"]["externalName"] = "someone-elses-bucket"
    world.cloud.records["someone-elses-bucket"] = CloudRecord(None, {})
    world.reconcile()
    assert world.condition("Synced")["reason"] == api.OWNED_BY_ANOTHER


def test_resource_whose_tags_were_stripped_is_retagged_not_refused():
    """A resource this object managed before, whose ownership tags someone removed, is still
    ours: the tags come back as drift correction instead of an ownership conflict."""
    world = World()
    world.reconcile()
    world.cloud.records[EXTERNAL].owner = None
    world.reconcile()
    assert world.cloud.records[EXTERNAL].owner is not None and world.cloud.records[EXTERNAL].owner.uid == UID
    assert world.condition("Synced")["status"] == "True"


def test_out_of_band_drift_is_corrected_and_announced():
    """Under Correct (the default), a setting changed in the cloud is put back by update(), with
    a DriftDetected warning and a DriftCorrected event, and InSync ends True."""
    world = World()
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    world.reconcile()
    assert entries(world.journal, "cloud:update") == [("cloud:update", EXTERNAL, "storageGB")]
    assert world.cloud.records[EXTERNAL].settings["storageGB"] == 20
    assert reasons(world)[-2:] == ["DriftDetected", "DriftCorrected"]
    world.reconcile()
    assert world.condition("InSync")["status"] == "True"


def test_uncorrectable_drift_is_reported_not_attempted():
    """A disk grown beyond the spec cannot shrink: Correct reports it (InSync False, saying how
    to resolve it) and never calls update for it."""
    world = World()
    world.reconcile()
    record = world.cloud.records[EXTERNAL]
    record.settings["storageGB"] = 50
    world.cloud.grow_only = {"storageGB"}
    world.reconcile()
    assert entries(world.journal, "cloud:update") == []
    in_sync = world.condition("InSync")
    assert in_sync["status"] == "False" and "cannot be put back in place" in in_sync["message"]


def test_paused_object_makes_no_cloud_call_and_says_so():
    """kumo.dev/paused stops every cloud call, deletion included, and Synced says why; removing
    the annotation resumes where it left off."""
    world = World()
    world.reconcile()
    world.body["metadata"]["annotations"]["kumo.dev/paused"] = "true"
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    world.journal.clear()
    world.reconcile()
    _mark_deleted(world)
    world.reconcile()
    assert [e for e in world.journal if e[0].startswith("cloud:")] == []
    assert world.condition("Synced")["reason"] == "Paused" and world.kube.finalizers[NAME] == [FINALIZER]
    del world.body["metadata"]["annotations"]["kumo.dev/paused"]
    world.reconcile()
    assert EXTERNAL not in world.cloud.records and world.kube.finalizers[NAME] == []


def test_observe_only_reads_and_reports_but_never_writes_to_the_cloud():
    """ObserveOnly: an absent resource is reported, not created; an existing one (even owned by
    someone else) is reported Ready with its drift, never updated, tagged, given a password or
    deleted, and no connection Secret is written."""
    world = World()
    world.body["spec"]["managementPolicy"] = "ObserveOnly"
    world.reconcile()
    assert EXTERNAL not in world.cloud.records and world.condition("Ready")["status"] == "False"
    world.cloud.records[EXTERNAL] = CloudRecord(Ownership("uid-other", "b", "x", CLUSTER), {"storageGB": 50})
    world.reconcile()
    assert world.condition("Ready")["status"] == "True" and world.condition("InSync")["reason"] == "Drifted"
    _mark_deleted(world)
    world.reconcile()
    writes = [
        e for e in world.journal if e[0] in ("cloud:create", "cloud:update", "cloud:delete", "cloud:set-password")
    ]
    assert writes == [] and world.kube.secrets == {} and EXTERNAL in world.cloud.records
    assert world.kube.finalizers[NAME] == []


def test_spec_edit_is_an_update_not_drift():
    """A new generation is the user's intent: applied and announced as an update."""
    world = World()
    world.reconcile()
    world.body["spec"]["storageGB"] = 40
    world.body["metadata"]["generation"] = 2
    result = world.reconcile()
    assert world.cloud.records[EXTERNAL].settings["storageGB"] == 40
    assert "UpdatedExternalResource" in reasons(world) and "DriftDetected" not in reasons(world)
    # Applied at once: the same pass looks again and finishes, with no requeue and one status write.
    assert result.requeue_after is None and world.kube.statuses[NAME]["observedGeneration"] == 2
    assert [e[0] for e in world.journal[-4:] if e[0].startswith("cloud:")] == ["cloud:update", "cloud:observe"]


def test_report_policy_reports_drift_once_and_never_touches_the_cloud():
    """Under Report, drift shows in InSync and status.drift with one Warning event, however many
    times it is seen, and the cloud is not changed."""
    world = World()
    world.body["spec"]["driftPolicy"] = "Report"
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    for _ in range(3):
        world.reconcile()
    assert entries(world.journal, "cloud:update") == []
    in_sync = world.condition("InSync")
    assert in_sync["status"] == "False" and in_sync["reason"] == "Drifted" and "storageGB" in in_sync["message"]
    assert world.kube.statuses[NAME]["drift"] == [
        {"field": "storageGB", "desired": 20, "actual": 50, "since": world.kube.statuses[NAME]["drift"][0]["since"]}
    ]
    assert reasons(world).count("DriftDetected") == 1
    assert world.condition("Ready")["status"] == "True"


def test_drift_recorded_as_json_text_by_an_earlier_release_is_rewritten_once_quietly():
    """status.drift values used to be JSON-encoded strings: the same drift found in that form keeps
    its `since`, posts no event, and is rewritten as JSON values once; then nothing is written."""
    world = World()
    world.body["spec"]["driftPolicy"] = "Report"
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    world.reconcile()
    since = "2025-01-02T03:04:05Z"
    world.kube.statuses[NAME]["drift"] = [{"field": "storageGB", "desired": "20", "actual": "50", "since": since}]
    world.reconciler.forget(world.key)  # a new controller: no memory of the events already posted
    events, writes = len(world.kube.events), len(entries(world.journal, "kube:status"))
    world.reconcile()
    assert world.kube.statuses[NAME]["drift"] == [{"field": "storageGB", "desired": 20, "actual": 50, "since": since}]
    assert len(entries(world.journal, "kube:status")) == writes + 1 and len(world.kube.events) == events
    world.reconcile()
    assert len(entries(world.journal, "kube:status")) == writes + 1 and len(world.kube.events) == events


def test_spec_waiting_for_provisioning_is_applied_under_report():
    """While the resource is still being created, observedGeneration does not move; so once it
    is ready, what the spec asks for is applied as intent even under Report (not taken for drift)."""
    world = World(initial_state="creating")
    world.body["spec"]["driftPolicy"] = "Report"
    world.reconcile()
    assert world.kube.statuses[NAME].get("observedGeneration", 0) == 0
    world.cloud.records[EXTERNAL].settings["storageGB"] = 10  # not yet what the spec says
    world.cloud.records[EXTERNAL].state = "available"
    world.reconcile()
    world.reconcile()
    assert world.cloud.records[EXTERNAL].settings["storageGB"] == 20
    assert world.kube.statuses[NAME]["observedGeneration"] == 1


def test_report_policy_still_applies_spec_edits():
    """Report protects the cloud from correction, not from the user's own spec changes."""
    world = World()
    world.body["spec"]["driftPolicy"] = "Report"
    world.reconcile()
    world.body["spec"]["storageGB"] = 40
    world.body["metadata"]["generation"] = 2
    world.reconcile()
    assert world.cloud.records[EXTERNAL].settings["storageGB"] == 40


def test_ignore_policy_does_not_compare():
    """Under Ignore, drift is neither corrected nor reported: InSync is Unknown/Ignored."""
    world = World()
    world.body["spec"]["driftPolicy"] = "Ignore"
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    world.reconcile()
    assert entries(world.journal, "cloud:update") == []
    assert world.condition("InSync")["status"] == "Unknown" and "DriftDetected" not in reasons(world)


@pytest.mark.parametrize(("policy", "recreated"), [("Correct", True), ("Report", False)], ids=["correct", "report"])
def test_resource_deleted_out_of_band(policy, recreated):
    """Correct recreates a resource deleted behind kumo's back; Report marks it Missing and waits."""
    world = World()
    world.body["spec"]["driftPolicy"] = policy
    world.reconcile()
    world.cloud.records.clear()
    world.reconcile()
    assert (EXTERNAL in world.cloud.records) is recreated
    assert "ExternalResourceMissing" in reasons(world)
    if not recreated:
        assert world.condition("InSync")["reason"] == "Missing" and world.condition("Ready")["status"] == "False"


def _sweep(world, observation):
    body = copy.deepcopy(world.body)
    body["metadata"]["finalizers"] = world.kube.finalizers.get(NAME, [])
    body["status"] = world.kube.statuses.get(NAME, {})
    return asyncio.run(world.reconciler.assess_sweep(world.key, body, observation))


def _observe(world):
    client = world.cloud.client(Kind.DATABASE, None)
    resource = __import__("kumo.controller.core.resources", fromlist=["x"]).managed_resource(
        Kind.DATABASE, {**world.body, "metadata": world.body["metadata"]}, CLUSTER
    )
    return asyncio.run(client.observe(resource))


def test_steady_sweep_writes_nothing():
    """A sweep that finds the cloud as it was makes zero Kubernetes writes and asks for no reconcile."""
    world = World()
    world.reconcile()
    writes = len(world.kube.writes)
    assert _sweep(world, _observe(world)) is False
    assert len(world.kube.writes) == writes


@pytest.mark.parametrize(("policy", "reconcile"), [("Correct", True), ("Report", False)], ids=["correct", "report"])
def test_sweep_reports_drift_and_asks_for_correction_only_under_correct(policy, reconcile):
    """A sweep that sees drift writes InSync=False with the fields and one event; under Correct
    it asks for a reconcile to put it back."""
    world = World()
    world.body["spec"]["driftPolicy"] = policy
    world.reconcile()
    world.cloud.records[EXTERNAL].settings["storageGB"] = 50
    assert _sweep(world, _observe(world)) is reconcile
    assert world.condition("InSync")["status"] == "False"
    assert _sweep(world, _observe(world)) is reconcile
    assert reasons(world).count("DriftDetected") == 1


def test_provisioning_resource_reports_creating_and_polls_with_growing_delay():
    """While the cloud says 'creating', Ready=False/Creating and the key is requeued with a
    delay that grows (no thread sleeps per instance)."""
    world = World(initial_state="creating")
    first = world.reconcile()
    second = world.reconcile()
    assert world.condition("Ready")["reason"] == api.CREATING
    assert first.requeue_after is not None and second.requeue_after is not None
    assert second.requeue_after > first.requeue_after
    world.cloud.records[EXTERNAL].state = "available"
    assert world.reconcile().requeue_after is None
    assert world.condition("Ready")["status"] == "True"


def test_deleted_secret_is_recreated_with_a_new_password_set_on_the_instance():
    """If the Secret disappears, the password is no longer known: a new one is generated,
    stored, and set on the instance."""
    world = World()
    world.reconcile()
    old = world.kube.secret_value(NS, SECRET, "password")
    world.kube.secrets.clear()
    world.reconcile()
    new = world.kube.secret_value(NS, SECRET, "password")
    assert new != old and world.cloud.records[EXTERNAL].password == new


def test_rotation_annotation_rotates_the_password_once():
    """A new value of kumo.dev/rotate-password sets a new password once; the same value again
    changes nothing."""
    world = World()
    world.reconcile()
    old = world.kube.secret_value(NS, SECRET, "password")
    world.body["metadata"]["annotations"]["kumo.dev/rotate-password"] = "2026-11-22"
    world.reconcile()
    new = world.kube.secret_value(NS, SECRET, "password")
    assert new != old and world.cloud.records[EXTERNAL].password == new
    world.reconcile()
    assert world.kube.secret_value(NS, SECRET, "password") == new
    assert len(entries(world.journal, "cloud:set-password")) == 1


def test_foreign_secret_with_the_same_name_blocks_creation():
    """A Secret of that name not owned by this object is never overwritten, and nothing is
    created in the cloud."""
    world = World()
    world.kube.secrets[(NS, SECRET)] = secret_body({"metadata": {"name": SECRET}, "data": {"password": "c2VjcmV0"}})
    world.reconcile()
    assert entries(world.journal, "cloud:create") == []
    assert "writeConnectionSecretToRef" in world.condition("Synced")["message"]


def test_rotation_succeeds_in_one_pass():
    """The final Secret write is guarded by the version the password step wrote, not the one
    read before it (which made every rotation fail once with 409 and succeed on the retry)."""
    world = World()
    world.reconcile()
    world.body["metadata"]["annotations"]["kumo.dev/rotate-password"] = "2026-11-28"
    result = world.reconcile()
    assert result.error is None and world.condition("Synced")["status"] == "True"
    assert world.cloud.records[EXTERNAL].password == world.kube.secret_value(NS, SECRET, "password")


ROTATE = "kumo.dev/rotate-password"
PENDING_KEY = "pending-password"


def _published(world: World) -> tuple[str, str]:
    """The Secret's `password` and the password inside its `uri`."""
    value = lambda key: world.kube.secret_value(NS, SECRET, key)  # noqa: E731
    return value("password"), value("uri").split("://kumo:", 1)[1].split("@", 1)[0]


def _assert_one_working_credential(world: World) -> None:
    """What an app reads is one credential, and the instance takes it now."""
    password, in_uri = _published(world)
    assert password == in_uri, "password and uri describe different credentials"
    assert world.cloud.records[EXTERNAL].password == password, "the Secret is ahead of (or behind) the cloud"


def _restarted(world: World) -> None:
    """A new controller process: nothing kept in memory survives."""
    world.reconciler = Reconciler(
        world.kube,  # type: ignore[arg-type]
        ProviderRegistry(providers={"fake": world.cloud}),  # type: ignore[dict-item]
        cluster_id=CLUSTER,
        controller_namespace="kumo-system",
    )


def test_rotation_waits_for_the_cloud_then_publishes_password_and_uri_together():
    """RDS applies a new master password minutes after accepting it: meanwhile the Secret keeps
    the old, working credential (the new one only under pending-password), the object waits in
    Synced=ReconcilePending with Ready still True, and the password is sent once; when the cloud
    has applied it, password and uri switch in one write that drops pending-password."""
    world = World(password_reset_later=True)
    world.reconcile()
    old = world.kube.secret_value(NS, SECRET, "password")
    world.body["metadata"]["annotations"][ROTATE] = "r1"
    for _ in range(3):
        result = world.reconcile()
        assert result.error is None and result.requeue_after is not None
        _assert_one_working_credential(world)
        assert _published(world)[0] == old
    staged = world.kube.secret_value(NS, SECRET, PENDING_KEY)
    assert world.cloud.records[EXTERNAL].pending_password == staged != old
    assert world.condition("Synced")["reason"] == api.RECONCILE_PENDING
    assert world.condition("Ready")["status"] == "True"
    assert len(entries(world.journal, "cloud:set-password")) == 1
    world.cloud.finish_password_reset(EXTERNAL)
    writes = len(world.kube.writes)
    assert world.reconcile().error is None
    _assert_one_working_credential(world)
    assert _published(world)[0] == staged
    assert PENDING_KEY not in world.kube.secrets[(NS, SECRET)]["data"]
    assert len(world.kube.writes) - writes == 3  # the Secret, once; status; the PasswordSet event
    assert world.condition("Synced")["reason"] == api.RECONCILE_SUCCESS and "PasswordSet" in reasons(world)


@pytest.mark.parametrize("reset_later", [False, True], ids=["cloud-sql-style", "rds-style"])
def test_a_crash_after_the_write_ahead_loses_no_password(reset_later):
    """The new password is stored, then the controller dies before the cloud call: the Secret
    still holds one working credential, and a restarted controller sets the staged password
    and publishes it."""
    world = World(password_reset_later=reset_later)
    world.reconcile()
    world.body["metadata"]["annotations"][ROTATE] = "r1"
    world.cloud.failing["set_password"] = RuntimeError("killed")
    world.reconcile()
    staged = world.kube.secret_value(NS, SECRET, PENDING_KEY)
    _assert_one_working_credential(world)
    del world.cloud.failing["set_password"]
    _restarted(world)
    world.reconcile()
    world.cloud.finish_password_reset(EXTERNAL)
    world.reconcile()
    _assert_one_working_credential(world)
    assert _published(world)[0] == staged


def test_a_crash_while_the_cloud_applies_sends_the_password_again_and_publishes():
    """Killed after the cloud accepted the new password (RDS holds it pending): the restarted
    controller knows nothing of that call, sends the staged password again (idempotent) and
    publishes once the cloud has applied it; the Secret never moved ahead of the cloud."""
    world = World(password_reset_later=True)
    world.reconcile()
    world.body["metadata"]["annotations"][ROTATE] = "r1"
    world.reconcile()
    staged = world.kube.secret_value(NS, SECRET, PENDING_KEY)
    _restarted(world)
    world.reconcile()
    _assert_one_working_credential(world)
    assert len(entries(world.journal, "cloud:set-password")) == 2
    world.cloud.finish_password_reset(EXTERNAL)
    world.reconcile()
    _assert_one_working_credential(world)
    assert _published(world)[0] == staged


def test_a_crash_before_the_publish_finishes_the_rotation_after_a_restart():
    """The cloud applied the new password but the controller died before the Secret write: the
    staged password is still in the Secret, so the restart sets it again and publishes it."""
    world = World()
    world.reconcile()
    world.body["metadata"]["annotations"][ROTATE] = "r1"
    replace = world.kube.replace_secret
    calls = 0

    async def dies_on_the_publish(namespace, name, body):
        nonlocal calls
        calls += 1
        if calls == 2:  # the write-ahead went through; the publish does not
            raise RuntimeError("killed")
        return await replace(namespace, name, body)

    world.kube.replace_secret = dies_on_the_publish  # type: ignore[method-assign]
    world.reconcile()
    staged = world.kube.secret_value(NS, SECRET, PENDING_KEY)
    assert world.cloud.records[EXTERNAL].password == staged  # the Secret is behind, and keeps it
    world.kube.replace_secret = replace  # type: ignore[method-assign]
    _restarted(world)
    world.reconcile()
    _assert_one_working_credential(world)
    assert _published(world)[0] == staged


def test_a_rotation_asked_for_during_another_starts_after_it():
    """A second rotation request while the first is being applied does not drop the staged
    password (the cloud may hold it already): the first is published, then the second runs."""
    world = World(password_reset_later=True)
    world.reconcile()
    world.body["metadata"]["annotations"][ROTATE] = "r1"
    world.reconcile()
    first = world.kube.secret_value(NS, SECRET, PENDING_KEY)
    world.body["metadata"]["annotations"][ROTATE] = "r2"
    world.reconcile()
    assert world.kube.secret_value(NS, SECRET, PENDING_KEY) == first
    world.cloud.finish_password_reset(EXTERNAL)
    assert world.reconcile().requeue_after is not None  # published r1; r2 comes next
    assert _published(world)[0] == first
    world.reconcile()
    second = world.kube.secret_value(NS, SECRET, PENDING_KEY)
    world.cloud.finish_password_reset(EXTERNAL)
    world.reconcile()
    _assert_one_working_credential(world)
    assert _published(world)[0] == second != first
    assert world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]["kumo.dev/rotation"] == "r2"


def test_a_deleted_secret_waits_for_the_cloud_before_it_gets_a_uri():
    """A recreated Secret gets a new password at once (nothing to keep), but its uri only once
    the cloud has applied that password."""
    world = World(password_reset_later=True)
    world.reconcile()
    world.kube.secrets.clear()
    world.reconcile()
    assert "uri" not in world.kube.secrets[(NS, SECRET)]["data"]
    world.cloud.finish_password_reset(EXTERNAL)
    world.reconcile()
    _assert_one_working_credential(world)


def _edit_password(world: World, value: str) -> None:
    secret = world.kube.secrets[(NS, SECRET)]
    secret["data"]["password"] = base64.b64encode(value.encode()).decode()


def test_password_edited_in_the_secret_is_set_on_the_instance_and_in_the_uri():
    """The Secret is the truth for the password: a value a user wrote there is set on the
    instance like a rotation, and the uri follows, in the next pass."""
    world = World()
    world.reconcile()
    _edit_password(world, "Edited-by-a-user-1")
    world.reconcile()
    assert world.cloud.records[EXTERNAL].password == "Edited-by-a-user-1"
    assert "Edited-by-a-user-1" in world.kube.secret_value(NS, SECRET, "uri")
    assert world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]["kumo.dev/password-state"] == "applied"
    world.reconcile()
    assert len(entries(world.journal, "cloud:set-password")) == 1  # once, not on every pass


def test_secret_written_before_digests_is_not_mistaken_for_an_edit():
    """A Secret an older kumo wrote has no digest: its password is kumo's, nothing is reset."""
    world = World()
    world.reconcile()
    del world.kube.secrets[(NS, SECRET)]["metadata"]["annotations"]["kumo.dev/password-digest"]
    world.reconcile()
    assert entries(world.journal, "cloud:set-password") == []


def test_bucket_with_a_taken_secret_name_creates_nothing():
    """A Bucket checks its Secret before the create: a name held by someone else must not leave
    a cloud bucket behind that it can never publish."""
    world = World(Kind.BUCKET)
    taken = f"{NAME}-bucket"
    world.kube.secrets[(NS, taken)] = secret_body({"metadata": {"name": taken}, "data": {}})
    world.reconcile()
    assert entries(world.journal, "cloud:create") == []
    assert "not owned" in world.condition("Synced")["message"]


def test_bucket_defaults_to_its_own_secret_and_records_it():
    """`<name>-bucket`, never a Database's `<name>-connection`; the name is kept in status."""
    world = World(Kind.BUCKET)
    world.reconcile()
    assert (NS, f"{NAME}-bucket") in world.kube.secrets and (NS, SECRET) not in world.kube.secrets
    assert world.kube.statuses[NAME]["connectionSecret"] == f"{NAME}-bucket"


def test_bucket_that_published_under_the_old_default_keeps_its_secret():
    """A Bucket created before the per-kind defaults (status.atProvider, no recorded Secret name)
    keeps writing `<name>-connection`, and records it, so no app loses its Secret."""
    world = World(Kind.BUCKET)
    world.reconcile()
    old = world.kube.secrets.pop((NS, f"{NAME}-bucket"))
    old["metadata"]["name"] = SECRET
    world.kube.secrets[(NS, SECRET)] = old
    del world.kube.statuses[NAME]["connectionSecret"]
    world.reconcile()
    assert (NS, f"{NAME}-bucket") not in world.kube.secrets
    assert world.kube.statuses[NAME]["connectionSecret"] == SECRET


def test_kubernetes_refusal_nobody_foresaw_shows_in_synced_and_an_event():
    """A 403 the controller has no rule for (an exhausted Secret quota) used to escape the
    reconcile into the log only; it is Synced=False with the API server's message, retried."""
    world = World()

    async def refused(namespace, body):
        raise KubeError("Kubernetes API 403 Forbidden: secrets is forbidden: exceeded quota")

    world.kube.create_secret = refused  # type: ignore[method-assign]
    result = world.reconcile()
    assert world.condition("Synced")["status"] == "False" and "403 Forbidden" in world.condition("Synced")["message"]
    # named after the step that met it: storing the password before the create
    assert [e for e in world.kube.events if e[1] == api.EVENT_CANNOT_PUBLISH]
    assert result.error is not None and not result.terminal
    assert entries(world.journal, "cloud:create") == []


def test_a_bug_shows_in_synced_with_its_type():
    """An exception no step expects (here from a provider's observe) is still the user's to see."""
    world = World()
    world.cloud.failing["observe"] = KeyError("instanceArn")
    world.reconcile()
    message = world.condition("Synced")["message"]
    assert message.startswith("cannot observe external resource: unexpected error: KeyError")
    assert "instanceArn" in message


def test_object_deleted_mid_reconcile_is_a_retry_not_a_failure():
    """404 on the status write (the object was deleted meanwhile): no exception escapes."""
    world = World()

    async def gone(key, status, resource_version=None):
        raise NotFound("Kubernetes API 404 Not Found: databases 'orders' not found")

    world.kube.patch_status = gone  # type: ignore[method-assign]
    result = world.reconcile()
    assert result.error is None


def test_invalid_spec_is_reported_without_any_cloud_call():
    """Values only the provider can judge are reported in Synced; no cloud call is made."""
    world = World()
    world.cloud.problems.append("spec.instanceClass: 'db.bogus' is not a known class")
    result = world.reconcile()
    assert [e for e in world.journal if e[0].startswith("cloud:")] == []
    assert world.condition("Synced")["reason"] == api.INVALID_SPEC
    assert "spec.instanceClass" in world.condition("Synced")["message"] and result.terminal


@pytest.mark.parametrize(
    ("error", "terminal"),
    [(Retryable("Throttling: Rate exceeded"), False), (Terminal("InvalidParameterValue: bad class"), True)],
    ids=["retryable-backs-off", "terminal-retries-slowly"],
)
def test_cloud_errors_are_reported_once_and_classified(error, terminal):
    """Cloud errors land in Synced with the failed step and the cloud's message; repeated retries
    post one event, whose reason names the step."""
    world = World()
    world.cloud.failing["create"] = error
    results = [world.reconcile(), world.reconcile()]
    assert all(r.error is error and r.terminal is terminal for r in results)
    assert str(error) in world.condition("Synced")["message"]
    assert world.condition("Synced")["message"] == f"cannot create external resource: {error}"
    assert [r for _, r, _ in world.kube.events if r.startswith("Cannot")] == [api.EVENT_CANNOT_CREATE]


def test_cloud_still_busy_is_polled_not_counted_as_an_error():
    """NotReady (an operation still running) requeues at the polling pace, keeps Synced True and
    posts no error event, however often it happens."""
    world = World()
    world.cloud.failing["create"] = NotReady("operation CREATE_USER on x is still running")
    results = [world.reconcile() for _ in range(4)]
    assert all(r.error is None and r.requeue_after is not None for r in results)
    assert max(r.requeue_after for r in results) <= world.reconciler.timing.poll_max
    assert "ReconcileError" not in reasons(world)


def test_missing_provider_config_names_the_field():
    """A reference to a missing ProviderConfig says so in Synced and calls no cloud."""
    world = World()
    world.body["spec"]["providerConfigRef"] = {"kind": "ProviderConfig", "name": "nope"}
    world.reconcile()
    message = world.condition("Synced")["message"]
    assert "spec.providerConfigRef" in message and "nope" in message
    assert [e for e in world.journal if e[0].startswith("cloud:")] == []


def _mark_deleted(world: World, policy: str = "Delete") -> None:
    world.body["metadata"]["deletionTimestamp"] = "2026-11-22T00:00:00Z"
    world.body["spec"]["deletionPolicy"] = policy


def test_delete_waits_until_gone_then_releases_the_finalizer_and_the_secret():
    """Delete policy: the cloud delete is started, the object shows Deleting until the resource
    is gone, then the Secret is deleted and the finalizer released."""
    world = World(slow_delete=True)
    world.reconcile()
    _mark_deleted(world)
    first = world.reconcile()
    assert world.condition("Ready")["reason"] == api.DELETING and first.requeue_after
    assert world.kube.finalizers[NAME] == [FINALIZER]
    world.reconcile()
    assert EXTERNAL not in world.cloud.records
    assert world.kube.finalizers[NAME] == [] and (NS, SECRET) not in world.kube.secrets


def test_retain_keeps_the_cloud_resource():
    """Retain policy: no cloud delete; the finalizer is released with a Retained event."""
    world = World()
    world.reconcile()
    _mark_deleted(world, "Retain")
    world.reconcile()
    assert EXTERNAL in world.cloud.records and entries(world.journal, "cloud:delete") == []
    assert world.kube.finalizers[NAME] == []
    assert any(reason == "RetainedExternalResource" for _, reason, _ in world.kube.events)


def test_resource_already_gone_never_blocks_deletion():
    """If the cloud resource vanished already, deletion completes without a delete call."""
    world = World()
    world.reconcile()
    world.cloud.records.clear()
    _mark_deleted(world)
    world.reconcile()
    assert entries(world.journal, "cloud:delete") == [] and world.kube.finalizers[NAME] == []


def test_deletion_never_touches_a_resource_owned_by_someone_else():
    """Deleting an object whose external name is owned by another object deletes nothing."""
    world = World()
    world.kube.finalizers[NAME] = [FINALIZER]
    world.cloud.records[EXTERNAL] = CloudRecord(Ownership("uid-other", "team-b", "x", CLUSTER), {})
    _mark_deleted(world)
    world.reconcile()
    assert EXTERNAL in world.cloud.records and world.kube.finalizers[NAME] == []


class WithoutPasswords:
    """A plugin's Database client with every verb but `set_password`."""

    def __init__(self, inner: FakeCloudClient) -> None:
        self.desired, self.observe, self.observe_many = inner.desired, inner.observe, inner.observe_many
        self.create, self.update, self.delete = inner.create, inner.update, inner.delete


def plugin_without_passwords(world: World) -> None:
    world.cloud.client = lambda kind, settings, hooks=None: WithoutPasswords(FakeCloudClient(world.cloud))  # type: ignore[method-assign]


def test_a_plugin_that_cannot_set_passwords_is_refused_before_any_cloud_call():
    """Its client is refused when connected: no Secret, no finalizer, nothing created in the cloud
    (the check used to come after the create), and Synced names the missing capability."""
    world = World()
    plugin_without_passwords(world)
    result = world.reconcile()
    assert [e for e in world.journal if e[0].startswith("cloud:")] == []
    assert entries(world.journal, "kube:create-secret") == [] and world.kube.finalizers.get(NAME, []) == []
    assert "cannot set database passwords" in world.condition("Synced")["message"] and result.terminal


def test_a_database_of_a_plugin_that_cannot_set_passwords_can_still_be_deleted():
    """An instance such a plugin created before the check moved is deleted and its finalizer
    released: deleting needs no password."""
    world = World()
    world.reconcile()
    plugin_without_passwords(world)
    _mark_deleted(world)
    world.reconcile()
    assert entries(world.journal, "cloud:delete") and EXTERNAL not in world.cloud.records
    assert world.kube.finalizers[NAME] == []
