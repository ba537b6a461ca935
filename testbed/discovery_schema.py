"""Google's published API schema, used to hold the Cloud SQL emulator to the real wire format.

The real Cloud SQL Admin API refuses a request body naming a field its schema does not have, or an
enum value it does not know, with a 400 before any handler runs. An emulator that accepts them lets
a client ship requests the real service refuses. This module loads Google's discovery document for
an API (shipped in the PyPI package `google-api-python-client`, a test dependency of kumo; the
document is read from the installed package at run time, never copied into this repository) and:

- `Discovery.request_violations` checks a request body as Google's front end does, returning one
  `Violation` per problem, worded as Google words them;
- `Discovery.response_problems` checks a response the emulator is about to send or has sent (unknown
  fields, wrong JSON types, enum values the API does not have), for the tests;
- `EnumCodec` converts enum fields between names and the protobuf numbers the client library asks
  for with `$alt=json;enum-encoding=int` (the discovery document lists names only; the numbers come
  from the client library's own protobuf descriptors, which are Google's too).

Used by `cloudsql_emulator.py` and by tests/e2e/test_cloudsql_emulator.py.
"""

from __future__ import annotations

import importlib.resources
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache, partial
from typing import Any

DOCUMENTS_PACKAGE = "googleapiclient.discovery_cache.documents"
INSTALL_HINT = "pip install 'kumo[test]' (google-api-python-client ships Google's discovery documents)"

Json = dict[str, Any]

# How Google's front end names JSON value types in "Invalid value at ..." messages.
_PROTO_TYPE_NAMES = {
    ("string", "int64"): "TYPE_INT64",
    ("string", "uint64"): "TYPE_UINT64",
    ("integer", "int32"): "TYPE_INT32",
    ("integer", "uint32"): "TYPE_UINT32",
    ("number", "double"): "TYPE_DOUBLE",
    ("number", "float"): "TYPE_FLOAT",
    ("boolean", None): "TYPE_BOOL",
    ("string", None): "TYPE_STRING",
}
_INTEGER_TEXT = re.compile(r"-?\d+")


class DiscoveryUnavailable(RuntimeError):
    """The discovery document is not installed."""


@dataclass(frozen=True)
class Violation:
    """One field Google's front end refuses: `field` is the proto path (``body.settings``)."""

    field: str
    description: str


@cache
def load_document(api: str, version: str) -> Json:
    """The discovery document `api.version.json` from the installed google-api-python-client."""
    try:
        text = importlib.resources.files(DOCUMENTS_PACKAGE).joinpath(f"{api}.{version}.json").read_text()
    except (ModuleNotFoundError, FileNotFoundError) as missing:
        raise DiscoveryUnavailable(f"no discovery document for {api} {version}: {INSTALL_HINT}") from missing
    document: Json = json.loads(text)
    return document


def snake_case(name: str) -> str:
    """`dataDiskSizeGb` as the proto field name Google's messages use (`data_disk_size_gb`)."""
    return re.sub(r"(?<!^)([A-Z])", r"_\1", name).lower()


# ---------------------------------------------------------------------------------------------
# Enum numbers, from the protobuf descriptors of the client library
# ---------------------------------------------------------------------------------------------


class EnumCodec:
    """Converts the enum fields of a JSON message between names and numbers.

    `descriptor_of(schema)` returns the protobuf message descriptor named like the discovery
    schema (``DatabaseInstance``), or None. Fields the descriptor does not know are left alone.
    """

    def __init__(self, descriptor_of: Callable[[str], Any]) -> None:
        self._descriptor_of = descriptor_of

    def to_names(self, schema: str, body: Any) -> Any:
        return self._convert(self._descriptor_of(schema), body, to_numbers=False)

    def to_numbers(self, schema: str, body: Any) -> Any:
        return self._convert(self._descriptor_of(schema), body, to_numbers=True)

    def _convert(self, descriptor: Any, body: Any, *, to_numbers: bool) -> Any:
        if descriptor is None or not isinstance(body, dict):
            return body
        fields = {field.json_name: field for field in descriptor.fields}
        out: Json = {}
        for key, value in body.items():
            field = fields.get(key)
            if field is None:
                out[key] = value
            elif field.enum_type is not None:
                out[key] = _each(value, partial(_enum_value, field.enum_type, to_numbers=to_numbers))
            elif field.message_type is not None and field.message_type.GetOptions().map_entry:
                value_field = field.message_type.fields_by_name["value"]
                out[key] = (
                    {k: self._convert(value_field.message_type, v, to_numbers=to_numbers) for k, v in value.items()}
                    if value_field.message_type is not None and isinstance(value, dict)
                    else value
                )
            elif field.message_type is not None:
                out[key] = _each(value, partial(self._convert, field.message_type, to_numbers=to_numbers))
            else:
                out[key] = value
        return out


def _each(value: Any, convert: Callable[[Any], Any]) -> Any:
    return [convert(item) for item in value] if isinstance(value, list) else convert(value)


def _enum_value(enum_type: Any, value: Any, *, to_numbers: bool) -> Any:
    if to_numbers and isinstance(value, str) and value in enum_type.values_by_name:
        return enum_type.values_by_name[value].number
    if not to_numbers and isinstance(value, int) and not isinstance(value, bool):
        found = enum_type.values_by_number.get(value)
        return found.name if found is not None else value
    return value


