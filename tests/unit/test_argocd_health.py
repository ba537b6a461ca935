"""The Argo CD health check in docs/argocd/health.lua, run by a real Lua interpreter.

Argo CD runs a health script with gopher-lua (Lua 5.1), with only the base, package, table and a
safe os library loaded: the object is the global `obj` and the chunk returns `hs`. These tests do
the same with lupa's Lua 5.1 runtime, stripped to those libraries, so a script that passes here
cannot lean on anything Argo CD lacks (string.* functions, string methods, math, io).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

DOCS = Path(__file__).resolve().parents[2] / "docs"
SCRIPT = DOCS / "argocd" / "health.lua"
PATCH = DOCS / "argocd" / "argocd-cm-patch.yaml"
GUIDE = DOCS / "argocd.md"
HEALTH_KEYS = ("resource.customizations.health.kumo.dev_Database", "resource.customizations.health.kumo.dev_Bucket")
ARGO_HEALTH = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}

# What Argo CD's VM does not open (it loads base, package, table and a safe os only).
ARGO_SANDBOX = """
local mt = getmetatable("")
if mt then mt.__index = nil end
os = {time = os.time, date = os.date, clock = os.clock}
string, math, io, debug, coroutine, python = nil, nil, nil, nil, nil, nil
"""

EXTERNAL = "shop-orders-db-1a2b3c4d"
CLOUD_ERROR = (
    "InvalidParameterCombination: RDS does not support creating a DB instance with the following combination: "
    "DBInstanceClass=db.t3.micro, Engine=postgres, EngineVersion=17.2"
)
OWNED_ELSEWHERE = f"{EXTERNAL} belongs to team-b/orders-db (uid 9f1c, cluster c-2); refusing to modify it"
DRIFT = "drifted: storageGB (desired 20, actual 50)"


def run_health_script(obj: dict[str, Any]) -> dict[str, Any]:
    """Run health.lua as Argo CD does: a fresh VM, `obj` set, the chunk's return value read."""
    lupa = pytest.importorskip("lupa", reason="lupa (a Lua runtime from PyPI) runs the Argo CD health script")
    try:
        from lupa import lua51 as flavour  # Argo CD's gopher-lua implements Lua 5.1
    except ImportError:
        flavour = lupa
    lua = flavour.LuaRuntime(register_eval=False)
    lua.execute(ARGO_SANDBOX)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(SCRIPT.read_text(encoding="utf-8"))
    return dict(hs.items())


def condition(type_: str, status: str, reason: str, message: str = "", generation: int = 1) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
        "lastTransitionTime": "2026-11-22T10:00:00Z",
    }


READY = condition("Ready", "True", "Available")
SYNCED = condition("Synced", "True", "ReconcileSuccess")
IN_SYNC = condition("InSync", "True", "UpToDate")


