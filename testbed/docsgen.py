"""The reference pages: docs/reference/crds.md from the schemas in crds/*.yaml, and
docs/reference/cli.md from the controller's option declarations and the CLI's exit codes.

The CRDs are the API's source of truth: every field's type, bounds, default and description, and
the CEL rules the API server enforces, are written there once. This module renders them into one
Markdown page so the reference can never disagree with what `kubectl apply` accepts.

    python -m kumo.testbed.docsgen            # (re)write both pages (`make docs`)
    python -m kumo.testbed.docsgen --check    # exit 1 with a diff if a checked-in page is stale

Run it from the repository root. The output is deterministic: properties keep their schema order
(the order a reader meets them in the YAML), CRDs are sorted by kind, and nothing depends on time
or on the machine. tests/unit/test_crd_reference.py and tests/unit/test_options.py run the same
checks in CI.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from kumo.controller.runtime.config import Option

DEFAULT_CRDS = Path("crds")
DEFAULT_OUTPUT = Path("docs/reference/crds.md")
DEFAULT_CLI_OUTPUT = Path("docs/reference/cli.md")
CLI_SOURCES = "controller/runtime/config.py and kumo/cli.py"
DIFF_HEAD_LINES = 40
# The top-level properties every object has; the API server defines them, not these CRDs.
STANDARD_ROOT_FIELDS = ("apiVersion", "kind", "metadata")
_IMMUTABLE_RULE = re.compile(r"^\s*self\s*==\s*oldSelf\s*$")


@dataclass(frozen=True)
class FieldRow:
    """One line of a field table."""

    path: str
    type: str
    default: str
    required: bool
    immutable: str  # "yes", "via `<ancestor>`", or "" when the field can change
    description: str


@dataclass(frozen=True)
class Rule:
    """One x-kubernetes-validations entry and the schema path it is attached to."""

    path: str
    rule: str
    message: str
    message_expression: str
    field_path: str
    reason: str


# ---------------------------------------------------------------------------- reading


def load_crds(directory: Path) -> list[dict[str, Any]]:
    """Every CustomResourceDefinition in `directory`'s *.yaml files, sorted by kind."""
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        with path.open(encoding="utf-8") as handle:
            for document in yaml.safe_load_all(handle):
                if isinstance(document, dict) and document.get("kind") == "CustomResourceDefinition":
                    crds.append(document)
    if not crds:
        raise FileNotFoundError(f"no CustomResourceDefinition found in {directory}/*.yaml")
    return sorted(crds, key=lambda crd: str(crd["spec"]["names"]["kind"]))


# ---------------------------------------------------------------------------- walking a schema


def _immutable_children(schema: Mapping[str, Any]) -> set[str]:
    """Properties an object-level rule declares immutable through its fieldPath (`.name`)."""
    names = set()
    for rule in schema.get("x-kubernetes-validations") or []:
        field_path = str(rule.get("fieldPath", ""))
        if _says_immutable(rule) and re.fullmatch(r"\.[A-Za-z0-9_]+", field_path):
            names.add(field_path[1:])
    return names


def _says_immutable(rule: Mapping[str, Any]) -> bool:
    if _IMMUTABLE_RULE.match(_one_line(rule.get("rule", ""))):
        return True
    return "immutable" in f"{rule.get('message', '')} {rule.get('messageExpression', '')}".lower()


def _immutable_itself(schema: Mapping[str, Any]) -> bool:
    """A rule on the field itself without a fieldPath that pins it (`self == oldSelf`)."""
    return any(_says_immutable(r) and not r.get("fieldPath") for r in schema.get("x-kubernetes-validations") or [])


def field_rows(schema: Mapping[str, Any], path: str) -> Iterator[FieldRow]:
    """Rows for every property below the object `schema` at `path`, depth first in schema order."""
    yield from _rows(schema, path, immutable_ancestor="")


def _rows(schema: Mapping[str, Any], path: str, immutable_ancestor: str) -> Iterator[FieldRow]:
    required = set(schema.get("required") or [])
    pinned_by_parent = _immutable_children(schema)
    for name, child in (schema.get("properties") or {}).items():
        child_path = f"{path}.{name}"
        direct = name in pinned_by_parent or _immutable_itself(child)
        immutable = "yes" if direct else (f"via `{immutable_ancestor}`" if immutable_ancestor else "")
        yield FieldRow(
            path=child_path,
            type=type_summary(child),
            default=_default(child),
            required=name in required,
            immutable=immutable,
            description=_one_line(child.get("description", "")),
        )
        ancestor = child_path if direct else immutable_ancestor
        yield from _nested(child, child_path, ancestor)


