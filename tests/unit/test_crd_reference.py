"""docs/reference/crds.md: generated from crds/*.yaml by kumo.testbed.docsgen and checked in.

The first test is the CI check that the page matches the CRDs as they are now (the same
comparison `python -m kumo.testbed.docsgen --check` makes); the rest read the page as a user would and
check that it tells what the schemas say: descriptions, immutability, enums, defaults, CEL rules.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from kumo.testbed import docsgen

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"
PAGE = ROOT / "docs" / "reference" / "crds.md"
COLUMNS = ("field", "type", "default", "required", "immutable", "description")


def crd_schema(filename: str) -> dict[str, Any]:
    crd = yaml.safe_load((CRDS / filename).read_text(encoding="utf-8"))
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def section(kind: str) -> str:
    """The part of the page about one kind, from its heading to the next kind's."""
    page = PAGE.read_text(encoding="utf-8")
    start = page.index(f"\n## {kind}\n")
    end = page.find("\n## ", start + 1)
    return page[start : end if end != -1 else len(page)]


def unescape(cell: str) -> str:
    """A table cell as a reader sees it rendered."""
    return cell.strip().replace("\\|", "|").replace("\\*", "*").replace("&lt;", "<")


def field_row(kind: str, path: str) -> dict[str, str]:
    """The cells of the field table row for `path` in `kind`'s section."""
    for line in section(kind).splitlines():
        if line.startswith(f"| `{path}` |"):
            cells = re.split(r"(?<!\\)\|", line)[1:-1]
            return dict(zip(COLUMNS, map(unescape, cells), strict=True))
    raise AssertionError(f"{path} has no row in the {kind} section")


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_checked_in_reference_matches_the_crds():
    """The checked-in page is exactly what the generator makes from crds/ now (CI's staleness check)."""
    generated = docsgen.render(docsgen.load_crds(CRDS))
    current = PAGE.read_text(encoding="utf-8")
    diff = "".join(docsgen.stale_diff(current, generated, "docs/reference/crds.md")[:40])
    assert current == generated, f"docs/reference/crds.md is stale: run `make docs`\n{diff}"


def test_generation_is_deterministic():
    """Two runs over the same CRDs give byte-identical pages, so the check never flaps."""
    assert docsgen.render(docsgen.load_crds(CRDS)) == docsgen.render(docsgen.load_crds(CRDS))


def test_check_mode_fails_on_a_stale_page_and_passes_once_written(tmp_path, capsys):
    """--check exits 1 with a diff and the fix to run; writing the page makes --check exit 0."""
    page = tmp_path / "crds.md"
    page.write_text("# outdated\n", encoding="utf-8")
    args = ["--crds", str(CRDS), "--output", str(page), "--cli-output", str(tmp_path / "cli.md")]

    assert docsgen.main(["--check", *args]) == 1
    out = capsys.readouterr().out
    assert "-# outdated" in out
    assert "run `make docs`" in out

    assert docsgen.main(args) == 0
    assert docsgen.main(["--check", *args]) == 0
    assert page.read_text(encoding="utf-8") == PAGE.read_text(encoding="utf-8")


def test_check_mode_treats_a_missing_page_as_stale(tmp_path, capsys):
    """A page that was never generated is reported, not silently accepted."""
    pages = ["--output", str(tmp_path / "none.md"), "--cli-output", str(tmp_path / "cli.md")]
    assert docsgen.main(["--check", "--crds", str(CRDS), *pages]) == 1
    assert "run `make docs`" in capsys.readouterr().out


def test_every_database_spec_field_appears_with_its_description():
    """Each top-level spec field of Database has a row carrying its full schema description."""
    properties = crd_schema("database.yaml")["properties"]["spec"]["properties"]
    for name, schema in properties.items():
        assert field_row("Database", f"spec.{name}")["description"] == one_line(schema["description"]), name


@pytest.mark.parametrize(
    ("kind", "path", "immutable"),
    [
        ("Database", "spec.engine", "yes"),  # self == oldSelf on the field
        ("Database", "spec.masterUsername", "yes"),
        ("Database", "spec.databaseName", "yes"),  # a spec-level rule with fieldPath .databaseName
        ("Database", "spec.externalName", "yes"),
        ("Database", "spec.providerConfigRef", "yes"),
        ("Database", "spec.providerConfigRef.name", "via `spec.providerConfigRef`"),
        ("Database", "spec.storageGB", ""),  # may grow: a transition rule, not immutability
        ("Database", "spec.size", ""),
        ("Bucket", "spec.location", "yes"),
        ("Bucket", "spec.versioning", ""),
        ("ProviderConfig", "spec.provider", "yes"),
    ],
    ids=lambda value: str(value).replace(" ", "-"),
)
def test_immutable_fields_are_marked(kind, path, immutable):
    """Fields pinned by a CEL transition rule say so; fields that may change say nothing."""
    assert field_row(kind, path)["immutable"] == immutable


@pytest.mark.parametrize(
    ("kind", "path", "shown"),
    [
        ("Database", "spec.engine", "one of `postgres`, `mysql`"),
        ("Database", "spec.size", "one of `small`, `medium`, `large`"),
        ("Database", "spec.driftPolicy", "one of `Correct`, `Report`, `Ignore`"),
        ("Bucket", "spec.deletionPolicy", "one of `Delete`, `Retain`"),
        ("Bucket", "status.conditions[].status", "one of `True`, `False`, `Unknown`"),
        ("Database", "spec.storageGB", "min 20; max 65536"),
        ("Database", "spec.externalName", "maxLength 63"),
        ("Bucket", "spec.labels", "`map[string]string`; maxProperties 50"),
        ("Bucket", "status.conditions", "`[]object`; list-type map keyed by `type`"),
    ],
    ids=lambda value: str(value).replace(" ", "-"),
)
def test_types_show_enums_and_bounds(kind, path, shown):
    """The type column lists the allowed values and bounds the API server enforces."""
    assert shown in field_row(kind, path)["type"]


def test_defaults_and_required_fields_are_shown():
    """Defaults appear as written in the schema; required fields are marked."""
    assert field_row("Database", "spec.size")["default"] == "`small`"
    assert field_row("Database", "spec.storageGB")["default"] == "`20`"
    assert field_row("Database", "spec.engine")["required"] == "yes"
    assert field_row("Database", "spec.size")["required"] == ""


def test_every_database_cel_rule_is_listed_with_its_message():
    """Each CEL rule of the Database schema appears with the message a rejected apply shows."""
    text = unescape(section("Database"))
    rules = list(docsgen.validation_rules(crd_schema("database.yaml"), ""))
    assert len(rules) >= 8
    for rule in rules:
        assert f"`{rule.rule}`" in text
        assert (rule.message or rule.message_expression) in text


def test_crd_facts_are_listed():
    """Each kind's section names its CRD, scope, short names, categories and printer columns."""
    database = section("Database")
    assert "- CRD: `databases.kumo.dev`" in database
    assert "- Scope: Namespaced" in database
    assert "- Short names: `kdb`" in database
    assert "- Categories: `kumo`" in database
    assert '| In-Sync | `.status.conditions[?(@.type=="InSync")].status` |' in database
    assert "- Scope: Cluster" in section("ClusterProviderConfig")
