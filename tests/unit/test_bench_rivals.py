"""The rivals' setup without building or running them: the servers they open bind loopback only,
their resync knobs, the objects the benchmark applies, what counts as Ready, and where a build
is cached."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
from kumo.testbed.process import listening_sockets

from bench.rivals import RIVALS, by_name
from bench.rivals.ack import ACK_S3, SYNCED
from bench.rivals.crossplane import PROVIDER_AWS

ENV: dict[str, Any] = {
    "kubeconfig": "/nowhere/kubeconfig",
    "aws": {
        "endpoint": "http://127.0.0.1:5999",
        "region": "us-east-1",
        "access_key_id": "testing-key",
        "secret_access_key": "testing-secret",
    },
}
PORTS = {"metrics": 10001, "health": 10002, "webhook": 10003}


def _flags(argv: list[str]) -> dict[str, str]:
    return dict(arg.removeprefix("--").split("=", 1) for arg in argv[1:] if "=" in arg)


def _with_conditions(**states: str) -> dict[str, Any]:
    return {"status": {"conditions": [{"type": kind, "status": status} for kind, status in states.items()]}}


def test_ack_opens_every_server_on_loopback_and_calls_moto() -> None:
    flags = _flags(ACK_S3.command(Path("/bin/ack"), ENV, "bench", PORTS, None))
    assert flags["metrics-addr"] == "127.0.0.1:10001"
    assert flags["healthz-addr"] == "127.0.0.1:10002"
    assert flags["webhook-server-addr"] == "127.0.0.1:10003"
    assert flags["aws-endpoint-url"] == ENV["aws"]["endpoint"]
    assert flags["watch-namespace"] == "bench"
    assert "reconcile-default-resync-seconds" not in flags  # its own default unless asked
    assert ACK_S3.ready_url(PORTS) == "http://127.0.0.1:10002/healthz"


def test_provider_aws_serves_metrics_on_loopback_only() -> None:
    argv = PROVIDER_AWS.command(Path("/bin/provider-aws"), ENV, "bench", PORTS, None)
    assert _flags(argv) == {"metrics-bind-address": "127.0.0.1:10001"}


def test_resync_seconds_sets_every_poll_and_resync() -> None:
    ack = _flags(ACK_S3.command(Path("/bin/ack"), ENV, "bench", PORTS, 60))
    crossplane = _flags(PROVIDER_AWS.command(Path("/bin/provider-aws"), ENV, "bench", PORTS, 60))
    assert ack["reconcile-default-resync-seconds"] == "60"
    assert (crossplane["poll"], crossplane["sync"]) == ("60s", "60s")


def test_ack_gets_moto_credentials_from_the_environment() -> None:
    env = ACK_S3.process_env(ENV)
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == ("testing-key", "testing-secret")


def test_each_manifest_is_of_the_kind_it_names() -> None:
    for rival in RIVALS:
        for kind in rival.kinds.values():
            manifest = rival.manifest(kind.kind, "b-1", "bench", ENV)
            assert (manifest["apiVersion"], manifest["kind"]) == (kind.api_version, kind.kind)
            assert manifest["metadata"]["name"] == "b-1"
            assert ("namespace" in manifest["metadata"]) == kind.namespaced


def test_buckets_ask_for_versioning_and_name_the_cloud_bucket() -> None:
    ack = ACK_S3.manifest("Bucket", "b-1", "bench", ENV)
    assert ack["spec"]["name"] == "b-1"
    assert ack["spec"]["versioning"] == {"status": "Enabled"}
    crossplane = PROVIDER_AWS.manifest("Bucket", "b-1", "bench", ENV)
    assert crossplane["metadata"]["annotations"]["crossplane.io/external-name"] == "b-1"
    assert crossplane["spec"]["forProvider"]["versioningConfiguration"] == {"status": "Enabled"}


def test_rds_instance_keeps_backups_and_writes_its_connection_secret_to_the_namespace() -> None:
    rds = PROVIDER_AWS.manifest("RDSInstance", "db-1", "bench", ENV)
    assert rds["spec"]["forProvider"]["backupRetentionPeriod"] == 7
    assert rds["spec"]["writeConnectionSecretToRef"]["namespace"] == "bench"


def test_a_kind_the_rival_does_not_manage_is_refused() -> None:
    with pytest.raises(ValueError, match="RDSInstance"):
        ACK_S3.manifest("RDSInstance", "db-1", "bench", ENV)


def test_provider_config_sends_every_call_to_the_bed_and_reads_credentials_from_the_secret() -> None:
    spec = PROVIDER_AWS.provider_config(ENV, "bench")["spec"]
    assert spec["endpoint"]["url"] == {"type": "Static", "static": ENV["aws"]["endpoint"]}
    assert spec["credentials"]["source"] == "Secret"
    assert spec["credentials"]["secretRef"]["namespace"] == "bench"
    assert "testing-secret" not in repr(spec)  # the key is in the Secret, not the config


def test_ready_means_what_each_rival_means_by_it() -> None:
    assert ACK_S3.ready(_with_conditions(**{SYNCED: "True"}))
    assert not ACK_S3.ready(_with_conditions(**{SYNCED: "False"}))
    assert not ACK_S3.ready({})
    assert PROVIDER_AWS.ready(_with_conditions(Ready="True", Synced="True"))
    assert not PROVIDER_AWS.ready(_with_conditions(Ready="True", Synced="False"))
    assert not PROVIDER_AWS.ready(_with_conditions(Synced="True"))


def test_builds_are_cached_by_version_and_pins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUMO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("BENCH_RIVAL_ACK_S3", raising=False)
    path = ACK_S3.binary_path()
    assert path.parent == tmp_path / "rivals" / f"ack-s3-v1.1.1-{ACK_S3.pin_digest()}"
    assert ACK_S3.pin_digest() != PROVIDER_AWS.pin_digest()
    monkeypatch.setenv("BENCH_RIVAL_ACK_S3", "/opt/ack")
    assert ACK_S3.binary_path() == Path("/opt/ack")


def test_rivals_are_found_by_name() -> None:
    assert by_name("crossplane-aws") is PROVIDER_AWS
    with pytest.raises(KeyError, match="ack-s3"):
        by_name("ack-rds")


def test_listening_sockets_are_read_from_proc_with_their_addresses() -> None:
    with socket.socket() as ipv4, socket.socket(socket.AF_INET6) as ipv6, socket.socket() as unbound:
        ipv4.bind(("127.0.0.1", 0))
        ipv4.listen()
        ipv6.bind(("::1", 0))
        ipv6.listen()
        unbound.bind(("127.0.0.1", 0))  # bound, never listening: not a server
        found = listening_sockets(os.getpid())
        assert ("127.0.0.1", ipv4.getsockname()[1]) in found
        assert ("::1", ipv6.getsockname()[1]) in found
        assert all(port != unbound.getsockname()[1] for _, port in found)
