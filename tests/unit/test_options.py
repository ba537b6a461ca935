"""The controller's options, declared once in controller/runtime/config.py, and the `kumo` command
around them: the flags and `--help` of `kumo run`, the KUMO_* variables, their precedence, the
docs table, `--version`, the exit codes in each command's help, and the name under kubectl.
"""

from __future__ import annotations

import dataclasses
import re
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml
from kumo.controller.runtime.config import ControllerConfig, OptionError, options
from kumo.testbed import docsgen

from kumo import cli

ROOT = Path(__file__).resolve().parents[2]
# Pages that tell operators which variables to set: each one they name must be a real option.
OPERATOR_DOCS = ("install.md", "operations.md", "concepts.md", "credentials.md", "performance.md")


def help_of(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """What `kumo ARGV --help` prints, with argparse's line wrapping undone."""
    with pytest.raises(SystemExit) as done:
        cli.main([*argv, "--help"])
    assert done.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def config_from(argv: list[str], env: dict[str, str]) -> ControllerConfig:
    """The settings `kumo run ARGV` would use in an environment of `env` alone."""
    args = cli._parser("kumo").parse_args(["run", *argv])
    return ControllerConfig.load(vars(args), env)


# ---------------------------------------------------------------------- one declaration each


def test_every_setting_is_one_option_with_its_own_flag_and_variable():
    """Each ControllerConfig field is an option; no flag or variable is used twice."""
    declared = options()
    assert [o.name for o in declared] == [f.name for f in dataclasses.fields(ControllerConfig)]
    for attribute in ("flag", "env"):
        values = [getattr(o, attribute) for o in declared]
        assert len(values) == len(set(values)), f"a {attribute} is declared twice: {values}"
    assert all(o.env.startswith("KUMO_") or o.env == "KUBECONFIG" for o in declared)
    assert all(o.help and o.flag.startswith("--") for o in declared)


def test_run_help_shows_each_flag_once_with_its_variable_and_default(capsys):
    """`kumo run --help` names every option's variable and default, once each."""
    text = help_of(capsys, "run")
    for opt in options():
        assert text.count(f"(env {opt.env},") == 1, opt.env
        assert opt.help_text in text, opt.help_text
        assert f"{opt.flag} " in text
    assert "(env KUMO_SWEEP_INTERVAL, default 60)" in text  # the form a reader sees


def test_plan_takes_the_cluster_options_as_run_declares_them(capsys):
    """`kumo plan --cluster-id/--controller-namespace` are the same declarations, not copies."""
    text = help_of(capsys, "plan")
    by_name = {o.name: o for o in options()}
    for name in ("cluster_id", "controller_namespace"):
        assert by_name[name].help_text in text


# ---------------------------------------------------------------------- environment and precedence


ENV_CASES = [
    ("list", {"KUMO_NAMESPACES": "team-a, team-b,,x-*"}, "namespaces", ("team-a", "team-b", "x-*")),
    ("int", {"KUMO_WORKERS": "8"}, "workers", 8),
    ("float", {"KUMO_SWEEP_INTERVAL": "5"}, "sweep_interval", 5.0),
    ("choice", {"KUMO_DRIFT_POLICY": "Report"}, "drift_policy", "Report"),
    ("switch-on", {"KUMO_LEADER_ELECT": "TRUE"}, "leader_elect", True),
    ("switch-off", {"KUMO_LEADER_ELECT": "off"}, "leader_elect", False),
    ("not-kumo-prefixed", {"KUBECONFIG": "/tmp/kubeconfig"}, "kubeconfig", "/tmp/kubeconfig"),
    ("empty-is-unset", {"KUMO_CONTROLLER_NAMESPACE": ""}, "controller_namespace", "kumo-system"),
    ("absent-is-default", {}, "cloud_rate", 50.0),
]


@pytest.mark.parametrize(("case", "env", "name", "value"), ENV_CASES, ids=[c[0] for c in ENV_CASES])
def test_variables_are_parsed_as_their_option_declares(case, env, name, value):
    assert getattr(ControllerConfig.from_env(env), name) == value


BAD_ENV_CASES = [
    ("not-a-number", {"KUMO_WORKERS": "many"}, "KUMO_WORKERS='many': expected a whole number"),
    ("not-a-float", {"KUMO_CLOUD_RATE": "fast"}, "KUMO_CLOUD_RATE='fast': expected a number"),
    ("not-a-choice", {"KUMO_DRIFT_POLICY": "correct"}, "KUMO_DRIFT_POLICY='correct': expected one of Correct"),
    ("not-a-switch", {"KUMO_LEADER_ELECT": "enabled"}, "KUMO_LEADER_ELECT='enabled': expected one of 1, true"),
]


@pytest.mark.parametrize(("case", "env", "message"), BAD_ENV_CASES, ids=[c[0] for c in BAD_ENV_CASES])
def test_a_bad_variable_is_refused_by_name(case, env, message):
    with pytest.raises(OptionError) as refused:
        ControllerConfig.from_env(env)
    assert str(refused.value).startswith(message)


def test_a_flag_wins_over_its_variable_which_wins_over_the_default():
    env = {"KUMO_WORKERS": "8", "KUMO_SWEEP_INTERVAL": "5", "KUMO_NAMESPACES": "a,b", "KUMO_LEADER_ELECT": "true"}
    config = config_from(["--workers=4", "-n", "c", "--no-leader-elect"], env)
    assert config.workers == 4  # flag over variable
    assert config.namespaces == ("c",)  # the flags replace the variable's list, they do not add to it
    assert config.leader_elect is False  # a switch can be turned off against its variable
    assert config.sweep_interval == 5.0  # variable over default
    assert config.threads == ControllerConfig.threads  # neither: the default


def test_run_refuses_a_bad_variable_with_a_usage_error(monkeypatch, capsys):
    """Exit 2 and one line naming the variable, before anything starts."""
    monkeypatch.setenv("KUMO_SWEEP_INTERVAL", "1m")
    assert cli.main(["run"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.strip() == "kumo run: error: KUMO_SWEEP_INTERVAL='1m': expected a number"


# ---------------------------------------------------------------------- --version, exit codes, prog


def test_version_comes_from_the_installed_package(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.strip() == f"kumo {version('kumo')}"


def test_the_controller_names_its_version_to_the_api_server():
    """Audit logs attribute the controller's writes to the version that made them."""
    from kumo.controller.runtime.operator import USER_AGENT

    assert f"kumo-controller/{version('kumo')}" == USER_AGENT


def test_the_controller_defaults_are_the_declared_ones():
    """The runtime's Controller takes its defaults from the declarations, not from copies."""
    from kumo.controller.runtime.operator import Controller

    defaults = {f.name: f.default for f in dataclasses.fields(Controller)}
    for name in ("workers", "sweep_interval", "sweep_concurrency"):
        assert defaults[name] == getattr(ControllerConfig(), name)


@pytest.mark.parametrize("command", cli.EXIT_CODE_COMMANDS)
def test_each_command_help_lists_its_exit_codes(capsys, command):
    text = help_of(capsys, command)
    assert "exit codes:" in text
    for code, meaning in cli.exit_codes(command):
        assert f"{code} {meaning}" in text


def test_exit_codes_are_the_ones_the_commands_return():
    """The help quotes the modules' constants, so it cannot drift from what they return."""
    from kumo.controller.runtime.operator import EXIT_DEPOSED

    from kumo.driftreport import EXIT_DRIFTED, EXIT_IN_SYNC
    from kumo.plan import EXIT_CHANGES, EXIT_ERROR, EXIT_NO_CHANGES

    def codes(command: str) -> set[int]:
        return {code for code, _ in cli.exit_codes(command)}

    assert codes("plan") == {EXIT_NO_CHANGES, EXIT_ERROR, EXIT_CHANGES}
    assert codes("drift") == {EXIT_IN_SYNC, cli.EXIT_ERROR, EXIT_DRIFTED}
    assert codes("status") == {cli.STATUS_READY, cli.EXIT_ERROR, cli.STATUS_NOT_READY}
    assert EXIT_DEPOSED in codes("run")


def test_top_level_help_explains_usage_errors(capsys):
    text = help_of(capsys)
    assert "A usage error exits 2, except for drift, plan, status: they exit 1" in text


@pytest.mark.parametrize(
    ("argv0", "prog"),
    [
        ("/usr/local/bin/kubectl-kumo", "kubectl kumo"),
        ("kubectl-kumo", "kubectl kumo"),
        ("/usr/local/bin/kumo", "kumo"),
        ("/work/kumo/cli.py", "kumo"),  # python -m kumo.cli
    ],
)
def test_the_program_is_named_as_it_was_started(argv0, prog):
    assert cli._prog(argv0) == prog


def test_kubectl_kumo_help_says_kubectl_kumo(monkeypatch, capsys):
    """kubectl runs the plugin with its path as argv[0]; every usage line then says `kubectl kumo`."""
    monkeypatch.setattr("sys.argv", ["/usr/local/bin/kubectl-kumo", "plan", "--help"])
    assert help_of(capsys, "plan").startswith("usage: kubectl kumo plan ")
    assert help_of(capsys).startswith("usage: kubectl kumo ")


# ---------------------------------------------------------------------- docs and manifests


def test_checked_in_cli_page_is_generated_from_the_declarations():
    """docs/reference/cli.md is exactly what `python -m kumo.testbed.docsgen` makes now (`make docs`)."""
    page = ROOT / "docs/reference/cli.md"
    current = page.read_text(encoding="utf-8")
    generated = docsgen.render_cli()
    diff = "".join(docsgen.stale_diff(current, generated, str(page), docsgen.CLI_SOURCES)[:40])
    assert current == generated, f"docs/reference/cli.md is stale: run `make docs`\n{diff}"


def test_cli_page_lists_every_option_once():
    rows = [line for line in docsgen.render_cli().splitlines() if line.startswith("| `--")]
    assert len(rows) == len(options())
    for row, opt in zip(rows, options(), strict=True):
        assert f"`{opt.flag}`" in row and f"`{opt.env}`" in row


def test_deployment_sets_only_declared_variables():
    """Every variable deploy/ sets is one `kumo run` reads (a typo would be silently ignored)."""
    documents = yaml.safe_load_all((ROOT / "deploy/base/deployment.yaml").read_text(encoding="utf-8"))
    deployment = next(d for d in documents if d and d.get("kind") == "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    names = {e["name"] for c in containers for e in c.get("env", [])}
    assert names <= {o.env for o in options()}


@pytest.mark.parametrize("page", OPERATOR_DOCS)
def test_operator_docs_name_only_declared_variables(page):
    """The variables install, operations and concepts docs tell operators to set all exist."""
    named = set(re.findall(r"\bKUMO_[A-Z_]*[A-Z]\b", (ROOT / "docs" / page).read_text(encoding="utf-8")))
    assert named <= {o.env for o in options()}
