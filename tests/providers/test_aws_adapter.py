"""AWS adapter: real boto3 over HTTP against moto's server on 127.0.0.1 (validation on).

Where moto cannot play the part, a botocore event hook stands in for exactly one call, after
botocore has validated our request against the EC2 model:

* ``describe_spot_price_history``: moto answers a hard-coded 0.00001 for every type and AZ
  (timestamp 2006), so spot prices cannot be seeded; the hook returns a realistic history.
* ``InsufficientInstanceCapacity``, ``VcpuLimitExceeded``, ``AuthFailure``: moto never raises
  them; the hook answers the call with that ClientError, as EC2 would.
* spot interruption: moto cannot interrupt; the test terminates the instance in moto and the
  hook adds the ``Server.SpotInstanceTermination`` state reason EC2 reports afterwards.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import boto3
import botocore.session
import pytest
from botocore.model import ServiceModel
from botocore.stub import Stubber
from botocore.validate import ParamValidator
from django.core.management import call_command

from providers.adapters import aws as aws_module
from providers.adapters import aws_pricing
from providers.adapters.aws import AwsAdapter, map_error
from providers.adapters.base import (
    REMOTE_INTERRUPTED,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    PermanentError,
    QuotaExceeded,
    TransientError,
)
from providers.models import Offer, ProviderAccount
from providers.services import capacity_poll, provider_account_create
from tests.standins import moto_server as _moto
from workloads.lifecycle import services
from workloads.models import LaunchBlock, PodState

from ..factories import WorkloadFactory

moto_server = _moto.moto_server  # the session's moto process (fixture)
moto_url = _moto.moto_url  # reset per test (fixture)

CREDS = {"access_key_id": "testing", "secret_access_key": "testing"}
SPEC = "/work/shared/specs/aws-ec2.service-2.json"


class _Http:
    """The minimal HTTP response botocore needs from a ``before-call`` short-circuit."""

    def __init__(self, status: int):
        self.status_code = status
        self.headers: dict[str, str] = {}
        self.content = b""
        self.raw = None


def client_error(code: str, message: str = "", status: int = 400):
    return _Http(status), {"Error": {"Code": code, "Message": message or code},
                           "ResponseMetadata": {"HTTPStatusCode": status, "RequestId": "req-test"}}


class Hooks:
    """botocore event handlers attached to every client the adapter builds, plus the raw
    parameters of every call (captured after botocore validated them)."""

    def __init__(self):
        self.handlers: list[tuple[str, object]] = []
        self.calls: list[tuple[str, str, dict]] = []  # (region, operation, params)

    def on(self, event: str, handler) -> None:
        self.handlers.append((event, handler))

    def params(self, operation: str) -> list[dict]:
        return [p for _, op, p in self.calls if op == operation]


@pytest.fixture
def hooks(monkeypatch):
    h = Hooks()
    original = aws_module.build_client

    def build(session, service, region, endpoint_url, config):
        client = original(session, service, region, endpoint_url, config)

        def capture(params, model, **kw):
            h.calls.append((region, model.name, dict(params)))

        client.meta.events.register("before-parameter-build", capture)
        for event, handler in h.handlers:
            client.meta.events.register(event, lambda *a, _h=handler, _r=region, **kw: _h(region=_r, **kw))
        return client

    monkeypatch.setattr(aws_module, "build_client", build)
    return h


@pytest.fixture(autouse=True)
def _fresh_price_cache():
    aws_pricing.price_cache.clear()
    yield
    aws_pricing.price_cache.clear()


NOW = datetime.now(UTC)
# (instance type, AZ) -> [(age in minutes, price)]: the newest entry is the one in effect
SPOT_HISTORY = {
    ("g5.xlarge", "us-east-1a"): [(90, "0.4510"), (5, "0.3921")],
    ("g5.xlarge", "us-east-1b"): [(30, "0.4102")],
    ("g4dn.xlarge", "us-east-1a"): [(10, "0.2025")],
    ("p5.48xlarge", "us-east-1a"): [(20, "31.4640")],
    ("g5.xlarge", "eu-central-1a"): [(15, "0.5007")],
}


def spot_history_handler(calls: list | None = None):
    def handler(region, params, **kw):
        types = set(params.get("InstanceTypes") or [])
        if calls is not None:
            calls.append(dict(params))
        history = [
            {"AvailabilityZone": az, "InstanceType": t, "ProductDescription": "Linux/UNIX",
             "SpotPrice": price, "Timestamp": NOW - timedelta(minutes=age)}
            for (t, az), entries in SPOT_HISTORY.items() if t in types and az.startswith(region)
            for age, price in entries
        ]
        return _Http(200), {"SpotPriceHistory": history, "NextToken": "", "ResponseMetadata": {"HTTPStatusCode": 200}}
    return handler


@pytest.fixture
def spot_market(hooks):
    """Realistic spot prices in place of moto's constant."""
    seen: list[dict] = []
    h = spot_history_handler()

    def before_call(region, model, params, **kw):
        if model.name == "DescribeSpotPriceHistory":
            seen.append(params)
            return h(region, hooks.params("DescribeSpotPriceHistory")[-1])
        return None

    hooks.on("before-call.ec2.DescribeSpotPriceHistory", before_call)
    return seen


