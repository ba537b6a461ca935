"""The controller's settings, each declared once: a field of ControllerConfig with its option().

A field's declaration is the whole option: its name (the flag is `--name-with-dashes` unless it
says otherwise), its type, its default, its environment variable and its help. Everything else is
generated from these declarations:

- `add_flags` adds `kumo run`'s flags (their `--help` names the variable and the default);
- `ControllerConfig.load` reads the variables and the parsed flags, a flag over its variable over
  the default;
- `python -m kumo.testbed.docsgen` writes the table in docs/reference/options.md.

So adding a setting is one field here (and its use).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kumo.controller.core.drift import DriftPolicy

_METADATA_KEY = "kumo.option"
_TRUE_WORDS = ("1", "true", "yes", "on")
_FALSE_WORDS = ("0", "false", "no", "off")


class OptionError(ValueError):
    """A variable's value cannot be parsed as its option's type, or is not one of its choices."""


@dataclass(frozen=True)
class Option:
    """One controller setting as the command line, the environment and the docs present it."""

    name: str  # the ControllerConfig field, also the parsed flag's attribute
    value_type: type  # str, int, float, bool or tuple (a list of strings)
    default: Any
    env: str
    help: str
    flag: str  # e.g. --sweep-interval
    short: str = ""  # e.g. -n
    choices: tuple[str, ...] = ()
    default_text: str = ""  # what the default means, when its value alone does not say (0: off)

    @property
    def shown_default(self) -> str:
        """The default as a reader wants it: `60` not `60.0`, `off` not `False`."""
        if self.default_text:
            return self.default_text
        if self.value_type is bool:
            return "on" if self.default else "off"
        if isinstance(self.default, float):
            return f"{self.default:g}"
        return str(self.default)

    @property
    def env_form(self) -> str:
        """How the variable's value is written, when it is not a single value."""
        if self.value_type is tuple:
            return "comma-separated"
        if self.value_type is bool:
            return "true or false"
        return ""

    @property
    def help_text(self) -> str:
        """The help with the variable and default appended, as `--help` shows it."""
        variable = f"env {self.env}, {self.env_form};" if self.env_form else f"env {self.env},"
        return f"{self.help} ({variable} default {self.shown_default})"

    def parse(self, text: str) -> Any:
        """The value a variable's text stands for; OptionError names the variable when it is wrong."""
        text = text.strip()
        if self.value_type is tuple:
            return tuple(part.strip() for part in text.split(",") if part.strip())
        if self.value_type is bool:
            if text.lower() in _TRUE_WORDS + _FALSE_WORDS:
                return text.lower() in _TRUE_WORDS
            raise OptionError(f"{self.env}={text!r}: expected one of {', '.join(_TRUE_WORDS + _FALSE_WORDS)}")
        try:
            value = self.value_type(text)
        except ValueError:
            expected = "a whole number" if self.value_type is int else "a number"
            raise OptionError(f"{self.env}={text!r}: expected {expected}") from None
        if self.choices and value not in self.choices:
            raise OptionError(f"{self.env}={text!r}: expected one of {', '.join(self.choices)}")
        return value


def option(
    default: Any,
    *,
    env: str,
    help: str,
    flag: str = "",
    short: str = "",
    choices: tuple[str, ...] = (),
    default_text: str = "",
) -> Any:
    """Declare a ControllerConfig field as an option (typed Any, like dataclasses.field)."""
    declared = {
        "env": env,
        "help": help,
        "flag": flag,
        "short": short,
        "choices": choices,
        "default_text": default_text,
    }
    return dataclasses.field(default=default, metadata={_METADATA_KEY: declared})


