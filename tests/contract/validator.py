"""Validate recorded HTTP exchanges against a provider's OpenAPI spec (openapi-core 0.19).

openapi-core checks paths, methods, parameters, security, bodies and status codes against
the spec (3.1 specs included: the RunPod v2 ``unevaluatedProperties: false`` is enforced).
On top of that :func:`unknown_fields` walks every JSON body alongside its schema and reports
any field the schema does not declare -- even where the spec leaves ``additionalProperties``
unset -- so that neither an adapter nor a stand-in can invent fields. Objects the spec
declares free-form (``additionalProperties: true``, or an object schema with no properties at
all) stay free-form. Query parameters must be declared by the operation too.

The specs are read from ../shared/specs relative to the repository root; the product never
needs them.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict

SPECS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "specs"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def _vast_as_the_sdk_sends(spec: dict[str, Any]) -> None:
    """Where vastai.openapi.yaml and the official ``vastai`` SDK disagree, the real API accepts what
    the SDK sends (tests/contract/test_vast_sdk.py; decision in providers/adapters/vast.py): ``env``
    may be the SDK's object as well as the spec's string, and search ``type`` "on-demand"."""
    create = spec["paths"]["/api/v0/asks/{id}"]["put"]["requestBody"]["content"]["application/json"]["schema"]
    create["properties"]["env"] = {"oneOf": [{"type": "string"},
                                             {"type": "object", "additionalProperties": {"type": "string"}}]}
    search = deref(spec["paths"]["/api/v0/bundles"]["post"]["requestBody"]["content"]["application/json"]["schema"], spec)
    search["properties"]["type"]["enum"] = [*search["properties"]["type"]["enum"], "on-demand"]


# "<spec>+<variant>": the published spec with a documented, tested amendment
VARIANTS = {"vastai.openapi.yaml+sdk": ("vastai.openapi.yaml", _vast_as_the_sdk_sends)}


@functools.cache
def load_spec(filename: str) -> dict[str, Any]:
    if filename in VARIANTS:
        base, amend = VARIANTS[filename]
        spec = copy.deepcopy(load_spec(base))
        amend(spec)
        return spec
    path = SPECS_DIR / filename
    if not path.exists():
        raise FileNotFoundError(f"provider spec {path} is missing (expected in ../shared/specs)")
    with path.open() as fh:
        if filename.endswith((".yaml", ".yml")):
            return yaml.load(fh, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))  # noqa: S506 - safe loader
        return json.load(fh)


@functools.cache
def openapi(filename: str) -> OpenAPI:
    # openapi-core has no deserializer for RFC 7807 bodies (RunPod's errors); they are JSON.
    # The published specs are taken as given: validating the spec documents themselves
    # (openapi-spec-validator) costs ~15 s per file and says nothing about our code.
    config = Config(extra_media_type_deserializers={"application/problem+json": json.loads}, spec_validator_cls=None)
    return OpenAPI.from_dict(load_spec(filename), config=config)


# --- httpx -> openapi-core adapters ------------------------------------------------------------


class OARequest:
    def __init__(self, request: httpx.Request, host_url: str):
        self._request = request
        self.host_url = host_url.rstrip("/")
        self.path = request.url.path
        query = parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes) else request.url.query,
                         keep_blank_values=True)
        self.parameters = RequestParameters(query=ImmutableMultiDict(query), header=Headers(dict(request.headers)),
                                            cookie=ImmutableMultiDict({}))

    @property
    def method(self) -> str:
        return self._request.method.lower()

    @property
    def body(self) -> bytes | None:
        return self._request.content or None

    @property
    def content_type(self) -> str:
        return self._request.headers.get("Content-Type", "")


class OAResponse:
    def __init__(self, response: httpx.Response):
        self._response = response

    @property
    def data(self) -> bytes:
        return self._response.content

    @property
    def status_code(self) -> int:
        return self._response.status_code

    @property
    def content_type(self) -> str:
        return self._response.headers.get("Content-Type", "")

    @property
    def headers(self) -> Headers:
        return Headers(dict(self._response.headers))


# --- operation lookup and strict field checks ----------------------------------------------------


def find_operation(spec: dict[str, Any], method: str, path: str) -> tuple[str, dict[str, Any], list[dict[str, Any]]]:
    """(template, operation, parameters) for ``method path``; literal segments win over params."""
    candidates = []
    for template, item in spec["paths"].items():
        if method.lower() not in item:
            continue
        regex = "^" + re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, path):
            candidates.append((template.count("{"), template, item))
    if not candidates:
        raise AssertionError(f"{method.upper()} {path} is not an operation of the spec")
    _, template, item = min(candidates)
    op = item[method.lower()]
    return template, op, [*item.get("parameters", []), *op.get("parameters", [])]


def deref(schema: Any, root: dict[str, Any]) -> Any:
    seen = 0
    while isinstance(schema, dict) and "$ref" in schema and seen < 50:
        node: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        extra = {k: v for k, v in schema.items() if k != "$ref"}
        schema = {**node, **extra} if extra else node
        seen += 1
    return schema


def _branches(schema: dict[str, Any], root: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema and every allOf/anyOf/oneOf/then branch under it, dereferenced."""
    out = [schema]
    for key in ("allOf", "anyOf", "oneOf"):
        for sub in schema.get(key, []) or []:
            sub = deref(sub, root)
            if isinstance(sub, dict):
                out.extend(_branches(sub, root))
    for key in ("then", "else"):
        if isinstance(schema.get(key), dict):
            out.extend(_branches(deref(schema[key], root), root))
    return out


