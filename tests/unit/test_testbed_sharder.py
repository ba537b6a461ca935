"""The test bed's sharder pieces without building or running it (kumo.testbed.sharding): kumo's
ControllerRing, a hand-made shard Lease, the webhook's serving certificate from the bed's CA, and
the build cache (one build per pin, under a lock)."""

from __future__ import annotations

import datetime
import fcntl
import ipaddress
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from kumo.testbed import cluster, sharding

from kumo.api import GROUP, LABEL_CONTROLLER_RING, SHARDING_GROUP


def test_kumos_ring_shards_buckets_and_databases_with_the_secrets_they_control():
    ring = sharding.kumo_ring()
    assert ring["apiVersion"] == f"{SHARDING_GROUP}/v1alpha1" and ring["kind"] == "ControllerRing"
    assert ring["metadata"]["name"] == "kumo"
    secrets = [{"group": "", "resource": "secrets"}]
    assert ring["spec"] == {
        "resources": [
            {"group": GROUP, "resource": "buckets", "controlledResources": secrets},
            {"group": GROUP, "resource": "databases", "controlledResources": secrets},
        ]
    }


def test_a_ring_limited_to_namespaces_selects_them_by_name():
    ring = sharding.kumo_ring("r1", namespaces=["b", "a"])
    assert ring["metadata"]["name"] == "r1"
    assert ring["spec"]["namespaceSelector"] == {
        "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["a", "b"]}]
    }


def test_a_shard_lease_is_held_by_its_own_name_and_labelled_with_its_ring():
    lease = sharding.ring_lease("shard-a", "ns", ring="r1", duration_seconds=7)
    assert lease["metadata"] == {"name": "shard-a", "namespace": "ns", "labels": {LABEL_CONTROLLER_RING: "r1"}}
    spec = lease["spec"]
    assert spec["holderIdentity"] == "shard-a" and spec["leaseDurationSeconds"] == 7
    renewed = datetime.datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.UTC)
    assert abs(renewed - datetime.datetime.now(datetime.UTC)) < datetime.timedelta(minutes=1)
    assert spec["acquireTime"] == spec["renewTime"]


def test_the_webhook_certificate_is_for_loopback_and_signed_by_the_beds_ca(tmp_path):
    pki, certs = tmp_path / "pki", tmp_path / "certs"
    pki.mkdir()
    certs.mkdir()
    cluster._write_pki(pki)
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    ca_file = cluster.issue_loopback_certificate(pki, certs, "sharder")
    assert ca_file == pki / "ca.crt"
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate((certs / "tls.crt").read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, rsa.RSAPublicKey) and cert.signature_hash_algorithm is not None
    assert cert.issuer == ca.subject
    ca_key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert (certs / "tls.key").stat().st_mode & 0o777 == 0o600
    # The API server's own certificate is still issued as before.
    server = x509.load_pem_x509_certificate((pki / "server.crt").read_bytes())
    server_names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(server_names.get_values_for_type(x509.DNSName)) == {"localhost", "kubernetes.default.svc"}


@pytest.fixture
def empty_cache(monkeypatch, tmp_path) -> Path:
    monkeypatch.setenv("KUMO_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("KUMO_SHARDER_DIR", raising=False)
    return tmp_path


def test_a_build_holds_the_cache_entrys_lock_and_a_built_pin_is_reused(monkeypatch, empty_cache):
    builds = []

    def build(target: Path, progress: bool) -> None:
        lock = target.parent / f"{target.name}.lock"
        with lock.open("w") as probe, pytest.raises(BlockingIOError):
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by the builder
        (target / "crds").mkdir(parents=True)
        (target / "sharder").write_text("")
        builds.append(target)

    monkeypatch.setattr(sharding, "_build", build)
    first = sharding.ensure_sharder(progress=False)
    again = sharding.ensure_sharder(progress=False)
    assert first == again and len(builds) == 1
    assert first.binary.parent.parent == empty_cache / "sharder"
    assert first.binary.parent.name.startswith(f"sharder-{sharding.SHARDER_VERSION}-")
    assert first.crd_dir == first.binary.parent / "crds"


def test_a_sharder_directory_given_is_used_as_it_is(monkeypatch, tmp_path):
    monkeypatch.setenv("KUMO_SHARDER_DIR", str(tmp_path))
    monkeypatch.setattr(sharding, "_build", lambda target, progress: pytest.fail("built although given"))
    assert sharding.ensure_sharder(progress=False) == sharding.SharderBuild(tmp_path / "sharder", tmp_path / "crds")
