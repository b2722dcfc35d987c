"""Placement against the database: pins, caps through the billing gate, the blocklist, the
preview fragment, and the pod page's launch path."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from providers.models import SandboxInstance
from provisioner import clock
from workloads.models import LaunchBlock, PodState, Workload
from workloads.placement.engine import PlacementSpec, candidate_offers, placement_for

from .lifecycle_helpers import launch, sandbox_account, workload

pytestmark = pytest.mark.django_db


def test_country_pin_without_capacity_is_a_clear_refusal_and_launches_nowhere(tenant, project, owner):
    a = sandbox_account(tenant, "A", no_capacity_regions=["sbx-de-fra"])
    assert a.offers.filter(country="DE").exists()  # DE is offered, just sold out
    w = workload(tenant, project, owner, gpu_class="H100", countries=["DE"])
    pod = launch(w)
    assert pod.state == PodState.FAILED
    assert "in DE" in pod.state_reason and "no capacity in DE" in pod.state_reason
    assert SandboxInstance.objects.count() == 0  # nothing launched elsewhere
    w.refresh_from_db()
    assert w.state == Workload.State.FAILED and "DE" in w.state_reason


def test_eu_preset_expands_and_stays_inside(tenant, project, owner):
    sandbox_account(tenant, "A")
    pod = launch(workload(tenant, project, owner, gpu_class="A10", countries=["EU"]))
    assert pod.state == PodState.RUNNING and pod.country in {"DE", "NL", "FI"}


def test_provider_cap_exceeded_goes_to_the_uncapped_provider(tenant, project, owner):
    capped = sandbox_account(tenant, "Capped", rank=1)
    capped.spending_cap_usd = Decimal("1.00")
    capped.save()
    free = sandbox_account(tenant, "Uncapped", rank=2)
    spec = PlacementSpec(gpu_classes=("H100",), gpu_count=1)
    result = placement_for(tenant_id=tenant.pk, spec=spec, now=clock.now(), project_id=project.pk)
    assert {str(c.offer.provider_account_id) for c in result.candidates} == {str(free.pk)}
    assert any("over provider cap" in str(e) and "Capped" in str(e) for e in result.exclusions)
    pod = launch(workload(tenant, project, owner, gpu_class="H100"))
    assert pod.provider_account == free


def test_cap_exceeded_everywhere_is_refused(tenant, project, owner):
    capped = sandbox_account(tenant, "Capped")
    capped.spending_cap_usd = Decimal("1.00")
    capped.save()
    pod = launch(workload(tenant, project, owner, gpu_class="H100"))
    assert pod.state == PodState.FAILED and "over provider cap" in pod.state_reason
    assert SandboxInstance.objects.count() == 0


def test_blocklisted_region_is_avoided_until_the_block_expires(tenant, project, owner):
    a = sandbox_account(tenant, "A")
    spec = PlacementSpec(gpu_classes=("A100-80",), gpu_count=1)
    best = placement_for(tenant_id=tenant.pk, spec=spec, now=clock.now()).chosen.offer
    LaunchBlock.objects.create(tenant=tenant, provider_account=a, region=best.region, reason="no capacity",
                               until=clock.now() + timedelta(minutes=15))
    result = placement_for(tenant_id=tenant.pk, spec=spec, now=clock.now())
    assert result.chosen.offer.region != best.region
    assert any("blocklisted" in str(e) and best.region in str(e) for e in result.exclusions)
    later = placement_for(tenant_id=tenant.pk, spec=spec, now=clock.now() + timedelta(minutes=16))
    assert later.chosen.offer.region == best.region


def test_database_filter_keeps_only_feasible_offers(tenant):
    a = sandbox_account(tenant, "A")
    spec = PlacementSpec(gpu_classes=("A10",), gpu_count=2, countries=("US",), max_price_per_hour=Decimal("5"))
    rows = list(candidate_offers(a.offers.all(), spec))
    assert rows and all(o.country == "US" and not o.spot and o.available != 0 and o.gpu_count == 2
                        and o.price_usd_per_hour <= 5 for o in rows)
    assert [o.price_usd_per_hour for o in rows] == sorted(o.price_usd_per_hour for o in rows)


def test_preview_fragment_shows_choice_alternatives_and_exclusions(client, tenant, project, owner, viewer, outsider):
    sandbox_account(tenant, "A", no_capacity_regions=["sbx-de-fra"])
    url = reverse("workloads:placement_preview")
    params = {"gpu_class": "A10", "gpu_count": "1", "countries": "DE", "project": project.pk}
    client.force_login(owner)
    resp = client.get(url, params, HTTP_HX_REQUEST="true")
    assert resp.status_code == 200
    body = resp.content.decode()
    assert "Nothing fits" in body and "no capacity in DE" in body and "<html" not in body
    resp = client.get(url, {**params, "countries": "", "interruption_tolerant": "on"}, HTTP_HX_REQUEST="true")
    body = resp.content.decode()
    assert 'id="placement-chosen"' in body and "Why: " in body and "Next alternatives" in body
    assert "/h" in body
    resp = client.get(url, {**params, "countries": "US", "max_price_per_hour": "0.01"})
    assert "price ceiling" in resp.content.decode() and "<html" in resp.content.decode()  # full page
    client.force_login(viewer)
    assert client.get(url, params).status_code == 403
    client.force_login(outsider)  # sees its own organization's (empty) capacity, never ours
    body = client.get(url, params).content.decode()
    assert "Nothing fits" in body and "sbx-" not in body


def test_pod_page_shows_the_launch_path(client, tenant, project, owner, monkeypatch):
    from providers.adapters.base import CapacityUnavailable

    from .lifecycle_helpers import FaultInjector

    a = sandbox_account(tenant, "RunPod EU", rank=1)
    sandbox_account(tenant, "Lambda US", rank=2)
    FaultInjector(monkeypatch).faults[str(a.pk)] = CapacityUnavailable("sold out")
    pod = launch(workload(tenant, project, owner))
    client.force_login(owner)
    body = client.get(reverse("workloads:pod_detail", args=[pod.pk])).content.decode()
    assert 'id="launch-path"' in body and "no capacity" in body and "→" in body and ": launched" in body
    assert 'id="move-link"' in body


@pytest.mark.django_db
def test_custom_instance_type_is_matched_exactly(tenant, project, owner, sandbox):
    from workloads.lifecycle import services

    offer = sandbox.offers.filter(gpu_class="H100", gpu_count=2, spot=False).exclude(available=0).first()
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="custom-type", image="busybox",
                                 gpu_class="custom", gpu_count=1, custom_instance_type=offer.instance_type)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == "running"
    assert pod.offer_snapshot["instance_type"] == offer.instance_type and pod.gpu_count == 2
