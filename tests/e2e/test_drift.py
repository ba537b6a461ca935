"""Drift made behind kumo's back, through the clouds' own SDKs, is found by the next sweep and
then corrected (driftPolicy Correct) or only reported (Report), with conditions and events.

Each scenario changes every setting the issue lists for its cloud and kind at once, then checks
that each one is detected by name, and corrected or left alone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import ClientError

from .conftest import GROUP, PLURALS, VERSION, condition, example, unique

pytestmark = pytest.mark.e2e
FAST_SWEEP = {"kumo.dev/sweep-interval": "5s"}  # the sweeper honours a per-object interval


@dataclass(frozen=True)
class OutOfBand:
    """Changes to make in the cloud, the drift fields they must produce, and how to tell the
    cloud was put back."""

    change: Callable[[Any, str], None]
    fields: set[str]
    corrected: Callable[[Any, str], bool]
    uncorrectable: frozenset[str] = frozenset()  # grown disks cannot shrink: reported, never "fixed"
    spec: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------- AWS


def _rds_change(probe, name: str) -> None:
    probe.wait_database_available(name)  # RDS refuses changes while the instance is busy
    probe.rds.modify_db_instance(
        DBInstanceIdentifier=name,
        AllocatedStorage=40,
        DBInstanceClass="db.m5.large",
        BackupRetentionPeriod=1,
        DeletionProtection=True,
        ApplyImmediately=True,
    )
    arn = probe.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]["DBInstanceArn"]
    probe.rds.add_tags_to_resource(ResourceName=arn, Tags=[{"Key": "kumo.dev/owner-name", "Value": "intruder"}])


def _rds_corrected(probe, name: str) -> bool:
    found = probe.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"][0]
    tags = {t["Key"]: t["Value"] for t in found.get("TagList", [])}
    return (
        found["AllocatedStorage"] == 40  # grown storage stays: RDS cannot shrink it
        and found["DBInstanceClass"] == "db.t3.micro"
        and found["BackupRetentionPeriod"] == 7
        and found["DeletionProtection"] is False
        and tags.get("kumo.dev/owner-name") != "intruder"
    )


def _s3_change(probe, name: str) -> None:
    probe.s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Suspended"})
    probe.s3.delete_public_access_block(Bucket=name)
    # Deleting the encryption would change nothing: S3 falls back to SSE-S3 (strict bed, AWS docs).
    kms = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": "alias/someone-elses-key"}
    probe.s3.put_bucket_encryption(
        Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": kms}]}
    )
    probe.s3.delete_bucket_lifecycle(Bucket=name)
    tags = probe.s3.get_bucket_tagging(Bucket=name)["TagSet"]
    changed = [{"Key": t["Key"], "Value": "other" if t["Key"] == "team" else t["Value"]} for t in tags]
    probe.s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": changed})


def _s3_corrected(probe, name: str) -> bool:
    try:
        return _s3_settings_as_spec(probe.s3, name)
    except ClientError:
        return False  # a setting still absent (deleted out of band, not yet put back)


def _s3_settings_as_spec(s3, name: str) -> bool:
    versioning = s3.get_bucket_versioning(Bucket=name).get("Status") == "Enabled"
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    rules = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    lifecycle = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=name)["TagSet"]}
    sse_s3 = rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    return versioning and all(block.values()) and sse_s3 and bool(lifecycle) and tags["team"] == "web"


# ---------------------------------------------------------------------- GCP


def _cloudsql_change(probe, name: str) -> None:
    probe.instances.patch(
        request={
            "project": probe.project,
            "instance": name,
            "body": {
                "settings": {
                    "tier": "db-custom-4-15360",
                    "data_disk_size_gb": 30,
                    "backup_configuration": {"enabled": False},
                }
            },
        }
    )


def _cloudsql_corrected(probe, name: str) -> bool:
    found = probe.instances.get(request={"project": probe.project, "instance": name})
    return found.settings.tier == "db-custom-1-3840" and found.settings.backup_configuration.enabled is True


def _gcs_change(probe, name: str) -> None:
    bucket = probe.gcs.get_bucket(name)
    bucket.versioning_enabled = False
    bucket.iam_configuration.public_access_prevention = "inherited"
    bucket.labels = {**bucket.labels, "team": "other"}
    probe.patch_bucket(bucket)  # waits out GCS's one metadata update per second, as a person would


def _gcs_corrected(probe, name: str) -> bool:
    bucket = probe.gcs.get_bucket(name)
    return (
        bool(bucket.versioning_enabled)
        and bucket.iam_configuration.public_access_prevention == "enforced"
        and bucket.labels.get("team") == "web"
    )


OUT_OF_BAND = {
    ("aws", "Database"): OutOfBand(
        _rds_change,
        {"storageGB", "instanceClass", "backupRetentionDays", "deletionProtection", "tags"},
        _rds_corrected,
        uncorrectable=frozenset({"storageGB"}),
    ),
    ("aws", "Bucket"): OutOfBand(
        _s3_change, {"versioning", "publicAccessBlock", "encryption", "lifecycleExpireDays", "tags"}, _s3_corrected
    ),
    ("gcp", "Database"): OutOfBand(
        _cloudsql_change,
        {"instanceClass", "storageGB", "backupRetentionDays"},
        _cloudsql_corrected,
        uncorrectable=frozenset({"storageGB"}),
        # With auto-resize on (Cloud SQL's default) a grown disk is no drift at all.
        spec={"providerOptions": {"storageAutoResize": False}},
    ),
    ("gcp", "Bucket"): OutOfBand(_gcs_change, {"versioning", "publicAccessPrevention", "labels"}, _gcs_corrected),
}


def _ready_with_fast_sweeps(kumo, cloud: str, kind: str, policy: str, spec=None) -> tuple[str, str]:
    name = unique(kind.lower()[:2])
    manifest = example(cloud, kind, name)
    manifest["metadata"]["annotations"] = dict(FAST_SWEEP)
    manifest["spec"].update(spec or {}, driftPolicy=policy)
    kumo.create(manifest)
    obj = kumo.wait_ready(kind, name)
    kumo.wait_condition(kind, name, "InSync", "True", timeout=30)
    return name, obj["status"]["atProvider"]["externalName"]


@pytest.mark.parametrize("kind", ["Database", "Bucket"])
def test_report_policy_reports_every_change_and_touches_nothing(kumo, probe, provider_config, cloud, kind):
    """Under Report, each out-of-band change appears in status.drift and the InSync message, one
    DriftDetected event is posted, and the cloud keeps the changed values."""
    case = OUT_OF_BAND[(cloud, kind)]
    name, external = _ready_with_fast_sweeps(kumo, cloud, kind, "Report", case.spec)
    case.change(probe, external)

    def all_reported() -> dict | None:
        # Changes a cloud applies later (RDS's `modifying`) show up as they land, not all at once.
        obj = kumo.get(kind, name) or {}
        reported = {entry["field"] for entry in (obj.get("status") or {}).get("drift") or []}
        return obj if case.fields <= reported else None

    obj = kumo.wait_for(f"{sorted(case.fields)} in status.drift", all_reported, timeout=30)
    in_sync = condition(obj, "InSync")
    assert in_sync["reason"] == "Drifted" and all(field in in_sync["message"] for field in case.fields)
    assert condition(obj, "Ready")["status"] == "True" and condition(obj, "Synced")["status"] == "True"
    kumo.wait_for("one DriftDetected event", lambda: [e for e in kumo.events(name) if e.reason == "DriftDetected"])
    assert not case.corrected(probe, external)
    assert not [e for e in kumo.events(name) if e.reason == "DriftCorrected"]


@pytest.mark.bed_region_only  # the verdict on a spec edit does not depend on the region
def test_switching_only_driftpolicy_to_report_keeps_the_drift_there_is(kumo, probe, provider_config, cloud):
    """An out-of-band change kumo has not touched (driftPolicy Ignore), then the user switches
    driftPolicy to Report to keep it: the new generation is no request to the cloud (its settings
    digest is the one applied), so the change is reported and stays; before, the edit reapplied
    the whole spec and silently reverted it."""
    case = OUT_OF_BAND[(cloud, "Bucket")]
    name = unique("bu")
    manifest = example(cloud, "Bucket", name)
    manifest["metadata"]["annotations"] = dict(FAST_SWEEP)
    manifest["spec"]["driftPolicy"] = "Ignore"
    kumo.create(manifest)
    external = kumo.wait_ready("Bucket", name)["status"]["atProvider"]["externalName"]
    kumo.wait_condition("Bucket", name, "InSync", "Unknown", timeout=30)  # Ignored: not compared
    case.change(probe, external)
    kumo.patch("Bucket", name, {"spec": {"driftPolicy": "Report"}})

    def reported() -> dict | None:
        obj = kumo.get("Bucket", name) or {}
        status = obj.get("status") or {}
        fields = {entry["field"] for entry in status.get("drift") or []}
        applied = status.get("observedGeneration") == obj["metadata"]["generation"]
        return obj if applied and case.fields <= fields else None

    obj = kumo.wait_for(f"{sorted(case.fields)} reported under Report", reported, timeout=30)
    assert condition(obj, "InSync")["reason"] == "Drifted"
    assert not case.corrected(probe, external)
    assert not [e for e in kumo.events(name) if e.reason in ("DriftCorrected", "UpdatedExternalResource")]


def _as_json_text(value: Any) -> str:
    """A status.drift value as releases before JSON values wrote it: compact JSON text, cut at 256."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= 256 else text[:253] + "..."


