"""The Prometheus endpoint of a running controller: scraped over HTTP, its values move as the
controller works (objects, reconciles, cloud calls, sweeps, drift)."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import example, unique

pytestmark = pytest.mark.e2e


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback test endpoint
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and all((k, w) in ls for k, w in labels.items()))


def test_metrics_follow_the_controllers_work(kumo, probe, provider_config, cloud):
    """Creating a Bucket and drifting it moves: cloud API calls, reconcile counts, objects by
    Ready status, sweep counts and drift detected/corrected."""
    before = scrape(kumo.controller.metrics_url)
    name = unique("bk")
    manifest = example(cloud, "Bucket", name)
    manifest["metadata"]["annotations"] = {"kumo.dev/sweep-interval": "5s"}
    kumo.create(manifest)
    external = kumo.wait_ready("Bucket", name)["status"]["atProvider"]["externalName"]
    if cloud == "aws":
        probe.s3.put_bucket_versioning(Bucket=external, VersioningConfiguration={"Status": "Suspended"})
    else:
        bucket = probe.gcs.get_bucket(external)
        bucket.versioning_enabled = False
        probe.patch_bucket(bucket)
    kumo.wait_for(
        "drift corrected in metrics",
        lambda: (
            total(scrape(kumo.controller.metrics_url), "kumo_drift_corrected_total", kind="Bucket")
            > total(before, "kumo_drift_corrected_total", kind="Bucket")
        ),
        timeout=45,
    )
    kumo.wait_for(
        "objects gauge counts the Ready bucket",
        lambda: total(scrape(kumo.controller.metrics_url), "kumo_objects", kind="Bucket", ready="True") >= 1,
        timeout=15,
    )
    after = scrape(kumo.controller.metrics_url)
    creates = {"aws": "CreateBucket", "gcp": "buckets.insert"}[cloud]
    assert total(after, "kumo_cloud_api_calls_total", provider=cloud, operation=creates) > total(
        before, "kumo_cloud_api_calls_total", provider=cloud, operation=creates
    )
    assert total(after, "kumo_reconcile_duration_seconds_count", kind="Bucket") > total(
        before, "kumo_reconcile_duration_seconds_count", kind="Bucket"
    )
    assert total(after, "kumo_sweep_duration_seconds_count", kind="Bucket") > total(
        before, "kumo_sweep_duration_seconds_count", kind="Bucket"
    )
    assert total(after, "kumo_drift_detected_total", kind="Bucket") > total(
        before, "kumo_drift_detected_total", kind="Bucket"
    )
    assert total(after, "kumo_cloud_api_call_duration_seconds_count", provider=cloud) > 0
