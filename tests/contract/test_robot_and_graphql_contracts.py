"""Contract tests without an OpenAPI spec.

* Hetzner Robot: requests and responses checked against the shapes written down from
  providers.md §5 (tests/contract/robot_shapes.py), with unknown fields refused.
* RunPod GraphQL: the adapter's queries use only the operations, inputs and fields that
  providers.md §1 documents (``podRentInterruptable``, ``pod { runtime { gpus ... } }``,
  ``gpuTypes`` spot prices), and the stand-in answers in that shape.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qs

import httpx
import jsonschema
import pytest

from providers.adapters.base import CapacityUnavailable, InvalidCredentials, LaunchRequest, TransientError
from providers.adapters.hetzner import HetznerAdapter
from providers.adapters.runpod import RunPodAdapter
from tests.standins.fixtures import STANDIN_CREDENTIALS
from tests.standins.hetzner import HetznerRobotStandIn
from tests.standins.runpod import RunPodStandIn

from .robot_shapes import ERROR, OPERATIONS


def robot_violations(request: httpx.Request, response: httpx.Response | None) -> list[str]:
    path = request.url.path
    ops = [op for op in OPERATIONS if op[0] == request.method and re.fullmatch(op[1], path)]
    if not ops:
        return [f"{request.method} {path}: not a Robot operation documented in providers.md"]
    _, _, fields, schema = ops[0]
    errors = []
    if request.content:
        if "x-www-form-urlencoded" not in request.headers.get("Content-Type", ""):
            errors.append(f"{request.method} {path}: Robot bodies are form-encoded")
        unknown = set(parse_qs(request.content.decode(), keep_blank_values=True)) - fields
        errors += [f"{request.method} {path}: form field unknown to Robot: {u}" for u in sorted(unknown)]
    if not request.headers.get("Authorization", "").startswith("Basic "):
        errors.append(f"{request.method} {path}: Robot needs HTTP Basic auth")
    if response is not None:
        body = response.json()
        expected = schema if response.is_success else ERROR
        for e in jsonschema.Draft202012Validator(expected).iter_errors(body):
            errors.append(f"{request.method} {path} -> {response.status_code}: {e.message} at {list(e.absolute_path)}")
    return errors


def _hetzner(standin, **settings):
    return HetznerAdapter(STANDIN_CREDENTIALS["hetzner"], {"account_id": "contract-hetzner", **settings},
                          transport=standin.transport(), sleep=lambda s: None)


def _req(offer, tag):
    return LaunchRequest(tag=tag, name="svc", image="ghcr.io/acme/llm:1", gpu_class=offer.gpu_class,
                         gpu_count=offer.gpu_count, region=offer.region, instance_type=offer.instance_type)


def test_hetzner_robot_requests_and_responses_match_documented_shapes():
    s = HetznerRobotStandIn(boot_seconds=3600)  # delivery takes long: orders stay "in process"
    a = _hetzner(s)
    a.verify()  # no servers yet: SERVER_NOT_FOUND is fine
    offers = a.list_offers()
    standard = next(o for o in offers if o.instance_type == "GEX44")
    market = next(o for o in offers if o.instance_type.startswith("market:"))
    pending = a.launch(_req(standard, "11111111-0000-0000-0000-000000000001"))
    assert pending.state == "provisioning"
    assert a.launch(_req(standard, "11111111-0000-0000-0000-000000000001")).external_id == pending.external_id
    with pytest.raises(TransientError):
        a.terminate(pending.external_id)  # an order in process cannot be withdrawn
    s.boot_seconds = 0
    ready = a.get(pending.external_id)
    assert ready.state == "running"
    m = a.launch(_req(market, "11111111-0000-0000-0000-000000000002"))
    a.list_pods()
    a.terminate(ready.external_id)
    assert a.get(ready.external_id).state == "terminated"
    a.terminate(ready.external_id)  # already cancelled: nothing sent
    a.terminate(m.external_id)
    s.fail_next("capacity", op="launch")
    with pytest.raises(CapacityUnavailable):
        a.launch(_req(standard, "11111111-0000-0000-0000-000000000003"))
    with pytest.raises(InvalidCredentials):
        HetznerAdapter({**STANDIN_CREDENTIALS["hetzner"], "password": "y"}, {}, transport=s.transport()).verify()
    s.fail_next("rate_limit", op="offers", retry_after=1)
    a.list_offers()
    statuses = {e.response.status_code for e in s.exchanges if e.response is not None}
    assert {200, 201, 401, 403, 404, 409} <= statuses
    errors = [err for e in s.exchanges for err in robot_violations(e.request, e.response)]
    assert len(s.exchanges) >= 20
    assert not errors, "\n".join(errors)


def test_robot_shape_check_refuses_unknown_fields():
    s = HetznerRobotStandIn()
    good = httpx.Request("GET", "https://robot-ws.your-server.de/order/server/product",
                         headers={"Authorization": "Basic cm9ib3QtdXNlcjpyb2JvdC1wYXNz"})
    response = s.handle(good)
    assert not robot_violations(good, response)
    body = response.json()
    body[0]["product"]["gpu_count"] = 1
    assert any("gpu_count" in e for e in robot_violations(good, httpx.Response(200, json=body)))
    bad_form = httpx.Request("POST", "https://robot-ws.your-server.de/order/server/transaction",
                             headers={"Authorization": "Basic x"}, data={"product_id": "GEX44", "hostname": "a"})
    assert any("hostname" in e for e in robot_violations(bad_form, None))


# --- RunPod GraphQL (providers.md §1) ---------------------------------------------------------

DOCUMENTED = {
    "podRentInterruptable": {
        "input": {"bidPerGpu", "cloudType", "gpuCount", "gpuTypeId", "name", "imageName", "volumeInGb",
                  "containerDiskInGb", "minVcpuCount", "minMemoryInGb", "dockerArgs", "ports", "volumeMountPath", "env",
                  "dataCenterId", "countryCode", "networkVolumeId", "templateId", "supportPublicIp", "startSsh",
                  "allowedCudaVersions", "containerRegistryAuthId"},
        "fields": {"id", "imageName", "env", "machineId", "machine", "podHostId"},
    },
    "pod": {"input": {"podId"},
            "fields": {"id", "runtime", "uptimeInSeconds", "gpus", "gpuUtilPercent", "memoryUtilPercent", "container",
                       "cpuPercent", "memoryPercent"}},
    "gpuTypes": {"input": {"id"},
                 "fields": {"id", "displayName", "memoryInGb", "maxGpuCount", "secureCloud", "communityCloud",
                            "securePrice", "communityPrice", "secureSpotPrice", "communitySpotPrice"}},
}


def graphql_violations(body: dict) -> list[str]:
    query = body["query"]
    selection = query[query.index("{") + 1: query.rindex("}")]
    top = re.match(r"\s*(\w+)", selection).group(1)
    if top not in DOCUMENTED:
        return [f"GraphQL operation {top} is not one providers.md documents"]
    fields = set(re.findall(r"[A-Za-z_]\w*", re.sub(r"\([^)]*\)", "", selection))) - {top}
    errors = [f"{top}: field {f} not documented" for f in sorted(fields - DOCUMENTED[top]["fields"])]
    for value in (body.get("variables") or {}).values():
        errors += [f"{top}: input {k} not documented" for k in sorted(set(value) - DOCUMENTED[top]["input"])]
    return errors


def test_runpod_graphql_uses_only_documented_operations_and_fields():
    s = RunPodStandIn()
    a = RunPodAdapter(STANDIN_CREDENTIALS["runpod"], {"account_id": "contract-gql"}, transport=s.transport(),
                      sleep=lambda x: None)
    offers = a.list_offers()  # spot prices via gpuTypes
    spot = next(o for o in offers if o.spot)
    pod = a.launch(LaunchRequest(tag="22222222-0000-0000-0000-000000000001", name="spot", image="img",
                                 gpu_class=spot.gpu_class, gpu_count=spot.gpu_count, region=spot.region,
                                 instance_type=spot.instance_type, spot=True, bid_price_per_hour=spot.price_per_hour,
                                 ports=[{"port": 22, "protocol": "tcp"}], env={"A": "1"}))
    assert a.gpu_utilization(pod.external_id)
    gql = [e for e in s.exchanges if e.request.url.path == "/graphql"]
    # telemetry comes from REST v2 (runtime.gpus[].util): GraphQL only rents spot pods and prices them
    assert {json.loads(e.request.content)["query"].split("{")[1].split("(")[0].strip() for e in gql} == {
        "podRentInterruptable", "gpuTypes"}
    errors = []
    for e in gql:
        body = json.loads(e.request.content)
        errors += graphql_violations(body)
        answer = e.response.json()
        assert "data" in answer and "errors" not in answer
        assert e.request.headers["Authorization"] == "Bearer test-key"
    assert not errors, errors
    assert graphql_violations({"query": "mutation { podFindAndDeployOnDemand(input: {}) { id } }"})
    assert graphql_violations({"query": "query { pod(input: $i) { id costPerHr } }"})


ROBOT = "https://robot-ws.your-server.de"
BASIC = {"Authorization": "Basic cm9ib3QtdXNlcjpyb2JvdC1wYXNz"}  # robot-user:robot-pass


def test_robot_standin_rejects_what_the_robot_doc_says_robot_rejects():
    """The stand-in must refuse what Robot refuses (doc "POST /order/server/transaction", Input;
    "POST /server/{server-number}/cancellation", reserve_location), in Robot's error shape."""
    s = HetznerRobotStandIn()

    def post(path, data):
        request = httpx.Request("POST", ROBOT + path, headers=BASIC, data=data)
        response = s.handle(request)
        return response, robot_violations(request, response)

    order = {"product_id": "GEX44", "location": "FSN1", "dist": "Ubuntu 24.04 LTS base", "addon[]": "primary_ipv4",
             "authorized_key[]": STANDIN_CREDENTIALS["hetzner"]["ssh_key_fingerprint"]}
    cases = [
        ({**order, "dist": "Windows Server 2022"}, ["dist"]),  # not in the product's dist list
        ({**order, "addon[]": "gpu_turbo"}, ["addon"]),  # not one of its orderable_addons
        ({**order, "location": "ASH"}, ["location"]),
    ]
    for data, invalid in cases:
        response, violations = post("/order/server/transaction", data)
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_INPUT", data
        assert response.json()["error"]["invalid"] == invalid and not violations
    response, _ = post("/order/server/transaction", {k: v for k, v in order.items() if k != "location"})
    assert response.json()["error"]["missing"] == ["location"]
    response, violations = post("/order/server_market/transaction", {**order, "product_id": "2466012"})
    assert response.json()["error"]["invalid"] == ["location"]  # the market order takes none
    assert any("location" in v for v in violations)  # and our shape check flags the request too
    response, _ = post("/order/server/transaction", {**order, "addons[]": "primary_ipv4"})
    assert response.json()["error"]["invalid"] == ["addons[]"]  # a misspelled field is not ignored
    # without primary_ipv4 the server is delivered IPv6-only
    response, _ = post("/order/server/transaction", {k: v for k, v in order.items() if k != "addon[]"})
    tx = response.json()["transaction"]
    ready = s.handle(httpx.Request("GET", f"{ROBOT}/order/server/transaction/{tx['id']}", headers=BASIC)).json()
    assert ready["transaction"]["status"] == "ready" and ready["transaction"]["server_ip"] is None
    number = ready["transaction"]["server_number"]
    s.reservation_possible = True
    response, _ = post(f"/server/{number}/cancellation", {"cancellation_date": "now"})
    assert response.status_code == 400 and response.json()["error"]["missing"] == ["reserve_location"]
    s.reservation_possible = False
    response, violations = post(f"/server/{number}/cancellation", {"cancellation_date": "now", "reserve_location": "true"})
    assert response.json()["error"]["code"] == "SERVER_CANCELLATION_RESERVE_LOCATION_FALSE_ONLY" and not violations


