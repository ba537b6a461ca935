"""What steady drift sweeps cost at 200 objects: zero Kubernetes writes, and one cloud list call
per page for RDS, Cloud SQL and GCS (S3, which has no batch read of bucket settings, one listing,
the tags of many buckets per Resource Groups Tagging API call, and the four other reads of the
managed settings per bucket).

The figures are printed for the issue note and asserted as counts, never as times.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from pathlib import Path

import pytest
from kubernetes import client
from kumo.testbed.probes import probe_for

from .conftest import Kumo, example

pytestmark = pytest.mark.e2e

PER_KIND_AND_CLOUD = 50  # 4 x 50 = 200 objects
BUCKET_TAGS = 5  # the example Bucket's label + kumo's four ownership tags
MOTO_TAGS_PER_PAGE = 95  # moto ends a GetResources page before reaching 100 tags: 19 buckets of 5
PAGE_SIZES = {("aws", "Database"): 100, ("gcp", "Database"): 500, ("gcp", "Bucket"): 1000}
SWEPT = re.compile(
    r"swept (?P<kind>\w+) of ProviderConfig (?P<ns>[\w-]+)/(?P<config>\w+): (?P<listed>\d+) listed, "
    r"(?P<compared>\d+) compared, (?P<drifted>\d+) drifted, (?P<enqueued>\d+) enqueued, (?P<calls>\d+) cloud calls"
)

CLOUD_CALL = re.compile(r"cloud call aws \S+ (?P<operation>\S+) -> ")


def _controller_writes(audit_log: Path, namespace: str, since: float) -> list[dict]:
    writes = []
    for line in audit_log.read_text().splitlines():
        entry = json.loads(line)
        ref = entry.get("objectRef") or {}
        stamp = entry.get("stageTimestamp", "")
        if (
            entry.get("stage") == "ResponseComplete"
            and entry.get("userAgent", "").startswith("kumo-controller")
            and ref.get("namespace") == namespace
            and entry.get("verb") in ("create", "update", "patch", "delete")
            and _epoch(stamp) >= since
        ):
            writes.append({"verb": entry["verb"], "resource": ref.get("resource"), "name": ref.get("name")})
    return writes


def _epoch(stamp: str) -> float:
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone if stamp else 0.0


def _sweeps(log: str, namespace: str) -> list[dict]:
    return [m.groupdict() for m in SWEPT.finditer(log) if m["ns"] == namespace]


def test_steady_sweeps_of_200_objects_write_nothing_and_list_by_page(kumo: Kumo, testbed, namespace):
    """200 Ready objects under steady sweeps: 0 Kubernetes writes; per sweep, RDS / Cloud SQL /
    GCS cost one call per page of the account's listing, S3 one listing + 4 reads per bucket +
    a few GetResources for every bucket's tags (no GetBucketTagging)."""
    for cloud in ("aws", "gcp"):
        secret, config = probe_for(cloud, testbed.env).provider_config(name=cloud)
        kumo.core.create_namespaced_secret(namespace, secret)
        kumo.create(config)
    names = []
    for cloud in ("aws", "gcp"):
        for kind in ("Database", "Bucket"):
            for i in range(PER_KIND_AND_CLOUD):
                name = f"{cloud}-{kind.lower()[:2]}-{i}"
                manifest = example(cloud, kind, name)
                manifest["metadata"]["annotations"] = {"kumo.dev/sweep-interval": "5s"}
                kumo.create(manifest)
                names.append((kind, name))
    for kind, name in names:
        kumo.wait_ready(kind, name, timeout=300)
    log_mark = len(kumo.controller.log_text())
    kumo.wait_for(
        "every scope swept twice with nothing to do",
        lambda: _settled_sweeps(kumo.controller.log_text()[log_mark:], namespace) >= 2,
        timeout=60,
    )
    window_start = time.time()
    steady_log_mark = len(kumo.controller.log_text())
    sweeps_mark = len(_sweeps(kumo.controller.log_text(), namespace))
    time.sleep(12)  # at least two more sweeps of every scope
    time.sleep(1.5)  # the audit log is flushed in batches of up to a second
    steady = _sweeps(kumo.controller.log_text(), namespace)[sweeps_mark:]
    writes = _controller_writes(Path(testbed.env["audit_log"]), namespace, window_start)

    listing = _account_sizes(testbed)
    per_scope = {}
    for sweep in steady:
        cloud = sweep["config"]
        per_scope.setdefault((cloud, sweep["kind"]), []).append(int(sweep["calls"]))
    print(f"\nsteady window: {len(steady)} sweeps, controller writes: {len(writes)}")
    for scope, calls in sorted(per_scope.items()):
        print(f"  {scope[0]:4} {scope[1]:9} calls per sweep {calls}  (account holds {listing.get(scope)})")

    assert writes == [], f"steady sweeps wrote to Kubernetes: {writes[:5]}"
    assert set(per_scope) == {(c, k) for c in ("aws", "gcp") for k in ("Database", "Bucket")}
    assert all(int(s["compared"]) >= 1 and s["drifted"] == "0" and s["enqueued"] == "0" for s in steady)
    for scope, page in PAGE_SIZES.items():
        pages = max(1, math.ceil(listing[scope] / page))
        assert all(calls == pages for calls in per_scope[scope]), (scope, per_scope[scope], pages)
    # moto pages GetResources by about 100 tags (5 per bucket here): 3 pages for 50 buckets, where
    # AWS answers a list of up to 100 ARNs in one.
    tag_pages = math.ceil(PER_KIND_AND_CLOUD * BUCKET_TAGS / MOTO_TAGS_PER_PAGE)
    assert all(calls == 1 + 4 * PER_KIND_AND_CLOUD + tag_pages for calls in per_scope[("aws", "Bucket")])
    window_calls = _cloud_calls(kumo.controller.log_text()[steady_log_mark:])
    assert window_calls["GetResources"] >= 1 and window_calls["GetBucketTagging"] == 0, window_calls


def _cloud_calls(log: str) -> Counter[str]:
    """AWS operations called, by name, from the controller's `cloud call` log lines."""
    return Counter(m["operation"] for m in CLOUD_CALL.finditer(log))


def _settled_sweeps(log: str, namespace: str) -> int:
    """How many sweeps of every one of the four scopes ended with nothing drifted or enqueued."""
    done: dict[tuple[str, str], int] = {}
    for sweep in _sweeps(log, namespace):
        if sweep["enqueued"] == "0" and sweep["drifted"] == "0" and int(sweep["compared"]) > 0:
            key = (sweep["config"], sweep["kind"])
            done[key] = done.get(key, 0) + 1
    return min(done.values()) if len(done) == 4 else 0


def _account_sizes(testbed) -> dict[tuple[str, str], int]:
    """How many resources each listing walks: the whole account/project, not just this test's."""
    aws, gcp = probe_for("aws", testbed.env), probe_for("gcp", testbed.env)
    return {
        ("aws", "Database"): aws.count_databases(),
        ("aws", "Bucket"): len(aws.s3.list_buckets()["Buckets"]),
        ("gcp", "Database"): gcp.count_databases(),
        ("gcp", "Bucket"): len(list(gcp.gcs.list_buckets())),
    }


@pytest.fixture
def kumo(kube_api: client.ApiClient, namespace: str, controller) -> Kumo:
    return Kumo(kube_api, namespace, controller)