@pytest.mark.bed_region_only  # how status.drift is written does not depend on the region: 20 s saved
def test_drift_values_are_json_values_and_the_old_text_form_is_rewritten_once_without_news(
    kumo, probe, provider_config, cloud
):
    """status.drift holds JSON values (versioning: true/false, tags as a map). An entry in the
    JSON-text form an earlier release wrote is the same drift: the next sweep rewrites it as values
    with its `since` kept and no DriftDetected event, and later sweeps write nothing."""
    case = OUT_OF_BAND[(cloud, "Bucket")]
    name, external = _ready_with_fast_sweeps(kumo, cloud, "Bucket", "Report")
    case.change(probe, external)

    def all_reported() -> list[dict[str, Any]] | None:
        drift = (kumo.get("Bucket", name) or {}).get("status", {}).get("drift") or []
        return drift if case.fields <= {entry["field"] for entry in drift} else None

    entries = kumo.wait_for(f"{sorted(case.fields)} in status.drift", all_reported, timeout=30)
    by_field = {entry["field"]: entry for entry in entries}
    assert (by_field["versioning"]["desired"], by_field["versioning"]["actual"]) == (True, False)
    labels = by_field["tags" if cloud == "aws" else "labels"]
    assert isinstance(labels["actual"], dict) and labels["actual"]["team"] == "other"
    kumo.wait_for("one DriftDetected event", lambda: [e for e in kumo.events(name) if e.reason == "DriftDetected"])

    old_form = [  # an unset value was the text "null"; now the key is left out
        {**entry, **{side: _as_json_text(entry.get(side)) for side in ("desired", "actual")}} for entry in entries
    ]
    events, marker = len(kumo.events(name)), len(kumo.controller.log_text())
    kumo.objects.patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        kumo.namespace,
        PLURALS["Bucket"],
        name,
        {"status": {"drift": old_form}},
        _content_type="application/merge-patch+json",
    )
    rewritten = kumo.wait_for(
        "old-form entries rewritten as JSON values",
        lambda: (obj := kumo.get("Bucket", name)) and obj["status"].get("drift") == entries and obj,
        timeout=30,
    )
    version = rewritten["metadata"]["resourceVersion"]
    sweep = f"swept Bucket of ProviderConfig {kumo.namespace}/{provider_config}:"
    kumo.wait_for("two more sweeps", lambda: kumo.controller.log_text()[marker:].count(sweep) >= 3, timeout=30)
    assert kumo.get("Bucket", name)["metadata"]["resourceVersion"] == version  # steady: no more writes
    assert len(kumo.events(name)) == events


