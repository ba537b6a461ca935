"""kumo against a Cloud SQL as strict as the real one, through the real API server.

The bed's Cloud SQL emulator answers as Google does where controllers break: 409
operationInProgress while another operation runs on the instance, 403 for an instance name the
project never had, maintenance / suspension / failure states, and the edition rules of PostgreSQL
16+. Each scenario drives a Database object and checks what its user sees: conditions, events and
the instance in the emulator. The states and "someone else's" operations are injected through the
emulator's test-only admin endpoint (docs/cloudsql-emulator.md).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest

from .conftest import Kumo, condition, example, unique

pytestmark = pytest.mark.e2e
TARGET_CLOUDS = ("gcp",)  # Cloud SQL only

FAST_SWEEP = {"kumo.dev/sweep-interval": "2s"}  # the sweeper honours a per-object interval
BUSY = "another operation"  # in the message kumo shows while Cloud SQL is busy


class Emulator:
    """The bed's Cloud SQL emulator, spoken to over HTTP as a test would poke a real project."""

    def __init__(self, env: dict[str, Any]) -> None:
        self.endpoint = env["gcp"]["sqladmin_endpoint"].rstrip("/")
        self.project = env["gcp"]["project"]

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.endpoint + path, data=data, method=method)  # noqa: S310 - loopback
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return dict(json.loads(response.read()))

    def instance(self, name: str) -> dict[str, Any]:
        """instances.get with enum names, as gcloud reads it."""
        return self._call("GET", f"/sql/v1beta4/projects/{self.project}/instances/{name}")

    def hold(self, name: str) -> str:
        """Start an operation Cloud SQL runs on its own (an automated backup) that keeps the
        instance busy until `release`; returns its name."""
        path = f"/_emulator/projects/{self.project}/instances/{name}/operations"
        return str(self._call("POST", path, {"operationType": "BACKUP_VOLUME", "seconds": 120})["name"])

    def release(self, operation: str) -> None:
        self._call("POST", f"/_emulator/projects/{self.project}/operations/{operation}/finish", {})

    def set_state(self, name: str, state: str, reasons: list[str] | None = None, error: str = "") -> None:
        body: dict[str, Any] = {"state": state, **({"suspensionReason": reasons} if reasons else {})}
        if error:
            body["error"] = error  # the error of the operation that left the instance FAILED
        self._call("POST", f"/_emulator/projects/{self.project}/instances/{name}/state", body)

    def response_problems(self) -> list[str]:
        return list(self._call("GET", "/_emulator/response-problems")["problems"])


@pytest.fixture
def emulator(testbed) -> Emulator:
    return Emulator(testbed.env)


def ready_database(kumo: Kumo, **spec: Any) -> tuple[str, str]:
    name = unique("db")
    manifest = example("gcp", "Database", name)
    manifest["metadata"]["annotations"] = dict(FAST_SWEEP)
    manifest["spec"].update(spec)
    kumo.create(manifest)
    obj = kumo.wait_ready("Database", name, timeout=90)
    return name, obj["status"]["atProvider"]["externalName"]


def warnings(kumo: Kumo, name: str) -> list[str]:
    return [f"{e.reason}: {e.message}" for e in kumo.events(name) if e.type == "Warning"]


def synced(kumo: Kumo, name: str) -> dict[str, Any]:
    obj = kumo.get("Database", name)
    return (condition(obj, "Synced") if obj else None) or {}


def busy_synced(kumo: Kumo, name: str) -> dict[str, Any] | None:
    """The Synced condition once it tells of the wait for Cloud SQL's other operation."""
    found = synced(kumo, name)
    return found if BUSY in found.get("message", "") else None


# --- one operation at a time ----------------------------------------------------------------


def test_a_change_while_cloud_sql_is_busy_waits_quietly_then_lands(
    kumo: Kumo, emulator: Emulator, provider_config: str
) -> None:
    """A size and storage change sent while Cloud SQL runs another operation (an automated backup)
    gets 409 operationInProgress: kumo shows the wait in Synced (ReconcilePending, no warning
    event, Ready stays True) and applies the change once the operation ends."""
    name, external = ready_database(kumo)
    operation = emulator.hold(external)

    kumo.patch("Database", name, {"spec": {"size": "medium", "storageGB": 30}})
    waiting = kumo.wait_for("the wait in Synced", lambda: busy_synced(kumo, name))
    ready = condition(kumo.get("Database", name) or {}, "Ready") or {}
    emulator.release(operation)

    assert (waiting["status"], waiting["reason"]) == ("True", "ReconcilePending")
    assert ready["status"] == "True"
    kumo.wait_for(
        "the new tier in Cloud SQL",
        lambda: (
            emulator.instance(external)["settings"]["tier"] == "db-custom-2-7680"
            and emulator.instance(external)["settings"]["dataDiskSizeGb"] == "30"
        ),
        timeout=90,
    )
    kumo.wait_for("Synced=ReconcileSuccess", lambda: synced(kumo, name).get("reason") == "ReconcileSuccess")
    assert warnings(kumo, name) == []
    assert emulator.response_problems() == []


