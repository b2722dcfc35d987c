"""Contract tests: every request the RunPod, Lambda and Vast.ai adapters send, and every
response their stand-ins return, conform to the provider's published OpenAPI spec.

Each scenario drives the real adapter against the in-process stand-in through offers,
launch, get, list, stop, terminate and the documented error paths; then every recorded
exchange is validated with openapi-core plus the strict unknown-field check.
"""

from __future__ import annotations

import json

import httpx
import pytest

from providers.adapters.base import (
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    QuotaExceeded,
)
from providers.adapters.lambda_cloud import LambdaAdapter
from providers.adapters.runpod import RunPodAdapter
from providers.adapters.vast import VastAdapter
from tests.standins.base import Exchange
from tests.standins.fixtures import STANDIN_CREDENTIALS
from tests.standins.lambda_cloud import LambdaStandIn
from tests.standins.runpod import RunPodStandIn
from tests.standins.vast import VastStandIn

from .validator import check_all, check_exchange

RUNPOD_SPEC = "runpod-rest-v2.openapi.json"
LAMBDA_SPEC = "lambda-cloud.openapi.json"
# the spec amended where the official SDK sends otherwise (env object, type "on-demand"): validator.VARIANTS
VAST_SPEC = "vastai.openapi.yaml+sdk"