def aws_account(tenant, url, regions=("us-east-1",), **settings):
    return ProviderAccount.objects.create(
        tenant=tenant, kind="aws", name=f"AWS {'/'.join(regions)}", credentials=dict(CREDS),
        settings={"base_url": url, **settings}, allowed_regions=list(regions))


def adapter(url, regions=("us-east-1",), **settings) -> AwsAdapter:
    return AwsAdapter(dict(CREDS), {"base_url": url, "allowed_regions": list(regions), **settings})


class A10Workload(WorkloadFactory):
    """The workload these tests launch: the factory's, with this file's GPU."""

    gpu_class = "A10"


# --- offers -----------------------------------------------------------------------------------


def test_offers_are_normalized_with_spot_per_zone(moto_url, spot_market):
    offers = adapter(moto_url, ("us-east-1", "eu-central-1")).list_offers()
    classes = {o.gpu_class for o in offers}
    assert {"T4", "A10", "L4", "A100-40", "H100"} <= classes
    assert {o.country for o in offers} == {"US", "DE"}
    assert all(o.currency == "USD" and o.price_per_hour > 0 for o in offers)

    g5 = [o for o in offers if o.instance_type == "g5.xlarge" and o.region == "us-east-1"]
    on_demand = [o for o in g5 if not o.spot]
    assert len(on_demand) == 1 and on_demand[0].zone == ""
    assert on_demand[0].price_per_hour == Decimal("1.006")  # bundled table: moto has no Price List API
    assert on_demand[0].extra["price_source"] == "bundled-table"
    assert on_demand[0].gpu_class == "A10" and on_demand[0].gpu_count == 1 and on_demand[0].gpu_memory_gb == 22
    spot = {o.zone: o.price_per_hour for o in g5 if o.spot}
    assert spot == {"us-east-1a": Decimal("0.3921"), "us-east-1b": Decimal("0.4102")}  # the latest entry wins

    p5 = next(o for o in offers if o.instance_type == "p5.48xlarge" and not o.spot and o.region == "us-east-1")
    assert (p5.gpu_class, p5.gpu_count, p5.gpu_memory_gb) == ("H100", 8, 80)
    assert p5.price_per_hour == Decimal("98.32")  # the whole 8-GPU instance, per hour
    assert len(spot_market) == 2  # one spot history request per region


