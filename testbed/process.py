"""Background server processes for the test bed: start, wait until ready, stop without leftovers.

Every server of the test bed (etcd, kube-apiserver, the three emulators) runs as a child in its
own process group, binds 127.0.0.1 only and logs to a file in the test bed's work directory. A
process started by `kumo dev up` outlives the command, so it is found again later by its pid.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

LOOPBACK = "127.0.0.1"
# free_port's choices: above the well-known and common service ports, below the ephemeral range.
FREE_PORT_FLOOR = 20000
FREE_PORT_ATTEMPTS = 50
# Its own generator: tests that seed the global one must not make two beds pick the same ports.
_random = random.Random()


class StartupError(RuntimeError):
    """A server did not become ready; the message ends with the tail of its log."""


def free_port() -> int:
    """A TCP port on the loopback interface that nothing uses right now, chosen below the kernel's
    ephemeral range: the server it is for binds it moments later, and a port from that range
    (what binding port 0 gives) may meanwhile become the local end of any outgoing connection on
    the machine (a kumo replica of the sharded bench, at 20,000 objects, found its health port
    taken: "address already in use")."""
    low, _ = _ephemeral_range()
    for _ in range(FREE_PORT_ATTEMPTS if low - FREE_PORT_FLOOR >= FREE_PORT_ATTEMPTS else 0):
        port = _random.randrange(FREE_PORT_FLOOR, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, port))
            except OSError:
                continue  # in use: another try
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))  # nothing free below the range: the kernel's choice after all
        return int(sock.getsockname()[1])


def _ephemeral_range() -> tuple[int, int]:
    """The ports Linux gives outgoing connections (its default where the setting is unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def port_open(port: int, host: str = LOOPBACK) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); it is gone for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return True


def stop_process_group(pid: int, timeout: float = 10.0) -> None:
    """SIGTERM the process group led by `pid`, SIGKILL it after `timeout` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)
            if not pid_alive(pid):
                return
            time.sleep(0.05)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class ManagedProcess:
    """One server of the test bed."""

    name: str
    argv: Sequence[str]
    log_path: Path
    ready: Callable[[], bool]
    env: dict[str, str] | None = None
    address: str = ""  # where it serves, for `kumo dev status`
    pid: int = 0

    def start(self, timeout: float = 60.0) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            proc = subprocess.Popen(
                list(self.argv),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
                start_new_session=True,  # own process group: stopped as a whole, survives `dev up`
            )
        self.pid = proc.pid
        try:
            self._wait_ready(proc, timeout)
        except BaseException:
            # Not ready, or interrupted while waiting (a SIGTERM the benchmark raises as
            # SystemExit, a Ctrl-C): no caller holds this process yet, so nobody else stops it.
            self.stop()
            raise
        return self

    def _wait_ready(self, proc: subprocess.Popen[bytes], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StartupError(f"{self.name} exited with {proc.returncode}\n{self.log_tail()}")
            with contextlib.suppress(Exception):
                if self.ready():
                    return
            time.sleep(0.1)
        raise StartupError(f"{self.name} not ready after {timeout:.0f}s\n{self.log_tail()}")

    def stop(self) -> None:
        if self.pid:
            stop_process_group(self.pid)

    def alive(self) -> bool:
        return bool(self.pid) and pid_alive(self.pid)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket


def listening_sockets(pid: int) -> list[tuple[str, int]]:
    """(address, port) of the TCP sockets in LISTEN state that process `pid` holds open."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed since listed
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = []
    for table, decode in (("tcp", _ipv4), ("tcp6", _ipv6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and inode in inodes:
                address, port = local.split(":")
                found.append((decode(address), int(port, 16)))
    return sorted(found)


def _ipv4(hex_address: str) -> str:
    """/proc/net/tcp writes an IPv4 address as one little-endian 32-bit word in hex."""
    return str(ipaddress.IPv4Address(bytes.fromhex(hex_address)[::-1]))


def _ipv6(hex_address: str) -> str:
    """/proc/net/tcp6 writes an IPv6 address as four little-endian 32-bit words in hex."""
    raw = bytes.fromhex(hex_address)
    return str(ipaddress.IPv6Address(b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))))