def test_cancellation_works_where_the_location_could_be_reserved():
    """Robot makes reserve_location mandatory when reservation is possible; the adapter sent
    none, so such a cancellation failed with INVALID_INPUT and the server kept billing."""
    s = HetznerRobotStandIn()
    s.reservation_possible = True
    a = _hetzner(s)
    offer = next(o for o in a.list_offers() if o.instance_type == "GEX44")
    pod = a.launch(_req(offer, "11111111-0000-0000-0000-000000000009"))
    a.terminate(pod.external_id)
    assert a.get(pod.external_id).state == "terminated"
    form = parse_qs(s.requests("terminate")[0].content.decode())
    assert form == {"cancellation_date": ["now"], "reserve_location": ["false"]}


def test_robot_error_codes_are_the_documented_ones():
    """Every error the stand-in answered in the big contract run carries a code the doc lists
    (or one of ours for what the doc leaves open: out of stock, order limit; see the README)."""
    s = HetznerRobotStandIn(boot_seconds=3600)
    a = _hetzner(s)
    with pytest.raises(Exception):  # noqa: B017 - the code is what this test checks
        a.get("B20990101-1-1")
    codes = {e.response.json()["error"]["code"] for e in s.exchanges if e.response is not None and e.response.is_error}
    assert codes == {"NOT_FOUND"}  # doc "GET /order/server/transaction/{id}": 404 NOT_FOUND