@pytest.mark.django_db
def test_capacity_poll_stores_offers_in_usd(tenant, moto_url, spot_market):
    account = aws_account(tenant, moto_url, ("us-east-1", "eu-central-1"))
    (result,) = capacity_poll(accounts=[account])
    assert result.error == ""
    rows = Offer.objects.filter(provider_account=account)
    assert rows.filter(country="DE", region="eu-central-1").exists()
    row = rows.get(instance_type="g5.xlarge", region="us-east-1", spot=False)
    assert row.price_usd_per_hour == Decimal("1.006") and row.kind == "aws"


def test_spot_history_request_is_linux_for_the_types_offered(moto_url, hooks):
    seen: list[dict] = []

    def before_call(region, model, **kw):
        params = hooks.params("DescribeSpotPriceHistory")[-1]
        seen.append(params)
        return spot_history_handler()(region, params)

    hooks.on("before-call.ec2.DescribeSpotPriceHistory", before_call)
    adapter(moto_url).list_offers()
    (params,) = seen
    assert params["ProductDescriptions"] == ["Linux/UNIX"]
    assert "g5.xlarge" in params["InstanceTypes"] and "t3.micro" not in params["InstanceTypes"]
    assert abs((params["StartTime"] - datetime.now(UTC)).total_seconds()) < 120


def _price_list_item(itype: str, region: str, usd: str) -> str:
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "sku": f"SKU{itype}",
                    "attributes": {"instanceType": itype, "regionCode": region, "operatingSystem": "Linux",
                                   "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used"}},
        "terms": {"OnDemand": {f"SKU{itype}.JRTCKXETXF": {"priceDimensions": {
            f"SKU{itype}.JRTCKXETXF.6YS6EN2CT7": {"unit": "Hrs", "description": f"${usd} per On Demand Linux {itype} Instance Hour",
                                                  "pricePerUnit": {"USD": usd}}}}}},
    })


def test_pricing_api_is_preferred_when_reachable(moto_url, hooks, spot_market):
    calls = []

    def pricing(region, model, **kw):
        params = hooks.params("GetProducts")[-1]
        calls.append(params)
        items = [_price_list_item("g5.xlarge", "us-east-1", "1.0060000000"),
                 _price_list_item("p5.48xlarge", "us-east-1", "55.0400000000")]
        return _Http(200), {"FormatVersion": "aws_v1", "PriceList": items, "ResponseMetadata": {"HTTPStatusCode": 200}}

    hooks.on("before-call.pricing.GetProducts", pricing)
    offers = adapter(moto_url).list_offers()
    p5 = next(o for o in offers if o.instance_type == "p5.48xlarge" and not o.spot)
    assert p5.price_per_hour == Decimal("55.04") and p5.extra["price_source"] == "pricing-api"
    filters = {f["Field"]: (f["Type"], f["Value"]) for f in calls[0]["Filters"]}
    assert filters["regionCode"] == ("TERM_MATCH", "us-east-1")
    assert filters["operatingSystem"] == ("TERM_MATCH", "Linux")
    assert filters["instanceType"][0] == "ANY_OF" and "g5.xlarge" in filters["instanceType"][1].split(",")
    # types the API did not price are not quoted on-demand (no guessing)
    assert not [o for o in offers if o.instance_type == "g4dn.xlarge" and not o.spot]
    adapter(moto_url).list_offers()
    assert len(calls) == 1  # cached


def test_unreachable_pricing_api_falls_back_to_the_bundled_table(moto_url, hooks, spot_market):
    offers = adapter(moto_url).list_offers()  # moto's GetProducts answers HTTP 500
    assert [c for c in hooks.calls if c[1] == "GetProducts"]
    g4 = next(o for o in offers if o.instance_type == "g4dn.xlarge" and not o.spot)
    assert g4.price_per_hour == Decimal("0.526") and g4.extra["price_source"] == "bundled-table"
    n = len([c for c in hooks.calls if c[1] == "GetProducts"])
    adapter(moto_url).list_offers()
    assert len([c for c in hooks.calls if c[1] == "GetProducts"]) == n  # not retried on every poll


