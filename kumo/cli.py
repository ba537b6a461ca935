"""The `kumo` command: `run` the controller, `drift` / `plan` reports, `dev` for the local test bed.

`drift` and `plan` are read-only, terraform-style reports (kumo/driftreport.py, kumo/plan.py);
`dev up|down|status` drives the local control plane and emulated clouds.

Also installed as `kubectl-kumo`, so `kubectl kumo ...` works as a kubectl plugin.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kumo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands")

    run = commands.add_parser("run", help="run the controller (flags override KUMO_* variables)")
    run.add_argument("--namespace", "-n", action="append", default=[], help="watch only this namespace (repeatable)")
    run.add_argument("--controller-namespace", help="where ClusterProviderConfig credentials live")
    run.add_argument("--cluster-id", help="written into ownership tags (default: kube-system UID)")
    run.add_argument("--workers", type=int, help="reconciles in flight at once")
    run.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then KUBECONFIG)")
    run.add_argument("--health-port", type=int, help="serve /healthz on this port")
    run.add_argument("--health-host", help="address for /healthz (0.0.0.0 inside a Pod)")
    run.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    run.add_argument("--sweep-interval", type=float, help="seconds between drift sweeps (default 60)")
    run.add_argument("--sweep-concurrency", type=int, help="drift sweeps running at once (default 4)")
    run.add_argument(
        "--drift-policy", choices=["Correct", "Report", "Ignore"], help="default for objects without spec.driftPolicy"
    )
    run.add_argument("--cloud-rate", type=float, help="cloud calls per second per account and region (0: no limit)")
    run.add_argument("--cloud-burst", type=float, help="burst size of that token bucket")
    run.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR")
    run.add_argument("--log-format", choices=["text", "json"], help="log line format")
    run.add_argument(
        "--leader-elect",
        action="store_true",
        default=None,
        help="run as one of several replicas: only the holder of a Lease reconciles (KUMO_LEADER_ELECT)",
    )
    run.add_argument("--lease-name", help="the leader-election Lease in the controller namespace (kumo-controller)")
    run.add_argument("--lease-duration", type=int, help="seconds before a standby takes an unrenewed Lease (15)")
    run.add_argument("--renew-deadline", type=float, help="seconds a leader acts without renewing, then exits (10)")
    run.add_argument("--retry-period", type=float, help="seconds between Lease renewals and tries (2)")
    run.set_defaults(handler=_run)

    drift = commands.add_parser(
        "drift", help="report drifted Databases and Buckets from their status (no cloud calls, no writes)"
    )
    scope = drift.add_mutually_exclusive_group()
    scope.add_argument("--namespace", "-n", help="this namespace (default: the kubeconfig context's, else default)")
    scope.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    drift.add_argument("--output", "-o", choices=["table", "json"], default="table")
    drift.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    drift.set_defaults(handler=_drift)

    plan = commands.add_parser(
        "plan", help="show what applying manifests would create or change in the cloud (reads only)"
    )
    plan.add_argument(
        "--filename", "-f", action="append", required=True, help="manifest file, '-' for stdin (repeatable)"
    )
    plan.add_argument("--namespace", "-n", help="for documents without metadata.namespace")
    plan.add_argument("--output", "-o", choices=["table", "json"], default="table")
    plan.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
    plan.add_argument("--cluster-id", help="as given to `kumo run` (default: KUMO_CLUSTER_ID, else kube-system UID)")
    plan.add_argument("--controller-namespace", help="where ClusterProviderConfig credentials live (kumo-system)")
    plan.set_defaults(handler=_plan)

    status = commands.add_parser("status", help="explain in plain words why an object is (not) Ready")
    status.add_argument("target", metavar="KIND/NAME", help="e.g. database/orders-db or bucket/assets")
    status.add_argument("--namespace", "-n", help="default: the kubeconfig context's namespace, else default")
    status.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG, then ~/.kube/config)")
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
    from kumo.controller.runtime.config import ControllerConfig
    from kumo.controller.runtime.logs import configure_logging
    from kumo.controller.runtime.memory import limit_arenas
    from kumo.controller.runtime.operator import run

    config = ControllerConfig.from_env()
    overrides = {
        "namespaces": tuple(args.namespace) or None,
        "controller_namespace": args.controller_namespace,
        "cluster_id": args.cluster_id,
        "workers": args.workers,
        "kubeconfig": args.kubeconfig,
        "health_port": args.health_port,
        "health_host": args.health_host,
        "metrics_port": args.metrics_port,
        "sweep_interval": args.sweep_interval,
        "sweep_concurrency": args.sweep_concurrency,
        "drift_policy": args.drift_policy,
        "cloud_rate": args.cloud_rate,
        "cloud_burst": args.cloud_burst,
        "log_level": args.log_level,
        "log_format": args.log_format,
        "leader_elect": args.leader_elect,
        "lease_name": args.lease_name,
        "lease_duration": args.lease_duration,
        "renew_deadline": args.renew_deadline,
        "retry_period": args.retry_period,
    }
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if v is not None})
    configure_logging(config.log_format, config.log_level)
    limit_arenas()  # before any thread exists
    asyncio.run(run(config))
    return 0


def _drift(args: argparse.Namespace) -> int:
    from kumo.driftreport import read_report, render_json, render_table

    try:
        api_client, context_namespace = _kube_access(args.kubeconfig)
        namespace = None if args.all_namespaces else (args.namespace or context_namespace)
        report = read_report(api_client, namespace)
    except Exception as error:  # a report tool answers with one line, never a traceback
        return _failed("drift", error)
    sys.stdout.write(render_json(report) if args.output == "json" else render_table(report))
    return report.exit_code


def _plan(args: argparse.Namespace) -> int:
    from kumo.controller.runtime.config import ControllerConfig
    from kumo.plan import EXIT_ERROR as PLAN_FAILED
    from kumo.plan import load_documents, plan_documents, render_json, render_table

    try:
        documents = load_documents(args.filename)
        api_client, context_namespace = _kube_access(args.kubeconfig)
        defaults = ControllerConfig.from_env()
        plan = plan_documents(
            api_client,
            documents,
            default_namespace=args.namespace or context_namespace,
            cluster_id=args.cluster_id or defaults.cluster_id,
            controller_namespace=args.controller_namespace or defaults.controller_namespace,
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
        api_client, context_namespace = _kube_access(args.kubeconfig)
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
    return 0 if explanation.ready else 3


def _secret_keys(core: Any, namespace: str, name: str) -> list[str] | None:
    """The Secret's key names (never its values), or None when it does not exist."""
    from kubernetes.client.rest import ApiException

    try:
        return sorted((core.read_namespaced_secret(name, namespace).data or {}).keys())
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _kube_access(kubeconfig: str | None) -> tuple[object, str]:
    """An API client from the kubeconfig (KUBECONFIG when not given) and its context's namespace."""
    from kubernetes import client, config

    # urllib3 logs every retry of a refused connection; the one-line error says it all.
    logging.getLogger("urllib3").setLevel(logging.ERROR)
    configuration = client.Configuration()
    config.load_kube_config(config_file=kubeconfig or None, client_configuration=configuration)
    _, active = config.list_kube_config_contexts(config_file=kubeconfig or None)
    namespace = ((active or {}).get("context") or {}).get("namespace") or "default"
    return client.ApiClient(configuration), str(namespace)


def _failed(command: str, error: Exception) -> int:
    print(f"kumo {command}: error: {_one_line(error)}", file=sys.stderr)
    return EXIT_ERROR


def _one_line(error: Exception) -> str:
    """What went wrong, on one line, without the client library's headers and bodies."""
    from kubernetes.client.rest import ApiException
    from kubernetes.config import ConfigException
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
    elif isinstance(error, ConfigException):
        text = f"kubeconfig: {error}"
    else:
        text = str(error) or type(error).__name__
    return " ".join(text.split())


def _dev_up(args: argparse.Namespace) -> int:
    from kumo.testbed import devbed

    return devbed.up(devbed.DevPaths.at(args.env_file), audit_log=args.audit_log)


def _dev_down(args: argparse.Namespace) -> int:
    from kumo.testbed import devbed

    return devbed.down(devbed.DevPaths.at(args.env_file))


def _dev_status(args: argparse.Namespace) -> int:
    from kumo.testbed import devbed

    return devbed.status(devbed.DevPaths.at(args.env_file))


if __name__ == "__main__":
    logging.basicConfig()
    sys.exit(main())
