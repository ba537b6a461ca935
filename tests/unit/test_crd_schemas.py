"""Static checks of the CustomResourceDefinitions in crds/ (no API server needed).

The API server itself is the judge of what a CRD means (tests/e2e/test_crd_validation.py
sends real manifests to one); these checks catch, in milliseconds, the things the API server
accepts silently but that make the API worse: a field without a description (so
`kubectl explain` teaches nothing), an unbounded string that a CEL rule reads, a printer
column or short name that went missing, a default outside its own enum.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kumo.controller.core.drift import MAX_STORED_TEXT

from kumo import api

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
# The CRDs and kumo/api.py (the one place the code names the API) must say the same: each kind's
# file, plural, scope and short name are checked against api.RESOURCES.
EXPECTED = {
    resource.kind: (
        f"{resource.singular}.yaml",
        resource.plural,
        "Namespaced" if resource.namespaced else "Cluster",
        [resource.short_name],
    )
    for resource in api.RESOURCES
}
MANAGED = ("Database", "Bucket")

READY = '.status.conditions[?(@.type=="Ready")].status'
IN_SYNC = '.status.conditions[?(@.type=="InSync")].status'
SYNCED = '.status.conditions[?(@.type=="Synced")].status'
# kind -> [(column name upper-cased, jsonPath, priority)]
PRINTER_COLUMNS = {
    "Database": [
        ("READY", READY, 0),
        ("SYNCED", SYNCED, 0),
        ("IN-SYNC", IN_SYNC, 0),
        ("ENGINE", ".spec.engine", 0),
        ("VERSION", ".spec.version", 0),
        ("PROVIDER", ".status.atProvider.provider", 0),
        ("EXTERNAL-NAME", ".status.atProvider.externalName", 1),
        ("AGE", ".metadata.creationTimestamp", 0),
    ],
    "Bucket": [
        ("READY", READY, 0),
        ("SYNCED", SYNCED, 0),
        ("IN-SYNC", IN_SYNC, 0),
        ("PROVIDER", ".status.atProvider.provider", 0),
        ("REGION", ".status.atProvider.region", 0),
        ("EXTERNAL-NAME", ".status.atProvider.externalName", 1),
        ("AGE", ".metadata.creationTimestamp", 0),
    ],
    "ProviderConfig": [
        ("PROVIDER", ".spec.provider", 0),
        ("REGION", ".spec.region", 0),
        ("PROJECT", ".spec.project", 0),
        ("READY", '.status.conditions[?(@.type=="Ready")].status', 0),
        ("USERS", ".status.users", 0),
        ("AGE", ".metadata.creationTimestamp", 0),
    ],
}
PRINTER_COLUMNS["ClusterProviderConfig"] = PRINTER_COLUMNS["ProviderConfig"]


def load(kind: str) -> dict[str, Any]:
    with open(CRD_DIR / EXPECTED[kind][0], encoding="utf-8") as handle:
        documents = [d for d in yaml.safe_load_all(handle) if d is not None]
    assert len(documents) == 1, f"{EXPECTED[kind][0]} must hold exactly one document"
    return documents[0]


def version_of(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    return version


def root_schema(kind: str) -> dict[str, Any]:
    return version_of(load(kind))["schema"]["openAPIV3Schema"]


def walk(schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (path, schema) for `schema` and every schema nested in it, at any depth."""
    yield path, schema
    for name, child in schema.get("properties", {}).items():
        yield from walk(child, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from walk(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from walk(schema["additionalProperties"], f"{path}{{}}")


def spec_and_status(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    properties = root_schema(kind)["properties"]
    for top in ("spec", "status"):
        yield from walk(properties[top], top)


def cel_rules(kind: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, schema in spec_and_status(kind):
        for rule in schema.get("x-kubernetes-validations", []):
            yield path, rule


kinds = pytest.mark.parametrize("kind", list(EXPECTED))
managed_kinds = pytest.mark.parametrize("kind", MANAGED)


def test_crd_directory_holds_exactly_the_four_kinds() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(f for f, *_ in EXPECTED.values())


@kinds
def test_crd_identity(kind: str) -> None:
    crd = load(kind)
    _, plural, scope, short_names = EXPECTED[kind]
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.{api.GROUP}"
    assert crd["spec"]["group"] == api.GROUP
    assert crd["spec"]["scope"] == scope
    names = crd["spec"]["names"]
    assert names["kind"] == kind
    assert names["plural"] == plural
    assert names["singular"] == kind.lower()
    assert names["listKind"] == f"{kind}List"
    assert names["shortNames"] == short_names
    assert api.CATEGORY in names["categories"]


@kinds
def test_one_served_storage_version(kind: str) -> None:
    versions = load(kind)["spec"]["versions"]
    assert [v["name"] for v in versions] == [api.VERSION]
    assert versions[0]["served"] is True
    assert versions[0]["storage"] is True


@kinds
def test_status_subresource(kind: str) -> None:
    version = version_of(load(kind))
    assert version.get("subresources", {}).get("status") == {}
    assert "status" in root_schema(kind)["properties"]


@kinds
def test_spec_is_required(kind: str) -> None:
    assert "spec" in root_schema(kind)["required"]


@kinds
def test_every_field_has_a_description(kind: str) -> None:
    root = root_schema(kind)
    assert root.get("description", "").strip(), f"{kind}: the top-level schema needs a description"
    missing = [path for path, schema in spec_and_status(kind) if not str(schema.get("description", "")).strip()]
    assert not missing, f"{kind}: fields without a description: {missing}"


@kinds
def test_descriptions_are_sentences_not_stubs(kind: str) -> None:
    short = [
        path
        for path, schema in spec_and_status(kind)
        if path.startswith("spec.") and len(schema["description"].split()) < 4
    ]
    assert not short, f"{kind}: descriptions too short to teach anything: {short}"


@kinds
def test_schema_is_structural(kind: str) -> None:
    """Every node has a type, except where preserve-unknown-fields says it takes anything."""
    untyped = [
        path
        for path, schema in spec_and_status(kind)
        if "type" not in schema
        and not schema.get("x-kubernetes-int-or-string")
        and not schema.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert not untyped, f"{kind}: schema nodes without a type: {untyped}"


@kinds
def test_spec_strings_are_bounded(kind: str) -> None:
    """Bounded strings keep CEL's cost estimate within budget and reject absurd input early."""
    unbounded = [
        path
        for path, schema in spec_and_status(kind)
        if path.startswith("spec")
        and schema.get("type") == "string"
        and "maxLength" not in schema
        and "enum" not in schema
    ]
    assert not unbounded, f"{kind}: spec strings without maxLength or enum: {unbounded}"


@kinds
def test_maps_read_by_cel_are_bounded(kind: str) -> None:
    for path, schema in spec_and_status(kind):
        if schema.get("x-kubernetes-validations") and isinstance(schema.get("additionalProperties"), dict):
            assert "maxProperties" in schema, f"{kind}: {path} is read by CEL but has no maxProperties"


@kinds
def test_defaults_satisfy_their_own_schema(kind: str) -> None:
    for path, schema in spec_and_status(kind):
        if "default" not in schema:
            continue
        default = schema["default"]
        if "enum" in schema:
            assert default in schema["enum"], f"{kind}: {path} default {default!r} is not in its enum"
        if isinstance(default, bool):
            assert schema["type"] == "boolean", path
        elif isinstance(default, int):
            assert schema["type"] == "integer", path
            assert schema.get("minimum", default) <= default <= schema.get("maximum", default), path
        elif isinstance(default, str):
            assert schema["type"] == "string", path
            if "pattern" in schema:
                assert re.search(schema["pattern"], default), f"{kind}: {path} default fails its pattern"
        elif isinstance(default, dict):
            assert schema["type"] == "object", path
            for key, value in default.items():
                assert key in schema["properties"], f"{kind}: {path} default sets unknown {key}"
                assert value in schema["properties"][key].get("enum", [value]), path
            for key in schema.get("required", []):
                assert key in default, f"{kind}: {path} default lacks required {key}"


@kinds
def test_patterns_are_re2_compatible(kind: str) -> None:
    """Kubernetes compiles patterns with Go's RE2: no lookaround, no backreferences."""
    for path, schema in spec_and_status(kind):
        pattern = schema.get("pattern")
        if pattern is None:
            continue
        re.compile(pattern)
        assert "(?=" not in pattern and "(?!" not in pattern and "(?<" not in pattern, path
        assert not re.search(r"\\[1-9]", pattern), f"{kind}: {path} uses a backreference"


@kinds
def test_cel_rules_explain_themselves(kind: str) -> None:
    rules = list(cel_rules(kind))
    assert rules, f"{kind}: expected CEL rules"
    for path, rule in rules:
        text = rule.get("message", "") + rule.get("messageExpression", "")
        assert text, f"{kind}: CEL rule at {path} has no message: {rule['rule']}"
        assert "spec." in text, f"{kind}: CEL message at {path} does not name the field: {text}"
        if "\n" in rule["rule"].strip():
            assert rule.get("message"), f"{kind}: a multi-line rule at {path} needs a static message"
        if "oldSelf" in rule["rule"] and "==" in rule["rule"]:
            assert "immutable" in rule["message"], f"{kind}: {path} immutability message: {rule}"


IMMUTABLE = {
    "Database": ["engine", "databaseName", "masterUsername", "externalName", "providerConfigRef"],
    "Bucket": ["externalName", "location", "providerConfigRef"],
    "ProviderConfig": ["provider"],
    "ClusterProviderConfig": ["provider"],
}


@kinds
def test_immutable_fields_have_transition_rules(kind: str) -> None:
    messages = " ".join(rule.get("message", "") for _, rule in cel_rules(kind) if "oldSelf" in rule["rule"])
    for field in IMMUTABLE[kind]:
        assert f"spec.{field} is immutable" in messages, f"{kind}: spec.{field} has no immutability rule"


@kinds
def test_printer_columns(kind: str) -> None:
    columns = version_of(load(kind))["additionalPrinterColumns"]
    actual = [(c["name"].upper(), c["jsonPath"], c.get("priority", 0)) for c in columns]
    assert actual == PRINTER_COLUMNS[kind]
    for column in columns:
        if column["jsonPath"] == ".metadata.creationTimestamp":
            assert column["type"] == "date"
        else:
            assert column.get("description"), f"{kind}: column {column['name']} needs a description"


@managed_kinds
def test_managed_kinds_share_the_common_fields(kind: str) -> None:
    spec = root_schema(kind)["properties"]["spec"]["properties"]
    ref = spec["providerConfigRef"]
    assert ref["default"] == {"kind": "ClusterProviderConfig", "name": "default"}
    assert ref["properties"]["kind"]["enum"] == ["ProviderConfig", "ClusterProviderConfig"]
    assert ref["required"] == ["name"]
    assert spec["deletionPolicy"]["enum"] == ["Delete", "Retain"]
    assert spec["deletionPolicy"]["default"] == "Delete"
    assert spec["driftPolicy"]["enum"] == ["Correct", "Report", "Ignore"]
    assert "default" not in spec["driftPolicy"], "driftPolicy must fall back to the controller-wide default"
    assert spec["writeConnectionSecretToRef"]["properties"]["name"]["maxLength"] == 253
    assert spec["providerOptions"]["x-kubernetes-preserve-unknown-fields"] is True


@kinds
def test_conditions_follow_metav1_condition(kind: str) -> None:
    status = root_schema(kind)["properties"]["status"]["properties"]
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["required"]) == {"type", "status", "lastTransitionTime", "reason", "message"}
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"
    assert item["properties"]["message"]["maxLength"] == 32768
    assert status["observedGeneration"]["format"] == "int64"


@managed_kinds
def test_managed_status_reports_cloud_facts_and_drift(kind: str) -> None:
    status = root_schema(kind)["properties"]["status"]["properties"]
    assert status["atProvider"]["x-kubernetes-preserve-unknown-fields"] is True
    drift = status["drift"]["items"]["properties"]
    assert set(drift) == {"field", "desired", "actual", "since"}
    for side in ("desired", "actual"):  # JSON values of the field's own type (controller/core/drift.py)
        assert drift[side]["x-kubernetes-preserve-unknown-fields"] is True and "type" not in drift[side]
    assert f"{MAX_STORED_TEXT} characters" in drift["desired"]["description"]
    assert drift["since"]["format"] == "date-time"


def test_database_defaults() -> None:
    spec = root_schema("Database")["properties"]["spec"]
    assert spec["required"] == ["engine", "version"]
    fields = spec["properties"]
    expected = {
        "size": "small",
        "storageGB": 20,
        "highAvailability": False,
        "backupRetentionDays": 7,
        "deletionProtection": False,
        "publiclyAccessible": False,
        "masterUsername": "kumo",
        "snapshotOnDelete": False,
    }
    assert {name: fields[name].get("default") for name in expected} == expected
    assert (fields["storageGB"]["minimum"], fields["storageGB"]["maximum"]) == (20, 65536)
    assert (fields["backupRetentionDays"]["minimum"], fields["backupRetentionDays"]["maximum"]) == (0, 35)


def test_bucket_defaults() -> None:
    fields = root_schema("Bucket")["properties"]["spec"]["properties"]
    expected = {"versioning": False, "publicAccess": False, "encryption": True, "forceDestroy": False}
    assert {name: fields[name].get("default") for name in expected} == expected
    assert fields["labels"]["maxProperties"] == 50
    assert fields["externalName"]["minLength"] == 3
    assert fields["externalName"]["maxLength"] == 63


@pytest.mark.parametrize("kind", ["ProviderConfig", "ClusterProviderConfig"])
def test_provider_config_credentials(kind: str) -> None:
    fields = root_schema(kind)["properties"]["spec"]["properties"]
    credentials = fields["credentials"]
    assert credentials["default"] == {"source": "Environment"}
    secret_ref = credentials["properties"]["secretRef"]
    assert set(secret_ref["properties"]) == {"name", "key"}, "secretRef must not take a namespace"
    where = "controller" if kind == "ClusterProviderConfig" else "own namespace"
    assert where in secret_ref["description"]
    assert fields["endpoints"]["maxProperties"] == 16


class _StrictLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys silently; kubectl and the API server refuse them."""

    def construct_mapping(self, node, deep=False):  # type: ignore[no-untyped-def]
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = {key for key in keys if keys.count(key) > 1}
        if duplicates:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate keys {duplicates}", node.start_mark)
        return super().construct_mapping(node, deep=deep)


@pytest.mark.parametrize("path", sorted(CRD_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_crd_files_have_no_duplicate_keys(path):
    """Every CRD file parses under a strict loader, as kubectl parses it."""
    list(yaml.load_all(path.read_text(), Loader=_StrictLoader))
