"""Google's discovery document for Compute Engine v1 as an oracle (issue 13).

Read from ../shared/specs/gcp-compute.v1.discovery.json relative to the repository root (CI
lays shared/ beside the clone). A missing file is an error, never a skip: a contract test that
silently stops checking is worse than none.

* :func:`method_for` finds the discovery method of a recorded request (HTTP method + path);
* :func:`json_schema` turns a discovery schema into a strict JSON Schema (unknown fields fail,
  enums pinned, int64/uint64 as decimal strings, as Google's JSON encodes them);
* :func:`check_query` checks query parameters against the method's declared parameters.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from tests.contract.validator import load_spec

COMPUTE = "gcp-compute.v1.discovery.json"
BILLING = "gcp-cloudbilling.v1.discovery.json"


def compute() -> dict[str, Any]:
    return load_spec(COMPUTE)


def _methods(resource: dict[str, Any]):
    yield from (resource.get("methods") or {}).values()
    for sub in (resource.get("resources") or {}).values():
        yield from _methods(sub)


@functools.cache
def _routes(name: str) -> list[tuple[str, re.Pattern[str], dict[str, Any]]]:
    doc = load_spec(name)
    routes = []
    for method in _methods(doc):
        template = method.get("flatPath") or method["path"]
        pattern = re.sub(r"\{[^}]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        routes.append((method["httpMethod"], re.compile("^/" + doc["servicePath"] + pattern + "$"), method))
    # the most specific template first: literal segments beat parameters
    routes.sort(key=lambda r: r[1].pattern.count("[^/]+"))
    return routes


def method_for(http_method: str, path: str, name: str = COMPUTE) -> dict[str, Any]:
    for verb, pattern, method in _routes(name):
        if verb == http_method and pattern.match(path):
            return method
    raise AssertionError(f"{http_method} {path} is no method of the discovery document {name}")


def json_schema(schema: dict[str, Any], depth: int = 0, name: str = COMPUTE) -> dict[str, Any]:
    """A strict JSON Schema of a discovery schema (``$ref`` resolved against ``schemas``)."""
    if "$ref" in schema:
        if depth > 12:  # recursive schemas (e.g. Status.details): stop being strict that deep
            return {}
        return json_schema(load_spec(name)["schemas"][schema["$ref"]], depth + 1, name)
    kind = schema.get("type")
    if kind == "object":
        out: dict[str, Any] = {"type": "object"}
        if "properties" in schema:
            out["properties"] = {k: json_schema(v, depth + 1, name) for k, v in schema["properties"].items()}
            out["additionalProperties"] = False
        if "additionalProperties" in schema:
            out["additionalProperties"] = json_schema(schema["additionalProperties"], depth + 1, name)
        return out
    if kind == "array":
        return {"type": "array", "items": json_schema(schema.get("items") or {}, depth + 1, name)}
    if kind == "string":
        out = {"type": "string"}
        if schema.get("format") in ("int64", "uint64"):
            out["pattern"] = r"^-?\d+$"
        if "enum" in schema:
            out["enum"] = schema["enum"]
        return out
    if kind == "integer":
        return {"type": "integer"}
    if kind == "number":
        return {"type": "number"}
    if kind == "boolean":
        return {"type": "boolean"}
    if kind == "any":
        return {}
    return {}


def schema_named(schema: str, name: str = COMPUTE) -> dict[str, Any]:
    return json_schema({"$ref": schema}, 0, name)


def check_path(method: dict[str, Any], path: str, name: str = COMPUTE) -> list[str]:
    """Each path parameter of the request matches the pattern the document gives it (the flat
    template's ``{zone}``, ``{instance}``...; ``{+parent}`` forms are checked by the route match)."""
    doc = load_spec(name)
    template = method.get("flatPath") or method["path"]
    names = re.findall(r"\{([^}]+)\}", template)
    regex = "^/" + doc["servicePath"] + re.sub(r"\{[^}]+\}", "([^/]+)", template) + "$"
    m = re.match(regex, path)
    if m is None:
        return [f"{method['id']}: {path} does not follow {template}"]
    errors = []
    for param, value in zip(names, m.groups(), strict=True):
        spec = (method.get("parameters") or {}).get(param)
        if spec and spec.get("pattern") and not re.fullmatch(spec["pattern"], value):
            errors.append(f"{method['id']}: path parameter {param}={value!r} does not match {spec['pattern']}")
    return errors


def check_query(method: dict[str, Any], query: dict[str, list[str]], name: str = COMPUTE) -> list[str]:
    """Every query parameter must be one the method declares (location ``query``), with an
    allowed value where the document pins an enum or a pattern."""
    declared = {**load_spec(name).get("parameters", {}), **(method.get("parameters") or {})}
    errors = []
    for name, values in query.items():
        spec = declared.get(name)
        if spec is None or spec.get("location") != "query":
            errors.append(f"{method['id']}: query parameter {name!r} is not declared")
            continue
        for value in values:
            if "enum" in spec and value not in spec["enum"]:
                errors.append(f"{method['id']}: {name}={value!r} not in {spec['enum']}")
            if spec.get("type") == "boolean" and value not in ("true", "false"):
                errors.append(f"{method['id']}: {name}={value!r} is not a boolean")
            if spec.get("type") == "integer" and not re.fullmatch(r"-?\d+", value):
                errors.append(f"{method['id']}: {name}={value!r} is not an integer")
            if "pattern" in spec and not re.fullmatch(spec["pattern"], value):
                errors.append(f"{method['id']}: {name}={value!r} does not match {spec['pattern']}")
    return errors
