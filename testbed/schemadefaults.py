"""The defaults of a CRD's structural schema, applied the way the API server applies them.

The API server writes a CRD's `default` values into every object it stores and serves (on create,
update and on reading older stored objects), so the controller reads defaulted objects and never
restates a default. A manifest that has not been through the API server (`kumo plan -f`, a test's
body) gets the same defaults here, from the same schema: the CRD stays the one place they live.

Rules, as for structural schemas ("Defaulting", https://kubernetes.io/docs/tasks/extend-kubernetes/
custom-resources/custom-resource-definitions/#defaulting): a property that is absent, or null
without `nullable: true`, takes its `default`; defaulting then continues inside objects (their
`properties` and `additionalProperties`) and array items.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def apply_defaults(schema: Mapping[str, Any], value: Any) -> Any:
    """`value` with the schema's defaults filled in (a new value; the input is left as it is)."""
    if isinstance(value, Mapping):
        result = dict(value)
        properties = schema.get("properties") or {}
        for name, child in properties.items():
            missing = name not in result or (result[name] is None and not child.get("nullable"))
            if missing and "default" in child:
                result[name] = copy.deepcopy(child["default"])
            if name in result:
                result[name] = apply_defaults(child, result[name])
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name in result.keys() - properties.keys():
                result[name] = apply_defaults(extra, result[name])
        return result
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def object_schema(crd: Mapping[str, Any], version: str) -> Mapping[str, Any]:
    """The openAPIV3Schema of one served version of a CustomResourceDefinition document."""
    for served in crd["spec"]["versions"]:
        if served["name"] == version:
            return dict(served["schema"]["openAPIV3Schema"])
    raise LookupError(f"{crd['metadata']['name']} serves no version {version}")


def crd_schemas(directory: Path, version: str) -> dict[str, Mapping[str, Any]]:
    """The openAPIV3Schema of every CRD in a folder of CRD YAML files (crds/), by kind."""
    schemas: dict[str, Mapping[str, Any]] = {}
    for path in sorted(directory.glob("*.yaml")):
        with path.open() as handle:
            for document in yaml.safe_load_all(handle):
                if isinstance(document, Mapping) and document.get("kind") == "CustomResourceDefinition":
                    schemas[str(document["spec"]["names"]["kind"])] = object_schema(document, version)
    return schemas
