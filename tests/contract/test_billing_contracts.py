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
