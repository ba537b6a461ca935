"""The controller's pure parts: the work queue, external names, Secrets data, plugin discovery,
conditions and the event filter."""

from __future__ import annotations

import asyncio
import re
from importlib.metadata import EntryPoint
from urllib.parse import unquote, urlparse

import pytest
from kumo.controller.core import conditions as cond
from kumo.controller.core.connection import PASSWORD_ALPHABET, database_data, database_uri, generate_password
from kumo.controller.core.resources import derived_external_name
from kumo.controller.runtime.memory import EventOnlyMemories
from kumo.controller.runtime.operator import fingerprint
from kumo.controller.runtime.workqueue import Backoff, WorkQueue
from kumo.providers.base import FieldDrift, Unavailable, diff_settings
from kumo.providers.registry import ProviderRegistry

from kumo import api

# ---------------------------------------------------------------------- work queue


def test_queue_collapses_a_burst_of_adds_into_one_item():
    """Ten events for one object before a worker gets to it mean one reconcile."""

    async def scenario() -> int:
        queue: WorkQueue[str] = WorkQueue()
        for _ in range(10):
            queue.add("a")
        return len(queue)

    assert asyncio.run(scenario()) == 1


def test_key_added_while_processing_is_requeued_after_done_not_run_twice_at_once():
    """An object is never reconciled by two workers at once; a change during processing is not lost."""

    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        queue.add("a")
        key = await queue.get()
        queue.add("a")  # arrives while "a" is being processed
        assert len(queue) == 0
        queue.done(key)
        return [await asyncio.wait_for(queue.get(), 1)]

    assert asyncio.run(scenario()) == ["a"]


def test_timed_requeues_go_ahead_of_fresh_keys_and_each_lane_stays_in_order():
    """A resource that is provisioning (or retrying) is looked at again before a burst of new
    objects queued meanwhile, so work already begun finishes first."""

    async def scenario() -> list[str]:
        queue: WorkQueue[str] = WorkQueue()
        for key in ("new-1", "new-2"):
            queue.add(key)
        queue.add_after("provisioning-1", 0.01)
        queue.add_after("provisioning-2", 0.02)
        await asyncio.sleep(0.05)
        queue.add("new-3")
        return [await queue.get() for _ in range(5)]

    assert asyncio.run(scenario()) == ["provisioning-1", "provisioning-2", "new-1", "new-2", "new-3"]


def test_delayed_add_keeps_only_the_earliest_deadline():
    """Requeues never pile up timers: a later deadline for a pending key is ignored."""

    async def scenario() -> float:
        queue: WorkQueue[str] = WorkQueue()
        loop = asyncio.get_running_loop()
        start = loop.time()
        queue.add_after("a", 0.05)
        queue.add_after("a", 10)
        await asyncio.wait_for(queue.get(), 1)
        return loop.time() - start

    assert asyncio.run(scenario()) < 1


@pytest.mark.parametrize(
    ("failures", "low", "high"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (5, 8.0, 16.0), (30, 150.0, 300.0)],
    ids=["first", "second", "fifth", "capped"],
)
def test_backoff_grows_exponentially_with_jitter_and_a_cap(failures, low, high):
    """Retries after failures wait base*2^(n-1) times a jitter in [0.5, 1], never more than the cap."""
    delays = [Backoff(base=1.0, cap=300.0).delay(failures) for _ in range(200)]
    assert all(low <= d <= high for d in delays)
    assert len({round(d, 6) for d in delays}) > 1, "jitter spreads retries"


# ---------------------------------------------------------------------- external names


@pytest.mark.parametrize(
    ("namespace", "name"),
    [
        ("team-a", "orders"),
        ("9lives", "db"),
        ("a" * 60, "b" * 60),
        ("ns", "dotted.name.v2"),
    ],
    ids=["plain", "digit-first-namespace", "very-long", "dots-in-name"],
)
def test_external_names_are_valid_everywhere_and_deterministic(namespace, name):
    """Derived names satisfy the strictest cloud rules (RDS identifiers, bucket names) and do not
    change between calls, so a retry finds what an earlier attempt created."""
    first = derived_external_name(namespace, name, "cluster-1")
    assert first == derived_external_name(namespace, name, "cluster-1")
    assert re.fullmatch(r"[a-z][a-z0-9-]{1,61}[a-z0-9]", first) and "--" not in first


def test_external_names_differ_across_clusters_and_objects():
    """Two clusters sharing one account, or two objects, never get the same name."""
    names = {
        derived_external_name("ns", "db", "cluster-1"),
        derived_external_name("ns", "db", "cluster-2"),
        derived_external_name("ns", "db2", "cluster-1"),
        derived_external_name("ns-db", "x", "cluster-1"),
    }
    assert len(names) == 4


# ---------------------------------------------------------------------- connection Secrets


def test_generated_passwords_are_long_random_and_safe_for_every_engine():
    """32 characters from letters, digits, '-' and '_', starting with a letter, never repeated."""
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    assert all(len(p) == 32 and p[0].isalpha() and set(p) <= set(PASSWORD_ALPHABET) for p in passwords)


@pytest.mark.parametrize(
    ("engine", "user", "password", "scheme"),
    [("postgres", "kumo", "p@ss:w/rd?#", "postgresql"), ("mysql", "app user", "x%y", "mysql")],
    ids=["postgres-with-reserved-characters", "mysql-with-space-and-percent"],
)
def test_uri_escapes_credentials_so_drivers_parse_them_back(engine, user, password, scheme):
    """The uri round-trips user and password through a URL parser exactly."""
    parsed = urlparse(database_uri(engine, user, password, "db.example", "5432", "app"))
    assert parsed.scheme == scheme and parsed.hostname == "db.example" and parsed.port == 5432
    assert unquote(parsed.username or "") == user and unquote(parsed.password or "") == password
    assert parsed.path == "/app"


