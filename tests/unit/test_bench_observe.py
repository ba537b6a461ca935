"""The bench reads the controller's own log lines: sweeps and cloud calls, as `kumo run` writes
them today (the controller's code and its log format, not a copy of either)."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import pytest
from kumo.controller.core.resources import ObjectKey
from kumo.controller.runtime.cache import ObjectCache
from kumo.controller.runtime.cloudcalls import CloudCalls
from kumo.controller.runtime.logs import configure_logging
from kumo.controller.runtime.scopes import SweepScope
from kumo.controller.runtime.sweeps import Sweeper
from kumo.controller.runtime.workqueue import WorkQueue
from kumo.providers.base import CloudCall, Kind

from bench import observe

from .test_cache_and_startup import JudgingReconciler, ListingClient, _bucket

NAMESPACE = "bench-1a2b3c"


@pytest.fixture
def controller_log() -> Iterator[io.StringIO]:
    """The root logger as `kumo run` sets it up at DEBUG (the bench's level), into a string."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("text", "DEBUG")
    stream = io.StringIO()
    root.handlers[0].setStream(stream)  # type: ignore[attr-defined]
    yield stream
    root.handlers[:] = handlers
    root.setLevel(level)


def _in_namespaced_config(name: str) -> dict:
    body = _bucket(name, namespace=NAMESPACE)
    body["spec"]["providerConfigRef"] = {"kind": "ProviderConfig", "name": "gcp"}
    return body


def test_the_bench_reads_a_sweep_the_controller_logged(controller_log: io.StringIO) -> None:
    cache = ObjectCache()
    for name in ("a", "b"):
        cache.put(ObjectKey(Kind.BUCKET, NAMESPACE, name), _in_namespaced_config(name))
    sweeper = Sweeper(JudgingReconciler(ListingClient(cache, [])), cache, WorkQueue(), lambda namespace, name: True)
    scope = SweepScope("ProviderConfig", NAMESPACE, "gcp", Kind.BUCKET)
    assert list(cache.scopes()) == [scope]

    asyncio.run(sweeper._sweep_bounded(asyncio.Semaphore(1), scope))

    [sweep] = observe.sweeps(controller_log.getvalue(), NAMESPACE)
    assert (sweep.kind, sweep.config, sweep.listed, sweep.compared, sweep.drifted, sweep.enqueued) == (
        "Bucket",
        "gcp",
        2,
        2,
        0,
        0,
    )
    assert sweep.settled
    assert observe.sweeps(controller_log.getvalue(), "another-namespace") == []


def test_the_bench_counts_the_cloud_calls_the_controller_logged(controller_log: io.StringIO) -> None:
    calls = CloudCalls()
    calls.record(CloudCall("aws", "rds", "DescribeDBInstances", "ok", 0.012))
    calls.record(CloudCall("gcp", "storage", "buckets.list", "429", 0.003))
    calls.record(CloudCall("aws", "rds", "DescribeDBInstances", "Throttling", 0.02))

    assert observe.cloud_calls(controller_log.getvalue()) == {
        ("aws", "rds", "DescribeDBInstances"): 2,
        ("gcp", "storage", "buckets.list"): 1,
    }


def _sweep(config: str, kind: str, listed: int, at: float) -> observe.Sweep:
    return observe.Sweep(at, kind, config, listed, listed, 0, 0, 1, 0.1)


def test_a_wait_for_sweeps_says_how_old_the_newest_sweep_is_and_what_each_scope_listed() -> None:
    sizes = {("aws", "Database"): 250, ("gcp", "Bucket"): 9250}
    swept = [_sweep("aws", "Database", 250, 1000.0), _sweep("gcp", "Bucket", 9015, 1003.0)]

    news = observe.sweep_news(swept, sizes, now=1300.0)

    assert news == "newest sweep logged 297s ago; most listed: aws/Database 250/250, gcp/Bucket 9015/9250"
    assert observe.sweep_news([], sizes, now=1300.0) == "no sweep logged yet"
