"""`kumo dev up / down / status`: one background test bed per user, found again from any directory.

`up` starts the bed (testbed/bed.py), installs the CRDs and a ProviderConfig per cloud aimed at
the emulators, named as the examples' `providerConfigRef`s expect (`aws`, `gcp`, in namespace
`default`), so `kubectl apply -f examples/aws/database.yaml` works unchanged; then it prints the
next commands. `status` says what runs; `down` stops everything `up` started.

Where the bed is remembered: `$XDG_STATE_HOME/kumo/dev/env.json` (`~/.local/state/kumo/dev/`
when unset), with a copy of the bed's kubeconfig next to it, so the printed `export KUBECONFIG`
stays the same from one bed to the next. Per user rather than per checkout, because `kumo` is an
installed command that works from any directory and one bed serves every shell. The XDG *state*
directory, because the XDG Base Directory spec describes it as data that should persist between
restarts of the application, where the cache may be wiped at any time (and a lost env file is
exactly how processes get orphaned); `$XDG_RUNTIME_DIR` would suit pid files but is unset outside
a systemd login session (containers, plain ssh), and is removed at logout while the bed lives on.
https://specifications.freedesktop.org/basedir-spec/latest/

Finding processes without the env file: every server `up` starts inherits two variables, the
env file's path (`KUMO_DEV_BED`) and the bed's work directory (`KUMO_DEV_WORKDIR`), so on Linux
`/proc/<pid>/environ` tells which processes belong to which bed even when the env file was lost,
and a recorded pid that the kernel has since given to an unrelated process is never stopped.
Where /proc does not exist, the recorded pids are all there is. `up` and `down` hold a lock
file, so two `up`s at once start one bed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .process import pid_alive, stop_process_group
from .providerconfigs import EXAMPLES, emulator_documents

BED_VARIABLE = "KUMO_DEV_BED"
WORKDIR_VARIABLE = "KUMO_DEV_WORKDIR"
WORKDIR_PREFIX = "kumo-dev-"
PROC = Path("/proc")
# Where `up` puts the examples' ProviderConfigs: where `kubectl apply` puts objects without -n.
EXAMPLES_NAMESPACE = "default"
FIRST_EXAMPLE = "aws/database.yaml"
KUBECTL_INSTALL_URL = "https://kubernetes.io/docs/tasks/tools/"


def default_env_file(environ: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_STATE_HOME/kumo/dev/env.json`, `~/.local/state/...` when it is unset (or relative,
    which the spec says to ignore)."""
    state_home = environ.get("XDG_STATE_HOME", "")
    if not os.path.isabs(state_home):
        state_home = os.path.join(environ.get("HOME") or str(Path.home()), ".local", "state")
    return Path(state_home) / "kumo" / "dev" / "env.json"


@dataclass(frozen=True)
class DevPaths:
    """The files of one dev bed, all next to its env file."""

    env_file: Path

    @classmethod
    def at(cls, env_file: Path | None = None) -> DevPaths:
        """The bed of `env_file` (`--env-file`), else the user's; absolute, so it names the
        same bed from every directory."""
        return cls(Path(os.path.abspath(env_file or default_env_file())))

    @property
    def kubeconfig(self) -> Path:
        return self.env_file.parent / "kubeconfig"

    @property
    def lock_file(self) -> Path:
        return self.env_file.with_name(self.env_file.name + ".lock")

    @property
    def marker(self) -> str:
        """The value of `KUMO_DEV_BED` in the environment of every process of this bed."""
        return str(self.env_file)


@dataclass(frozen=True)
class MarkedProcess:
    """A live process carrying a bed's marker, from /proc."""

    pid: int
    group: int  # its process group: the pid of the server that started it
    name: str
    workdir: str


@dataclass(frozen=True)
class RecordedProcess:
    """A server the env file lists, and whether it still runs."""

    name: str
    pid: int
    address: str
    alive: bool


