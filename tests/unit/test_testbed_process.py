"""A test bed interrupted while it starts leaves no server behind; the ports it picks for its
servers are ones no outgoing connection can take meanwhile.

A SIGTERM to the benchmark (raised as SystemExit by its handler) or a Ctrl-C can arrive while a
server is starting: the server already runs, but nobody holds it yet (issue 17: a strictaws
emulator survived its benchmark that way).
"""

from __future__ import annotations

import random
import socket
import sys
from pathlib import Path

import pytest
from kumo.testbed import cluster, process
from kumo.testbed.process import LOOPBACK, ManagedProcess, free_port, pid_alive

SLEEPER = (sys.executable, "-c", "import time; time.sleep(120)")


def _interrupted() -> bool:
    raise SystemExit(143)  # what the benchmark's SIGTERM handler raises


@pytest.mark.parametrize(
    "ready, error, reason",
    [
        (_interrupted, SystemExit, "interrupted while waiting for it to be ready"),
        (lambda: False, Exception, "never ready within the timeout"),
    ],
)
def test_a_server_that_does_not_finish_starting_is_stopped(tmp_path: Path, ready, error, reason: str) -> None:
    server = ManagedProcess("sleeper", SLEEPER, tmp_path / "sleeper.log", ready=ready)
    with pytest.raises(error):
        server.start(timeout=0.5)
    assert server.pid, reason
    assert not pid_alive(server.pid), f"{reason}: the server must not outlive its start"


class _Started:
    """Stands in for a server the control plane already started."""

    stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_a_control_plane_interrupted_while_starting_stops_what_already_runs(tmp_path: Path, monkeypatch) -> None:
    etcd = _Started()
    monkeypatch.setattr(cluster, "_write_pki", lambda directory: None)
    monkeypatch.setattr(cluster.LocalControlPlane, "_write_token_file", lambda self: None)
    monkeypatch.setattr(cluster.LocalControlPlane, "_start_etcd", lambda self: etcd)
    monkeypatch.setattr(cluster.LocalControlPlane, "_start_apiserver", lambda self: _interrupted())
    plane = cluster.LocalControlPlane(tmp_path, binaries=None)  # type: ignore[arg-type]
    with pytest.raises(SystemExit):
        plane.start()
    assert etcd.stopped, "etcd was running when the API server's start was interrupted"
    assert plane.processes == []


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low, _ = process._ephemeral_range()
    for _ in range(20):
        port = free_port()
        assert process.FREE_PORT_FLOOR <= port < low
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, port))


def test_a_taken_port_is_not_given(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind((LOOPBACK, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        real = random.Random()
        offered = []

        class TakenFirst:
            """Offers the taken port twice, then what the real generator picks."""

            def randrange(self, start: int, stop: int) -> int:
                port = busy if len(offered) < 2 else real.randrange(start, stop)
                offered.append(port)
                return port

        monkeypatch.setattr(process, "_random", TakenFirst())
        assert free_port() != busy
        assert offered[:2] == [busy, busy]


def test_without_room_below_the_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(process, "_ephemeral_range", lambda: (1024, 65535))
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, port))
