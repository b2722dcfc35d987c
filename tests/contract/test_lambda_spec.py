"""Lambda Cloud: its published spec (../shared/specs/lambda-cloud.openapi.json, API 1.10.0) is the only
source; tests/contract/test_rest_contracts.py validates every exchange of a full session against
it. Here: the stand-in's launch refuses exactly what that schema does not allow, so the adapter
cannot lean on a field Lambda would refuse, nor be refused for one Lambda accepts.
"""

from __future__ import annotations

import httpx

from tests.contract.validator import deref, load_spec
from tests.standins.lambda_cloud import LambdaStandIn

SPEC = "lambda-cloud.openapi.json"


def _launch_schema() -> dict:
    spec = load_spec(SPEC)
    op = spec["paths"]["/api/v1/instance-operations/launch"]["post"]
    return deref(op["requestBody"]["content"]["application/json"]["schema"], spec)


def _sample(schema: dict):
    """A value of the property's declared type (an empty one: only the field name is on trial)."""
    for branch in [schema, *schema.get("anyOf", []), *schema.get("oneOf", [])]:
        kind = branch.get("type")
        kind = next((k for k in kind if k != "null"), None) if isinstance(kind, list) else kind
        if kind:
            return {"array": [], "object": {}, "string": "x", "boolean": False, "integer": 0, "number": 0}[kind]
    return "x"


def _post(standin: LambdaStandIn, body: dict) -> httpx.Response:
    with httpx.Client(transport=standin.transport(), base_url="https://cloud.lambda.ai",
                      headers={"Authorization": "Bearer test-key"}) as c:
        return c.post("/api/v1/instance-operations/launch", json=body)


def test_the_standin_launch_accepts_the_spec_fields_and_refuses_others():
    schema = _launch_schema()
    standin = LambdaStandIn()
    key = next(iter(standin.ssh_keys))
    base = {"region_name": "us-west-1", "instance_type_name": "gpu_1x_a10", "ssh_key_names": [key]}
    assert set(schema.get("required", [])) <= set(base)
    refused_as_unknown = []
    for field in schema["properties"]:
        if field in base:
            continue
        answer = _post(standin, {**base, field: _sample(deref(schema["properties"][field], load_spec(SPEC)))})
        if answer.status_code == 400 and answer.json()["error"]["code"] == "global/invalid-parameters":
            refused_as_unknown.append(field)
    assert not refused_as_unknown, f"the stand-in refuses fields the spec defines: {refused_as_unknown}"
    invented = _post(standin, {**base, "gpu_count": 1})
    assert invented.status_code == 400 and invented.json()["error"]["code"] == "global/invalid-parameters"
    for missing in schema.get("required", []):
        body = {k: v for k, v in base.items() if k != missing}
        assert _post(standin, body).status_code == 400, missing