@dataclass(frozen=True)
class Survey:
    """What is known about one bed: its env file (None when missing) and what runs."""

    env: dict[str, Any] | None
    recorded: list[RecordedProcess]
    marked: list[MarkedProcess] | None  # None where /proc does not exist

    @property
    def running(self) -> bool:
        return self.env is not None and bool(self.recorded) and all(p.alive for p in self.recorded)

    @property
    def strays(self) -> list[MarkedProcess]:
        """Processes of this bed whose server the env file does not list (it was lost, or
        belongs to an earlier bed)."""
        recorded = {p.pid for p in self.recorded}
        return [p for p in self.marked or [] if p.group not in recorded]

    @property
    def groups_to_stop(self) -> list[int]:
        """Every process group still running for this bed, latest-started first (so the API
        server stops before etcd)."""
        groups = {p.pid for p in self.recorded if p.alive} | {p.group for p in self.marked or []}
        return sorted(groups, reverse=True)

    @property
    def workdirs(self) -> set[str]:
        found = {p.workdir for p in self.marked or [] if p.workdir}
        if self.env and self.env.get("workdir"):
            found.add(str(self.env["workdir"]))
        return found


def find_marked(marker: str, proc: Path = PROC) -> list[MarkedProcess] | None:
    """Live processes whose environment has `KUMO_DEV_BED=<marker>`; None without /proc."""
    if not proc.is_dir():
        return None
    needle = f"{BED_VARIABLE}={marker}".encode()
    own_group = os.getpgrp()
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            variables = (entry / "environ").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:  # gone meanwhile, or another user's
            continue
        # /proc/<pid>/stat: "pid (comm) state ppid pgrp ...", where comm may hold spaces and parentheses.
        head, _, tail = stat.rpartition(")")
        fields = tail.split()
        state, group = fields[0], int(fields[2])
        if needle not in variables or state == "Z" or group == own_group:
            continue
        found.append(
            MarkedProcess(int(entry.name), group, head.partition("(")[2], _variable(variables, WORKDIR_VARIABLE))
        )
    return found


def _variable(variables: list[bytes], name: str) -> str:
    prefix = f"{name}=".encode()
    return next((v[len(prefix) :].decode(errors="replace") for v in variables if v.startswith(prefix)), "")


def survey(paths: DevPaths, proc: Path = PROC) -> Survey:
    env = _read_env(paths.env_file)
    marked = find_marked(paths.marker, proc)
    ours = {p.pid for p in marked} if marked is not None else None
    recorded = [
        RecordedProcess(
            entry["name"],
            int(entry["pid"]),
            entry.get("address", ""),
            # With /proc, a recorded pid counts only while it still carries the marker: the kernel
            # may have given the number to an unrelated process since.
            (int(entry["pid"]) in ours) if ours is not None else pid_alive(int(entry["pid"])),
        )
        for entry in (env or {}).get("processes", [])
    ]
    return Survey(env, recorded, marked)


def _read_env(path: Path) -> dict[str, Any] | None:
    try:
        env = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        print(f"ignoring the unreadable state file {path}: {error}", file=sys.stderr)
        return None
    return env if isinstance(env, dict) else None


