"""The pure parts of the side-by-side bench, without servers: which AWS operation a request is
(from requests the real SDK prepares), the API server's audit log read into a controller's
writes by request, per-object and per-minute figures, and the kumo/rival ratios."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest

from bench import auditwrites, cloudops, sidebyside

ENDPOINT = "http://127.0.0.1:5999"


class _Captured(Exception):
    """Raised from botocore's before-send hook: the request is prepared, never sent."""


def _sdk_request(service: str, call: Callable[[Any], Any]) -> tuple[str, str, dict[str, str], bytes]:
    """(method, path and query, headers, body) of the request boto3 prepares for `call`."""
    client = boto3.client(
        service,
        endpoint_url=ENDPOINT,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    seen: dict[str, Any] = {}

    def capture(request: Any, **_: Any) -> None:
        seen["request"] = request
        raise _Captured

    client.meta.events.register("before-send", capture)
    with pytest.raises(_Captured):
        call(client)
    request = seen["request"]
    target = request.url.removeprefix(ENDPOINT) or "/"
    body = request.body or b""
    body = body.encode() if isinstance(body, str) else body
    headers = {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
    return request.method, target, headers, body


@pytest.mark.parametrize(
    ("service", "call", "expected"),
    [
        ("s3", lambda c: c.create_bucket(Bucket="b1"), ("s3", "CreateBucket")),
        ("s3", lambda c: c.head_bucket(Bucket="b1"), ("s3", "HeadBucket")),
        ("s3", lambda c: c.list_buckets(), ("s3", "ListBuckets")),
        ("s3", lambda c: c.get_bucket_versioning(Bucket="b1"), ("s3", "GetBucketVersioning")),
        (
            "s3",
            lambda c: c.put_bucket_versioning(Bucket="b1", VersioningConfiguration={"Status": "Enabled"}),
            ("s3", "PutBucketVersioning"),
        ),
        ("s3", lambda c: c.get_bucket_tagging(Bucket="b1"), ("s3", "GetBucketTagging")),
        ("s3", lambda c: c.delete_bucket_tagging(Bucket="b1"), ("s3", "DeleteBucketTagging")),
        ("s3", lambda c: c.get_public_access_block(Bucket="b1"), ("s3", "GetPublicAccessBlock")),
        ("s3", lambda c: c.get_bucket_encryption(Bucket="b1"), ("s3", "GetBucketEncryption")),
        (
            "s3",
            lambda c: c.get_bucket_lifecycle_configuration(Bucket="b1"),
            ("s3", "GetBucketLifecycleConfiguration"),
        ),
        ("s3", lambda c: c.get_bucket_location(Bucket="b1"), ("s3", "GetBucketLocation")),
        ("s3", lambda c: c.get_bucket_policy(Bucket="b1"), ("s3", "GetBucketPolicy")),
        ("s3", lambda c: c.list_objects_v2(Bucket="b1"), ("s3", "ListObjectsV2")),
        (
            "s3",
            lambda c: c.list_bucket_analytics_configurations(Bucket="b1"),
            ("s3", "ListBucketAnalyticsConfigurations"),
        ),
        (
            "s3",
            lambda c: c.get_bucket_metrics_configuration(Bucket="b1", Id="m1"),
            ("s3", "GetBucketMetricsConfiguration"),
        ),
        ("s3", lambda c: c.get_bucket_ownership_controls(Bucket="b1"), ("s3", "GetBucketOwnershipControls")),
        ("s3", lambda c: c.put_object(Bucket="b1", Key="a/b", Body=b"x"), ("s3", "PutObject")),
        ("s3", lambda c: c.delete_bucket(Bucket="b1"), ("s3", "DeleteBucket")),
        ("rds", lambda c: c.describe_db_instances(DBInstanceIdentifier="d1"), ("rds", "DescribeDBInstances")),
        (
            "rds",
            lambda c: c.modify_db_instance(DBInstanceIdentifier="d1", BackupRetentionPeriod=7),
            ("rds", "ModifyDBInstance"),
        ),
        ("sts", lambda c: c.get_caller_identity(), ("sts", "GetCallerIdentity")),
        ("resourcegroupstaggingapi", lambda c: c.get_resources(), ("tagging", "GetResources")),
    ],
)
def test_the_operation_of_a_request_the_sdk_prepares(
    service: str, call: Callable[[Any], Any], expected: tuple[str, str]
) -> None:
    method, target, headers, body = _sdk_request(service, call)
    assert cloudops.operation_of(method, target, headers, body) == expected


def test_s3_virtual_hosted_requests_name_the_bucket_in_the_host() -> None:
    assert cloudops.s3_operation("GET", "/", {"versioning": [""]}, "b1.s3.localhost:4566") == "GetBucketVersioning"
    assert cloudops.s3_operation("PUT", "/", {}, "b1.s3.us-east-1.amazonaws.com") == "CreateBucket"
    assert cloudops.s3_operation("GET", "/key", {}, "b1.s3.amazonaws.com") == "GetObject"
    assert cloudops.s3_operation("GET", "/", {}, "127.0.0.1:5000") == "ListBuckets"


def test_an_unsigned_request_of_no_known_shape_is_unknown() -> None:
    assert cloudops.operation_of("GET", "/healthz", {}, b"") == ("unknown", "unknown")


def test_the_counter_counts_by_operation_and_gives_the_difference_since_a_snapshot() -> None:
    counter = cloudops.OperationCounter()
    versioning = _sdk_request("s3", lambda c: c.get_bucket_versioning(Bucket="b1"))
    create = _sdk_request("s3", lambda c: c.create_bucket(Bucket="b1"))
    counter.record(*create)
    before = counter.snapshot()
    for _ in range(3):
        counter.record(*versioning)
    assert counter.since(before) == Counter({("s3", "GetBucketVersioning"): 3})
    assert cloudops.by_service(counter.snapshot()) == {"s3": {"CreateBucket": 1, "GetBucketVersioning": 3}}


def _audit_line(
    verb: str,
    resource: str,
    *,
    user: str = "admin",
    agent: str = "ack-s3-controller/v1.1.1",
    subresource: str = "",
    stage: str = "ResponseComplete",
    namespace: str = "sbs",
) -> str:
    ref = {"resource": resource, "namespace": namespace, "name": "x"}
    if subresource:
        ref["subresource"] = subresource
    return json.dumps(
        {
            "stage": stage,
            "verb": verb,
            "user": {"username": user},
            "userAgent": agent,
            "objectRef": ref,
            "responseStatus": {"code": 200},
            "stageTimestamp": "2026-11-28T11:00:00.123456Z",
        }
    )


def test_audit_lines_become_the_controllers_writes_by_request() -> None:
    lines = [
        _audit_line("patch", "buckets", subresource="status"),
        _audit_line("patch", "buckets", subresource="status"),
        _audit_line("update", "buckets"),
        _audit_line("create", "events", namespace="sbs"),
        _audit_line("create", "leases", namespace="kube-system", user="system:kube-controller-manager"),
        _audit_line("create", "buckets", agent=auditwrites.BENCH_AGENT),  # the bench applying
        _audit_line("patch", "buckets", stage="RequestReceived"),  # not completed
        _audit_line("get", "buckets"),  # a read
    ]
    writes = [w for w in (auditwrites.parse_line(line) for line in lines) if w is not None]
    assert len(writes) == 6
    mine = auditwrites.by_controller(writes)
    assert auditwrites.breakdown(mine) == {"create events": 1, "patch buckets/status": 2, "update buckets": 1}
    assert auditwrites.per_object(mine, 2) == {
        "total": 2.0,
        "by_request": {"create events": 0.5, "patch buckets/status": 1.0, "update buckets": 0.5},
    }
    assert mine[0].at == datetime(2026, 11, 28, 11, 0, 0, 123456, tzinfo=UTC).timestamp()


def test_requests_per_object_by_service_with_other_services_per_object_of_every_kind() -> None:
    counts = Counter(
        {
            ("s3", "CreateBucket"): 10,
            ("s3", "GetBucketVersioning"): 25,
            ("rds", "CreateDBInstance"): 5,
            ("sts", "GetCallerIdentity"): 3,
        }
    )
    figures = sidebyside.per_object_by_service(counts, {"s3": 10, "rds": 5})
    assert figures["s3"] == {"total": 3.5, "by_operation": {"CreateBucket": 1.0, "GetBucketVersioning": 2.5}}
    assert figures["rds"] == {"total": 1.0, "by_operation": {"CreateDBInstance": 1.0}}
    assert figures["other"] == {"total": 0.2, "by_operation": {"GetCallerIdentity": 0.2}}
    assert figures["all"] == 2.87


def test_rates_per_resource_per_minute() -> None:
    assert sidebyside.rate_per_minute(300, 50, 120.0) == 3.0
    assert sidebyside.rate_per_minute(0, 50, 120.0) == 0.0
    assert sidebyside.rate_per_minute(10, 0, 30.0) == 20.0  # no resources: per controller


def test_ratios_kumo_over_rival() -> None:
    kumo = {"s3_ready_seconds": 7.3, "k8s_writes_per_object": 4.0, "steady_k8s_writes_per_minute": 0.0}
    rival = {
        "s3_ready_seconds": 5.2,
        "k8s_writes_per_object": 2.0,
        "steady_k8s_writes_per_minute": 0.0,
        "rss_mb_loaded": 56.0,
        "not_a_headline": 1.0,
    }
    assert sidebyside.ratios(kumo, rival) == {
        "s3_ready_seconds": 1.4,
        "k8s_writes_per_object": 2.0,
        "steady_k8s_writes_per_minute": 1.0,  # both 0
        "rss_mb_loaded": None,  # kumo's is missing
    }
    assert sidebyside.ratio(5.0, 0.0) is None  # no finite ratio
    assert sidebyside.ratio(None, 3.0) is None


def test_drift_median_counts_a_sample_not_corrected_within_the_cap_as_longer_than_any() -> None:
    assert sidebyside.capped_median([21.0, 25.0, None]) == 25.0
    assert sidebyside.capped_median([21.0, None, None]) is None  # the median is past the cap
    assert sidebyside.capped_median([21.0, 23.0]) == 22.0
    assert sidebyside.capped_median([]) is None


def test_a_process_tree_is_the_process_and_everything_below_it() -> None:
    parents = {10: 1, 11: 10, 12: 11, 13: 10, 20: 1, 21: 20}
    assert sidebyside.descendants(10, parents) == {10, 11, 12, 13}
    assert sidebyside.descendants(21, parents) == {21}


def test_knobs_quick_mode_and_skip() -> None:
    quick = sidebyside.SideBySideParams.from_env({"BENCH_QUICK": "1"})
    assert (quick.n, quick.steady_seconds, quick.quick) == (5, 30.0, True)
    assert sidebyside.SideBySideParams.from_env({"BENCH_RIVALS": "0"}).skipped
    custom = sidebyside.SideBySideParams.from_env({"BENCH_RIVALS": "kumo,ack-s3", "BENCH_RIVALS_N": "50"})
    assert (custom.contenders, custom.n, custom.skipped) == ("kumo,ack-s3", 50, False)
    assert custom.resync_seconds is None  # each controller's own default
    assert sidebyside.SideBySideParams.from_env({"BENCH_RIVALS_RESYNC": "60"}).resync_seconds == 60


def test_the_table_has_a_column_per_controller_and_a_ratio_column_per_rival() -> None:
    section = {
        "params": sidebyside.SideBySideParams().as_json(),
        "controllers": {
            "kumo": {"figures": {"s3_ready_seconds": 7.3, "s3_drift_corrected_seconds": 21.0}},
            "ack-s3": {
                "figures": {"s3_ready_seconds": 5.2, "s3_drift_corrected_seconds": None},
                "drift": {"s3": {"cap_seconds": 300.0}},
            },
        },
        "ratios": {"ack-s3": {"s3_ready_seconds": 1.4, "s3_drift_corrected_seconds": None}},
    }
    lines = sidebyside.table(section).splitlines()
    assert lines[1].split() == ["figure", "kumo", "ack-s3", "kumo/ack-s3"]
    assert "7.3" in lines[2] and "5.2" in lines[2] and "1.4" in lines[2]
    assert "not within 300s" in lines[3]


def test_the_fault_proxy_at_rate_zero_counts_a_real_sdks_operations_against_moto() -> None:
    """The counting proxy as the side-by-side bench sets it up: FaultProxy with no faults and
    the counter as its request hook, boto3 through it to moto's in-process server."""
    from kumo.testbed.faultproxy import FaultProxy

    server_module = pytest.importorskip("moto.server")
    moto = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    counter = cloudops.OperationCounter()
    try:
        host, port = moto.get_host_and_port()
        with FaultProxy(f"http://{host}:{port}", failure_rate=0.0, on_request=counter.record) as proxy:
            common = {
                "endpoint_url": proxy.endpoint,
                "region_name": "us-east-1",
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
            }
            s3 = boto3.client("s3", **common)
            s3.create_bucket(Bucket="counted")
            s3.put_bucket_versioning(Bucket="counted", VersioningConfiguration={"Status": "Enabled"})
            assert s3.get_bucket_versioning(Bucket="counted")["Status"] == "Enabled"
            boto3.client("rds", **common).describe_db_instances()
    finally:
        moto.stop()
    assert cloudops.by_service(counter.snapshot()) == {
        "rds": {"DescribeDBInstances": 1},
        "s3": {"CreateBucket": 1, "GetBucketVersioning": 1, "PutBucketVersioning": 1},
    }


def test_a_drift_is_timed_from_when_it_shows_in_the_cloud_until_it_reads_as_set_again() -> None:
    watch = sidebyside.DriftWatch([("s3", "b1"), ("rds", "d1"), ("rds", "d2")])
    watch.observe(("rds", "d1"), True, 100.0)  # the modify is still pending: not drifted yet
    watch.observe(("s3", "b1"), False, 100.0)
    watch.observe(("rds", "d1"), False, 104.0)
    watch.observe(("s3", "b1"), True, 121.0)
    watch.observe(("rds", "d1"), True, 150.5)
    assert watch.finished(("s3", "b1")) and watch.corrected_count == 2 and not watch.done
    assert watch.summary("s3", 300.0) == {
        "cap_seconds": 300.0,
        "samples": {"b1": 21.0},
        "not_within_cap": 0,
        "change_never_seen": [],
    }
    assert watch.summary("rds", 300.0) == {
        "cap_seconds": 300.0,
        "samples": {"d1": 46.5},
        "not_within_cap": 0,
        "change_never_seen": ["d2"],  # never drifted: left out, not counted as corrected
    }


def test_a_drift_never_put_back_is_not_within_the_cap() -> None:
    watch = sidebyside.DriftWatch([("s3", "b1")])
    watch.observe(("s3", "b1"), False, 10.0)
    watch.observe(("s3", "b1"), False, 300.0)
    summary = watch.summary("s3", 300.0)
    assert summary["samples"] == {"b1": None} and summary["not_within_cap"] == 1
    assert sidebyside.capped_median(list(summary["samples"].values())) is None


def _trial(ready: float, s3_steady: dict[str, int], writes: float, rss: float) -> dict[str, Any]:
    """One controller's kept counts, as Trial.run records them (S3 only)."""
    return {
        "rss_mb_idle": rss,
        "create": {
            "objects": {"s3": 50},
            "ready_seconds": {"s3": ready},
            "cloud_requests_per_object": {"s3": {"total": 7.0, "by_operation": {}}, "all": 7.0},
            "k8s_writes_per_object": {"total": writes, "by_request": {}},
        },
        "steady": {
            "seconds": 120.0,
            "cloud_requests_per_resource_per_minute": {"s3": 0.0},
            "cloud_requests": {"s3": s3_steady, "tagging": {"GetResources": 4}} if s3_steady else {},
            "k8s_writes_per_minute": 0.0,
            "rss_mb_loaded": rss + 10,
        },
        "drift": {"s3": {"cap_seconds": 300.0, "samples": {"b1": 40.0}, "not_within_cap": 0}},
    }


def test_summarise_computes_each_controllers_figures_and_the_ratios_from_the_kept_counts() -> None:
    section: dict[str, Any] = {
        "params": sidebyside.SideBySideParams().as_json(),
        "controllers": {
            "kumo": _trial(8.0, {"GetBucketVersioning": 96}, 5.0, 120.0),
            "ack-s3": _trial(10.0, {}, 2.0, 50.0),
            "broken": {"error": "RuntimeError('no binary')"},
        },
    }
    sidebyside.summarise(section)
    kumo = section["controllers"]["kumo"]["figures"]
    # 96 versioning reads + 4 tagging reads over 2 minutes, for 50 buckets: 1 per bucket per minute
    assert kumo["steady_requests_per_resource_per_minute"] == 1.0
    assert kumo["s3_drift_corrected_seconds"] == 40.0 and kumo["rss_mb_loaded"] == 130.0
    assert section["ratios"]["ack-s3"]["s3_ready_seconds"] == 0.8
    assert section["ratios"]["ack-s3"]["k8s_writes_per_object"] == 2.5
    assert section["ratios"]["ack-s3"]["steady_requests_per_resource_per_minute"] is None  # ACK's is 0
    assert "broken" not in section["ratios"] and "figures" not in section["controllers"]["broken"]
    assert "error" in sidebyside.table(section).splitlines()[2]


def _write(name: str, request: str = "create secrets") -> auditwrites.AuditWrite:
    verb, resource = request.split(" ", 1)
    return auditwrites.AuditWrite(0.0, "admin", "kumo-controller/0.1.0", verb, resource, "sbs", name, 201)


def test_each_write_goes_to_the_kind_of_the_object_it_names() -> None:
    names = {"s3": ["sbs-s3-0000", "sbs-s3-0001"], "rds": ["sbs-rds-0000"]}
    writes = [
        _write("sbs-s3-0000", "patch buckets"),
        _write("sbs-s3-0000", "patch buckets/status"),
        _write("sbs-s3-0000-bucket"),  # kumo's connection Secret of a bucket
        _write("sbs-s3-0001.18a2b3c4d5", "create events"),  # an Event named <object>.<hash>
        _write("sbs-rds-0000-connection"),
        _write("aws", "patch providerconfigs/status"),  # shared by every object
        _write("", "create events"),  # generateName, not named in the audit log
        _write("sbs-s3-00001"),  # not an object's name, nor one extended at a separator
    ]
    found = auditwrites.by_kind(writes, names)
    assert [w.name for w in found["s3"]] == [
        "sbs-s3-0000",
        "sbs-s3-0000",
        "sbs-s3-0000-bucket",
        "sbs-s3-0001.18a2b3c4d5",
    ]
    assert [w.name for w in found["rds"]] == ["sbs-rds-0000-connection"]
    assert [w.name for w in found[auditwrites.UNATTRIBUTED]] == ["aws", "", "sbs-s3-00001"]


def test_the_longest_object_name_a_write_extends_owns_it() -> None:
    owners = {"db": "rds", "db-main": "s3"}
    assert auditwrites.owner_of("db-main-connection", owners) == "s3"
    assert auditwrites.owner_of("db-other", owners) == "rds"
    assert auditwrites.owner_of("other", owners) is None


def test_resync_runs_each_with_its_own_results_key() -> None:
    assert sidebyside.parse_resyncs("") == (None,)
    assert sidebyside.parse_resyncs("default, 60") == (None, 60)
    assert sidebyside.parse_resyncs("60,60") == (60,)
    with pytest.raises(ValueError, match="positive"):
        sidebyside.parse_resyncs("0")
    params = sidebyside.SideBySideParams.from_env({"BENCH_RIVALS_RESYNC": "default,60"})
    assert [(run.resync_seconds, run.results_key) for run in params.runs()] == [
        (None, "rivals"),
        (60, "rivals_resync_60"),
    ]
    assert params.as_json()["resyncs"] == [None, 60]


def test_scale_knobs() -> None:
    assert sidebyside.SideBySideParams().scale_n == 2000
    quick = sidebyside.SideBySideParams.from_env({"BENCH_QUICK": "1"})
    assert (quick.scale_n, quick.scale_cap) == (20, 120.0)
    custom = sidebyside.SideBySideParams.from_env({"BENCH_RIVALS_SCALE_N": "0", "BENCH_RIVALS_SCALE_CAP": "30"})
    assert (custom.scale_n, custom.scale_cap) == (0, 30.0)


def test_each_controller_records_the_poll_and_resync_it_was_given() -> None:
    from kumo.controller.runtime.config import ControllerConfig

    from bench.rivals import by_name

    kumo = sidebyside.KumoContender()
    assert kumo.resync_settings({}, "sbs", None) == []
    (setting,) = kumo.resync_settings({}, "sbs", 60)
    variable, value = setting.split("=")
    assert ControllerConfig.load(env={variable: value}).sweep_interval == 60.0  # the sweep is kumo's poll
    env = {"aws": {"region": "us-east-1", "endpoint": "http://127.0.0.1:5000"}}
    ack = sidebyside.RivalContender(by_name("ack-s3"))
    crossplane = sidebyside.RivalContender(by_name("crossplane-aws"))
    assert ack.resync_settings(env, "sbs", 60) == ["--reconcile-default-resync-seconds=60"]
    assert crossplane.resync_settings(env, "sbs", 60) == ["--poll=60s", "--sync=60s"]
    assert ack.resync_settings(env, "sbs", None) == crossplane.resync_settings(env, "sbs", None) == []


def _scaled(trial: dict[str, Any], ready: int, ready_seconds: float | None, rss: float) -> dict[str, Any]:
    """A trial with per-kind writes, a scale phase and its recorded conditions."""
    trial["create"]["k8s_writes_per_object_by_kind"] = {
        "s3": {"total": 3.0, "by_request": {"create secrets": 1.0, "patch buckets": 1.0, "patch buckets/status": 1.0}},
        "unattributed": {"total": 0.04, "by_request": {"patch providerconfigs/status": 0.04}},
    }
    trial["scale"] = {
        "applied": 2000,
        "ready": ready,
        "ready_seconds": ready_seconds,
        "rss_mb_peak": rss,
        "cap_seconds": 600.0,
    }
    trial["load_average"] = {"start": [0.5, 0.6, 0.7], "end": [1.1, 0.9, 0.8]}
    trial["resync"] = []
    return trial


def test_figures_per_kind_and_at_scale_with_the_conditions_of_each_run() -> None:
    section: dict[str, Any] = {
        "params": sidebyside.SideBySideParams().as_json(),
        "controllers": {
            "kumo": _scaled(_trial(8.0, {}, 3.04, 120.0), 2000, 95.0, 180.0),
            "crossplane-aws": _scaled(_trial(70.0, {}, 14.0, 160.0), 430, None, 240.0),
        },
    }
    sidebyside.summarise(section)
    kumo = section["controllers"]["kumo"]["figures"]
    assert (kumo["s3_k8s_writes_per_object"], kumo["unattributed_k8s_writes_per_object"]) == (3.0, 0.04)
    assert (kumo["scale_rss_mb"], kumo["scale_ready_seconds"], kumo["scale_ready"]) == (180.0, 95.0, 2000)
    assert section["ratios"]["crossplane-aws"]["scale_rss_mb"] == 0.75
    assert section["ratios"]["crossplane-aws"]["scale_ready_seconds"] is None  # not all Ready within the cap
    rows = {row[0]: row[1:] for row in sidebyside.rows(section)}
    assert rows["K8s writes per bucket to Ready"] == ["3", "3", "1"]
    assert rows["RSS with 2000 buckets applied (MiB, highest)"] == ["180", "240", "0.75"]
    assert rows["2000 buckets to Ready (s)"] == ["95", "not within 600s", "n/a"]
    assert rows["buckets Ready when that RSS was measured"] == ["2000 of 2000", "430 of 2000", ""]  # a count: no ratio
    assert rows["load average at start (1/5/15 min)"] == ["0.5/0.6/0.7", "0.5/0.6/0.7", ""]
    assert rows["poll/resync set"] == ["defaults", "defaults", ""]
    text = sidebyside.markdown(section).splitlines()
    assert text[2] == "| figure | kumo | crossplane-aws | kumo/crossplane-aws |"
    assert text[3] == "| --- | --- | --- | --- |"
    assert "| RSS with 2000 buckets applied (MiB, highest) | 180 | 240 | 0.75 |" in text


def test_markdown_of_every_side_by_side_section_of_a_results_file(tmp_path, capsys) -> None:
    section: dict[str, Any] = {
        "params": sidebyside.SideBySideParams().as_json(),
        "controllers": {"kumo": _scaled(_trial(8.0, {}, 3.04, 120.0), 2000, 95.0, 180.0)},
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"ready_seconds": 1.0, "rivals": section, "rivals_resync_60": section}))
    assert sidebyside.print_markdown(path) == 0
    printed = capsys.readouterr().out
    assert "key rivals -->" in printed and "key rivals_resync_60 -->" in printed
    assert printed.count("| figure | kumo |") == 2
    path.write_text(json.dumps({"ready_seconds": 1.0}))
    assert sidebyside.print_markdown(path) == 1


