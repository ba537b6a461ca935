"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager,
built from their Go modules.

This is the envtest pattern grown by one process: no kubelet and no scheduler, but the
controller-manager runs the controllers a controller author relies on without noticing, so the
bed behaves like a real cluster where it matters to kumo: namespace deletion really removes a
namespace's content (and waits for finalizers), ownerReference garbage collection removes
dependents, and the ServiceAccount controllers create the `default` ServiceAccount and token
Secrets (so the API server's ServiceAccount admission plugin stays on, as in every cluster).
The binaries are built once from the pinned Go module in `testbed/controlplane/` into a cache
directory keyed by that module's go.sum, so a changed pin rebuilds and everything else reuses
the cache. `KUMO_KUBE_APISERVER`, `KUMO_ETCD` and `KUMO_KUBE_CONTROLLER_MANAGER` point at existing
binaries instead.

Authentication uses a static token file: `admin` (system:masters) for the tooling, the
controller-manager's own user `system:kube-controller-manager` (bound by RBAC's bootstrap
policy; each controller then acts as its own ServiceAccount, `--use-service-account-credentials`)
and a few unprivileged users (`alice`, `bob`) that tests use to prove RBAC is enforced.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import ipaddress
import os
import secrets
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from .process import LOOPBACK, ManagedProcess, free_port

GO_MODULE_DIR = Path(__file__).parent / "controlplane"
KUBERNETES_VERSION = "v1.34.4"
ETCD_VERSION = "v3.6.4"
UNPRIVILEGED_USERS = ("alice", "bob")
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"
# What the controller-manager runs: the controllers whose absence a controller author would
# notice (namespace deletion, ownerReference garbage collection, ServiceAccounts and their token
# Secrets, the kube-root-ca.crt ConfigMap every namespace gets). Nothing for nodes, pods or clouds:
# no kubelet runs here. Names as `kube-controller-manager --help` lists them.
CONTROLLERS = (
    "garbage-collector-controller",
    "namespace-controller",
    "serviceaccount-controller",
    "serviceaccount-token-controller",
    "root-ca-certificate-publisher-controller",
)


@dataclass(frozen=True)
class Binaries:
    kube_apiserver: Path
    etcd: Path
    kube_controller_manager: Path


def cache_dir() -> Path:
    base = os.environ.get("KUMO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kumo"
    )
    return Path(base)


def _pin_digest() -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((GO_MODULE_DIR / name).read_bytes())
    return digest.hexdigest()[:12]


