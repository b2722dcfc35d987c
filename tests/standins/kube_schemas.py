"""The Kubernetes project's JSON schemas (kubernetes-validate 1.37.0, a test-only pin in
pyproject.toml, oracles extra) as the judge of core/v1 objects: used by the Kubernetes stand-in to refuse
what an API server refuses, and by tests/contract/test_kubernetes_validate.py.

``strict`` schemas also refuse fields Kubernetes does not define; the loose ones only wrong types,
missing required fields and off-enum values.
"""

from __future__ import annotations

import functools
import re

import jsonschema
import kubernetes_validate.utils
from referencing import Registry, Resource

VERSION = "1.37.0"
# kind -> schema file of the package (Status lives in meta/v1, filed as status-meta-v1.json)
FILES = {"Status": "status-meta-v1.json"}
CORE_KINDS = {"Pod", "Service", "PersistentVolumeClaim", "Secret", "ConfigMap", "Node", "Event", "Namespace"}


@functools.cache
def validator(kind: str, strict: bool) -> jsonschema.Draft202012Validator:
    folder = f"kubernetes-json-schema/v{VERSION}-local" + ("-strict" if strict else "")
    schema = kubernetes_validate.utils.schema_contents(f"{folder}/{FILES.get(kind, kind.lower() + '-v1.json')}", VERSION)
    definitions = kubernetes_validate.utils.schema_contents(f"{folder}/_definitions.json", VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def errors(obj: dict, *, strict: bool = True) -> list[jsonschema.ValidationError]:
    return list(validator(str(obj.get("kind", "")), strict).iter_errors(obj))


def where(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path)


def unknown_fields(obj: dict) -> list[str]:
    """Dotted paths of the fields the strict schema does not define."""
    out = []
    for e in errors(obj, strict=True):
        if e.validator == "additionalProperties":
            parent = where(e)
            listed = e.message[e.message.rfind("("):]  # "('a', 'b' were unexpected)"
            out += [f"{parent}.{name}" if parent else name for name in re.findall(r"'([^']+)'", listed)]
    return out
