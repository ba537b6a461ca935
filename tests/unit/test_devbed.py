"""How `kumo dev up / down / status` find their bed: the per-user state file, and the processes
that carry the bed's marker in /proc (a fake /proc here), with or without that file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from kumo.testbed import devbed
from kumo.testbed.devbed import DevPaths, MarkedProcess, find_marked, survey

# Process groups in the fake /proc: none may be this test's own group, which find_marked skips.
GROUP_OF_ETCD, GROUP_OF_POSTGRES = 900_001, 900_002


@pytest.mark.parametrize(
    ("environ", "expected", "reason"),
    [
        ({"XDG_STATE_HOME": "/s", "HOME": "/h"}, "/s/kumo/dev/env.json", "the XDG state directory when set"),
        ({"HOME": "/h"}, "/h/.local/state/kumo/dev/env.json", "the spec's default when unset"),
        ({"XDG_STATE_HOME": "rel", "HOME": "/h"}, "/h/.local/state/kumo/dev/env.json", "a relative one is ignored"),
    ],
)
def test_the_state_file_is_per_user(environ: dict[str, str], expected: str, reason: str) -> None:
    assert devbed.default_env_file(environ) == Path(expected), reason


def test_a_relative_env_file_names_the_same_bed_from_every_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    paths = DevPaths.at(Path("beds/env.json"))
    monkeypatch.chdir("/")
    assert paths.env_file == tmp_path / "beds" / "env.json"
    assert paths.kubeconfig == tmp_path / "beds" / "kubeconfig"
    assert paths.marker == str(tmp_path / "beds" / "env.json")


def _fake_process(proc: Path, pid: int, name: str, group: int, environ: dict[str, str], state: str = "S") -> None:
    entry = proc / str(pid)
    entry.mkdir()
    (entry / "environ").write_bytes(b"\0".join(f"{k}={v}".encode() for k, v in environ.items()) + b"\0")
    # comm may hold spaces and parentheses: the fields that matter follow the last ')'.
    (entry / "stat").write_text(f"{pid} ({name}) {state} 1 {group} {group} 0 -1 4194560 0 0\n")


@pytest.fixture
def bed(tmp_path: Path) -> tuple[DevPaths, Path]:
    """A fake /proc holding this bed's etcd and postgres (with a child backend), another bed's
    server, an unrelated process and a zombie of this bed."""
    paths = DevPaths.at(tmp_path / "state" / "env.json")
    proc = tmp_path / "proc"
    proc.mkdir()
    ours = {devbed.BED_VARIABLE: paths.marker, devbed.WORKDIR_VARIABLE: "/tmp/kumo-dev-abc", "PATH": "/bin"}
    _fake_process(proc, GROUP_OF_ETCD, "etcd", GROUP_OF_ETCD, ours)
    _fake_process(proc, GROUP_OF_POSTGRES, "postgres", GROUP_OF_POSTGRES, ours)
    _fake_process(proc, 900_003, "postgres: checkpointer (x)", GROUP_OF_POSTGRES, ours)
    _fake_process(proc, 900_004, "etcd", 900_004, {devbed.BED_VARIABLE: "/elsewhere/env.json"})
    _fake_process(proc, 900_005, "bash", 900_005, {"PATH": "/bin"})
    _fake_process(proc, 900_006, "moto", 900_006, ours, state="Z")
    (proc / "self").mkdir()
    (proc / "900007").mkdir()  # exited between the listing and the read: no files
    return paths, proc


def _write_state(paths: DevPaths, processes: list[tuple[str, int]]) -> None:
    paths.env_file.parent.mkdir(parents=True, exist_ok=True)
    entries = [{"name": name, "pid": pid, "address": f"http://127.0.0.1:{pid % 1000}"} for name, pid in processes]
    paths.env_file.write_text(json.dumps({"workdir": "/tmp/kumo-dev-abc", "processes": entries}))


def test_only_live_processes_carrying_this_beds_marker_are_found(bed: tuple[DevPaths, Path]) -> None:
    paths, proc = bed
    found = sorted(find_marked(paths.marker, proc) or [], key=lambda p: p.pid)
    assert found == [
        MarkedProcess(GROUP_OF_ETCD, GROUP_OF_ETCD, "etcd", "/tmp/kumo-dev-abc"),
        MarkedProcess(GROUP_OF_POSTGRES, GROUP_OF_POSTGRES, "postgres", "/tmp/kumo-dev-abc"),
        MarkedProcess(900_003, GROUP_OF_POSTGRES, "postgres: checkpointer (x)", "/tmp/kumo-dev-abc"),
    ]


def test_without_proc_nothing_is_found_by_marker(tmp_path: Path) -> None:
    assert find_marked("/any/env.json", tmp_path / "no-proc") is None


def test_a_bed_whose_servers_all_carry_the_marker_is_running(bed: tuple[DevPaths, Path]) -> None:
    paths, proc = bed
    _write_state(paths, [("etcd", GROUP_OF_ETCD), ("postgres", GROUP_OF_POSTGRES)])
    found = survey(paths, proc)
    assert found.running
    assert found.strays == [], "a server's own children are not strays"
    assert found.groups_to_stop == [GROUP_OF_POSTGRES, GROUP_OF_ETCD], "latest started stops first"


def test_a_recorded_pid_now_used_by_an_unrelated_process_is_neither_alive_nor_stopped(
    bed: tuple[DevPaths, Path],
) -> None:
    paths, proc = bed
    _write_state(paths, [("etcd", GROUP_OF_ETCD), ("moto", 900_005)])  # 900_005 is someone's bash now
    found = survey(paths, proc)
    assert not found.running
    assert [p.alive for p in found.recorded] == [True, False]
    assert 900_005 not in found.groups_to_stop


def test_a_lost_state_file_still_leaves_every_process_to_stop(bed: tuple[DevPaths, Path]) -> None:
    """What `down` relies on to never say "no test bed running" while its processes run."""
    paths, proc = bed
    found = survey(paths, proc)
    assert found.env is None and not found.running
    assert found.groups_to_stop == [GROUP_OF_POSTGRES, GROUP_OF_ETCD]
    assert {p.pid for p in found.strays} == {GROUP_OF_ETCD, GROUP_OF_POSTGRES, 900_003}
    assert found.workdirs == {"/tmp/kumo-dev-abc"}, "the work directory is known from the marker"


def test_an_unreadable_state_file_counts_as_lost(bed: tuple[DevPaths, Path], capsys) -> None:
    paths, proc = bed
    paths.env_file.parent.mkdir(parents=True)
    paths.env_file.write_text("{half a file")
    found = survey(paths, proc)
    assert found.env is None and found.groups_to_stop
    assert "ignoring the unreadable state file" in capsys.readouterr().err


def test_the_next_steps_are_typed_as_from_where_the_user_is(tmp_path: Path, monkeypatch) -> None:
    """At the project root, the README's commands; elsewhere, paths that work from there."""
    monkeypatch.setenv("HOME", str(tmp_path))
    kubeconfig = devbed.DevPaths.at(devbed.default_env_file({"HOME": str(tmp_path)})).kubeconfig
    project_root = devbed.EXAMPLES.parent
    at_root = devbed.next_steps(kubeconfig, cwd=project_root)
    elsewhere = devbed.next_steps(kubeconfig, cwd=tmp_path)
    assert "  export KUBECONFIG=~/.local/state/kumo/dev/kubeconfig\n" in at_root
    assert "  kubectl apply -f examples/aws/database.yaml\n" in at_root
    assert f"  kubectl apply -f {project_root / 'examples' / 'aws' / 'database.yaml'}\n" in elsewhere