def test_a_delete_while_cloud_sql_is_busy_waits_then_removes_the_instance(
    kumo: Kumo, emulator: Emulator, provider_config: str, probe
) -> None:
    """Deleting while another operation runs waits without errors; the instance goes through
    PENDING_DELETE and is gone with the object once the operation ends."""
    name, external = ready_database(kumo)
    operation = emulator.hold(external)

    kumo.delete("Database", name)
    kumo.wait_for("the wait in Synced", lambda: busy_synced(kumo, name))
    assert emulator.instance(external)["state"] == "RUNNABLE"  # nothing deleted yet
    emulator.release(operation)

    kumo.wait_gone("Database", name, timeout=90)
    assert probe.database(external) is None
    assert warnings(kumo, name) == []


# --- 403 for a name the project never had ----------------------------------------------------


def test_a_403_for_the_new_name_does_not_block_creation(kumo: Kumo, emulator: Emulator, provider_config: str) -> None:
    """Cloud SQL answers 403 notAuthorized (not 404) for the name of an instance that does not
    exist yet; kumo confirms with instances.list and creates it, with no warning."""
    name = unique("db")
    with pytest.raises(urllib.error.HTTPError) as refused:
        emulator.instance(f"{name}-never")
    assert refused.value.code == 403

    kumo.create(example("gcp", "Database", name))
    obj = kumo.wait_ready("Database", name, timeout=90)

    assert emulator.instance(obj["status"]["atProvider"]["externalName"])["state"] == "RUNNABLE"
    assert warnings(kumo, name) == []


# --- states the service enters on its own ---------------------------------------------------


def ready_condition(kumo: Kumo, name: str) -> dict[str, Any]:
    obj = kumo.get("Database", name)
    return (condition(obj, "Ready") if obj else None) or {}


def test_maintenance_keeps_ready_true_with_a_note(kumo: Kumo, emulator: Emulator, provider_config: str) -> None:
    """During Cloud SQL maintenance the instance keeps serving: Ready stays True (never flips to
    False) and says maintenance is under way; afterwards the note goes away."""
    name, external = ready_database(kumo)
    seen: list[str] = []

    def ready_says(text: str) -> bool:
        ready = ready_condition(kumo, name)
        seen.append(ready.get("status", ""))
        return text in ready.get("message", "")

    emulator.set_state(external, "MAINTENANCE")
    kumo.wait_for("Ready to mention maintenance", lambda: ready_says("maintenance"), timeout=60)
    emulator.set_state(external, "RUNNABLE")
    kumo.wait_for("the maintenance note to go", lambda: not ready_says("maintenance"), timeout=60)

    assert set(seen) == {"True"}
    assert warnings(kumo, name) == []


@pytest.mark.parametrize(
    ("state", "reasons", "error", "shown"),
    [
        ("SUSPENDED", ["BILLING_ISSUE"], "", "suspensionReason: BILLING_ISSUE"),
        ("FAILED", None, "The instance could not restart after maintenance.", "could not restart after maintenance"),
    ],
    ids=["suspended", "failed"],
)
def test_suspended_or_failed_shows_why_in_ready(
    kumo: Kumo,
    emulator: Emulator,
    provider_config: str,
    state: str,
    reasons: list[str] | None,
    error: str,
    shown: str,
) -> None:
    """A suspended or failed instance makes Ready False with the reason Cloud SQL gives (the
    suspension reason; the error of the operation that failed); Ready comes back once the
    instance is RUNNABLE again."""
    name, external = ready_database(kumo)

    emulator.set_state(external, state, reasons, error)
    down = kumo.wait_for(
        f"Ready=False naming {shown}",
        lambda: (r := ready_condition(kumo, name)).get("status") == "False" and shown in r.get("message", "") and r,
        timeout=60,
    )
    emulator.set_state(external, "RUNNABLE")

    assert down["reason"] == "Unavailable"
    kumo.wait_ready("Database", name, timeout=60)


# --- editions ---------------------------------------------------------------------------------


def test_postgres_17_with_a_size_gets_an_enterprise_tier(kumo: Kumo, emulator: Emulator, provider_config: str) -> None:
    """Cloud SQL defaults PostgreSQL 16+ to Enterprise Plus, which refuses the custom tiers sizes
    map to; kumo names the Enterprise edition, so `size: small` works on PostgreSQL 17."""
    _, external = ready_database(kumo, version="17")

    settings = emulator.instance(external)["settings"]
    assert (settings["edition"], settings["tier"]) == ("ENTERPRISE", "db-custom-1-3840")


def test_enterprise_plus_maps_sizes_to_its_own_tiers(kumo: Kumo, emulator: Emulator, provider_config: str) -> None:
    """With providerOptions.edition ENTERPRISE_PLUS, a size maps to a performance-optimized tier
    (the only kind Enterprise Plus offers) instead of being refused."""
    _, external = ready_database(kumo, providerOptions={"edition": "ENTERPRISE_PLUS"})

    settings = emulator.instance(external)["settings"]
    assert (settings["edition"], settings["tier"]) == ("ENTERPRISE_PLUS", "db-perf-optimized-N-2")
