"""Placement's per-key ordered scans (issue 18 §1): every page is the page of the plain query,
ties included, whatever the shape; the preview's counts are bounded; a pinned country without
the classes costs a page, not every offer of the classes; disabled accounts' offers are left out.

PostgreSQL runs the keyed LATERAL scans; on SQLite ``candidate_page`` is the plain query itself,
so there the page tests check the paging only (reduced meaning) and the plan test is PostgreSQL's.
"""

from __future__ import annotations

import json
import random
from decimal import Decimal

import pytest
from django.db import connection

from providers.models import Offer
from providers.selectors import offers_of_enabled_accounts
from provisioner import clock
from workloads.placement import engine as placement
from workloads.placement.engine import PlacementSpec, candidate_offers, candidate_page, candidate_page_sql, filtered_out

from .lifecycle_helpers import sandbox_account

pytestmark = pytest.mark.django_db

PLACES = [("us-1", "US"), ("us-2", "US"), ("de-1", "DE"), ("fr-1", "FR"), ("ca-1", "CA")]


def _offers(tenant, account, n: int, seed: int = 7) -> None:
    """Offers on few distinct prices (many ties), both kinds, some sold out, two instance types."""
    account.offers.all().delete()
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        region, country = rng.choice(PLACES)
        p = Decimal(rng.randrange(150, 190)) / 100
        gpu = rng.choice(["A100-80", "H100", "L4"])
        rows.append(Offer(provider_account=account, tenant=tenant, kind="sandbox", gpu_class=gpu, gpu_count=1,
                          region=region, country=country, spot=rng.random() < 0.4, price_per_hour=p,
                          price_usd_per_hour=p, available=rng.choice([0, 1, None]), fetched_at=clock.now(),
                          instance_type=rng.choice(["big.1", "small.1"])))
    Offer.objects.bulk_create(rows)


SHAPES = {
    "several classes": PlacementSpec(gpu_classes=("A100-80", "H100"), gpu_count=1, interruption_tolerant=True),
    "classes + countries": PlacementSpec(gpu_classes=("A100-80", "H100", "L4"), gpu_count=1, countries=("DE", "US")),
    "classes + regions + country + ceiling": PlacementSpec(
        gpu_classes=("H100", "L4"), gpu_count=1, regions=("us-1", "de-1", "fr-1"), countries=("US", "FR"),
        interruption_tolerant=True, max_price_per_hour=Decimal("1.80")),
    "custom instance type": PlacementSpec(gpu_classes=("custom",), gpu_count=1, instance_type="big.1",
                                          interruption_tolerant=True),
}


@pytest.mark.postgres
@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_page_is_the_plain_querys_page_ties_included(tenant, shape):
    a = sandbox_account(tenant, "A")
    _offers(tenant, a, 1500)
    spec = SHAPES[shape]
    offers = offers_of_enabled_accounts(tenant, [])
    every = [o.pk for o in candidate_offers(offers, spec)]
    assert len(every) > 130  # more than two pages, on 40 distinct prices: ties across pages
    for page in range(4):
        rows = candidate_page(offers, spec, offset=page * 60, limit=60)
        assert [o.pk for o in rows] == every[page * 60:(page + 1) * 60]
    if spec.instance_type:
        assert {o.instance_type for o in rows} == {"big.1"}