@pytest.mark.parametrize("kind", ["Database", "Bucket"])
def test_correct_policy_puts_every_change_back(kumo, probe, provider_config, cloud, kind):
    """Under Correct, the sweep finds the changes, the reconciler puts each one back, a
    DriftDetected warning and a DriftCorrected event are posted, and InSync returns to True."""
    case = OUT_OF_BAND[(cloud, kind)]
    name, external = _ready_with_fast_sweeps(kumo, cloud, kind, "Correct", case.spec)
    case.change(probe, external)
    kumo.wait_for("cloud put back", lambda: case.corrected(probe, external), timeout=45)
    reasons = kumo.wait_for(
        "DriftCorrected event", lambda: {e.reason for e in kumo.events(name)} >= {"DriftDetected", "DriftCorrected"}
    )
    assert reasons
    if not case.uncorrectable:
        kumo.wait_condition(kind, name, "InSync", "True", timeout=30)
        assert kumo.get(kind, name)["status"].get("drift", []) == []
        return

    def only_uncorrectable_left() -> dict | None:
        obj = kumo.get(kind, name)
        left = {entry["field"] for entry in obj["status"].get("drift", [])}
        return obj if left == case.uncorrectable else None

    obj = kumo.wait_for("only uncorrectable drift reported", only_uncorrectable_left, timeout=30)
    in_sync = condition(obj, "InSync")
    assert in_sync["status"] == "False" and "cannot be put back in place" in in_sync["message"]
    assert condition(obj, "Synced")["status"] == "True"