def _request(offer, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000001", **kw) -> LaunchRequest:
    return LaunchRequest(tag=tag, name="train", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class=offer.gpu_class,
                         gpu_count=offer.gpu_count, region=offer.region, instance_type=offer.instance_type,
                         spot=offer.spot, bid_price_per_hour=offer.price_per_hour if offer.spot else None,
                         ports=[{"port": 8888, "protocol": "http"}, {"port": 22, "protocol": "tcp"}],
                         env={"HF_HOME": "/workspace/hf"}, command=["python"], args=["train.py", "--epochs", "3"],
                         volumes=[{"kind": "persistent", "size_gb": 20, "mount_path": "/workspace"}], **kw)


def _assert_conforms(spec: str, standin, minimum: int, skip=lambda r: False) -> None:
    checked, errors = check_all(spec, standin.exchanges, skip=skip)
    assert checked >= minimum, f"only {checked} exchanges were checked"
    assert not errors, "\n".join(errors)


def _adapter(cls, kind, standin, **settings):
    return cls(STANDIN_CREDENTIALS[kind], {"account_id": f"contract-{kind}", **settings},
               transport=standin.transport(), sleep=lambda s: None)


# --- RunPod (REST v2) ----------------------------------------------------------------------------


def test_runpod_adapter_and_standin_conform_to_v2_spec():
    s = RunPodStandIn()
    a = _adapter(RunPodAdapter, "runpod", s)
    a.verify()
    offers = a.list_offers()
    on_demand = next(o for o in offers if not o.spot and o.gpu_class == "A100-80")
    pod = a.launch(_request(on_demand))
    assert a.launch(_request(on_demand)).external_id == pod.external_id  # idempotent: found by tag
    a.get(pod.external_id)
    a.list_pods()
    a.stop(pod.external_id)
    a.terminate(pod.external_id)
    a.terminate(pod.external_id)  # already gone: 404 swallowed
    with pytest.raises(NotFound):
        a.get(pod.external_id)
    # documented error paths
    s.fail_next("capacity", op="launch")
    with pytest.raises(CapacityUnavailable):
        a.launch(_request(on_demand, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000002"))
    s.fail_next("rate_limit", op="get", retry_after=2)
    other = a.launch(_request(on_demand, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000003"))
    a.get(other.external_id)
    with pytest.raises(InvalidCredentials):
        RunPodAdapter({"api_key": "wrong"}, {}, transport=s.transport()).verify()
    s.balance_exhausted = True
    with pytest.raises(QuotaExceeded):
        a.launch(_request(on_demand, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000004"))
    # endpoints the stand-in serves beyond what the adapter calls (for the wizard and demos)
    for url in ("/v2/catalog/datacenters?include=GPU_AVAILABILITY", "/v2/catalog/gpus",
                "/v2/catalog/gpus?include=AVAILABILITY"):
        s.handle(httpx.Request("GET", "https://api.runpod.io" + url, headers={"Authorization": "Bearer test-key"}))
    statuses = {e.response.status_code for e in s.exchanges if e.response is not None}
    assert {200, 201, 204, 400, 401, 402, 404, 429} <= statuses
    _assert_conforms(RUNPOD_SPEC, s, 20, skip=lambda r: r.url.path.endswith("/graphql"))


def test_runpod_standin_rejects_unknown_fields_in_spec_shape():
    s = RunPodStandIn()
    request = httpx.Request("POST", "https://api.runpod.io/v2/pods", headers={"Authorization": "Bearer test-key",
                            "Content-Type": "application/json"},
                            content=json.dumps({"name": "x", "image": "i", "gpu": {"id": "NVIDIA L4"}, "bogus": 1}))
    response = s.handle(request)
    assert response.status_code == 422
    errors = check_exchange(RUNPOD_SPEC, request, response)
    # the request is refused by the spec, the stand-in's 422 answer conforms
    assert any("bogus" in e for e in errors) and all("-> 422" not in e for e in errors)


# --- Lambda Cloud ---------------------------------------------------------------------------------


def test_lambda_adapter_and_standin_conform_to_spec():
    s = LambdaStandIn()
    a = _adapter(LambdaAdapter, "lambda", s)
    a.verify()
    offers = a.list_offers()
    offer = next(o for o in offers if o.gpu_class == "A100-40")
    inst = a.launch(_request(offer))
    assert a.launch(_request(offer)).external_id == inst.external_id
    a.get(inst.external_id)
    a.list_pods()
    a.terminate(inst.external_id)
    a.terminate(inst.external_id)  # 404 global/object-does-not-exist, swallowed
    with pytest.raises(NotFound):
        a.get("0" * 32)
    s.fail_next("capacity", op="launch")
    with pytest.raises(CapacityUnavailable):
        a.launch(_request(offer, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000002"))
    s.fail_next("quota", op="launch")
    with pytest.raises(QuotaExceeded):
        a.launch(_request(offer, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000003"))
    with pytest.raises(InvalidCredentials):
        LambdaAdapter({"api_key": "wrong"}, {}, transport=s.transport(), sleep=lambda x: None).verify()
    statuses = {e.response.status_code for e in s.exchanges if e.response is not None}
    assert {200, 400, 401, 404} <= statuses
    _assert_conforms(LAMBDA_SPEC, s, 12)


# --- Vast.ai --------------------------------------------------------------------------------------


def test_vast_adapter_and_standin_conform_to_spec():
    s = VastStandIn()
    a = _adapter(VastAdapter, "vast", s)
    a.verify()
    offers = a.list_offers()
    on_demand = next(o for o in offers if not o.spot and o.gpu_class == "RTX4090")
    spot = next(o for o in offers if o.spot and o.gpu_class == "A100-80")
    inst = a.launch(_request(on_demand))
    assert a.launch(_request(on_demand)).external_id == inst.external_id
    bid = a.launch(_request(spot, tag="0b7c1d2e-aaaa-bbbb-cccc-00000000000b"))
    s.outbid(bid.external_id)
    a.get(bid.external_id)
    a.gpu_utilization(inst.external_id)
    a.list_pods()
    a.stop(inst.external_id)
    a.terminate(inst.external_id)
    a.terminate(inst.external_id)
    with pytest.raises(NotFound):
        a.get(inst.external_id)
    s.fail_next("capacity", op="launch")
    with pytest.raises(CapacityUnavailable):
        a.launch(_request(on_demand, tag="0b7c1d2e-aaaa-bbbb-cccc-000000000002"))
    s.fail_next("rate_limit", op="get")
    a.get(bid.external_id)
    with pytest.raises(InvalidCredentials):
        VastAdapter({"api_key": "wrong"}, {}, transport=s.transport()).verify()
    with pytest.raises(InvalidCredentials):
        VastAdapter({"api_key": "wrong"}, {}, transport=s.transport()).list_offers()
    statuses = {e.response.status_code for e in s.exchanges if e.response is not None}
    assert {200, 400, 401, 404, 410, 429} <= statuses
    _assert_conforms(VAST_SPEC, s, 15)


# --- the validator itself -----------------------------------------------------------------------


def test_validator_flags_fields_the_spec_does_not_know():
    # Lambda's launch schema has no additionalProperties: false, yet an unknown field must fail.
    request = httpx.Request("POST", "https://cloud.lambda.ai/api/v1/instance-operations/launch",
                            headers={"Authorization": "Bearer k", "Content-Type": "application/json"},
                            content=json.dumps({"region_name": "us-west-1", "instance_type_name": "gpu_1x_a10",
                                                "ssh_key_names": ["k"], "quantity": 2,
                                                "tags": [{"key": "a", "value": "b", "colour": "red"}]}))
    errors = check_exchange(LAMBDA_SPEC, request, None)
    assert any("$.quantity" in e for e in errors)
    assert any("$.tags[0].colour" in e for e in errors)
    # and a stand-in answer with an invented field fails too
    good = httpx.Request("GET", "https://cloud.lambda.ai/api/v1/instance-types", headers={"Authorization": "Bearer k"})
    s = LambdaStandIn(api_keys=("k",))
    response = s.handle(good)
    body = response.json()
    next(iter(body["data"].values()))["instance_type"]["spot_price"] = 1
    bad = httpx.Response(200, json=body)
    assert not check_exchange(LAMBDA_SPEC, good, response)
    assert any("spot_price" in e for e in check_exchange(LAMBDA_SPEC, good, bad))


def test_validator_flags_undeclared_query_parameters_and_paths():
    request = httpx.Request("GET", "https://api.runpod.io/v2/pods/abc?owner=me", headers={"Authorization": "Bearer k"})
    assert any("owner" in e for e in check_exchange(RUNPOD_SPEC, request, None))
    with pytest.raises(AssertionError):
        check_exchange(RUNPOD_SPEC, httpx.Request("GET", "https://rest.runpod.io/v1/pods"), None)


def test_exchange_records_every_call():
    s = LambdaStandIn()
    _adapter(LambdaAdapter, "lambda", s).list_offers()
    assert [type(e) for e in s.exchanges] == [Exchange]