def managed(
    *conditions: dict[str, Any],
    kind: str = "Database",
    generation: int | str = 1,
    observed: int | str | None = 1,
    annotations: dict[str, str] | None = None,
    deleting: bool = False,
    status: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Database or Bucket as Argo CD sees it; `status` replaces the one built from the rest."""
    metadata: dict[str, Any] = {"name": "orders-db", "namespace": "shop", "uid": "u-1", "generation": generation}
    if annotations:
        metadata["annotations"] = annotations
    if deleting:
        metadata["deletionTimestamp"] = "2026-11-22T11:00:00Z"
        metadata["finalizers"] = ["kumo.dev/cleanup"]
    body: dict[str, Any] = {"apiVersion": "kumo.dev/v1alpha1", "kind": kind, "metadata": metadata, "spec": {}}
    if status is not None:
        body["status"] = status
    elif conditions:
        body["status"] = {
            "conditions": list(conditions),
            "atProvider": {"externalName": EXTERNAL, "provider": "aws", "state": "available"},
        }
        if observed is not None:
            body["status"]["observedGeneration"] = observed
    return body


@dataclass(frozen=True)
class Scenario:
    name: str
    reason: str  # what the scenario proves, in one line
    obj: dict[str, Any]
    status: str
    message: str


SCENARIOS = [
    Scenario(
        "fresh-object-has-no-status-yet",
        "An object the controller has not reconciled yet is on its way, not broken.",
        managed(),
        "Progressing",
        "Waiting for the kumo controller to report status",
    ),
    Scenario(
        "missing-conditions-list",
        "A status without conditions (only observedGeneration) says nothing about health yet.",
        managed(status={"observedGeneration": 1}),
        "Progressing",
        "Waiting for the kumo controller to report status",
    ),
    Scenario(
        "empty-conditions-list",
        "An empty conditions list is treated like a missing one.",
        managed(status={"conditions": [], "observedGeneration": 1}),
        "Progressing",
        "Waiting for the kumo controller to report status",
    ),
    Scenario(
        "creating-in-the-cloud",
        "Ready=False with reason Creating while the cloud provisions is Progressing, with the cloud state.",
        managed(condition("Ready", "False", "Creating", "cloud state: creating"), SYNCED),
        "Progressing",
        "Creating: cloud state: creating",
    ),
    Scenario(
        "ready-and-in-sync",
        "Ready=True and Synced=True is Healthy, naming the cloud resource.",
        managed(READY, SYNCED, IN_SYNC),
        "Healthy",
        f"{EXTERNAL} is available",
    ),
    Scenario(
        "ready-bucket",
        "The same script judges a Bucket by the same conditions.",
        managed(READY, SYNCED, IN_SYNC, kind="Bucket"),
        "Healthy",
        f"{EXTERNAL} is available",
    ),
    Scenario(
        "ready-but-drifted",
        "Reported drift keeps a usable object Healthy, and the message says what drifted.",
        managed(READY, SYNCED, condition("InSync", "False", "Drifted", DRIFT)),
        "Healthy",
        f"{EXTERNAL} is available but not in sync with the spec (InSync=False, Drifted): {DRIFT}",
    ),
    Scenario(
        "ready-with-drift-ignored",
        "driftPolicy Ignore (InSync=Unknown) does not colour the health at all.",
        managed(READY, SYNCED, condition("InSync", "Unknown", "Ignored", "spec.driftPolicy is Ignore")),
        "Healthy",
        f"{EXTERNAL} is available",
    ),
    Scenario(
        "synced-false-carries-the-cloud-error",
        "A failed create is Degraded and shows the cloud's own error message.",
        managed(
            condition("Ready", "False", "Creating", "waiting for a successful reconcile"),
            condition("Synced", "False", "ReconcileError", CLOUD_ERROR),
            observed=0,
        ),
        "Degraded",
        CLOUD_ERROR,
    ),
    Scenario(
        "owned-by-another-resource",
        "A cloud resource that belongs to another object is Degraded with the ownership conflict.",
        managed(
            condition("Ready", "False", "Creating", "waiting for a successful reconcile"),
            condition("Synced", "False", "OwnedByAnotherResource", OWNED_ELSEWHERE),
            observed=0,
        ),
        "Degraded",
        OWNED_ELSEWHERE,
    ),
    Scenario(
        "invalid-spec",
        "A spec the provider rejects is Degraded with the provider's explanation.",
        managed(
            condition("Ready", "False", "Creating", "waiting for a successful reconcile"),
            condition("Synced", "False", "InvalidSpec", "spec.instanceClass: 'n2-standard' is not an RDS class"),
            observed=0,
        ),
        "Degraded",
        "spec.instanceClass: 'n2-standard' is not an RDS class",
    ),
    Scenario(
        "synced-false-without-message",
        "An error without a message still says which condition failed and why.",
        managed(READY, condition("Synced", "False", "ReconcileError")),
        "Degraded",
        "Synced=False (ReconcileError)",
    ),
    Scenario(
        "synced-false-while-ready",
        "A failing update of a working resource is Degraded even though Ready is still True.",
        managed(READY, condition("Synced", "False", "ReconcileError", "Throttling: Rate exceeded")),
        "Degraded",
        "Throttling: Rate exceeded",
    ),
    Scenario(
        "unavailable-after-being-ready",
        "A resource that was usable and no longer is (stopped, failed) is Degraded.",
        managed(condition("Ready", "False", "Unavailable", "cloud state: stopped"), SYNCED),
        "Degraded",
        "Unavailable: cloud state: stopped",
    ),
    Scenario(
        "deleted-outside-kumo-under-report",
        "A resource deleted behind kumo's back under driftPolicy Report is Degraded.",
        managed(
            condition("Ready", "False", "Unavailable", f"{EXTERNAL} no longer exists in the cloud"),
            SYNCED,
            condition("InSync", "False", "Missing", f"{EXTERNAL} no longer exists in the cloud"),
        ),
        "Degraded",
        f"Unavailable: {EXTERNAL} no longer exists in the cloud",
    ),
    Scenario(
        "deleting",
        "While the cloud deletes the resource, the object is Progressing.",
        managed(
            condition("Ready", "False", "Deleting", "cloud state: deleting", 2), SYNCED, generation=2, deleting=True
        ),
        "Progressing",
        "Deleting: cloud state: deleting",
    ),
    Scenario(
        "deletion-just-requested",
        "A deletion the controller has not acted on yet (generation bumped) is Progressing, not stale.",
        managed(READY, SYNCED, generation=2, deleting=True),
        "Progressing",
        "Deleting: waiting for the controller to release the object",
    ),
    Scenario(
        "deletion-refused-by-the-cloud",
        "A delete the cloud refuses (deletion protection) is Degraded with the refusal.",
        managed(
            READY,
            condition("Synced", "False", "ReconcileError", "InvalidParameterCombination: deletion protection", 2),
            generation=2,
            deleting=True,
        ),
        "Degraded",
        "InvalidParameterCombination: deletion protection",
    ),
    Scenario(
        "paused",
        "The kumo.dev/paused annotation makes the object Suspended.",
        managed(READY, SYNCED, annotations={"kumo.dev/paused": "true"}),
        "Suspended",
        "Paused by the annotation kumo.dev/paused=true",
    ),
    Scenario(
        "paused-while-failing",
        "Pausing wins over a failure: the controller is told to leave the object alone.",
        managed(
            READY, condition("Synced", "False", "ReconcileError", CLOUD_ERROR), annotations={"kumo.dev/paused": "true"}
        ),
        "Suspended",
        "Paused by the annotation kumo.dev/paused=true",
    ),
    Scenario(
        "paused-annotation-false",
        'Only the value "true" pauses; any other value is ignored.',
        managed(READY, SYNCED, annotations={"kumo.dev/paused": "false"}),
        "Healthy",
        f"{EXTERNAL} is available",
    ),
    Scenario(
        "stale-generation",
        "A spec edit the controller has not acted on yet is Progressing, even if Ready is True.",
        managed(READY, SYNCED, generation=3, observed=2),
        "Progressing",
        "Waiting for the controller to act on generation 3 (status reflects generation 2)",
    ),
    Scenario(
        "stale-error-after-a-spec-fix",
        "An error reported for an older generation does not mark the fixed spec Degraded.",
        managed(
            condition("Ready", "False", "Creating", "waiting for a successful reconcile"),
            condition("Synced", "False", "InvalidSpec", "spec.instanceClass: bad", 1),
            generation=2,
            observed=0,
        ),
        "Progressing",
        "Waiting for the controller to act on generation 2 (status reflects generation 0)",
    ),
    Scenario(
        "numbers-decoded-as-text",
        "Generations given as strings (a json.Number decoded as text) compare as numbers.",
        managed(READY, SYNCED, generation="10", observed="9"),
        "Progressing",
        "Waiting for the controller to act on generation 10 (status reflects generation 9)",
    ),
    Scenario(
        "conditions-without-ready",
        "Conditions that do not include Ready yet leave the object Progressing.",
        managed(SYNCED),
        "Progressing",
        "Waiting for the Ready condition",
    ),
    Scenario(
        "ready-unknown",
        "Ready=Unknown is reported as Argo CD's Unknown health.",
        managed(condition("Ready", "Unknown", "Probing", "lost contact with the cloud"), SYNCED),
        "Unknown",
        "Ready=Unknown: lost contact with the cloud",
    ),
    Scenario(
        "ready-false-with-an-unfamiliar-reason",
        "A Ready=False reason this script does not know is Progressing, not a false alarm.",
        managed(condition("Ready", "False", "Upgrading", "cloud state: upgrading"), SYNCED),
        "Progressing",
        "Not ready (Upgrading): cloud state: upgrading",
    ),
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_health_of_sample_objects(scenario: Scenario) -> None:
    """Each sample status maps to the Argo CD health and message a user sees in the UI."""
    hs = run_health_script(scenario.obj)
    assert (hs.get("status"), hs.get("message")) == (scenario.status, scenario.message), scenario.reason
    assert hs["status"] in ARGO_HEALTH
    assert set(hs) == {"status", "message"}, "Argo CD reads only status and message"


def test_configmap_patch_registers_the_script_for_both_kinds() -> None:
    """The ready-to-apply argocd-cm patch carries health.lua verbatim under both kinds' keys."""
    patch = yaml.safe_load(PATCH.read_text(encoding="utf-8"))
    assert (patch["kind"], patch["metadata"]["name"], patch["metadata"]["namespace"]) == (
        "ConfigMap",
        "argocd-cm",
        "argocd",
    )
    script = SCRIPT.read_text(encoding="utf-8")
    assert {key: patch["data"].get(key) for key in HEALTH_KEYS} == dict.fromkeys(HEALTH_KEYS, script)


def test_guide_shows_the_same_patch() -> None:
    """docs/argocd.md shows the patch file as it is, so copying from the guide gives the same script."""
    assert PATCH.read_text(encoding="utf-8") in GUIDE.read_text(encoding="utf-8")
