"""Contract tests of the billing reconciliation: every request our billing clients send and
every billing response the stand-ins serve conform to the provider's published spec (RunPod
REST v2, Vast.ai), and the Cost Explorer exchange conforms to botocore's ``ce`` model (the
request through boto3's own parameter validation, the canned answer through botocore's
Stubber, which validates a response against the operation's output shape)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber

from providers.adapters import aws_billing, runpod_billing, vast_billing
from providers.adapters.aws import AwsAdapter
from providers.adapters.runpod import RunPodAdapter
from providers.adapters.vast import VastAdapter
from tests.standins.fixtures import STANDIN_CREDENTIALS
from tests.standins.runpod import RunPodStandIn
from tests.standins.vast import VastStandIn

from .validator import check_all

FIRST, LAST = date(2026, 3, 15), date(2026, 3, 17)


def _adapter(cls, kind, standin):
    return cls(STANDIN_CREDENTIALS[kind], {"account_id": f"contract-{kind}"}, transport=standin.transport(),
               sleep=lambda s: None)


def _conforms(spec: str, standin, minimum: int) -> None:
    checked, errors = check_all(spec, standin.exchanges)
    assert checked >= minimum, f"only {checked} exchanges were checked"
    assert not errors, "\n".join(errors)


def test_runpod_pod_billing_request_and_answer_conform_to_v2_spec():
    s = RunPodStandIn()
    s.bill("podaaaaaaaaaa1", "2026-03-16", gpu=9.8, cpu=0.1, disk=0.2)
    s.bill("podaaaaaaaaaa1", "2026-03-17", gpu=1.0)
    s.bill("podoutside0001", "2026-03-19", gpu=5.0)  # outside the window
    days = runpod_billing.fetch_days(_adapter(RunPodAdapter, "runpod", s), FIRST, LAST)
    assert [(d.day, d.by_resource) for d in days] == [
        (date(2026, 3, 15), {}), (date(2026, 3, 16), {"podaaaaaaaaaa1": Decimal("10.1")}),
        (date(2026, 3, 17), {"podaaaaaaaaaa1": Decimal("1.0")})]
    _conforms("runpod-rest-v2.openapi.json", s, 1)


def test_vast_charges_request_and_answer_conform_to_spec_including_pages_and_errors():
    s = VastStandIn()
    s.charge("instance-27000001", "2026-03-16", gpu=3.9, disk=0.1, bwd=0.01)
    s.charge("volume-5501", "2026-03-16", disk=0.25)
    a = _adapter(VastAdapter, "vast", s)
    old = vast_billing.PAGE_LIMIT
    vast_billing.PAGE_LIMIT = 1
    try:
        days = vast_billing.fetch_days(a, FIRST, LAST)
    finally:
        vast_billing.PAGE_LIMIT = old
    assert days[1].by_resource == {"27000001": Decimal("4.01")} and days[1].unattributed == Decimal("0.25")
    # the documented 400 (no day range) conforms too
    import httpx

    s.handle(httpx.Request("GET", "https://console.vast.ai/api/v0/charges?select_filters=%7B%7D",
                           headers={"Authorization": "Bearer test-key"}))
    assert s.exchanges[-1].response.status_code == 400
    _conforms("vastai.openapi.yaml", s, 5)


CE_ANSWER = {
    "ResultsByTime": [
        {"TimePeriod": {"Start": "2026-03-16", "End": "2026-03-17"}, "Total": {}, "Estimated": False, "Groups": [
            {"Keys": ["provisioner:pod$0b7c1d2e-aaaa-bbbb-cccc-000000000001"],
             "Metrics": {"UnblendedCost": {"Amount": "12.9", "Unit": "USD"}}},
            {"Keys": ["provisioner:pod$"], "Metrics": {"UnblendedCost": {"Amount": "40.123", "Unit": "USD"}}}]},
    ],
    "GroupDefinitions": [{"Type": "TAG", "Key": "provisioner:pod"}],
    "DimensionValueAttributes": [],
}


def test_cost_explorer_request_and_canned_answer_conform_to_the_botocore_model(monkeypatch):
    adapter = AwsAdapter({"access_key_id": "testing", "secret_access_key": "testing"}, {})
    ce = boto3.session.Session(aws_access_key_id="x", aws_secret_access_key="y").client("ce", region_name="us-east-1")
    monkeypatch.setattr(adapter, "_client", lambda service, region: ce if (service, region) == ("ce", "us-east-1")
                        else pytest.fail(f"Cost Explorer asked in {service}/{region}"))
    with Stubber(ce) as stub:
        # add_response validates CE_ANSWER against GetCostAndUsageResponse; the call validates our
        # parameters against GetCostAndUsageRequest and that they are exactly the expected ones
        stub.add_response("get_cost_and_usage", CE_ANSWER, expected_params=aws_billing.request_params(
            date(2026, 3, 16), date(2026, 3, 16)))
        (day,) = aws_billing.fetch_days(adapter, date(2026, 3, 16), date(2026, 3, 16))
        stub.assert_no_pending_responses()
    assert day.by_resource == {"0b7c1d2e-aaaa-bbbb-cccc-000000000001": Decimal("12.9")}
    assert day.unattributed == Decimal("40.123")
    params = aws_billing.request_params(date(2026, 3, 16), date(2026, 3, 16))
    assert params["TimePeriod"] == {"Start": "2026-03-16", "End": "2026-03-17"}  # End is exclusive


def test_vast_charges_request_matches_what_the_official_sdk_sends(monkeypatch):
    """The ``vastai`` package's ``show invoices-v1 --charges`` builder, run unmodified with its
    HTTP session's ``send`` replaced (nothing leaves the machine), asks the same endpoint with
    the same ``day`` filter, format and page size as our client for one UTC day."""
    import json
    from urllib.parse import parse_qs, urlsplit

    import httpx
    import requests
    from requests.structures import CaseInsensitiveDict
    from vastai.api import billing as sdk_billing
    from vastai.api import client as sdk_client

    s = VastStandIn()
    s.charge("instance-27000001", "2026-03-16", gpu=3.9)
    sent: list[requests.PreparedRequest] = []

    def send(session, prep, **kw):
        sent.append(prep)
        answer = s.handle(httpx.Request(prep.method, prep.url, headers=dict(prep.headers)))
        r = requests.Response()
        r.status_code, r._content, r.url, r.request = answer.status_code, answer.content, prep.url, prep
        r.headers = CaseInsensitiveDict(answer.headers)
        return r

    monkeypatch.setattr(sdk_client.VastSession, "send", send)
    sdk = sdk_client.VastClient(api_key="test-key", server_url="https://console.vast.ai", retry=1)
    day = date(2026, 3, 16)
    start = 1773619200  # 2026-03-16T00:00:00Z
    theirs = sdk_billing.show_invoices_v1(sdk, {"charges": True, "start_date": start, "end_date": start + 86399,
                                                "limit": vast_billing.PAGE_LIMIT})
    assert theirs["results"][0]["source"] == "instance-27000001"  # the stand-in answers the SDK too
    (prep,) = sent
    sdk_query = {k: v[0] for k, v in parse_qs(urlsplit(prep.url).query).items()}
    ours = vast_billing.request_params(day)
    assert urlsplit(prep.url).path.rstrip("/") == vast_billing.PATH
    assert json.loads(sdk_query["select_filters"]) == json.loads(ours["select_filters"]) == \
        {"day": {"gte": start, "lte": start + 86399}}
    assert sdk_query["format"] == ours["format"] == "table"
    assert int(sdk_query["limit"]) == int(ours["limit"])  # the SDK caps pages at 100 (spec: server max 500)
