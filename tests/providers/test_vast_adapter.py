"""Vast.ai adapter against the Vast stand-in: offers, bids, outbid = interruption,
typed errors, idempotent launch by label, utilization, and the lifecycle."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from providers.adapters.base import (
    REMOTE_EXITED,
    REMOTE_INTERRUPTED,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    QuotaExceeded,
    TransientError,
)
from providers.adapters.vast import LABEL_PREFIX, VastAdapter, country_of
from providers.models import ProviderAccount
from providers.services import capacity_poll
from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings, no_sleep, served_vast  # noqa: F401
from tests.standins.vast import VastStandIn
from workloads.lifecycle import services
from workloads.models import PodState

TAG = "7b000000-0000-0000-0000-000000000001"


@pytest.fixture
def standin():
    return VastStandIn()


@pytest.fixture
def waits():
    return []


@pytest.fixture
def adapter(standin, waits):
    return VastAdapter({"api_key": "test-key"}, {"account_id": "unit-vast"}, transport=standin.transport(), sleep=waits.append)


def _req(offer, tag=TAG, **kw):
    kw.setdefault("bid_price_per_hour", offer.price_per_hour if offer.spot else None)
    return LaunchRequest(tag=tag, name="train", image="img:1", gpu_class=offer.gpu_class, gpu_count=offer.gpu_count,
                         region=offer.region, instance_type=offer.instance_type, spot=offer.spot, **kw)


def _offer(adapter, gpu_class="RTX4090", spot=False, country="US", count=1):
    return next(o for o in adapter.list_offers() if o.gpu_class == gpu_class and o.spot == spot
                and o.country == country and o.gpu_count == count)


def test_info_and_geolocation():
    info = VastAdapter.info
    assert info.supports_spot and info.can_stop and [f.name for f in info.credential_fields] == ["api_key"]
    assert VastAdapter({}, {}).base_url == "https://console.vast.ai"
    assert country_of("Texas, US") == "US" and country_of("SE") == "SE" and country_of("") == ""


def test_offers_normalize_and_keep_the_cheapest_per_class_country(adapter, standin):
    offers = adapter.list_offers()
    a100 = next(o for o in offers if o.gpu_class == "A100-80" and o.country == "DE" and not o.spot)
    assert a100.price_per_hour == Decimal("1.120000") and a100.instance_type == "4100202" and a100.gpu_memory_gb == 80
    pcie = next(o for o in offers if o.country == "NO")
    assert pcie.gpu_class == "A100-40"  # 40 GB from gpu_ram
    h100x8 = next(o for o in offers if o.gpu_class == "H100" and o.gpu_count == 8 and not o.spot)
    assert h100x8.price_per_hour == Decimal("17.600000")  # dph_total is already per machine (pod)
    spot = next(o for o in offers if o.gpu_class == "H100" and o.gpu_count == 8 and o.spot)
    assert spot.price_per_hour == Decimal("9.500000")  # type=bid quotes the minimum bid
    assert not [o for o in offers if "1080" in o.extra.get("geolocation", "") or o.country == "PL"]  # unknown GPU
    body = json.loads(standin.requests("offers")[0].content)
    assert body["num_gpus"] == {"in": [1, 2, 4, 8]} and body["type"] == "on-demand"  # the official SDK's spelling
    assert body["allocated_storage"] == 50.0  # offers priced for the disk a launch gets


def test_errors_are_typed(adapter, standin, waits):
    offer = _offer(adapter)
    with pytest.raises(InvalidCredentials):
        VastAdapter({"api_key": "bad"}, {}, transport=standin.transport()).verify()
    standin.take_offer(offer.instance_type)
    with pytest.raises(CapacityUnavailable):  # 404: someone else rented the machine
        adapter.launch(_req(offer))
    other = _offer(adapter, country="CA")
    standin.fail_next("capacity", op="launch")
    with pytest.raises(CapacityUnavailable):  # 410 with cancel_unavail
        adapter.launch(_req(other))
    standin.fail_next("quota", op="launch")
    with pytest.raises(QuotaExceeded):
        adapter.launch(_req(other))
    low = _offer(adapter, gpu_class="H100", spot=True, country="FI")
    with pytest.raises(CapacityUnavailable):  # invalid_price: bid below the minimum
        adapter.launch(_req(low, bid_price_per_hour=Decimal("0.01")))
    with pytest.raises(NotFound):
        adapter.get("99999999")


def test_429_without_retry_after_backs_off_exponentially(adapter, standin, waits):
    standin.fail_next("rate_limit", op="list", times=2)
    adapter.verify()
    assert len(waits) == 2 and 0.25 <= waits[0] <= 0.5 <= waits[1] <= 1.0  # no Retry-After: jittered 2^n backoff
    standin.fail_next("rate_limit", op="list", times=10)
    with pytest.raises(TransientError):
        adapter.verify()


def test_launch_by_label_is_idempotent_and_sends_the_bid(adapter, standin):
    offer = _offer(adapter, gpu_class="A100-80", spot=True)
    pod = adapter.launch(_req(offer, env={"A": "1 2"}, ports=[{"port": 8000, "protocol": "http"}], command=["python"],
                              args=["serve.py"]))
    assert adapter.launch(_req(offer)).external_id == pod.external_id and len(standin.instances) == 1
    create = json.loads(standin.requests("launch")[0].content)
    assert create["label"] == LABEL_PREFIX + TAG and create["price"] == 0.55
    assert create["env"] == {"A": "1 2", "-p 8000:8000": "1"} and create["runtype"] == "args"  # the SDK's object form
    assert create["args"] == ["python", "serve.py"] and create["cancel_unavail"] is True
    assert pod.state == REMOTE_RUNNING and pod.tag == TAG and pod.connection["ssh"].startswith("ssh -p ")


def test_outbid_pause_is_an_interruption(adapter, standin):
    offer = _offer(adapter, gpu_class="A100-80", spot=True)
    pod = adapter.launch(_req(offer))
    standin.outbid(pod.external_id)
    remote = adapter.get(pod.external_id)
    assert remote.state == REMOTE_INTERRUPTED and "outbid" in remote.message
    standin.resume(pod.external_id)  # Vast resumes it on its own when the bid wins again
    assert adapter.get(pod.external_id).state == REMOTE_RUNNING


def test_on_demand_exit_and_stop(adapter, standin):
    pod = adapter.launch(_req(_offer(adapter)))
    adapter.stop(pod.external_id)
    assert adapter.get(pod.external_id).state == REMOTE_STOPPED
    other = adapter.launch(_req(_offer(adapter, country="CA"), tag="7b000000-0000-0000-0000-000000000002"))
    standin.exit(other.external_id)
    assert adapter.get(other.external_id).state == REMOTE_EXITED


def test_list_pods_pages_and_keeps_only_ours(adapter, standin):
    for i in range(30):  # more than one keyset page of 25
        standin.instances[1000 + i] = {**_raw(standin), "_label": f"{LABEL_PREFIX}tag-{i}" if i % 2 else "someone"}
    pods = adapter.list_pods()
    assert len(pods) == 15 and all(p.tag.startswith("tag-") for p in pods)
    assert len(standin.requests("list")) == 2


def _raw(standin):
    return {"_ask": 4100101, "_created": 0.0, "_state": "running", "_intended": "running", "_bid": False, "_price": 0.35,
            "_util": 50.0, "_label": "", "_image": "x", "_env": "", "_msg": "", "_port": 30001}


def test_gpu_utilization_is_a_percent(adapter, standin):
    """Issue 13 defect 3: Vast's ``gpu_util`` is already a percent -- the official CLI (vastai 1.9.1,
    cli/display.py) prints it under "Util. %" with no scaling. 0.5 means an idle 0.5 %, not 50 %."""
    pod = adapter.launch(_req(_offer(adapter, count=2, country="SE")))
    standin.set_util(pod.external_id, 0.5)
    samples = adapter.gpu_utilization(pod.external_id)
    assert [(s.gpu_index, s.util_pct) for s in samples] == [(0, 0.5), (1, 0.5)]
    standin.set_util(pod.external_id, 7.0)
    assert [s.util_pct for s in adapter.gpu_utilization(pod.external_id)] == [7.0, 7.0]
    standin.set_util(pod.external_id, 100.0)
    assert [s.util_pct for s in adapter.gpu_utilization(pod.external_id)] == [100.0, 100.0]
    standin.outbid(pod.external_id)
    assert adapter.gpu_utilization(pod.external_id) is None


def test_terminate_is_idempotent(adapter, standin):
    pod = adapter.launch(_req(_offer(adapter)))
    adapter.terminate(pod.external_id)
    adapter.terminate(pod.external_id)
    with pytest.raises(NotFound):
        adapter.get(pod.external_id)
    assert not standin.machines[4100101]["rented"]


@pytest.mark.django_db
def test_full_lifecycle_through_the_services(tenant, project, owner, served_vast, no_sleep):  # noqa: F811
    account = ProviderAccount.objects.create(tenant=tenant, kind="vast", name="Vast (stand-in)",
                                             credentials=STANDIN_CREDENTIALS["vast"], settings=account_settings(served_vast))
    capacity_poll(accounts=[account])
    account.refresh_from_db()
    assert account.offers.filter(spot=True).exists() and account.offers.filter(spot=False).exists()
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="train", image="img:1",
                                 gpu_class="RTX4090", gpu_count=1)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.provider_account_id == account.pk
    inst = served_vast.standin.instances[int(pod.external_id)]
    assert inst["_label"] == LABEL_PREFIX + str(pod.pk) and not inst["_bid"]
    assert pod.price_usd_per_hour == Decimal("0.350000")
    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED and int(pod.external_id) not in served_vast.standin.instances


# --- issue 13 §2.1: a private image logs in to its own registry ------------------------------------


def test_image_login_names_the_image_registry_host(adapter, standin):
    from tests.providers.registry_login_helpers import PRIVATE_IMAGE, REGISTRY_AUTH

    offer = _offer(adapter, gpu_class="A100-80", spot=False)
    req = _req(offer, registry_auth=dict(REGISTRY_AUTH))
    req.image = PRIVATE_IMAGE
    pod = adapter.launch(req)
    # the official CLI's --login form: "-u bob -p 9d8df!fd89ufZ docker.io", the host last
    login = standin.instances[int(pod.external_id)]["_image_login"]
    assert login == "-u $oauthtoken -p nvapi-s3cr3t-key nvcr.io"
