"""Prometheus metrics for the controller, on a registry of its own (no module-level state).

Names follow Prometheus conventions (`kumo_` prefix, `_total` counters, `_seconds` units). The
labels never carry object names or secret values: cardinality stays bounded by kinds, providers,
operations and reasons.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from kumo.controller.core.resources import ObjectKey
from kumo.providers.base import CloudCall
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from kumo.api import EVENT_DRIFT_CORRECTED, EVENT_DRIFT_DETECTED

CALL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def _counter(registry: CollectorRegistry, name: str, doc: str, labels: tuple[str, ...]) -> Counter:
    return Counter(name, doc, labels, registry=registry)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        r = self.registry
        self.cloud_calls = _counter(
            r, "kumo_cloud_api_calls_total", "Cloud API calls.", ("provider", "service", "operation", "outcome")
        )
        self.cloud_call_seconds = Histogram(
            "kumo_cloud_api_call_duration_seconds",
            "Duration of cloud API calls.",
            ("provider", "service"),
            buckets=CALL_BUCKETS,
            registry=r,
        )
        self.ratelimit_wait = _counter(
            r,
            "kumo_ratelimit_wait_seconds_total",
            "Time cloud calls waited for the token bucket of their account and region.",
            ("provider", "region"),
        )
        self.reconcile_seconds = Histogram(
            "kumo_reconcile_duration_seconds", "Duration of one reconcile.", ("kind",), buckets=CALL_BUCKETS, registry=r
        )
        self.reconcile_errors = _counter(
            r, "kumo_reconcile_errors_total", "Reconciles that ended in an error.", ("kind", "type")
        )
        self.drift_detected = _counter(r, "kumo_drift_detected_total", "Newly seen drift (per object).", ("kind",))
        self.drift_corrected = _counter(r, "kumo_drift_corrected_total", "Drift put back to the spec.", ("kind",))
        self.drifted = Gauge("kumo_drifted_objects", "Objects currently drifted.", ("kind",), registry=r)
        self.sweep_seconds = Histogram(
            "kumo_sweep_duration_seconds", "Duration of one drift sweep.", ("kind",), buckets=CALL_BUCKETS, registry=r
        )
        self.sweep_size = Gauge("kumo_sweep_resources", "Resources compared by the last sweep.", ("kind",), registry=r)
        self.objects = Gauge("kumo_objects", "Managed objects by kind and Ready status.", ("kind", "ready"), registry=r)

    def count_event(self, key: ObjectKey, reason: str) -> None:
        """The reconciler's event hook: drift seen and drift put back, per kind."""
        counter = {EVENT_DRIFT_DETECTED: self.drift_detected, EVENT_DRIFT_CORRECTED: self.drift_corrected}.get(reason)
        if counter is not None:
            counter.labels(key.kind).inc()

    def record_call(self, call: CloudCall) -> None:
        self.cloud_calls.labels(call.provider, call.service, call.operation, call.outcome).inc()
        self.cloud_call_seconds.labels(call.provider, call.service).observe(call.seconds)

    def serve(self, port: int, host: str) -> None:
        start_http_server(port, addr=host, registry=self.registry)