@pytest.mark.postgres
def test_a_pinned_country_without_the_classes_reads_a_page_not_every_offer(tenant):
    """Before: one scan per class filtered by country read every offer of the classes when the
    country had none of them (265–305 ms at 1 M offers)."""
    a = sandbox_account(tenant, "A")
    _offers(tenant, a, 1500)
    Offer.objects.filter(provider_account=a, country="DE", gpu_class__in=["A100-80", "H100"]).delete()
    spec = PlacementSpec(gpu_classes=("A100-80", "H100", "L4"), gpu_count=1, countries=("DE",))
    offers = offers_of_enabled_accounts(tenant, [])
    rows = candidate_page(offers, spec, offset=0, limit=60)
    assert rows and {o.gpu_class for o in rows} == {"L4"} and {o.country for o in rows} == {"DE"}
    if connection.vendor != "postgresql":
        return  # SQLite: the plain query (no plan to check)
    sql, params = candidate_page_sql(offers, spec, offset=0, limit=60)
    with connection.cursor() as cur:
        cur.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
        plan = cur.fetchone()[0]
    plan = plan if isinstance(plan, list) else json.loads(plan)

    def scans(node):
        if "Scan" in node["Node Type"] and node.get("Relation Name") == "providers_offer":
            yield node
        for child in node.get("Plans", []):
            yield from scans(child)

    read = list(scans(plan[0]["Plan"]))
    assert read and all(n["Node Type"] == "Index Scan" for n in read)
    assert sum(n["Actual Rows"] * n["Actual Loops"] + n.get("Rows Removed by Filter", 0) for n in read) <= 3 * 60


def test_the_previews_counts_stop_at_the_bound_and_say_so(tenant, monkeypatch):
    a = sandbox_account(tenant, "A")
    _offers(tenant, a, 400)
    spec = PlacementSpec(gpu_classes=("A100-80", "H100"), gpu_count=1, countries=("DE",),
                         max_price_per_hour=Decimal("1.60"), pin_label="DE")
    offers = offers_of_enabled_accounts(tenant, [])
    exact = {e.reason: e for e in filtered_out(offers, spec)}
    outside = next(e for r, e in exact.items() if r.startswith("outside the DE pin"))
    assert outside.count > 20 and not outside.at_least
    shape = Offer.objects.filter(tenant=tenant, gpu_class__in=["A100-80", "H100"], gpu_count=1)
    in_pin_ok = shape.filter(country="DE").exclude(available=0)
    assert exact["no capacity in DE"].count == shape.filter(country="DE", available=0).count()
    assert exact["spot not allowed: on-demand required (workload does not tolerate interruption)"].count == \
        in_pin_ok.filter(spot=True).count()
    over = in_pin_ok.filter(spot=False, price_usd_per_hour__gt=Decimal("1.60")).order_by("price_usd_per_hour")
    assert any(r == f"over the $1.60/h price ceiling (cheapest ${over[0].price_usd_per_hour:.2f}/h)"
               and e.count == over.count() for r, e in exact.items())
    cheapest_outside = shape.exclude(country="DE").exclude(available=0).filter(spot=False).order_by(
        "price_usd_per_hour")[0].price_usd_per_hour
    assert f"(cheapest there ${cheapest_outside:.2f}/h)" in outside.reason
    monkeypatch.setattr(placement, "COUNT_UPTO", 20)
    bounded = {e.reason: e for e in filtered_out(offers, spec)}
    assert bounded[outside.reason].count == 20 and bounded[outside.reason].at_least
    assert f"{outside.reason} (20+ offers)" == str(bounded[outside.reason])


def test_disabled_accounts_offers_are_left_out_of_placement(tenant):
    on = sandbox_account(tenant, "On", rank=2)
    off = sandbox_account(tenant, "Off", rank=1)
    off.enabled = False
    off.save()
    spec = PlacementSpec(gpu_classes=("H100",), gpu_count=1)
    result = placement.placement_for(tenant_id=tenant.pk, spec=spec, now=clock.now(), limit=50)
    assert result.candidates and {str(c.offer.provider_account_id) for c in result.candidates} == {str(on.pk)}


@pytest.mark.postgres
def test_a_spec_naming_no_class_finds_nothing_and_says_so(tenant):
    sandbox_account(tenant, "A")
    spec = PlacementSpec(gpu_classes=(), gpu_count=1, countries=("DE",), pin_label="DE")
    offers = offers_of_enabled_accounts(tenant, [])
    assert candidate_page(offers, spec, offset=0, limit=60) == []
    assert [str(e) for e in filtered_out(offers, spec)] == ["no connected provider offers 1× "]