# The spec's maintenance window, and how each cloud holds it: as kumo sets it, and as someone
# else moves it in the console.
WINDOW = {"day": "Tuesday", "hour": 3}
CLOUD_WINDOWS = {
    "aws": ("tue:03:00-tue:04:00", "fri:07:00-fri:07:30"),
    "gcp": ({"day": 2, "hour": 3}, {"day": 5, "hour": 7}),
}


def _maintenance_window(probe, name: str) -> Any:
    if probe.cloud == "aws":
        (found,) = probe.rds.describe_db_instances(DBInstanceIdentifier=name)["DBInstances"]
        return found["PreferredMaintenanceWindow"]
    window = probe.instances.get(request={"project": probe.project, "instance": name}).settings.maintenance_window
    return {"day": window.day, "hour": window.hour}


def _move_maintenance_window(probe, name: str, window: Any) -> None:
    if probe.cloud == "aws":
        probe.wait_database_available(name)  # RDS refuses changes while the instance is busy
        probe.rds.modify_db_instance(
            DBInstanceIdentifier=name, PreferredMaintenanceWindow=window, ApplyImmediately=True
        )
        return
    body = {"settings": {"maintenance_window": window}}
    probe.instances.patch(request={"project": probe.project, "instance": name, "body": body})


def test_maintenance_window_is_created_and_moving_it_behind_kumos_back_is_drift_put_back(
    kumo, probe, provider_config, cloud
):
    """spec.maintenanceWindow reaches the cloud with the instance; a window moved in the cloud is
    reported as maintenanceWindow drift (DriftDetected) and put back (DriftCorrected, InSync True)."""
    ours, theirs = CLOUD_WINDOWS[cloud]
    name, external = _ready_with_fast_sweeps(kumo, cloud, "Database", "Correct", {"maintenanceWindow": WINDOW})
    assert _maintenance_window(probe, external) == ours
    _move_maintenance_window(probe, external, theirs)

    def detected() -> list:
        events = kumo.events(name)
        return [e for e in events if e.reason == "DriftDetected" and "maintenanceWindow" in (e.message or "")]

    kumo.wait_for("maintenanceWindow drift detected", detected)
    kumo.wait_for("window put back", lambda: _maintenance_window(probe, external) == ours, timeout=45)
    kumo.wait_for("DriftCorrected event", lambda: any(e.reason == "DriftCorrected" for e in kumo.events(name)))
    kumo.wait_condition("Database", name, "InSync", "True", timeout=30)


def test_resource_deleted_out_of_band_is_recreated_under_correct(kumo, probe, provider_config, cloud):
    """A bucket deleted in the cloud comes back under the same name on the next sweep."""
    name, external = _ready_with_fast_sweeps(kumo, cloud, "Bucket", "Correct")
    if cloud == "aws":
        probe.s3.delete_bucket(Bucket=external)
    else:
        probe.gcs.get_bucket(external).delete()
    kumo.wait_for(
        "ExternalResourceMissing event", lambda: any(e.reason == "ExternalResourceMissing" for e in kumo.events(name))
    )
    kumo.wait_for("bucket recreated", lambda: probe.bucket(external) is not None, timeout=30)
    kumo.wait_condition("Bucket", name, "Ready", "True")


def test_resource_deleted_out_of_band_is_reported_missing_under_report(kumo, probe, provider_config, cloud):
    """Under Report, a deleted bucket is reported Missing (InSync and Ready False) and not recreated."""
    name, external = _ready_with_fast_sweeps(kumo, cloud, "Bucket", "Report")
    if cloud == "aws":
        probe.s3.delete_bucket(Bucket=external)
    else:
        probe.gcs.get_bucket(external).delete()
    obj = kumo.wait_condition("Bucket", name, "InSync", "False", timeout=30)
    assert condition(obj, "InSync")["reason"] == "Missing"
    assert condition(obj, "Ready")["status"] == "False"
    assert probe.bucket(external) is None