def test_database_secret_data_has_every_key():
    """Provider connection details plus the stored password give all seven keys."""
    data = database_data({"host": "h", "port": "3306", "engine": "mysql"}, "kumo", "pw")
    assert set(data) == {"host", "port", "username", "password", "database", "engine", "uri"}
    assert data["uri"] == "mysql://kumo:pw@h:3306"


# ---------------------------------------------------------------------- drift comparison


def test_diff_ignores_tags_someone_else_added_but_sees_ours_changed():
    """Mappings are compared on desired keys only: foreign tags are not drift, changed ours are."""
    desired = {"storageGB": 20, "tags": {"team": "a"}}
    assert diff_settings(desired, {"storageGB": 20, "tags": {"team": "a", "cost-center": "x"}}) == ()
    assert diff_settings(desired, {"storageGB": 30, "tags": {"team": "b"}}) == (
        FieldDrift("storageGB", 20, 30),
        FieldDrift("tags", {"team": "a"}, {"team": "b"}),
    )


# ---------------------------------------------------------------------- plugin discovery


def _point(name: str, value: str) -> EntryPoint:
    return EntryPoint(name=name, value=value, group="kumo.providers")


def test_broken_plugin_is_reported_and_skipped_not_fatal():
    """A provider whose import fails is listed as unavailable with the reason; others still load,
    and asking for the broken one raises a clear Unavailable error."""
    registry = ProviderRegistry.discover(
        [_point("aws", "kumo.providers.aws:AWSProvider"), _point("broken", "kumo_no_such_module:Provider")]
    )
    assert "aws" in registry.providers
    assert "ModuleNotFoundError" in registry.unavailable["broken"]
    with pytest.raises(Unavailable, match="failed to load"):
        registry.get("broken")
    with pytest.raises(Unavailable, match="no provider named 'azure'"):
        registry.get("azure")


def test_lazy_discovery_imports_a_plugin_only_when_first_asked_for():
    """The controller's registry imports no plugin at start: one never asked for (a cloud nobody
    configured) stays unimported, a broken one is reported at its first use."""
    registry = ProviderRegistry.discover(
        [_point("aws", "kumo.providers.aws:AWSProvider"), _point("broken", "kumo_no_such_module:Provider")], lazy=True
    )
    assert registry.providers == {} and set(registry.pending) == {"aws", "broken"}
    assert registry.get("aws").name == "aws"
    assert set(registry.providers) == {"aws"} and "broken" not in registry.unavailable
    with pytest.raises(Unavailable, match="failed to load"):
        registry.get("broken")
    with pytest.raises(Unavailable, match="no provider named 'azure'"):
        registry.get("azure")


def test_builtin_providers_register_through_the_entry_point_group():
    """The built-in aws provider is found through `kumo.providers`, like any third-party one."""
    assert "aws" in ProviderRegistry.discover().providers


# ---------------------------------------------------------------------- conditions and events


def test_condition_transition_time_moves_only_when_status_flips():
    """Re-deriving the same condition keeps lastTransitionTime, so status is unchanged and not written."""
    first = cond.merge([], [cond.Condition(api.READY, False, api.CREATING)], 1)
    first[0]["lastTransitionTime"] = "2000-01-01T00:00:00Z"
    same = cond.merge(first, [cond.Condition(api.READY, False, api.CREATING, "still")], 1)
    flipped = cond.merge(first, [cond.Condition(api.READY, True, api.AVAILABLE)], 2)
    assert same[0]["lastTransitionTime"] == "2000-01-01T00:00:00Z"
    assert flipped[0]["lastTransitionTime"] != "2000-01-01T00:00:00Z" and flipped[0]["observedGeneration"] == 2


def _body(generation=1, annotations=None, status=None, deleting=False):
    meta = {"uid": "u", "generation": generation, "annotations": annotations or {}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": status or {}}


@pytest.mark.parametrize(
    ("after", "reconcile"),
    [
        (_body(status={"conditions": [{"type": "Ready"}]}), False),
        (_body(generation=2), True),
        (_body(deleting=True), True),
        (_body(annotations={"kumo.dev/rotate-password": "now"}), True),
        (_body(annotations={"unrelated": "x"}), False),
    ],
    ids=["own-status-write", "spec-edit", "deletion", "rotation-request", "unrelated-annotation"],
)
def test_only_events_worth_a_reconcile_enqueue_the_object(after, reconcile):
    """Our own status writes come back as watch events and must not trigger another reconcile;
    spec edits, deletion and kumo annotations must."""
    assert (fingerprint(after) != fingerprint(_body())) is reconcile


def test_kopf_keeps_no_record_of_each_watched_object():
    """kopf's memories otherwise hold a record per object and per Secret for as long as they
    exist; kumo's on.event handlers use none of it. Each event still gets one to work with."""
    memories = EventOnlyMemories()
    bodies = [{"metadata": {"uid": f"uid-{i}", "name": f"b{i}", "namespace": "team"}} for i in range(3)]

    async def recall_each() -> list[object]:
        return [await memories.recall(body, noticed_by_listing=True) for body in bodies]

    records = asyncio.run(recall_each())
    assert all(record is not None for record in records)
    assert list(memories.iter_all_memories()) == []