def test_refresh_aws_prices_rewrites_the_table(tmp_path, monkeypatch):
    client = boto3.client("pricing", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y")
    stub = Stubber(client)
    for region, price in (("us-east-1", "1.0060000000"), ("eu-central-1", "1.2580000000")):
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": [
            _price_list_item("g5.xlarge", region, price), _price_list_item("g5.2xlarge", region, "0")]},
            {"ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "Filters": aws_pricing.pricing_filters(region)})
    monkeypatch.setattr("providers.management.commands.refresh_aws_prices.pricing_client", lambda **kw: client)
    out = tmp_path / "prices.json"
    with stub:
        call_command("refresh_aws_prices", "--regions", "us-east-1,eu-central-1", "--output", str(out))
    stub.assert_no_pending_responses()
    doc = json.loads(out.read_text())
    assert doc["prices"] == {"eu-central-1": {"g5.xlarge": "1.258"}, "us-east-1": {"g5.xlarge": "1.006"}}
    assert "Price List API" in doc["source"]
    assert aws_pricing.load_table(out)["us-east-1"]["g5.xlarge"] == Decimal("1.006")


def test_bundled_table_covers_the_default_regions():
    table = aws_pricing.load_table()
    for region in aws_module.DEFAULT_REGIONS:
        assert {"g5.xlarge", "p4d.24xlarge", "p5.48xlarge"} & set(table[region])
    assert all(p > 0 for types in table.values() for p in types.values())


# --- launch, follow, terminate through the lifecycle services -------------------------------------


@pytest.mark.django_db
def test_on_demand_launch_runs_and_terminates(tenant, project, owner, moto_url, hooks, spot_market):
    account = aws_account(tenant, moto_url)
    capacity_poll(accounts=[account])
    w = A10Workload(tenant=tenant, project=project, owner=owner, ports=[{"port": 8888, "protocol": "http"}])
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.provider_account == account and not pod.spot
    assert pod.offer_snapshot["instance_type"] == "g5.xlarge"
    assert pod.price_usd_per_hour == Decimal("1.006")
    assert pod.external_id.startswith("us-east-1/i-")
    (run,) = hooks.params("RunInstances")
    assert run["ClientToken"] == AwsAdapter.client_token(LaunchRequest(
        tag=str(pod.pk), name="", image="", gpu_class="A10", gpu_count=1, region="us-east-1", instance_type="g5.xlarge"))
    assert {"Key": "provisioner:pod", "Value": str(pod.pk)} in run["TagSpecifications"][0]["Tags"]
    assert "InstanceMarketOptions" not in run
    script = base64.b64decode(run["UserData"]).decode()  # botocore base64-encodes it for EC2
    assert "nvcr.io/nvidia/pytorch:24.08-py3" in script and "--gpus all" in script and "8888:8888" in script

    pod = services.pod_refresh(pod_id=str(pod.pk))  # moto: pending -> running
    assert pod.state == PodState.RUNNING
    assert pod.connection["host"]
    region, iid = pod.external_id.split("/")
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert {"Key": "provisioner:pod", "Value": str(pod.pk)} in inst["Tags"]
    assert inst.get("InstanceLifecycle") is None  # on-demand
    groups = ec2.describe_security_groups(GroupIds=[g["GroupId"] for g in inst["SecurityGroups"]])["SecurityGroups"]
    assert {p["FromPort"] for g in groups for p in g["IpPermissions"]} >= {22, 8888}

    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED
    assert pod.events.filter(message__contains="verified").exists()
    inst = ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]
    assert inst["State"]["Name"] == "terminated"


