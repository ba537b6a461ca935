"""The controller's own settings, from `kumo run` flags or KUMO_* environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class ControllerConfig:
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    controller_namespace: str = "kumo-system"  # where ClusterProviderConfig credentials live
    cluster_id: str = ""  # empty: the UID of the kube-system namespace
    workers: int = 16  # reconciles in flight at once
    threads: int = 64  # blocking SDK and Kubernetes calls in flight at once
    kubeconfig: str = ""  # empty: in-cluster config, else KUBECONFIG / ~/.kube/config
    health_port: int = 0  # 0: no health endpoint
    health_host: str = "127.0.0.1"  # 0.0.0.0 in a Pod, so the kubelet's probes reach it
    metrics_port: int = 0  # 0: no Prometheus endpoint
    sweep_interval: float = 60.0  # seconds between drift sweeps of one scope
    sweep_concurrency: int = 4  # scopes swept at once
    drift_policy: str = "Correct"  # default for objects without spec.driftPolicy
    cloud_rate: float = 50.0  # cloud calls per second per account and region (0: unlimited)
    cloud_burst: float = 100.0
    log_format: str = "text"
    log_level: str = "INFO"
    # Leader election (controller/runtime/leader.py). Off by default: a single process makes no Lease writes.
    leader_elect: bool = False
    lease_name: str = "kumo-controller"  # a Lease in controller_namespace
    lease_duration: int = 15  # seconds after the last renewal before a standby takes over
    renew_deadline: float = 10.0  # seconds a leader keeps acting without renewing, then exits
    retry_period: float = 2.0  # seconds between renewals (leader) and tries (standby)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> ControllerConfig:
        env = dict(os.environ if env is None else env)
        namespaces = tuple(n for n in env.get("KUMO_NAMESPACES", "").split(",") if n)
        return cls(
            namespaces=namespaces,
            controller_namespace=env.get("KUMO_CONTROLLER_NAMESPACE", cls.controller_namespace),
            cluster_id=env.get("KUMO_CLUSTER_ID", ""),
            workers=int(env.get("KUMO_WORKERS", cls.workers)),
            threads=int(env.get("KUMO_THREADS", cls.threads)),
            kubeconfig=env.get("KUBECONFIG", ""),
            health_port=int(env.get("KUMO_HEALTH_PORT", 0)),
            health_host=env.get("KUMO_HEALTH_HOST", cls.health_host),
            metrics_port=int(env.get("KUMO_METRICS_PORT", 0)),
            sweep_interval=float(env.get("KUMO_SWEEP_INTERVAL", cls.sweep_interval)),
            sweep_concurrency=int(env.get("KUMO_SWEEP_CONCURRENCY", cls.sweep_concurrency)),
            drift_policy=env.get("KUMO_DRIFT_POLICY", cls.drift_policy),
            cloud_rate=float(env.get("KUMO_CLOUD_RATE", cls.cloud_rate)),
            cloud_burst=float(env.get("KUMO_CLOUD_BURST", cls.cloud_burst)),
            log_format=env.get("KUMO_LOG_FORMAT", cls.log_format),
            log_level=env.get("KUMO_LOG_LEVEL", cls.log_level),
            leader_elect=env.get("KUMO_LEADER_ELECT", "").strip().lower() in ("1", "true", "yes", "on"),
            lease_name=env.get("KUMO_LEASE_NAME", cls.lease_name),
            lease_duration=int(env.get("KUMO_LEASE_DURATION", cls.lease_duration)),
            renew_deadline=float(env.get("KUMO_RENEW_DEADLINE", cls.renew_deadline)),
            retry_period=float(env.get("KUMO_RETRY_PERIOD", cls.retry_period)),
        )