def test_an_event_created_with_generate_name_goes_to_the_object_the_api_says_it_is_about() -> None:
    names = {"s3": ["sbs-s3-0000"], "rds": ["sbs-rds-0000"]}
    writes = [
        _write("", "create events"),  # kumo's: generateName, so the audit log names no Event
        _write("", "create events"),
        _write("sbs-rds-0000.17f0a", "create events"),  # a Go recorder's: named
        _write("", "create events"),  # the API lists no Event left for it
    ]
    listed = [
        ("sbs-s3-0000.x7k2p", "sbs-s3-0000"),
        ("sbs-rds-0000.17f0a", "sbs-rds-0000"),
        ("sbs-rds-0000.q9", "sbs-rds-0000"),
    ]
    unnamed = auditwrites.unnamed_events(listed, writes)
    assert unnamed == ["sbs-s3-0000", "sbs-rds-0000"]
    found = auditwrites.by_kind(writes, names, unnamed)
    assert (len(found["s3"]), len(found["rds"]), len(found[auditwrites.UNATTRIBUTED])) == (1, 2, 1)


def test_a_write_named_after_an_objects_uid_goes_to_its_kind() -> None:
    uid = "133f3202-10f6-4f06-a789-8f7cd2684a41"  # Crossplane's ProviderConfigUsage per managed resource
    found = auditwrites.by_kind([_write(uid, "create providerconfigusages")], {"s3": ["sbs-s3-0000", uid]})
    assert len(found["s3"]) == 1 and not found[auditwrites.UNATTRIBUTED]