@dataclass(frozen=True)
class ControllerConfig:
    namespaces: tuple[str, ...] = option(
        (),
        env="KUMO_NAMESPACES",
        flag="--namespace",
        short="-n",
        help="watch only this namespace (repeatable; globs allowed)",
        default_text="every namespace",
    )
    controller_namespace: str = option(
        "kumo-system",
        env="KUMO_CONTROLLER_NAMESPACE",
        help="where ClusterProviderConfig credentials Secrets live (deploy/ sets the Pod's namespace)",
    )
    cluster_id: str = option(
        "",
        env="KUMO_CLUSTER_ID",
        help="written into the ownership tags of cloud resources; set it when two clusters share an account",
        default_text="the UID of the kube-system namespace",
    )
    workers: int = option(16, env="KUMO_WORKERS", help="reconciles in flight at once")
    threads: int = option(
        64, env="KUMO_THREADS", help="cloud SDK calls in flight at once (threads); also the Kubernetes API connections"
    )
    kubeconfig: str = option(
        "",
        env="KUBECONFIG",
        help="kubeconfig file, used when not running in a Pod (KUBECONFIG may list several, merged as kubectl does)",
        default_text="the in-cluster config, else ~/.kube/config",
    )
    context: str = option(
        "",
        env="KUMO_CONTEXT",
        help="the kubeconfig context to use, when not running in a Pod",
        default_text="the kubeconfig's current-context",
    )
    health_port: int = option(0, env="KUMO_HEALTH_PORT", help="serve /healthz on this port", default_text="off")
    health_host: str = option(
        "127.0.0.1",
        env="KUMO_HEALTH_HOST",
        help="address /healthz and the metrics listen on (0.0.0.0 in a Pod, so the kubelet's probes reach it)",
    )
    metrics_port: int = option(
        0, env="KUMO_METRICS_PORT", help="serve Prometheus metrics on this port", default_text="off"
    )
    sweep_interval: float = option(60.0, env="KUMO_SWEEP_INTERVAL", help="seconds between drift sweeps of one scope")
    sweep_concurrency: int = option(4, env="KUMO_SWEEP_CONCURRENCY", help="drift sweeps running at once")
    drift_policy: str = option(
        DriftPolicy.CORRECT.value,
        env="KUMO_DRIFT_POLICY",
        choices=tuple(policy.value for policy in DriftPolicy),
        help="drift policy of objects without spec.driftPolicy",
    )
    cloud_rate: float = option(
        50.0, env="KUMO_CLOUD_RATE", help="cloud calls per second per account and region (0: no limit)"
    )
    cloud_burst: float = option(100.0, env="KUMO_CLOUD_BURST", help="burst size of that token bucket")
    log_format: str = option("text", env="KUMO_LOG_FORMAT", choices=("text", "json"), help="log line format")
    log_level: str = option("INFO", env="KUMO_LOG_LEVEL", help="DEBUG, INFO, WARNING or ERROR")
    # Leader election (controller/runtime/leader.py). Off by default: a single process makes no Lease writes.
    leader_elect: bool = option(
        False,
        env="KUMO_LEADER_ELECT",
        help="run as one of several replicas: only the holder of a Lease reconciles",
    )
    lease_name: str = option(
        "kumo-controller", env="KUMO_LEASE_NAME", help="the leader-election Lease, in the controller namespace"
    )
    lease_duration: int = option(
        15, env="KUMO_LEASE_DURATION", help="seconds after the last renewal before a standby takes over"
    )
    renew_deadline: float = option(
        10.0, env="KUMO_RENEW_DEADLINE", help="seconds a leader keeps acting without renewing, then exits"
    )
    retry_period: float = option(
        2.0, env="KUMO_RETRY_PERIOD", help="seconds between Lease renewals (leader) and tries (standby)"
    )
    leader_identity: str = option(
        "",
        env="KUMO_LEADER_IDENTITY",
        help="this replica's name in its Lease (with --shard-ring also its shard's name: give each replica its own)",
        default_text="the hostname (the Pod name), plus pid and a random suffix unless sharded",
    )
    # Sharding (controller/runtime/sharding.py): each replica acts on the objects a sharder assigns it.
    shard_ring: str = option(
        "",
        env="KUMO_SHARD_RING",
        help="run as a shard of this ControllerRing: own shard Lease, only objects labelled for this replica",
        default_text="off: one replica acts on every object",
    )

    @classmethod
    def load(cls, flags: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None) -> ControllerConfig:
        """The settings from parsed flags (None: not given) over variables over defaults.

        An empty variable counts as unset, as Kubernetes writes `value: ""` for "nothing".
        """
        flags = flags or {}
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for opt in options():
            given = flags.get(opt.name)
            if given is not None:
                values[opt.name] = tuple(given) if opt.value_type is tuple else given
            elif env.get(opt.env, "").strip():
                values[opt.name] = opt.parse(env[opt.env])
        return cls(**values)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ControllerConfig:
        """The settings from the environment alone (the process's when `env` is None)."""
        return cls.load(env=env)


def options() -> tuple[Option, ...]:
    """Every option, in declaration order (the order of `--help` and of the docs table)."""
    hints = typing.get_type_hints(ControllerConfig)
    found = []
    for field in dataclasses.fields(ControllerConfig):
        declared = field.metadata[_METADATA_KEY]
        hint = hints[field.name]
        found.append(
            Option(
                name=field.name,
                value_type=typing.get_origin(hint) or hint,
                default=field.default,
                env=declared["env"],
                help=declared["help"],
                flag=declared["flag"] or "--" + field.name.replace("_", "-"),
                short=declared["short"],
                choices=declared["choices"],
                default_text=declared["default_text"],
            )
        )
    return tuple(found)


def add_flags(parser: argparse.ArgumentParser, *names: str) -> None:
    """One flag per option (only `names`, when given), each None unless given on the command line."""
    for opt in options():
        if names and opt.name not in names:
            continue
        flags = [opt.flag, opt.short] if opt.short else [opt.flag]
        common: dict[str, Any] = {"dest": opt.name, "default": None, "help": opt.help_text.replace("%", "%%")}
        if opt.value_type is bool:
            parser.add_argument(*flags, action=argparse.BooleanOptionalAction, **common)
        elif opt.value_type is tuple:  # one value per flag, as the flag's name says
            parser.add_argument(*flags, action="append", metavar=opt.flag.lstrip("-").upper(), **common)
        else:
            parser.add_argument(*flags, type=opt.value_type, choices=opt.choices or None, **common)