def _nested(schema: Mapping[str, Any], path: str, immutable_ancestor: str) -> Iterator[FieldRow]:
    """Rows below one field: an object's properties, an array's items, a map's values."""
    if schema.get("properties"):
        yield from _rows(schema, path, immutable_ancestor)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from _nested(items, f"{path}[]", immutable_ancestor)
    values = schema.get("additionalProperties")
    if isinstance(values, Mapping):
        value_path = f"{path}.*"
        yield FieldRow(
            path=value_path,
            type=type_summary(values),
            default=_default(values),
            required=False,
            immutable=f"via `{immutable_ancestor}`" if immutable_ancestor else "",
            description=_one_line(values.get("description", "")),
        )
        yield from _nested(values, value_path, immutable_ancestor)


def validation_rules(schema: Mapping[str, Any], path: str) -> Iterator[Rule]:
    """Every CEL rule in the schema, in schema order, with the path of the node it sits on."""
    for rule in schema.get("x-kubernetes-validations") or []:
        yield Rule(
            path=path,
            rule=_one_line(rule.get("rule", "")),
            message=_one_line(rule.get("message", "")),
            message_expression=_one_line(rule.get("messageExpression", "")),
            field_path=str(rule.get("fieldPath", "")),
            reason=str(rule.get("reason", "")),
        )
    for name, child in (schema.get("properties") or {}).items():
        yield from validation_rules(child, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, Mapping):
        yield from validation_rules(items, f"{path}[]")
    values = schema.get("additionalProperties")
    if isinstance(values, Mapping):
        yield from validation_rules(values, f"{path}.*")


# ---------------------------------------------------------------------------- summarising


def type_summary(schema: Mapping[str, Any]) -> str:
    """`string`, `[]object`, `map[string]string`, ... followed by the constraints that apply."""
    parts = [_code(_type_name(schema))]
    parts += _constraints(schema)
    return "; ".join(parts)


def _type_name(schema: Mapping[str, Any]) -> str:
    kind = str(schema.get("type", "any"))
    if kind == "array" and isinstance(schema.get("items"), Mapping):
        return "[]" + _type_name(schema["items"])
    values = schema.get("additionalProperties")
    if kind == "object" and isinstance(values, Mapping) and not schema.get("properties"):
        return "map[string]" + _type_name(values)
    return kind


def _constraints(schema: Mapping[str, Any]) -> list[str]:
    found = []
    if "format" in schema:
        found.append(f"format {schema['format']}")
    if "enum" in schema:
        found.append("one of " + ", ".join(_code(_scalar(v)) for v in schema["enum"]))
    for key, label in (
        ("minimum", "min"),
        ("maximum", "max"),
        ("minLength", "minLength"),
        ("maxLength", "maxLength"),
        ("minItems", "minItems"),
        ("maxItems", "maxItems"),
        ("minProperties", "minProperties"),
        ("maxProperties", "maxProperties"),
    ):
        if key in schema:
            found.append(f"{label} {_scalar(schema[key])}")
    if "pattern" in schema:
        found.append("pattern " + _code(str(schema["pattern"])))
    list_type = schema.get("x-kubernetes-list-type")
    if list_type:
        keys = schema.get("x-kubernetes-list-map-keys") or []
        found.append(f"list-type {list_type}" + (" keyed by " + ", ".join(map(_code, keys)) if keys else ""))
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        found.append("free-form (unknown fields kept)")
    return found


def _default(schema: Mapping[str, Any]) -> str:
    return _code(_scalar(schema["default"])) if "default" in schema else ""


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


# ---------------------------------------------------------------------------- Markdown


def _one_line(text: Any) -> str:
    return " ".join(str(text).split())


def _code(text: str) -> str:
    """An inline code span; in a table cell `|` still needs its backslash (GFM reads it first)."""
    fence = "``" if "`" in text else "`"
    body = f" {text} " if len(fence) == 2 else text
    return fence + body.replace("|", "\\|") + fence