@pytest.mark.django_db
def test_spot_launch_and_interruption(tenant, project, owner, moto_url, hooks, spot_market):
    account = aws_account(tenant, moto_url)
    capacity_poll(accounts=[account])
    w = A10Workload(tenant=tenant, project=project, owner=owner, interruption_tolerant=True)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.spot and pod.price_usd_per_hour == Decimal("0.3921")  # the cheapest AZ's spot price
    (run,) = hooks.params("RunInstances")
    assert run["InstanceMarketOptions"] == {"MarketType": "spot", "SpotOptions": {
        "SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"}}
    assert run["Placement"] == {"AvailabilityZone": "us-east-1a"}
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING

    region, iid = pod.external_id.split("/")
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["InstanceLifecycle"] == "spot"
    # AWS reclaims the instance; moto cannot, so terminate it there and report EC2's reason
    ec2.terminate_instances(InstanceIds=[iid])

    def reclaimed(parsed, **kw):
        for r in parsed.get("Reservations", []):
            for i in r["Instances"]:
                if i["InstanceId"] == iid:
                    i["StateReason"] = {"Code": "Server.SpotInstanceTermination",
                                        "Message": "Server.SpotInstanceTermination: Spot instance termination"}

    hooks.on("after-call.ec2.DescribeInstances", reclaimed)
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.INTERRUPTED
    assert pod.interruption_count == 1