# ---------------------------------------------------------------------------------------------
# Validation against the discovery schemas
# ---------------------------------------------------------------------------------------------


class Discovery:
    """One API's discovery document: its schemas, its methods and the checks made with them.

    `enum_type_name(schema, property)` names the proto enum type of a field for "Invalid value"
    messages (``google.cloud.sql.v1beta4.SqlAvailabilityType``); "" when unknown.
    """

    def __init__(self, document: Json, enum_type_name: Callable[[str, str], str] | None = None) -> None:
        self.document = document
        self.schemas: Mapping[str, Json] = document["schemas"]
        self._enum_type_name = enum_type_name or (lambda schema, prop: "")
        self._methods = {method["id"]: method for method in _methods(document.get("resources", {}))}

    def method(self, method_id: str) -> Json:
        """The method ``sql.instances.insert`` as the document declares it."""
        return self._methods[method_id]

    def request_schema(self, method_id: str) -> str | None:
        return self.method(method_id).get("request", {}).get("$ref")

    def response_schema(self, method_id: str) -> str | None:
        return self.method(method_id).get("response", {}).get("$ref")

    def request_violations(self, schema: str, body: Any, root: str = "body") -> list[Violation]:
        """What Google's front end refuses in a request body whose enums are names."""
        return list(self._walk(schema, body, root, strict_types=False))

    def response_problems(self, schema: str, body: Any, root: str = "response") -> list[str]:
        """Everything in a response (enums as names) that the schema does not allow."""
        return [f"{v.field}: {v.description}" for v in self._walk(schema, body, root, strict_types=True)]

    # --- the walk ------------------------------------------------------------------------------

    def _walk(self, schema: str, body: Any, path: str, *, strict_types: bool) -> Iterator[Violation]:
        if not isinstance(body, dict):
            yield Violation(path, f"Invalid value at '{path}', {json.dumps(body)}: expected an object")
            return
        properties = self.schemas[schema].get("properties", {})
        for key, value in body.items():
            prop = properties.get(key)
            if prop is None:
                message = (
                    f"Invalid JSON payload received. Unknown name {json.dumps(key)} at '{path}': Cannot find field."
                )
                yield Violation(path, message)
                continue
            yield from self._value(schema, key, prop, value, f"{path}.{snake_case(key)}", strict_types)

    def _value(
        self, schema: str, key: str, prop: Json, value: Any, path: str, strict_types: bool
    ) -> Iterator[Violation]:
        if value is None:
            return  # JSON null is "not set" in proto3 JSON, in requests and responses alike
        if "$ref" in prop:
            yield from self._walk(prop["$ref"], value, path, strict_types=strict_types)
            return
        kind = prop.get("type")
        if kind == "array":
            if not isinstance(value, list):
                yield Violation(path, f"Invalid value at '{path}', {json.dumps(value)}: expected a list")
                return
            for index, item in enumerate(value):
                yield from self._value(schema, key, prop["items"], item, f"{path}[{index}]", strict_types)
            return
        if kind == "object":
            if not isinstance(value, dict):
                yield Violation(path, f"Invalid value at '{path}', {json.dumps(value)}: expected an object")
                return
            if "additionalProperties" in prop:
                for name, item in value.items():
                    yield from self._value(
                        schema, key, prop["additionalProperties"], item, f"{path}[{name}]", strict_types
                    )
            return
        if "enum" in prop:
            if value not in prop["enum"]:
                enum_type = self._enum_type_name(schema, key)
                type_name = f"type.googleapis.com/{enum_type}" if enum_type else "TYPE_ENUM"
                yield Violation(path, f"Invalid value at '{path}' ({type_name}), {json.dumps(value)}")
            return
        if not _type_matches(kind, prop.get("format"), value, strict_types):
            type_name = _proto_type_name(str(kind), prop.get("format"))
            yield Violation(path, f"Invalid value at '{path}' ({type_name}), {json.dumps(value)}")


def _proto_type_name(kind: str, fmt: str | None) -> str:
    return _PROTO_TYPE_NAMES.get((kind, fmt)) or _PROTO_TYPE_NAMES.get((kind, None)) or kind


def _type_matches(kind: str | None, fmt: str | None, value: Any, strict: bool) -> bool:
    """proto3 JSON: int64 travels as a string (numbers accepted on input), int32 as a number
    (numeric strings accepted on input). `strict` is what a response must look like."""
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "string" and fmt in ("int64", "uint64"):
        if isinstance(value, str):
            return bool(_INTEGER_TEXT.fullmatch(value))
        return not strict and isinstance(value, int) and not isinstance(value, bool)
    if kind == "integer":
        if isinstance(value, int) and not isinstance(value, bool):
            return True
        return not strict and isinstance(value, str) and bool(_INTEGER_TEXT.fullmatch(value))
    if kind == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return True  # "any"


def _methods(resources: Mapping[str, Json]) -> Iterator[Json]:
    for resource in resources.values():
        yield from resource.get("methods", {}).values()
        yield from _methods(resource.get("resources", {}))