def _prose(text: str) -> str:
    """Schema prose made safe for a table cell: no column breaks, no HTML tags, no emphasis."""
    return text.replace("|", "\\|").replace("*", "\\*").replace("<", "&lt;")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def render(crds: Sequence[Mapping[str, Any]]) -> str:
    """The whole reference page for `crds` (as `load_crds` returns them)."""
    lines = [
        "<!-- Generated from crds/*.yaml by `python -m kumo.testbed.docsgen`. Do not edit: run `make docs`. -->",
        "",
        "# CRD reference",
        "",
        "Every field of kumo's custom resources, generated from the OpenAPI schemas and CEL rules in",
        "`crds/`, which the API server enforces. *Immutable* fields are pinned by a transition rule",
        "(`self == oldSelf`, or a rule whose message says so); `via` marks a field that cannot change",
        "because an enclosing object cannot. Arrays are written `[]`, map values `.*`.",
        "",
    ]
    lines += [f"- [{crd['spec']['names']['kind']}](#{str(crd['spec']['names']['kind']).lower()})" for crd in crds]
    for crd in crds:
        lines += ["", *_render_crd(crd)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _render_crd(crd: Mapping[str, Any]) -> list[str]:
    spec, names = crd["spec"], crd["spec"]["names"]
    group = spec["group"]
    lines = [
        f"## {names['kind']}",
        "",
        f"- CRD: {_code(crd['metadata']['name'])}",
        f"- Group: {_code(group)}; versions: {', '.join(_version_label(v) for v in spec['versions'])}",
        f"- Scope: {spec['scope']}",
        "- Plural / singular / list kind: "
        + " / ".join(_code(str(names.get(k, ""))) for k in ("plural", "singular", "listKind")),
        f"- Short names: {', '.join(_code(n) for n in sorted(names.get('shortNames') or [])) or 'none'}",
        f"- Categories: {', '.join(_code(c) for c in sorted(names.get('categories') or [])) or 'none'}",
    ]
    for version in spec["versions"]:
        lines += ["", *_render_version(names["kind"], group, version, several=len(spec["versions"]) > 1)]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _version_label(version: Mapping[str, Any]) -> str:
    flags = [flag for flag in ("served", "storage") if version.get(flag)]
    if version.get("deprecated"):
        flags.append("deprecated")
    return _code(version["name"]) + (f" ({', '.join(flags)})" if flags else "")


def _render_version(kind: str, group: str, version: Mapping[str, Any], several: bool) -> list[str]:
    root = (version.get("schema") or {}).get("openAPIV3Schema") or {}
    level = "###" if not several else "####"
    lines = [f"### {kind} {group}/{version['name']}", ""] if several else []
    if root.get("description"):
        lines += [_prose(_one_line(root["description"])), ""]
    columns = version.get("additionalPrinterColumns") or []
    if columns:
        lines += [f"{level} Printer columns", "", "`kubectl get` shows these (priority 1 only with `-o wide`).", ""]
        lines += _table(
            ("Column", "JSONPath", "Type", "Priority", "Description"),
            [
                (
                    c["name"],
                    _code(c["jsonPath"]),
                    _code(c["type"]),
                    str(c.get("priority", 0)),
                    _prose(_one_line(c.get("description", ""))),
                )
                for c in columns
            ],
        )
        lines.append("")
    for top in (p for p in (root.get("properties") or {}) if p not in STANDARD_ROOT_FIELDS):
        schema = root["properties"][top]
        lines += [f"{level} {top}", ""]
        if schema.get("description"):
            lines += [_prose(_one_line(schema["description"])), ""]
        rows = list(field_rows(schema, top))
        if rows:
            lines += _table(
                ("Field", "Type", "Default", "Required", "Immutable", "Description"),
                [
                    (
                        _code(row.path),
                        row.type,
                        row.default,
                        "yes" if row.required else "",
                        row.immutable,
                        _prose(row.description),
                    )
                    for row in rows
                ],
            )
            lines.append("")
    rules = list(validation_rules(root, ""))
    if rules:
        lines += [f"{level} Validation rules (CEL)", ""]
        lines += _table(
            ("On", "Rule", "Message", "Reason"),
            [(_code(r.path or "(root)") + _field_path(r), _code(r.rule), _message(r), r.reason) for r in rules],
        )
        lines.append("")
    return lines


def _field_path(rule: Rule) -> str:
    return f" (reported at {_code(rule.field_path)})" if rule.field_path else ""


def _message(rule: Rule) -> str:
    if rule.message:
        return _prose(rule.message)
    if rule.message_expression:
        return "computed: " + _code(rule.message_expression)
    return "(the API server's default message)"


# ---------------------------------------------------------------------------- the CLI page


def render_cli() -> str:
    """docs/reference/cli.md: `kumo run`'s options and every command's exit codes."""
    from kumo.controller.runtime.config import options

    from kumo.cli import DETAILED_EXIT_COMMANDS, EXIT_CODE_COMMANDS, EXIT_ERROR, EXIT_USAGE, exit_codes

    lines = [
        f"<!-- Generated from {CLI_SOURCES} by `python -m kumo.testbed.docsgen`. Do not edit: run `make docs`. -->",
        "",
        "# Command line reference",
        "",
        "## `kumo run` options",
        "",
        "Every setting of the controller is a flag of `kumo run` and an environment variable. A flag",
        "wins over its variable, a variable over the default; an empty variable counts as unset.",
        "`kumo run --help` shows the same list. Each option is declared once, in",
        "`controller/runtime/config.py`; this table and the flags are generated from it.",
        "",
    ]
    lines += _table(
        ("Flag", "Variable", "Default", "Meaning"),
        [
            (
                ", ".join(_code(flag) for flag in _flags(o)),
                _code(o.env) + (f" ({o.env_form})" if o.env_form else ""),
                _code(o.shown_default) if _literal_default(o) else _prose(o.shown_default),
                _prose(o.help) + ("; one of " + ", ".join(map(_code, o.choices)) if o.choices else ""),
            )
            for o in options()
        ],
    )
    lines += [
        "",
        "## Exit codes",
        "",
        "Each command's `--help` ends with the same list. For "
        + ", ".join(f"`{c}`" for c in DETAILED_EXIT_COMMANDS)
        + f" a usage error exits {EXIT_ERROR}; for the others it exits {EXIT_USAGE}.",
    ]
    for command in EXIT_CODE_COMMANDS:
        lines += ["", f"### `kumo {command}`", ""]
        lines += _table(("Code", "Meaning"), [(str(code), _prose(meaning)) for code, meaning in exit_codes(command)])
    return "\n".join(lines) + "\n"


def _flags(option: Option) -> list[str]:
    """The spellings of an option's flag: a switch also has its `--no-` form."""
    negated = [option.flag.replace("--", "--no-", 1)] if option.value_type is bool else []
    return [option.flag, *negated, *([option.short] if option.short else [])]


def _literal_default(option: Option) -> bool:
    """Whether the default is a value one could type (`16`), not words (`off`, `every namespace`)."""
    return not option.default_text and option.value_type is not bool


# ---------------------------------------------------------------------------- command line


def stale_diff(current: str, generated: str, name: str, source: str = "crds/") -> list[str]:
    """The unified diff from the checked-in page to the generated one (empty when equal)."""
    return list(
        difflib.unified_diff(
            current.splitlines(keepends=True),
            generated.splitlines(keepends=True),
            fromfile=f"{name} (checked in)",
            tofile=f"{name} (generated from {source})",
        )
    )


def _stale(page: Path, generated: str, source: str) -> bool:
    """Print the diff and the fix when `page` is not what would be generated."""
    current = page.read_text(encoding="utf-8") if page.exists() else ""
    diff = stale_diff(current, generated, str(page), source)
    if not diff:
        return False
    sys.stdout.writelines(diff[:DIFF_HEAD_LINES])
    if len(diff) > DIFF_HEAD_LINES:
        print(f"... ({len(diff) - DIFF_HEAD_LINES} more diff lines)")
    print(f"{page} is out of date with {source}: run `make docs`")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kumo.testbed.docsgen",
        description="Generate the reference pages (Markdown): CRDs from crds/*.yaml, the CLI from its declarations.",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 if the output file is not up to date")
    parser.add_argument("--crds", type=Path, default=DEFAULT_CRDS, help=f"CRD folder (default: {DEFAULT_CRDS})")
    parser.add_argument(
        "--output", type=Path, default=DEFAULT_OUTPUT, help=f"CRD page to write (default: {DEFAULT_OUTPUT})"
    )
    parser.add_argument(
        "--cli-output",
        type=Path,
        default=DEFAULT_CLI_OUTPUT,
        help=f"CLI page to write (default: {DEFAULT_CLI_OUTPUT})",
    )
    args = parser.parse_args(argv)
    try:
        generated = render(load_crds(args.crds))
    except (OSError, KeyError, ValueError) as error:
        print(f"docsgen: cannot read the CRDs in {args.crds}: {error}", file=sys.stderr)
        return 1
    pages = {args.output: (generated, f"{args.crds}/"), args.cli_output: (render_cli(), CLI_SOURCES)}
    if args.check:
        stale = [page for page, (text, source) in pages.items() if _stale(page, text, source)]
        return 1 if stale else 0
    for page, (text, _) in pages.items():
        page.parent.mkdir(parents=True, exist_ok=True)
        page.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