def ensure_binaries(progress: bool = True) -> Binaries:
    """Return the control-plane binaries, building them on first use (takes minutes)."""
    overrides = [os.environ.get(f"KUMO_{name}") for name in ("KUBE_APISERVER", "ETCD", "KUBE_CONTROLLER_MANAGER")]
    if all(overrides):
        return Binaries(*(Path(str(path)) for path in overrides))
    target = cache_dir() / "controlplane" / f"k8s-{KUBERNETES_VERSION}-etcd-{ETCD_VERSION}-{_pin_digest()}"
    binaries = Binaries(target / "kube-apiserver", target / "etcd", target / "kube-controller-manager")
    if _all_present(binaries):
        return binaries
    target.parent.mkdir(parents=True, exist_ok=True)
    # One build at a time (two pytest-xdist workers, or a test bed started beside `make test`):
    # builds into the same cache remove each other's staging directory. The next waits, then
    # finds the binaries built.
    with (target.parent / f"{target.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not _all_present(binaries):
            _build(target, progress)
    return binaries


def _all_present(binaries: Binaries) -> bool:
    return all(path.exists() for path in (binaries.kube_apiserver, binaries.etcd, binaries.kube_controller_manager))


def _build(target: Path, progress: bool) -> None:
    if shutil.which("go") is None:
        raise RuntimeError("building the local control plane needs the Go toolchain (go) on PATH")
    staging = target.with_name(target.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with BuildProgress(progress) as build:
        build.say(
            f"building kube-apiserver and kube-controller-manager {KUBERNETES_VERSION} and etcd {ETCD_VERSION}"
            " (first time only, a few minutes)"
        )
        for package, binary in (
            ("go.etcd.io/etcd/server/v3", "etcd"),
            ("k8s.io/kubernetes/cmd/kube-apiserver", "kube-apiserver"),
            ("k8s.io/kubernetes/cmd/kube-controller-manager", "kube-controller-manager"),
        ):
            build.say(f"go build {package}")
            subprocess.run(
                ["go", "build", "-o", str(staging / binary), package],
                cwd=GO_MODULE_DIR,
                check=True,
                env={**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod -buildvcs=false"},
            )
    staging.replace(target)
    build.say(f"control plane built in {build.elapsed():.0f}s -> {target}")


class BuildProgress:
    """Progress lines on stderr for a first-time build of minutes (when `enabled`): what the build
    says, plus a "still building" line every 20 s while the `with` block runs, so a fresh machine's
    first `make test` does not look hung."""

    def __init__(self, enabled: bool) -> None:
        self._enabled = enabled
        self._started = time.monotonic()
        self._done = threading.Event()

    def __enter__(self) -> BuildProgress:
        threading.Thread(target=self._tick, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()

    def say(self, message: str) -> None:
        if self._enabled:
            print(f"[kumo testbed] {message}", file=sys.stderr, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _tick(self) -> None:
        while not self._done.wait(20):
            self.say(f"... still building ({self.elapsed():.0f}s)")


# ---------------------------------------------------------------------------- certificates


def _write_pki(directory: Path) -> None:
    """A CA (its key kept, 0600, for `issue_loopback_certificate`), a serving certificate for
    127.0.0.1/localhost, and the service-account key pair."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kumo-testbed-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key, server_cert = _loopback_certificate(ca_cert, ca_key, "kube-apiserver", ("kubernetes.default.svc",))
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_key(directory / "ca.key", ca_key)
    _write_key(directory / "server.key", server_key)
    _write_key(directory / "sa.key", sa_key)
    (directory / "ca.crt").write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server.crt").write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    (directory / "sa.pub").write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def issue_loopback_certificate(pki: Path, directory: Path, common_name: str) -> Path:
    """A serving certificate for 127.0.0.1/localhost signed by the bed's CA in `pki`, written as
    `directory`/tls.crt and tls.key (another server of the bed: the sharder's webhook); returns
    the CA certificate's path, what its clients trust."""
    ca_cert = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), password=None)
    if not isinstance(ca_key, rsa.RSAPrivateKey):
        raise TypeError(f"{pki / 'ca.key'} is not an RSA key")
    key, cert = _loopback_certificate(ca_cert, ca_key, common_name)
    _write_key(directory / "tls.key", key)
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pki / "ca.crt"


def _loopback_certificate(
    ca_cert: x509.Certificate, ca_key: rsa.RSAPrivateKey, common_name: str, extra_names: tuple[str, ...] = ()
) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    now = datetime.datetime.now(datetime.UTC)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    names: list[x509.GeneralName] = [x509.DNSName("localhost"), *(x509.DNSName(name) for name in extra_names)]
    names.append(x509.IPAddress(ipaddress.ip_address(LOOPBACK)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def _write_key(path: Path, key: rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


# ---------------------------------------------------------------------------- the control plane


@dataclass
class LocalControlPlane:
    """etcd + kube-apiserver in `workdir`; `start()` blocks until /readyz answers."""

    workdir: Path
    binaries: Binaries
    audit_log: bool = False
    tokens: dict[str, str] = field(default_factory=dict)
    processes: list[ManagedProcess] = field(default_factory=list)
    port: int = 0
    controller_manager_port: int = 0

    @property
    def server(self) -> str:
        return f"https://{LOOPBACK}:{self.port}"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    @property
    def audit_log_path(self) -> Path:
        return self.workdir / "audit.log"

    def start(self) -> LocalControlPlane:
        pki = self.workdir / "pki"
        pki.mkdir(parents=True, exist_ok=True)
        _write_pki(pki)
        users = ("admin", CONTROLLER_MANAGER_USER, *UNPRIVILEGED_USERS)
        self.tokens = {user: secrets.token_hex(16) for user in users}
        self._write_token_file()
        try:
            self.processes.append(self._start_etcd())
            self.processes.append(self._start_apiserver())
            self.processes.append(self._start_controller_manager())
        except BaseException:  # an interrupted start (SIGTERM, Ctrl-C) too: no server outlives it
            self.stop()
            raise
        self.write_kubeconfig(self.kubeconfig, "admin")
        return self

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()

    def _write_token_file(self) -> None:
        lines = [f"{self.tokens['admin']},admin,admin,system:masters"]
        lines.append(f"{self.tokens[CONTROLLER_MANAGER_USER]},{CONTROLLER_MANAGER_USER},{CONTROLLER_MANAGER_USER}")
        lines += [f"{self.tokens[u]},{u},{u},kumo:testers" for u in UNPRIVILEGED_USERS]
        path = self.workdir / "pki" / "tokens.csv"
        path.write_text("\n".join(lines) + "\n")
        path.chmod(0o600)

    def _start_etcd(self) -> ManagedProcess:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://{LOOPBACK}:{client}"
        argv = [
            str(self.binaries.etcd),
            "--name=kumo",
            f"--data-dir={self.workdir / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}",
            f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls=http://{LOOPBACK}:{peer}",
            f"--initial-advertise-peer-urls=http://{LOOPBACK}:{peer}",
            f"--initial-cluster=kumo=http://{LOOPBACK}:{peer}",
            "--unsafe-no-fsync",  # a throwaway test store: speed over durability
            "--log-level=warn",
        ]
        ready = lambda: _http_ok(f"{self.etcd_url}/health")  # noqa: E731
        return ManagedProcess("etcd", argv, self.workdir / "etcd.log", ready, address=self.etcd_url).start()

    def _start_apiserver(self) -> ManagedProcess:
        self.port = free_port()
        pki = self.workdir / "pki"
        argv = [
            str(self.binaries.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            f"--bind-address={LOOPBACK}",
            f"--advertise-address={LOOPBACK}",
            f"--secure-port={self.port}",
            f"--tls-cert-file={pki / 'server.crt'}",
            f"--tls-private-key-file={pki / 'server.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--enable-priority-and-fairness=false",
            "--v=0",
        ]
        if self.audit_log:
            policy = self.workdir / "audit-policy.yaml"
            policy.write_text(_AUDIT_POLICY)
            argv += [
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
                "--audit-log-mode=batch",
                "--audit-log-batch-max-wait=1s",
            ]
        ready = lambda: self._api_get("/readyz")  # noqa: E731
        log = self.workdir / "kube-apiserver.log"
        return ManagedProcess("kube-apiserver", argv, log, ready, address=self.server).start(timeout=120)

    def _start_controller_manager(self) -> ManagedProcess:
        pki = self.workdir / "pki"
        kubeconfig = self.write_kubeconfig(self.workdir / "kubeconfig-controller-manager", CONTROLLER_MANAGER_USER)
        self.controller_manager_port = free_port()
        argv = [
            str(self.binaries.kube_controller_manager),
            f"--kubeconfig={kubeconfig}",
            f"--bind-address={LOOPBACK}",
            f"--secure-port={self.controller_manager_port}",
            f"--cert-dir={self.workdir / 'controller-manager-certs'}",
            f"--controllers={','.join(CONTROLLERS)}",
            "--use-service-account-credentials",
            f"--service-account-private-key-file={pki / 'sa.key'}",
            f"--root-ca-file={pki / 'ca.crt'}",
            "--leader-elect=false",
            # One loopback API server and a few hundred objects: two workers per controller are
            # plenty, and keep the two shared cores for the API server and the code under test.
            "--concurrent-gc-syncs=4",
            "--concurrent-namespace-syncs=2",
            "--concurrent-serviceaccount-token-syncs=2",
            "--v=0",
        ]
        return ManagedProcess(
            "kube-controller-manager",
            argv,
            self.workdir / "kube-controller-manager.log",
            self._controller_manager_ready,
            env={**os.environ, "GOMAXPROCS": "2"},
            address=f"https://{LOOPBACK}:{self.controller_manager_port}",
        ).start(timeout=120)

    def _controller_manager_ready(self) -> bool:
        """/healthz answers, and the ServiceAccount controller has made `default/default`: the
        object a Pod without serviceAccountName needs once the ServiceAccount admission is on."""
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving certificate, on loopback
        url = f"https://{LOOPBACK}:{self.controller_manager_port}/healthz"
        with urllib.request.urlopen(url, timeout=2, context=insecure) as response:
            if response.status != 200:
                return False
        return self._api_get("/api/v1/namespaces/default/serviceaccounts/default")

    def _api_get(self, path: str) -> bool:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        request = urllib.request.Request(
            f"{self.server}{path}", headers={"Authorization": f"Bearer {self.tokens['admin']}"}
        )
        with urllib.request.urlopen(request, timeout=2, context=context) as response:
            return bool(response.status == 200)

    def write_kubeconfig(self, path: Path, user: str) -> Path:
        """A kubeconfig for one of the static users (admin, alice, bob, the controller-manager)."""
        path.write_text(kubeconfig_text(self.server, str(self.ca_file), user, self.tokens[user]))
        path.chmod(0o600)
        return path


def kubeconfig_text(server: str, ca_file: str, user: str, token: str) -> str:
    return f"""apiVersion: v1
kind: Config
clusters:
- name: kumo-testbed
  cluster:
    server: {server}
    certificate-authority: {ca_file}
users:
- name: {user}
  user:
    token: {token}
contexts:
- name: kumo-testbed
  context:
    cluster: kumo-testbed
    user: {user}
current-context: kumo-testbed
"""


# Metadata of every write request; reads are left out to keep the log small.
_AUDIT_POLICY = """apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
"""


def _http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)