def test_the_printed_kumo_command_runs_this_install(monkeypatch, tmp_path: Path) -> None:
    """`kumo` when the one on PATH is this install's, else the path to this install's script."""
    script = Path(sys.executable).parent / "kumo"
    if not script.exists():
        pytest.skip("kumo is not installed as a script next to this interpreter")
    monkeypatch.setenv("PATH", str(script.parent))
    assert devbed.kumo_command(tmp_path) == "kumo"
    monkeypatch.setenv("PATH", str(tmp_path))
    venv_parent = script.parent.parent.parent
    assert devbed.kumo_command(venv_parent) == str(script.relative_to(venv_parent)), "as typed from the project root"
    assert Path(devbed.kumo_command(tmp_path)).expanduser() == script


def test_the_readme_quick_start_is_what_dev_up_prints(tmp_path: Path, monkeypatch) -> None:
    """The README shows the commands a user at the project root gets after `make install`."""
    project_root = devbed.EXAMPLES.parent
    if Path(sys.executable).parent != project_root / ".venv" / "bin":
        pytest.skip("not run from the project's own .venv")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # no kumo on PATH, as after `make demo`
    printed = devbed.next_steps(DevPaths.at(devbed.default_env_file({"HOME": str(tmp_path)})).kubeconfig, project_root)
    commands = [line for line in printed.splitlines() if line.startswith("  ")]
    readme = (project_root / "README.md").read_text()
    assert "\n".join(commands) in readme