def unknown_fields(value: Any, schema: Any, root: dict[str, Any], where: str = "$") -> list[str]:
    """Every object key in ``value`` that ``schema`` does not declare."""
    schema = deref(schema, root)
    if not isinstance(schema, dict):
        return []
    branches = _branches(schema, root)
    problems: list[str] = []
    if isinstance(value, dict):
        props: dict[str, list[Any]] = {}
        additional: list[Any] = []
        free = False
        for b in branches:
            for name, sub in (b.get("properties") or {}).items():
                props.setdefault(name, []).append(sub)
            ap = b.get("additionalProperties")
            if ap is True:
                free = True
            elif isinstance(ap, dict):
                additional.append(ap)
        if not props and not additional:
            free = True  # declared as a free-form object
        for key, item in value.items():
            if key in props:
                problems += unknown_fields(item, props[key][0], root, f"{where}.{key}")
            elif additional:
                problems += unknown_fields(item, additional[0], root, f"{where}.{key}")
            elif not free:
                problems.append(f"{where}.{key}")
    elif isinstance(value, list):
        for b in branches:
            if isinstance(b.get("items"), dict):
                for i, item in enumerate(value):
                    problems += unknown_fields(item, b["items"], root, f"{where}[{i}]")
                break
    return problems


def _media(content: dict[str, Any], content_type: str) -> dict[str, Any] | None:
    base = content_type.split(";")[0].strip().lower()
    return content.get(base) or (next(iter(content.values())) if len(content) == 1 else None)


def check_exchange(spec_file: str, request: httpx.Request, response: httpx.Response | None) -> list[str]:
    """All contract violations of one exchange (empty list = conforms)."""
    spec = load_spec(spec_file)
    api = openapi(spec_file)
    host = spec["servers"][0]["url"]
    oa_request = OARequest(request, host)
    errors: list[str] = []
    label = f"{request.method} {request.url.path}"
    try:
        api.validate_request(oa_request)
    except Exception as exc:  # noqa: BLE001 - we report whatever openapi-core says
        errors.append(f"{label}: request: {type(exc).__name__}: {exc} {getattr(exc, '__cause__', '') or ''}")
    template, op, params = find_operation(spec, request.method, request.url.path)
    declared = {deref(p, spec)["name"] for p in params if deref(p, spec).get("in") == "query"}
    for name in dict(request.url.params):
        if name not in declared:
            errors.append(f"{label}: undeclared query parameter {name!r}")
    body_spec = (deref(op.get("requestBody") or {}, spec).get("content") or {})
    if request.content and "json" in request.headers.get("Content-Type", ""):
        media = _media(body_spec, request.headers.get("Content-Type", ""))
        if media is None:
            errors.append(f"{label}: the spec declares no JSON body")
        else:
            errors += [f"{label}: request field unknown to the spec: {f}"
                       for f in unknown_fields(json.loads(request.content), media.get("schema", {}), spec)]
    if response is None:
        return errors
    try:
        api.validate_response(oa_request, OAResponse(response))
    except Exception as exc:  # noqa: BLE001
        errors.append(f"{label} -> {response.status_code}: response: {type(exc).__name__}: {exc} "
                      f"{getattr(exc, '__cause__', '') or ''}")
    responses = op.get("responses", {})
    resp_spec = deref(responses.get(str(response.status_code)) or responses.get("default") or {}, spec)
    if response.content and resp_spec.get("content"):
        media = _media(resp_spec["content"], response.headers.get("Content-Type", ""))
        if media is not None:
            errors += [f"{label} -> {response.status_code}: response field unknown to the spec: {f}"
                       for f in unknown_fields(response.json(), media.get("schema", {}), spec)]
    return errors


def check_all(spec_file: str, exchanges, *, skip=lambda request: False) -> tuple[int, list[str]]:
    """Validate every recorded exchange; returns (how many were checked, violations)."""
    n, errors = 0, []
    for ex in exchanges:
        if skip(ex.request):
            continue
        n += 1
        errors += check_exchange(spec_file, ex.request, ex.response)
    return n, errors
