"""RunPod adapter against the RunPod stand-in: normalization, typed errors, retries,
idempotency, interruption, telemetry, and the whole pod lifecycle through the services."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import httpx
import pytest

from providers.adapters.base import (
    REMOTE_INTERRUPTED,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    PermanentError,
    ProviderError,
    QuotaExceeded,
    StopNotPossible,
    TransientError,
)
from providers.adapters.http import parse_retry_after
from providers.adapters.registry import adapter_class
from providers.adapters.runpod import TAG_ENV, RunPodAdapter, map_error
from providers.models import Health, ProviderAccount
from providers.services import capacity_poll
from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings, no_sleep, served_runpod  # noqa: F401
from tests.standins.runpod import RunPodStandIn
from workloads.lifecycle import services
from workloads.lifecycle.failover import short_error
from workloads.models import PodState


@pytest.fixture
def standin():
    return RunPodStandIn()


@pytest.fixture
def waits():
    return []


@pytest.fixture
def adapter(standin, waits):
    return RunPodAdapter({"api_key": "test-key"}, {"account_id": "unit"}, transport=standin.transport(), sleep=waits.append)


def _req(offer, tag="5f0c0000-0000-0000-0000-000000000001", **kw):
    return LaunchRequest(tag=tag, name="train", image="img:1", gpu_class=offer.gpu_class, gpu_count=offer.gpu_count,
                         region=offer.region, instance_type=offer.instance_type, spot=offer.spot,
                         bid_price_per_hour=offer.price_per_hour if offer.spot else None, **kw)


def _offer(adapter, gpu_class="A100-80", count=1, spot=False, region=None):
    return next(o for o in adapter.list_offers() if o.gpu_class == gpu_class and o.gpu_count == count
                and o.spot == spot and (region is None or o.region == region))


def test_registered_with_credential_fields():
    cls = adapter_class("runpod")
    assert cls is RunPodAdapter
    info = cls.info
    assert info.supports_spot and info.can_stop and info.currency == "USD"
    assert [f.name for f in info.credential_fields] == ["api_key"]
    assert RunPodAdapter({}, {}).base_url == "https://api.runpod.io"
    assert RunPodAdapter({}, {"base_url": "http://127.0.0.1:9/"}).base_url == "http://127.0.0.1:9"


def test_offers_normalize_gpu_region_and_price_per_pod_hour(adapter):
    offers = adapter.list_offers()
    sxm = [o for o in offers if o.instance_type == "SECURE:NVIDIA A100-SXM4-80GB" and not o.spot]
    assert {o.gpu_class for o in sxm} == {"A100-80"}
    two = next(o for o in sxm if o.gpu_count == 2 and o.region == "EU-RO-1")
    assert two.country == "RO" and two.price_per_hour == Decimal("3.780000")  # 1.89 per GPU x 2
    assert next(o for o in offers if o.region == "US-TX-3").country == "US"
    assert next(o for o in offers if o.region == "CA-MTL-1").country == "CA"
    assert next(o for o in offers if o.region == "EUR-IS-1").country == "IS"
    classes = {o.gpu_class for o in offers}
    assert {"RTX4090", "A100-80", "H100", "L4", "MI300X"} <= classes
    # L4 is secure-cloud only: no community offer; community prices are the community list price
    assert not [o for o in offers if o.gpu_class == "L4" and o.extra["cloud"] == "COMMUNITY"]
    comm = next(o for o in offers if o.instance_type == "COMMUNITY:NVIDIA GeForce RTX 4090" and o.gpu_count == 4 and not o.spot)
    assert comm.price_per_hour == Decimal("1.360000")
    # spot prices come from GraphQL, per GPU x count
    spot = next(o for o in offers if o.spot and o.instance_type == "SECURE:NVIDIA H100 80GB HBM3" and o.gpu_count == 8)
    assert spot.price_per_hour == Decimal("14.000000")
    assert {o.availability for o in offers} <= {"LOW", "MEDIUM", "HIGH"}


def test_no_capacity_data_centre_disappears_from_offers(adapter, standin):
    standin.no_capacity.add("EU-RO-1")
    assert not [o for o in adapter.list_offers() if o.region == "EU-RO-1"]


def test_invalid_key_is_typed(standin):
    bad = RunPodAdapter({"api_key": "nope"}, {}, transport=standin.transport(), sleep=lambda s: None)
    with pytest.raises(InvalidCredentials):
        bad.verify()
    with pytest.raises(InvalidCredentials):
        bad.list_offers()
    with pytest.raises(InvalidCredentials):
        RunPodAdapter({}, {}, transport=standin.transport()).verify()


def test_capacity_and_quota_errors_are_typed_and_not_retried(adapter, standin):
    offer = _offer(adapter)
    standin.no_capacity.add(offer.region)
    with pytest.raises(CapacityUnavailable) as exc:
        adapter.launch(_req(offer))
    assert exc.value.failover and exc.value.status == 400
    assert len(standin.requests("launch")) == 1
    standin.no_capacity.clear()
    standin.balance_exhausted = True
    with pytest.raises(QuotaExceeded):
        adapter.launch(_req(offer, tag="5f0c0000-0000-0000-0000-000000000002"))


def test_429_waits_for_retry_after_then_succeeds(adapter, standin, waits):
    offer = _offer(adapter)
    pod = adapter.launch(_req(offer))
    standin.fail_next("rate_limit", op="get", retry_after=7)
    assert adapter.get(pod.external_id).state == REMOTE_RUNNING
    assert waits == [7.0]
    assert len(standin.requests("get")) == 2


def test_429_on_create_is_retried_because_nothing_was_created(adapter, standin, waits):
    offer = _offer(adapter)
    standin.fail_next("rate_limit", op="launch", retry_after=3)
    adapter.launch(_req(offer))
    assert waits == [3.0] and len(standin.pods) == 1


def test_5xx_is_retried_with_backoff_then_transient(adapter, standin, waits):
    standin.fail_next("server_error", op="list", times=10)
    with pytest.raises(TransientError) as exc:
        adapter.verify()
    assert exc.value.retryable and exc.value.status == 503
    assert len(standin.requests("list")) == 4  # 1 + 3 retries
    assert len(waits) == 3 and waits[0] < waits[2] and all(0 < w <= 8 for w in waits)


def test_5xx_on_create_is_not_blindly_retried(adapter, standin):
    offer = _offer(adapter)
    standin.fail_next("server_error", op="launch")
    with pytest.raises(TransientError):
        adapter.launch(_req(offer))
    assert len(standin.requests("launch")) == 1 and not standin.pods


def test_timeout_after_create_reconciles_by_tag(adapter, standin):
    offer = _offer(adapter)
    standin.fail_next("timeout_after_create", op="launch")
    pod = adapter.launch(_req(offer))
    assert pod.tag == "5f0c0000-0000-0000-0000-000000000001"
    assert len(standin.pods) == 1  # found the pod the timed-out call created


def test_launch_is_idempotent_on_the_tag_and_tags_the_pod(adapter, standin):
    offer = _offer(adapter, count=2, region="US-TX-3")
    first = adapter.launch(_req(offer, ports=[{"port": 8888, "protocol": "http"}, {"port": 22, "protocol": "tcp"}],
                                command=["python"], args=["train.py"], env={"A": "1"}))
    again = adapter.launch(_req(offer))
    assert again.external_id == first.external_id and len(standin.pods) == 1
    raw = standin.pods[first.external_id]
    assert raw["env"][TAG_ENV] == "5f0c0000-0000-0000-0000-000000000001" and raw["env"]["A"] == "1"
    assert raw["dataCenterId"] == "US-TX-3" and raw["gpu"] == {"id": "NVIDIA A100-SXM4-80GB", "count": 2}
    assert raw["args"] == "python train.py" and raw["ports"] == ["8888/http", "22/tcp"]
    assert first.price_per_hour == Decimal("3.78")
    assert first.connection["urls"]["8888"].endswith(".proxy.runpod.net")
    assert first.connection["ssh"].startswith("ssh root@")


def test_list_pods_returns_only_our_tagged_pods(adapter, standin):
    offer = _offer(adapter)
    adapter.launch(_req(offer))
    gpu = standin._gpu("NVIDIA L4")
    standin._new_pod(name="someone-elses", image="x", gpu=gpu, count=1, cloud="SECURE", dc="US-GA-1", env={},
                     ports=[], disk=10, args="", spot_bid=None, persistent=None)
    pods = adapter.list_pods()
    assert [p.tag for p in pods] == ["5f0c0000-0000-0000-0000-000000000001"]


def test_spot_exit_is_an_interruption_and_on_demand_exit_a_stop(adapter, standin):
    spot_offer = _offer(adapter, gpu_class="RTX4090", spot=True)
    spot = adapter.launch(_req(spot_offer))
    assert standin.pods[spot.external_id]["_spot"]
    # bid per GPU = pod bid / count, sent through podRentInterruptable
    assert standin.pods[spot.external_id]["_cost"] == float(spot_offer.price_per_hour)
    standin.interrupt(spot.external_id)
    remote = adapter.get(spot.external_id)
    assert remote.state == REMOTE_INTERRUPTED and "reclaimed" in remote.message
    with pytest.raises(StopNotPossible):
        adapter.stop(spot.external_id)
    od = adapter.launch(_req(_offer(adapter), tag="5f0c0000-0000-0000-0000-000000000009"))
    adapter.stop(od.external_id)
    assert adapter.get(od.external_id).state == REMOTE_STOPPED


def test_spot_capacity_error_from_graphql_is_typed(adapter, standin):
    offer = _offer(adapter, gpu_class="RTX4090", spot=True)
    standin.no_capacity.add(offer.region)
    with pytest.raises(CapacityUnavailable):
        adapter.launch(_req(offer))


def test_gpu_utilization_from_v2_runtime_without_graphql(adapter, standin):
    """Issue 13 defect 9: REST v2 serves GPU telemetry (Pod.runtime.gpus[].util, schema
    PodGpuUtilization in runpod-rest-v2.openapi.json), so no GraphQL call is made for it."""
    pod = adapter.launch(_req(_offer(adapter, count=2)))
    standin.set_util(pod.external_id, 12)
    before = len(standin.requests("graphql"))
    samples = adapter.gpu_utilization(pod.external_id)
    assert [(s.gpu_index, s.util_pct) for s in samples] == [(0, 12.0), (1, 12.0)]
    assert len(standin.requests("graphql")) == before
    assert standin.requests("get")[-1].url.path == f"/v2/pods/{pod.external_id}"
    standin.interrupt(pod.external_id)
    assert adapter.gpu_utilization(pod.external_id) is None


def test_400_on_create_fails_over_with_the_detail_kept(adapter, standin):
    """Issue 13 defect 5: runpod-rest-v2.openapi.json, POST /v2/pods, "Which failures are worth
    retrying": a 400 means "try your next candidate" whatever its wording (capacity has no code of
    its own), while a 422 means "fix the request, never retry"."""
    offer = _offer(adapter)
    standin.reject_creates_with = "gpuCount 1 is not allowed in this data center for this GPU type"
    with pytest.raises(ProviderError) as exc:
        adapter.launch(_req(offer))
    assert exc.value.failover and exc.value.status == 400
    assert "not allowed in this data center" in short_error(exc.value)
    assert len(standin.requests("launch")) == 1
    standin.reject_creates_with = None
    assert adapter.launch(_req(offer, tag="5f0c0000-0000-0000-0000-000000000003")).external_id
    create = httpx.Request("POST", "https://api.runpod.io/v2/pods")
    invalid = map_error(httpx.Response(422, request=create), {"detail": "request body is invalid"})
    assert isinstance(invalid, PermanentError) and not invalid.failover
    other = map_error(httpx.Response(400, request=httpx.Request("POST", "https://api.runpod.io/v2/pods/x/action")),
                           {"detail": "bad action"})
    assert isinstance(other, PermanentError) and not other.failover


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now=now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


def test_long_retry_after_is_not_slept_through(adapter, standin, waits):
    standin.fail_next("rate_limit", op="list", retry_after=120)
    with pytest.raises(TransientError) as exc:
        adapter.verify()
    assert exc.value.retry_after == 120.0 and waits == []


@pytest.mark.django_db
def test_full_lifecycle_through_the_services(tenant, project, owner, served_runpod, no_sleep):  # noqa: F811
    served_runpod.standin.boot_seconds = 0.4
    account = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="RunPod (stand-in)",
                                             credentials=STANDIN_CREDENTIALS["runpod"],
                                             settings=account_settings(served_runpod, spot=False))
    capacity_poll(accounts=[account])
    account.refresh_from_db()
    assert account.health == Health.OK and account.offer_count > 0
    assert account.offers.filter(gpu_class="A100-80", country="RO").exists()
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="train", image="img:1",
                                 gpu_class="A100-80", gpu_count=1)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.provider_account_id == account.pk and pod.external_id
    remote = served_runpod.standin.pods[pod.external_id]
    assert remote["env"][TAG_ENV] == str(pod.pk)
    deadline = time.monotonic() + 5
    while pod.state != PodState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.2)
        pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING
    cheapest = account.offers.filter(gpu_class="A100-80", gpu_count=1, spot=False).order_by("price_usd_per_hour").first()
    assert pod.price_usd_per_hour == cheapest.price_usd_per_hour == Decimal("1.190000")  # community A100 PCIe
    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED
    assert remote["_state"] == "TERMINATED"


def test_a_400_on_create_fails_over_and_the_attempt_keeps_the_detail(tenant, project, owner, served_runpod, no_sleep):  # noqa: F811
    """Issue 13 defect 5 through placement: the first candidate's create answers 400 with a detail
    that names no capacity; the launch goes on to the next candidate and the launch path says why."""
    account = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="RunPod (stand-in)",
                                             credentials=STANDIN_CREDENTIALS["runpod"],
                                             settings=account_settings(served_runpod, spot=False))
    capacity_poll(accounts=[account])
    first = account.offers.filter(gpu_class="A100-80", gpu_count=1, spot=False).order_by("price_usd_per_hour").first()
    detail = "This GPU type requires a minimum container disk in this data center"
    served_runpod.standin.reject_creates_with = {first.region: detail}
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="train", image="img:1",
                                 gpu_class="A100-80", gpu_count=1)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.external_id and served_runpod.standin.pods[pod.external_id]["dataCenterId"] != first.region
    assert any(detail in step for step in pod.launch_path), pod.launch_path
    services.pod_terminate(pod_id=str(pod.pk))


def test_served_standin_timeout_after_create_is_reconciled(served_runpod):  # noqa: F811
    """Over real HTTP: the stand-in creates the pod but answers only after the client's
    timeout; the adapter finds the pod by its tag instead of creating a second one."""
    standin = served_runpod.standin
    standin.timeout_seconds = 1.0
    a = RunPodAdapter({"api_key": "test-key"}, account_settings(served_runpod, timeout=0.4, spot=False,
                                                                gpu_counts=[1], account_id="served"),
                      sleep=lambda s: None)
    offer = next(o for o in a.list_offers() if o.gpu_class == "H100")
    standin.fail_next("timeout_after_create", op="launch")
    pod = a.launch(_req(offer, tag="5f0c0000-0000-0000-0000-0000000000aa"))
    assert pod.tag == "5f0c0000-0000-0000-0000-0000000000aa" and len(standin.pods) == 1
    standin.fail_next("timeout", op="get")
    standin.fail_next("timeout", op="get")
    standin.fail_next("timeout", op="get")
    standin.fail_next("timeout", op="get")
    with pytest.raises(TransientError):  # a read that keeps timing out: retried, then transient
        a.get(pod.external_id)


def test_client_retries_connect_timeouts_even_for_creates_and_honours_http_date_retry_after():
    """ApiClient level: a connect timeout never reached the provider, so even a POST is retried;
    a Retry-After given as an HTTP date is converted to seconds."""
    import httpx

    from providers.adapters.http import ApiClient

    calls: list[str] = []
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        if len(calls) == 1:
            raise httpx.ConnectTimeout("no route", request=request)
        if len(calls) == 2:
            return httpx.Response(503, headers={"Retry-After": when})
        return httpx.Response(201, json={"ok": True})

    waits: list[float] = []
    client = ApiClient(provider="t", base_url="http://x", account_key="k", transport=httpx.MockTransport(handler),
                       sleep=waits.append)
    # a 503 on a create is surfaced (the adapter reconciles by tag) -- but not a connect timeout
    with pytest.raises(TransientError) as exc:
        client.request("POST", "/things", json={})
    assert calls == ["POST", "POST"] and len(waits) == 1
    assert 18 <= exc.value.retry_after <= 20
    assert client.request("GET", "/things").status_code == 201


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_private_image_gets_a_registry_credential_created_once_and_named_by_the_pod(adapter, standin):
    from tests.providers.registry_login_helpers import PRIVATE_IMAGE, REGISTRY_AUTH

    offer = _offer(adapter)
    req = _req(offer, registry_auth=dict(REGISTRY_AUTH))
    req.image = PRIVATE_IMAGE
    first = adapter.launch(req)
    (reg,) = standin.registries.values()
    assert (reg["username"], reg["password"]) == ("$oauthtoken", "nvapi-s3cr3t-key") and "nvcr.io" in reg["name"]
    raw = standin.pods[first.external_id]
    assert raw["registry"] == reg["id"] and raw["image"] == PRIVATE_IMAGE
    # the next pod reuses the credential; an interruptible one names it in podRentInterruptable
    spot_offer = _offer(adapter, gpu_class="RTX4090", spot=True)
    req = _req(spot_offer, tag="5f0c0000-0000-0000-0000-0000000000a2", registry_auth=dict(REGISTRY_AUTH))
    req.image = PRIVATE_IMAGE
    spot = adapter.launch(req)
    assert len(standin.registries) == 1 and standin.pods[spot.external_id]["registry"] == reg["id"]
    # a public image needs none
    plain = adapter.launch(_req(offer, tag="5f0c0000-0000-0000-0000-0000000000a3"))
    assert standin.pods[plain.external_id]["registry"] is None