@contextlib.contextmanager
def _locked(paths: DevPaths) -> Iterator[None]:
    """One `up` or `down` at a time per bed: a second `up` waits, then finds the first's bed."""
    paths.lock_file.parent.mkdir(parents=True, exist_ok=True)
    with paths.lock_file.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("waiting for another `kumo dev up` or `kumo dev down` to finish", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _marked_environment(paths: DevPaths, workdir: Path) -> Iterator[None]:
    """Every server starts with this process's environment (or a copy of it), so each, and
    each process it forks, carries the bed's marker."""
    saved = {name: os.environ.get(name) for name in (BED_VARIABLE, WORKDIR_VARIABLE)}
    os.environ[BED_VARIABLE], os.environ[WORKDIR_VARIABLE] = paths.marker, str(workdir)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def up(paths: DevPaths, *, audit_log: bool = False) -> int:
    """Start the bed unless it already runs; either way, print the next commands."""
    with _locked(paths):
        found = survey(paths)
        if found.running:
            if not paths.kubeconfig.exists() and found.env:  # removed by hand: the export must still work
                _publish_kubeconfig(Path(found.env["kubeconfig"]), paths)
            print(f"test bed already up (state: {_display_path(paths.env_file)})")
            print(next_steps(paths.kubeconfig))
            return 0
        if found.groups_to_stop:
            print(f"stopping what is left of an earlier test bed: {_describe_leftovers(found)}", flush=True)
        _stop(found, paths)  # also removes a dead bed's work directory and state
        started = time.monotonic()
        env = _start(paths, audit_log=audit_log)
        took = time.monotonic() - started
    gcp = env["gcp"]
    print(f"test bed up in {took:.1f}s (state: {_display_path(paths.env_file)})")
    print(
        f"installed the CRDs and, in namespace {EXAMPLES_NAMESPACE}, the ProviderConfigs the examples name: "
        f"`aws` (moto at {env['aws']['endpoint']}) and `gcp` (GCS at {gcp['storage_endpoint']}, "
        f"Cloud SQL at {gcp['sqladmin_endpoint']})"
    )
    print(next_steps(paths.kubeconfig))
    return 0


def _start(paths: DevPaths, *, audit_log: bool) -> dict[str, Any]:
    from .bed import TestBed

    workdir = Path(tempfile.mkdtemp(prefix=WORKDIR_PREFIX))
    with _marked_environment(paths, workdir):
        bed = TestBed.start(progress=True, audit_log=audit_log, workdir=workdir)
    try:
        install_for_examples(bed.env)
        _publish_kubeconfig(Path(bed.env["kubeconfig"]), paths)
        bed.write_env_file(paths.env_file)
    except BaseException:
        bed.stop()
        raise
    return bed.env


def _publish_kubeconfig(source: Path, paths: DevPaths) -> None:
    """A copy at a fixed place, so the printed export is the same for every bed."""
    paths.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, paths.kubeconfig)
    paths.kubeconfig.chmod(0o600)  # it holds the admin token