@pytest.mark.django_db
def test_capacity_error_fails_over_to_the_next_region(tenant, project, owner, moto_url, hooks, spot_market):
    account = aws_account(tenant, moto_url, ("us-east-1", "us-west-2"))
    capacity_poll(accounts=[account])
    failed_regions: list[str] = []

    def no_capacity(region, **kw):
        if not failed_regions:
            failed_regions.append(region)
            return client_error("InsufficientInstanceCapacity",
                                "We currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested.")
        return None

    hooks.on("before-call.ec2.RunInstances", no_capacity)
    w = A10Workload(tenant=tenant, project=project, owner=owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    (first,) = failed_regions
    assert pod.state in (PodState.PROVISIONING, PodState.RUNNING)
    assert pod.region != first and pod.region in ("us-east-1", "us-west-2")
    assert LaunchBlock.objects.filter(provider_account=account, region=first).exists()
    assert pod.events.filter(kind="attempt", message__contains="no capacity").exists()
    runs = hooks.params("RunInstances")
    assert len(runs) == 2  # both requests passed botocore's validation
    # a distinct ClientToken per attempt: EC2 would refuse a reused one with new parameters
    assert runs[0]["ClientToken"] != runs[1]["ClientToken"]


def test_typed_errors(moto_url, hooks):
    codes = {"VcpuLimitExceeded": QuotaExceeded, "MaxSpotInstanceCountExceeded": QuotaExceeded,
             "InsufficientInstanceCapacity": CapacityUnavailable, "RequestLimitExceeded": TransientError}
    current: list[str] = []
    hooks.on("before-call.ec2.RunInstances", lambda **kw: client_error(current[-1], status=503 if current[-1] == "RequestLimitExceeded" else 400))
    a = adapter(moto_url, retries=0)
    for code, error in codes.items():
        current.append(code)
        req = LaunchRequest(tag=f"tag-{code}", name="x", image="busybox", gpu_class="A10", gpu_count=1,
                            region="us-east-1", instance_type="g5.xlarge")
        with pytest.raises(error) as info:
            a.launch(req)
        assert info.value.code == code
        assert info.value.failover


def test_error_code_table():
    from botocore.exceptions import ClientError

    def err(code, status=400):
        return map_error(ClientError({"Error": {"Code": code, "Message": "m"},
                                             "ResponseMetadata": {"HTTPStatusCode": status}}, "RunInstances"))

    assert isinstance(err("AuthFailure", 401), InvalidCredentials)
    assert isinstance(err("UnauthorizedOperation", 403), InvalidCredentials)
    assert isinstance(err("Throttling"), TransientError)
    assert isinstance(err("InternalError", 500), TransientError)
    assert isinstance(err("SomethingOdd", 503), TransientError)
    assert isinstance(err("InvalidInstanceID.NotFound"), NotFound)
    assert isinstance(err("InvalidParameterValue"), PermanentError)


def test_unknown_instance_type_is_refused_by_moto_validation(moto_url):
    req = LaunchRequest(tag="t-bad", name="x", image="busybox", gpu_class="A10", gpu_count=1,
                        region="us-east-1", instance_type="g9.mega")
    with pytest.raises(PermanentError) as info:
        adapter(moto_url).launch(req)
    assert info.value.code == "InvalidInstanceType.NotFound"


@pytest.mark.django_db
def test_invalid_credentials(tenant, moto_url, hooks):
    hooks.on("before-call.ec2.DescribeRegions", lambda **kw: client_error(
        "AuthFailure", "AWS was not able to validate the provided access credentials", 401))
    with pytest.raises(InvalidCredentials):
        provider_account_create(tenant=tenant, kind="aws", name="AWS", credentials={"access_key_id": "AKIA", "secret_access_key": "bad"},
                                settings={"base_url": moto_url})
    assert not ProviderAccount.objects.filter(kind="aws").exists()
    with pytest.raises(InvalidCredentials):
        AwsAdapter({"access_key_id": "", "secret_access_key": ""}, {"base_url": moto_url}).verify()


def test_verify_accepts_good_credentials(moto_url):
    adapter(moto_url).verify()


# --- idempotency, reconciliation, stop/start, metrics ---------------------------------------------


def test_launch_is_idempotent_on_the_pod_tag(moto_url):
    a = adapter(moto_url)
    req = LaunchRequest(tag="5d0c1c9e-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="A10",
                        gpu_count=1, region="us-east-1", instance_type="g5.xlarge")
    first = a.launch(req)
    second = adapter(moto_url).launch(req)
    assert first.external_id == second.external_id
    assert len(a.list_pods()) == 1


def test_list_pods_by_tag_and_spot_client_side(moto_url):
    a = adapter(moto_url)
    base = dict(name="x", image="busybox", gpu_class="T4", gpu_count=1, region="us-east-1", instance_type="g4dn.xlarge")
    on_demand = a.launch(LaunchRequest(tag="11111111-0000-4000-8000-000000000001", **base))
    spot = a.launch(LaunchRequest(tag="11111111-0000-4000-8000-000000000002", spot=True, **base))
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    ami = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
    ec2.run_instances(ImageId=ami, InstanceType="t3.micro", MinCount=1, MaxCount=1)  # not ours: no tag
    pods = {p.external_id: p for p in a.list_pods()}
    assert set(pods) == {on_demand.external_id, spot.external_id}
    assert pods[spot.external_id].tag == "11111111-0000-4000-8000-000000000002"
    assert [p.external_id for p in a.list_pods(spot_only=True)] == [spot.external_id]
    a.terminate(on_demand.external_id)
    assert {p.external_id for p in a.list_pods()} == {spot.external_id}
    a.terminate(on_demand.external_id)  # already gone: silent


def test_stop_and_start(moto_url):
    a = adapter(moto_url)
    pod = a.launch(LaunchRequest(tag="22222222-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="T4",
                                 gpu_count=1, region="us-east-1", instance_type="g4dn.xlarge"))
    a.stop(pod.external_id)
    assert a.get(pod.external_id).state == REMOTE_STOPPED
    a.start(pod.external_id)
    assert a.get(pod.external_id).state == REMOTE_RUNNING
    with pytest.raises(NotFound):
        a.get("us-east-1/i-0123456789abcdef0")


def test_gpu_utilization_from_cloudwatch_agent(moto_url):
    a = adapter(moto_url)
    pod = a.launch(LaunchRequest(tag="33333333-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="T4",
                                 gpu_count=1, region="us-east-1", instance_type="g4dn.12xlarge"))
    assert a.gpu_utilization(pod.external_id) is None  # no agent yet
    iid = pod.external_id.split("/")[1]
    cw = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    now = datetime.now(UTC)
    for index, value in ((0, 91.0), (1, 3.5)):
        cw.put_metric_data(Namespace="CWAgent", MetricData=[{
            "MetricName": "nvidia_smi_utilization_gpu", "Unit": "Percent", "Value": value, "Timestamp": now,
            "Dimensions": [{"Name": "InstanceId", "Value": iid}, {"Name": "index", "Value": str(index)}]}])
    samples = a.gpu_utilization(pod.external_id)
    assert [(s.gpu_index, s.util_pct) for s in samples] == [(0, 91.0), (1, 3.5)]


def test_remote_state_mapping():
    a = AwsAdapter(dict(CREDS), {})
    base = {"InstanceId": "i-1", "Tags": [{"Key": "provisioner:pod", "Value": "t"}]}
    reclaimed = {**base, "InstanceLifecycle": "spot", "State": {"Name": "stopped"},
                 "StateReason": {"Code": "Server.SpotInstanceTermination", "Message": ""}}
    assert a._remote("us-east-1", reclaimed).state == REMOTE_INTERRUPTED
    user_stopped = {**base, "State": {"Name": "stopped"}, "StateReason": {"Code": "Client.UserInitiatedShutdown"}}
    assert a._remote("us-east-1", user_stopped).state == REMOTE_STOPPED
    assert a._remote("us-east-1", {**base, "State": {"Name": "stopping"}}).state == "provisioning"


# --- the request is the AWS contract ----------------------------------------------------------------


def test_run_instances_requests_validate_against_the_reference_ec2_model(moto_url, hooks):
    a = adapter(moto_url)
    for spot in (False, True):
        a.launch(LaunchRequest(tag=f"44444444-0000-4000-8000-00000000000{int(spot)}", name="x", image="busybox",
                               gpu_class="A10", gpu_count=1, region="us-east-1", instance_type="g5.xlarge", spot=spot,
                               zone="us-east-1b", env={"A": "1"}, ports=[{"port": 8080}]))
    with open(SPEC) as fh:
        model = ServiceModel(json.load(fh), service_name="ec2")
    validator = ParamValidator()
    checked = 0
    for op_name in ("RunInstances", "DescribeInstances", "DescribeImages", "CreateSecurityGroup",
                    "AuthorizeSecurityGroupIngress"):
        for params in hooks.params(op_name):
            report = validator.validate(params, model.operation_model(op_name).input_shape)
            assert not report.has_errors(), report.generate_report()
            checked += 1
    assert checked >= 4
    assert botocore.session.get_session().get_service_model("ec2").api_version == model.api_version


def test_a_region_not_opted_into_does_not_hide_the_others(moto_url, hooks, spot_market):
    def opt_in(region, **kw):
        if region == "eu-central-1":
            return client_error("OptInRequired", "You are not subscribed to this service in eu-central-1.", 401)
        return None

    hooks.on("before-call.ec2.DescribeInstanceTypes", opt_in)
    offers = adapter(moto_url, ("us-east-1", "eu-central-1")).list_offers()
    assert offers and {o.region for o in offers} == {"us-east-1"}
    with pytest.raises(InvalidCredentials):
        adapter(moto_url, ("eu-central-1",)).list_offers()  # every region failed: the poll fails


@pytest.mark.django_db
def test_the_adapter_polls_only_the_allowed_regions(tenant):
    from providers.services import adapter_for

    account = aws_account(tenant, "http://127.0.0.1:9", ("us-west-2", "eu-central-1"))
    assert adapter_for(account).regions == ["us-west-2", "eu-central-1"]
    account.allowed_regions = ["us-central1"]  # not an AWS region: the defaults apply
    assert adapter_for(account).regions == list(aws_module.DEFAULT_REGIONS)


# --- issue 13 §2.4: stopping a one-time spot instance ---------------------------------------------
# Real EC2 refuses StopInstances for an instance of a one-time Spot request ("UnsupportedOperation:
# You can't stop the Spot Instance 'i-…' because it is associated with a one-time Spot Instance
# request. You can only stop Spot Instances associated with persistent Spot Instance requests.");
# moto stops it anyway, so the hook answers StopInstances as EC2 does.
ONE_TIME_SPOT_STOP = ("You can't stop the Spot Instance because it is associated with a one-time Spot Instance "
                      "request. You can only stop Spot Instances associated with persistent Spot Instance requests.")


def test_stop_of_a_one_time_spot_instance_is_a_typed_stop_not_possible(moto_url, hooks):
    from providers.adapters.base import NotSupported, StopNotPossible

    hooks.on("before-call.ec2.StopInstances", lambda **kw: client_error("UnsupportedOperation", ONE_TIME_SPOT_STOP))
    a = adapter(moto_url)
    pod = a.launch(LaunchRequest(tag="44444444-0000-4000-8000-000000000001", name="x", image="busybox", gpu_class="T4",
                                 gpu_count=1, region="us-east-1", instance_type="g4dn.xlarge", spot=True))
    with pytest.raises(StopNotPossible) as caught:
        a.stop(pod.external_id)
    assert isinstance(caught.value, NotSupported) and caught.value.code == "UnsupportedOperation"
    # the same code from another operation is not a "cannot stop" answer
    assert not isinstance(map_error(_client_error_for("RunInstances", "UnsupportedOperation")), StopNotPossible)


def _client_error_for(operation: str, code: str):
    from botocore.exceptions import ClientError
    return ClientError({"Error": {"Code": code, "Message": code}, "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


@pytest.mark.django_db
def test_idle_stop_of_a_one_time_spot_instance_terminates_it_once(tenant, project, owner, moto_url, hooks, spot_market):
    from provisioner import clock
    from tests.workloads.telemetry_helpers import feed
    from workloads.autoshutdown import idle, tasks
    from workloads.models import Pod

    hooks.on("before-call.ec2.StopInstances", lambda **kw: client_error("UnsupportedOperation", ONE_TIME_SPOT_STOP))
    account = aws_account(tenant, moto_url)
    capacity_poll(accounts=[account])
    w = A10Workload(tenant=tenant, project=project, owner=owner, interruption_tolerant=True, idle_window_minutes=30, idle_grace_minutes=5,
                  idle_delete_after_stopped_minutes=60)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.spot and pod.state == PodState.RUNNING
    now = clock.now()
    feed(pod, start=now - timedelta(minutes=40), end=now, util=lambda at, g: 0.0)
    Pod.objects.filter(pk=pod.pk).update(idle_warning_at=now - timedelta(minutes=6))
    tasks.reap_idle()
    tasks.reap_idle()  # a second tick finds nothing left to do
    idle.idle_stop(pod_id=str(pod.pk))
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED and pod.state_reason == "idle"
    assert len(hooks.params("StopInstances")) == 1 and len(hooks.params("TerminateInstances")) == 1
    assert pod.events.filter(message__contains="cannot stop this instance").exists()
    assert not pod.events.filter(message__startswith="Idle stop failed").exists()
    region, iid = pod.external_id.split("/")
    ec2 = boto3.client("ec2", region_name=region, endpoint_url=moto_url, aws_access_key_id="testing", aws_secret_access_key="testing")
    assert ec2.describe_instances(InstanceIds=[iid])["Reservations"][0]["Instances"][0]["State"]["Name"] == "terminated"


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_user_data_logs_in_to_the_image_registry(moto_url, hooks):
    from tests.providers.registry_login_helpers import PRIVATE_IMAGE, REGISTRY_AUTH, assert_logs_in_to_nvcr

    adapter(moto_url).launch(LaunchRequest(tag="55555555-0000-4000-8000-000000000001", name="x", image=PRIVATE_IMAGE,
                                           gpu_class="T4", gpu_count=1, region="us-east-1", instance_type="g4dn.xlarge",
                                           registry_auth=dict(REGISTRY_AUTH)))
    (run,) = hooks.params("RunInstances")
    assert_logs_in_to_nvcr(base64.b64decode(run["UserData"]).decode())
