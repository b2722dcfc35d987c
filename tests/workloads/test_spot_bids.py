"""Spot bids above the floor (issue 13 §2.7): Vast.ai and RunPod rent spot by bid; a bid at the
floor (Vast's min_bid, RunPod's listed spot price) loses the GPU to the next bid a cent higher."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from providers.adapters.registry import ADAPTERS, provider_info
from providers.models import ProviderAccount
from providers.services import capacity_poll
from tests.standins.fixtures import (  # noqa: F401
    STANDIN_CREDENTIALS,
    account_settings,
    no_sleep,
    served_runpod,
    served_vast,
)
from workloads.lifecycle import services
from workloads.models import PodState
from workloads.placement.bids import spot_bid

from ..factories import ProviderAccountFactory


def test_bid_is_floor_plus_margin_capped_by_the_ceiling_never_under_the_floor():
    assert spot_bid(floor=Decimal("0.18"), margin_pct=20).price == Decimal("0.2160")
    capped = spot_bid(floor=Decimal("0.18"), margin_pct=50, ceiling_usd=Decimal("0.20"))
    assert capped.price == Decimal("0.2000") and capped.capped
    assert "capped by the price ceiling $0.2000" in capped.describe()
    assert spot_bid(floor=Decimal("0.18"), margin_pct=0).price == Decimal("0.18")
    assert spot_bid(floor=Decimal("0.18"), margin_pct=10, ceiling_usd=Decimal("0.10")).price == Decimal("0.18")
    # a ceiling in USD against an offer in EUR (1 EUR = 1.10 USD): 1.10 USD = 1.00 EUR
    eur = spot_bid(floor=Decimal("0.90"), currency="EUR", usd_per_unit=Decimal("1.10"), margin_pct=20,
                   ceiling_usd=Decimal("1.10"))
    assert eur.price == Decimal("1.0000") and eur.price_usd == Decimal("1.100000")


def test_only_bidding_providers_take_bids():
    assert sorted(k for k in ADAPTERS if provider_info(k).spot_bids) == ["runpod", "vast"]


def _vast(tenant, served):
    account = ProviderAccountFactory(tenant=tenant, kind="vast", name="Vast", credentials=STANDIN_CREDENTIALS["vast"],
                                     settings=account_settings(served))
    capacity_poll(accounts=[account])
    return account


def _launch(tenant, project, owner, **fields):
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="batch", image="img:1",
                                 gpu_class="RTX4090", gpu_count=1, interruption_tolerant=True, **fields)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    return services.pod_provision(pod_id=str(pod.pk))


@pytest.mark.django_db
def test_vast_bid_is_the_floor_plus_the_workload_margin_and_the_pod_is_priced_at_it(  # noqa: F811
        tenant, project, owner, served_vast, no_sleep):  # noqa: F811
    _vast(tenant, served_vast)
    pod = _launch(tenant, project, owner, spot_bid_margin_pct=20)
    assert pod.spot and pod.offer_snapshot["price_per_hour"] == "0.180000"  # Texas min_bid: the floor
    inst = served_vast.standin.instances[int(pod.external_id)]
    assert inst["_bid"] and inst["_price"] == pytest.approx(0.216)  # sent as PUT /asks/{id} "price"
    assert pod.price_per_hour == Decimal("0.216") and pod.price_usd_per_hour == Decimal("0.216")
    assert pod.offer_snapshot["bid_per_hour"] == "0.2160"
    assert pod.events.filter(message__contains="bid $0.2160/h = floor $0.1800 + 20 %").exists()


@pytest.mark.django_db
def test_vast_bid_never_exceeds_the_workload_price_ceiling_and_defaults_to_the_platform_margin(
        tenant, project, owner, served_vast, no_sleep, settings):  # noqa: F811
    _vast(tenant, served_vast)
    capped = _launch(tenant, project, owner, spot_bid_margin_pct=50, max_price_per_hour=Decimal("0.20"))
    assert served_vast.standin.instances[int(capped.external_id)]["_price"] == pytest.approx(0.20)
    settings.SPOT_BID_MARGIN_PCT = 10
    default = _launch(tenant, project, owner)  # no margin on the workload: the platform's
    floor = float(default.offer_snapshot["price_per_hour"])  # the next machine (the first is rented)
    assert served_vast.standin.instances[int(default.external_id)]["_price"] == pytest.approx(floor * 1.10)


@pytest.mark.django_db
def test_runpod_bid_per_gpu_is_above_the_listed_spot_price(tenant, project, owner, served_runpod, no_sleep):  # noqa: F811
    account = ProviderAccountFactory(tenant=tenant, kind="runpod", name="RunPod", credentials=STANDIN_CREDENTIALS["runpod"],
                                     settings=account_settings(served_runpod))
    capacity_poll(accounts=[account])
    served_runpod.standin.boot_seconds = 0
    pod = _launch(tenant, project, owner, spot_bid_margin_pct=25)
    assert pod.spot and pod.state in (PodState.PROVISIONING, PodState.RUNNING)
    floor = Decimal(pod.offer_snapshot["price_per_hour"])
    raw = served_runpod.standin.pods[pod.external_id]
    assert raw["_spot"] and Decimal(str(raw["_cost"])) == (floor * Decimal("1.25")).quantize(Decimal("0.0001"))
    assert pod.price_per_hour == (floor * Decimal("1.25")).quantize(Decimal("0.0001"))


@pytest.mark.django_db
def test_bid_margin_in_the_form_the_workload_and_the_placement_preview(  # noqa: F811
        tenant, project, developer, client, served_vast, no_sleep):  # noqa: F811
    from workloads.models import Workload
    from workloads.recipes.services import builtin_catalog_install

    builtin_catalog_install()
    _vast(tenant, served_vast)
    client.force_login(developer)
    params = {"gpu_class": "RTX4090", "gpu_count": "1", "interruption_tolerant": "on", "spot_bid_margin_pct": "20"}
    frag = client.get(reverse("workloads:placement_preview"), params).content.decode()
    assert 'id="placement-bid"' in frag and "bid $0.2160/h = floor $0.1800 + 20 %" in frag
    data = {"name": "batch", "project": str(project.pk), "image": "img:1", "gpu_class": "RTX4090", "gpu_count": "1",
            "lifecycle": "job", "replicas": "1", "overlap_policy": "skip", "networking": "public",
            "interruption_tolerant": "on", "spot_bid_margin_pct": "500"}
    page = client.post(reverse("workloads:launch"), data)
    assert page.status_code == 200 and "less than or equal to 300" in page.content.decode()
    assert not Workload.objects.filter(name="batch").exists()
    client.post(reverse("workloads:launch"), {**data, "spot_bid_margin_pct": "15"})
    assert Workload.objects.get(name="batch").spot_bid_margin_pct == 15


@pytest.mark.django_db
def test_account_margin_applies_when_the_workload_sets_none_and_is_edited_on_the_account_page(  # noqa: F811
        tenant, project, owner, owner_client, sandbox, served_vast, no_sleep):  # noqa: F811
    account = _vast(tenant, served_vast)
    url = reverse("providers:edit", args=[account.pk])
    assert "Spot bid above the floor" in owner_client.get(url).content.decode()
    assert "Spot bid above the floor" not in owner_client.get(reverse("providers:edit", args=[sandbox.pk])).content.decode()
    ProviderAccount.objects.filter(pk=sandbox.pk).update(enabled=False)  # launches below go to Vast
    form = {"name": account.name, "spending_cap_period": "month", "preference_rank": "100", "enabled": "on",
            "default_gpu_class": "", "base_url": account.settings["base_url"]}
    body = owner_client.post(url, {**form, "spot_bid_margin_pct": "-5"}).content.decode()
    assert "greater than or equal to 0" in body
    assert owner_client.post(url, {**form, "spot_bid_margin_pct": "30"}).status_code == 302
    account.refresh_from_db()
    assert account.spot_bid_margin_pct == 30
    by_account = _launch(tenant, project, owner)
    floor = Decimal(by_account.offer_snapshot["price_per_hour"])
    assert by_account.price_per_hour == (floor * Decimal("1.30")).quantize(Decimal("0.0001"))
    by_workload = _launch(tenant, project, owner, spot_bid_margin_pct=5)  # the workload's own margin wins
    floor = Decimal(by_workload.offer_snapshot["price_per_hour"])
    assert by_workload.price_per_hour == (floor * Decimal("1.05")).quantize(Decimal("0.0001"))


@pytest.mark.django_db
def test_cost_estimate_of_a_spot_launch_is_at_the_bid(tenant, project, developer, client, served_vast,  # noqa: F811
                                                      no_sleep):  # noqa: F811
    from workloads.recipes.services import builtin_catalog_install

    builtin_catalog_install()
    _vast(tenant, served_vast)
    client.force_login(developer)
    frag = client.get(reverse("workloads:launch_preview"), {
        "name": "batch", "project": str(project.pk), "image": "img:1", "gpu_class": "RTX4090", "gpu_count": "1",
        "lifecycle": "service", "replicas": "2", "overlap_policy": "skip", "networking": "public",
        "interruption_tolerant": "on", "spot_bid_margin_pct": "50"}).content.decode()
    # floor $0.18 + 50 % = $0.27 per pod, two replicas
    assert 'id="estimate-bid"' in frag and "bid $0.2700/h = floor $0.1800 + 50 %" in frag
    assert "$0.54" in frag and "2 replicas × $0.27/h" in frag