def install_for_examples(env: dict[str, Any]) -> None:
    """The CRDs, the controller's namespace, and each cloud's ProviderConfig (and credentials
    Secret, where the cloud needs one) aimed at the emulators, created or replaced."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException
    from kumo.controller.runtime.config import ControllerConfig

    from .bed import install_crds

    configuration = client.Configuration()
    config.load_kube_config(config_file=env["kubeconfig"], client_configuration=configuration)
    api = client.ApiClient(configuration)
    install_crds(api)
    core = client.CoreV1Api(api)
    try:
        core.create_namespace({"metadata": {"name": ControllerConfig.controller_namespace}})
    except ApiException as error:
        if error.status != 409:
            raise
    for document in emulator_documents(env):
        if document["kind"] == "Secret":
            _put_secret(core, EXAMPLES_NAMESPACE, document)
        else:
            _put_provider_config(client.CustomObjectsApi(api), EXAMPLES_NAMESPACE, document)


def _put_secret(core: Any, namespace: str, secret: dict[str, Any]) -> None:
    from kubernetes.client.rest import ApiException

    try:
        core.create_namespaced_secret(namespace, secret)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_secret(secret["metadata"]["name"], namespace, secret)


def _put_provider_config(objects: Any, namespace: str, document: dict[str, Any]) -> None:
    from kubernetes.client.rest import ApiException

    from kumo.api import GROUP, PROVIDER_CONFIG, VERSION

    where = (GROUP, VERSION, namespace, PROVIDER_CONFIG.plural)
    try:
        objects.create_namespaced_custom_object(*where, document)
    except ApiException as error:
        if error.status != 409:
            raise
        # A custom object is replaced only at the version read: no unconditional update.
        name = document["metadata"]["name"]
        current = objects.get_namespaced_custom_object(*where, name)
        document["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        objects.replace_namespaced_custom_object(*where, name, document)


def next_steps(kubeconfig: Path, cwd: Path | None = None) -> str:
    """The three commands that lead from a running bed to a Ready example, as typed in `cwd`."""
    here = cwd or Path.cwd()
    kumo = kumo_command(here)
    lines = [
        "",
        "Next: point kubectl and kumo at the bed, run the controller (it stays in the foreground:",
        "give it a terminal of its own, after the same export), and apply an example:",
        "",
        f"  export KUBECONFIG={_display_path(kubeconfig)}",
        f"  {kumo} run",
        f"  kubectl apply -f {_display_path(EXAMPLES / FIRST_EXAMPLE, here)}",
        "",
        f"Then `{kumo} status database/orders-db` says when it is Ready; `{kumo} dev down` stops the bed.",
    ]
    if shutil.which("kubectl") is None:
        lines.append(f"(kubectl is not on PATH: {KUBECTL_INSTALL_URL})")
    return "\n".join(lines)


def kumo_command(cwd: Path) -> str:
    """How to run kumo from `cwd`: `kumo` when that is the one on PATH, else this install's
    script (`.venv/bin/kumo` at the project root, as after `make demo`), else `python -m`."""
    script = Path(sys.executable).parent / "kumo"
    on_path = shutil.which("kumo")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        return "kumo"
    if script.exists():
        return _display_path(script, cwd)
    return f"{sys.executable} -m kumo.cli"


def _display_path(path: Path, cwd: Path | None = None) -> str:
    """Relative to `cwd` when under it (what a user at the project root types), else under `~`
    when in the home directory (as the README shows it), else absolute."""
    for base, prefix in ((cwd, ""), (Path.home(), "~/")):
        if base is not None:
            with contextlib.suppress(ValueError):
                return prefix + str(path.relative_to(base))
    return str(path)


def status(paths: DevPaths) -> int:
    """Each server with its pid, address and whether it runs; exit 0 when all of them do."""
    found = survey(paths)
    if found.env is None and not found.marked:
        print(f"no test bed (state: {_display_path(paths.env_file)}); `kumo dev up` starts one")
        return 1
    print(f"state: {_display_path(paths.env_file)}")
    for process in found.recorded:
        state = "running" if process.alive else "STOPPED"
        print(f"  {process.name:24} pid {process.pid:<8} {process.address or '-':30} {state}")
    if found.strays:
        print(f"  not in the state file, from an earlier bed: {_describe_leftovers(found)}; `kumo dev down` stops them")
    if found.running:
        print(f"  export KUBECONFIG={_display_path(paths.kubeconfig)}")
    elif found.recorded:
        print("  not every server runs: `kumo dev up` stops what is left and starts a new bed")
    return 0 if found.running else 1


def down(paths: DevPaths) -> int:
    """Stop every process of the bed, recorded or only found by its marker; remove its files."""
    with _locked(paths):
        found = survey(paths)
        if found.env is None and not found.groups_to_stop:
            print("no test bed running")
            return 0
        stopped = len(found.groups_to_stop)
        _stop(found, paths)
        left = find_marked(paths.marker) or []
    if left:
        print(f"could not stop: {', '.join(f'{p.name} (pid {p.pid})' for p in left)}", file=sys.stderr)
        return 1
    print(f"test bed stopped ({stopped} servers)" if stopped else "no server was running; removed the bed's state")
    return 0


def _stop(found: Survey, paths: DevPaths) -> None:
    for group in found.groups_to_stop:
        stop_process_group(group)
    _kill_remaining(paths)
    for workdir in found.workdirs:
        shutil.rmtree(workdir, ignore_errors=True)
    for path in (paths.env_file, paths.kubeconfig):
        path.unlink(missing_ok=True)


def _kill_remaining(paths: DevPaths, timeout: float = 5.0) -> None:
    """A process that left its group, or outlived its group's leader, still carries the marker."""
    deadline = time.monotonic() + timeout
    while (left := find_marked(paths.marker)) and time.monotonic() < deadline:
        for process in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(process.pid, signal.SIGKILL)
        time.sleep(0.1)


def _describe_leftovers(found: Survey) -> str:
    """Each group by its leader's name (a group whose leader has exited, by a member's)."""
    named = {p.group: p.name for p in found.marked or []}
    named |= {p.pid: p.name for p in found.marked or [] if p.pid == p.group}
    named |= {p.pid: p.name for p in found.recorded if p.alive}
    return ", ".join(f"{named.get(group, '?')} (pid {group})" for group in found.groups_to_stop)
