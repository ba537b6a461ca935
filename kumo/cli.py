"""The `kumo` command: `run` the controller, `drift` / `plan` reports, `dev` for the local test bed.

`drift` and `plan` are read-only, terraform-style reports (kumo/driftreport.py, kumo/plan.py);
`dev up|down|status` drives the local control plane and emulated clouds.

Also installed as `kubectl-kumo`, so `kubectl kumo ...` works as a kubectl plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

# `drift` and `plan` answer like `terraform plan -detailed-exitcode`: 0 nothing to do, 2 drift or
# changes found, 1 errors (so a usage error there is 1, not argparse's 2).
DETAILED_EXIT_COMMANDS = ("drift", "plan", "status")
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's, for the other commands
STATUS_READY = 0
STATUS_NOT_READY = 3  # so scripts can wait on it
EXIT_CODE_COMMANDS = ("run", *DETAILED_EXIT_COMMANDS)  # their --help ends with exit_codes(command)
TOP_LEVEL_EXIT_CODES = f"""exit codes:
  `COMMAND --help` lists them for {", ".join(EXIT_CODE_COMMANDS)}. A usage error exits {EXIT_USAGE}, except for
  {", ".join(DETAILED_EXIT_COMMANDS)}: they exit {EXIT_ERROR} (their other codes report what they found)."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as usage:
        words = sys.argv[1:] if argv is None else argv
        if usage.code == 2 and words and words[0] in DETAILED_EXIT_COMMANDS:
            return EXIT_ERROR
        raise
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # The reader left early (`kumo drift | head`): not an error. Point stdout at /dev/null so
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose help ends with its command's exit codes.

    They are looked up only when help is shown: `plan` and `run` take their codes from modules
    that load the controller, which every other command should not wait for.
    """

    def __init__(self, *args: Any, command: str = "", **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)  # keep the table's lines
        super().__init__(*args, **kwargs)
        self.command = command

    def format_help(self) -> str:
        if self.command:
            self.epilog = "exit codes:\n" + "\n".join(
                f"  {code}  {meaning}" for code, meaning in exit_codes(self.command)
            )
        return super().format_help()


def exit_codes(command: str) -> list[tuple[int, str]]:
    """What each exit status of `command` means, from the constants its handler returns."""
    if command == "run":
        from kumo.controller.runtime.operator import EXIT_DEPOSED

        codes = {
            0: "stopped by SIGTERM or Ctrl-C",
            EXIT_ERROR: "stopped on an error (the log says which)",
            EXIT_USAGE: "a flag or a KUMO_* variable is not valid",
            EXIT_DEPOSED: "a leader lost its Lease (its supervisor restarts it as a standby)",
        }
    elif command == "drift":
        from kumo.driftreport import EXIT_DRIFTED, EXIT_IN_SYNC

        codes = {EXIT_IN_SYNC: "every object in sync", EXIT_ERROR: "error or usage error", EXIT_DRIFTED: "drift found"}
    elif command == "plan":
        from kumo.plan import EXIT_CHANGES, EXIT_NO_CHANGES
        from kumo.plan import EXIT_ERROR as PLAN_FAILED

        codes = {EXIT_NO_CHANGES: "nothing to change", PLAN_FAILED: "error or usage error", EXIT_CHANGES: "changes"}
    elif command == "status":
        codes = {STATUS_READY: "Ready", EXIT_ERROR: "error or usage error", STATUS_NOT_READY: "not Ready"}
    else:
        raise ValueError(f"no exit codes declared for {command!r}")
    return sorted(codes.items())


def _prog(argv0: str) -> str:
    """`kubectl kumo` when kubectl runs this as its plugin: kubectl starts the `kubectl-kumo`
    executable with its path as argv[0] (https://kubernetes.io/docs/tasks/extend-kubectl/kubectl-plugins/)."""
    return "kubectl kumo" if Path(argv0).name.startswith("kubectl-kumo") else "kumo"


def _parser(prog: str | None = None) -> argparse.ArgumentParser:
    from kumo.controller.runtime.config import add_flags
    from kumo.version import kumo_version

    parser = _Parser(prog=prog or _prog(sys.argv[0]), description=__doc__.splitlines()[0], epilog=TOP_LEVEL_EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {kumo_version()}")
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser(
        "run",
        command="run",
        help="run the controller (each flag also reads a KUMO_* variable)",
        description="Run the controller. Each setting is a flag or a variable; a flag wins over its variable.",
    )
    add_flags(run)
    run.set_defaults(handler=_run)

    drift = commands.add_parser(
        "drift",
        command="drift",
        help="report drifted Databases and Buckets from their status (no cloud calls, no writes)",
    )
    scope = drift.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", help="this namespace (default: the kubeconfig context's, else default)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    drift.add_argument("--output", "-o", choices=["table", "json"], default="table")
    drift.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    drift.add_argument("--context", help="kubeconfig context (default: its current-context)")
    drift.set_defaults(handler=_drift)

    plan = commands.add_parser(
        "plan", command="plan", help="show what applying manifests would create or change in the cloud (reads only)"
    )
    plan.add_argument(
        "--filename", "-f", action="append", required=True, help="manifest file, '-' for stdin (repeatable)"
    )
    plan.add_argument("--namespace", "-n", help="for documents without metadata.namespace")
    plan.add_argument("--output", "-o", choices=["table", "json"], default="table")
    plan.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    plan.add_argument("--context", help="kubeconfig context (default: its current-context)")
    add_flags(plan, "cluster_id", "controller_namespace")  # as `kumo run` has them
    plan.set_defaults(handler=_plan)

    status = commands.add_parser("status", command="status", help="explain in plain words why an object is (not) Ready")
    status.add_argument("target", metavar="KIND/NAME", help="e.g. database/orders-db or bucket/assets")
    status.add_argument("--namespace", "-n", help="default: the kubeconfig context's namespace, else default")
    status.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    status.add_argument("--context", help="kubeconfig context (default: its current-context)")
    status.set_defaults(handler=_status)

    dev = commands.add_parser("dev", help="the local test bed: control plane + emulated clouds")
    dev_commands = dev.add_subparsers(title="dev commands")
    state_help = "where the bed is remembered (default: $XDG_STATE_HOME/kumo/dev/env.json, ~/.local/state/...)"
    up = dev_commands.add_parser(
        "up", help="start it in the background with ProviderConfigs for the examples; print the next commands"
    )
    up.add_argument("--env-file", type=Path, default=None, help=state_help)
    up.add_argument("--audit-log", action="store_true", help="record every API write")
    up.set_defaults(handler=_dev_up)
    down = dev_commands.add_parser("down", help="stop everything `dev up` started (from any directory)")
    down.add_argument("--env-file", type=Path, default=None, help=state_help)
    down.set_defaults(handler=_dev_down)
    status = dev_commands.add_parser("status", help="each server: pid, address, running or not")
    status.add_argument("--env-file", type=Path, default=None, help=state_help)
    status.set_defaults(handler=_dev_status)
    return parser


def _run(args: argparse.Namespace) -> int:
    # kopf imports the official `kubernetes` package whenever it is importable, only to recognise
    # its model classes (kopf/_cogs/helpers/thirdparty.py); the controller passes none, and that
    # import (requests, oauthlib, google.auth, urllib3, pydantic behind it) cost ~30 MB of RSS,
    # a quarter of the idle controller (issue 16). Marked absent before kopf is imported, the
    # import fails and kopf falls back to its stand-ins; the controller's own calls go through
    # controller/runtime/kubehttp.py.
    sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
    from kumo.controller.runtime.config import ControllerConfig, OptionError
    from kumo.controller.runtime.login import LOGIN_ERRORS
    from kumo.controller.runtime.logs import configure_logging
    from kumo.controller.runtime.memory import limit_arenas
    from kumo.controller.runtime.operator import run
    from kumo.controller.runtime.sharding import shard_of

    try:
        config = ControllerConfig.load(vars(args))
        shard_of(config)  # a ring or shard name that cannot name a label or a Lease: refused here
    except OptionError as error:
        print(f"kumo run: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(config.log_format, config.log_level)
    limit_arenas()  # before any thread exists
    try:
        asyncio.run(run(config))
    except LOGIN_ERRORS as error:  # checked before kopf starts: one line naming the entry and field
        print(f"kumo run: error: {error}", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _drift(args: argparse.Namespace) -> int:
    from kumo.driftreport import read_report, render_json, render_table

    try:
        api_client, context_namespace = _kube_access(args.kubeconfig, args.context)
        namespace = None if args.all_namespaces else (args.namespace or context_namespace)
        report = read_report(api_client, namespace)
    except Exception as error:  # a report tool answers with one line, never a traceback
        return _failed("drift", error)
    sys.stdout.write(render_json(report) if args.output == "json" else render_table(report))
    return report.exit_code


def _plan(args: argparse.Namespace) -> int:
    from kumo.controller.core.drift import DriftPolicy
    from kumo.controller.runtime.config import ControllerConfig
    from kumo.kubeaccess import cli_login, context_namespace
    from kumo.plan import EXIT_ERROR as PLAN_FAILED
    from kumo.plan import load_documents, plan_documents, render_json, render_table

    try:
        documents = load_documents(args.filename)
        credentials = cli_login(args.kubeconfig, args.context)  # as `kumo run` logs in
        defaults = ControllerConfig.from_env()
        plan = plan_documents(
            credentials,
            documents,
            default_namespace=args.namespace or context_namespace(credentials),
            cluster_id=args.cluster_id or defaults.cluster_id,
            controller_namespace=args.controller_namespace or defaults.controller_namespace,
            # What the controller does with drift depends on its default policy (KUMO_DRIFT_POLICY).
            default_drift_policy=DriftPolicy(defaults.drift_policy),
        )
    except Exception as error:
        return _failed("plan", error)
    sys.stdout.write(render_json(plan) if args.output == "json" else render_table(plan))
    if plan.exit_code == PLAN_FAILED:
        print(f"kumo plan: error: {plan.problem_line()}", file=sys.stderr)
    return plan.exit_code


def _status(args: argparse.Namespace) -> int:
    """Exit 0 when Ready, 3 when not Ready (so scripts can wait on it), 1 on errors."""
    from kubernetes import client

    from kumo.api import GROUP, VERSION, connection_secret_name
    from kumo.providers.base import Kind
    from kumo.status import explain, parse_target, render

    try:
        kind, plural, name = parse_target(args.target)
        api_client, context_namespace = _kube_access(args.kubeconfig, args.context)
        namespace = args.namespace or context_namespace
        obj = client.CustomObjectsApi(api_client).get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        core = client.CoreV1Api(api_client)
        listed = core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}")
        events = [
            {"type": e.type or "", "reason": e.reason or "", "message": e.message or ""}
            for e in sorted(listed.items, key=lambda e: str(e.last_timestamp or e.event_time or ""))
            if e.involved_object.kind == kind
        ]
        secret_name = connection_secret_name(Kind(kind), obj)
        secret_keys = _secret_keys(core, namespace, secret_name)
    except Exception as error:
        return _failed("status", error)
    explanation = explain(obj, events, secret_keys)
    print(render(explanation))
    return STATUS_READY if explanation.ready else STATUS_NOT_READY


def _secret_keys(core: Any, namespace: str, name: str) -> list[str] | None:
    """The Secret's key names (never its values), or None when it does not exist."""
    from kubernetes.client.rest import ApiException

    try:
        return sorted((core.read_namespaced_secret(name, namespace).data or {}).keys())
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _kube_access(kubeconfig: str | None, context: str | None) -> tuple[object, str]:
    """An official API client logged in as `kumo run` would log in (the kubeconfig read by kumo's
    own reader, kumo/kubeaccess.py), and the context's namespace."""
    from kumo.kubeaccess import cli_login, context_namespace, official_client

    # urllib3 logs every retry of a refused connection; the one-line error says it all.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    info = cli_login(kubeconfig, context)
    return official_client(info), context_namespace(info)


def _failed(command: str, error: Exception) -> int:
    print(f"{_prog(sys.argv[0])} {command}: error: {_one_line(error)}", file=sys.stderr)
    return EXIT_ERROR


def _one_line(error: Exception) -> str:
    """What went wrong, on one line, without the client library's headers and bodies."""
    from kubernetes.client.rest import ApiException
    from urllib3.exceptions import MaxRetryError

    if isinstance(error, MaxRetryError):
        pool = getattr(error, "pool", None)
        where = f" at {pool.host}:{pool.port}" if pool is not None else ""
        reason = re.sub(r"^(<[^>]*>|\w+\([^)]*\)):\s*", "", str(error.reason or error))
        text = f"cannot reach the Kubernetes API server{where}: {reason}"
    elif isinstance(error, ApiException):
        try:
            detail = json.loads(error.body or "{}").get("message", "")
        except (ValueError, AttributeError):
            detail = ""
        text = f"the Kubernetes API server answered {error.status} {error.reason}" + (f": {detail}" if detail else "")
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _devbed() -> Any:
    """The test bed's `devbed` module. The test bed is development tooling, its own distribution
    (testbed/pyproject.toml) that kumo's wheel and image leave out, so `kumo dev` says where to get
    it instead of failing with an ImportError."""
    try:
        from kumo.testbed import devbed
    except ImportError as missing:
        raise SystemExit(
            "kumo dev: the test bed is not installed (it is development tooling, not part of kumo's "
            "package or image): in a source checkout run `make install`, or "
            f"`pip install -e testbed` from the project root ({missing})"
        ) from None
    return devbed


def _dev_up(args: argparse.Namespace) -> int:
    devbed = _devbed()
    return int(devbed.up(devbed.DevPaths.at(args.env_file), audit_log=args.audit_log))


def _dev_down(args: argparse.Namespace) -> int:
    devbed = _devbed()
    return int(devbed.down(devbed.DevPaths.at(args.env_file)))


def _dev_status(args: argparse.Namespace) -> int:
    devbed = _devbed()
    return int(devbed.status(devbed.DevPaths.at(args.env_file)))


if __name__ == "__main__":
    logging.basicConfig()
    sys.exit(main())
