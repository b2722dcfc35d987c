"""A launch's placement reads pages sized to what it asks (issue 18 §1): the head of the first page
when that settles the candidates, the rest of the page (and further pages) when it does not, and
the candidates are always those the whole first page (or the whole pages) give."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from providers.models import Offer
from providers.selectors import offers_of_enabled_accounts
from provisioner import clock
from tests.factories import SandboxAccountFactory
from workloads.models import LaunchBlock
from workloads.placement import engine as placement
from workloads.placement.engine import PlacementSpec, candidate_offers, placement_for, policy_for, rank_offers

pytestmark = pytest.mark.django_db

SPEC = PlacementSpec(gpu_classes=("H100",), gpu_count=1)


def _offers(tenant, account, prices: list[str], region: str = "us-1") -> None:
    Offer.objects.bulk_create(
        Offer(provider_account=account, tenant=tenant, kind="sandbox", gpu_class="H100", gpu_count=1, region=region,
              country="US", spot=False, price_per_hour=Decimal(p), price_usd_per_hour=Decimal(p), available=1,
              fetched_at=clock.now()) for p in prices)


@pytest.fixture
def reads(monkeypatch) -> list[tuple[int, int, int]]:
    """(offset, limit, rows) of every candidate read ``place`` makes."""
    seen: list[tuple[int, int, int]] = []
    real = placement.candidate_pages

    def spy(offers_qs, spec):
        fetch = real(offers_qs, spec)

        def page(offset: int, limit: int) -> list:
            rows = fetch(offset, limit)
            seen.append((offset, limit, len(rows)))
            return rows

        return page

    monkeypatch.setattr(placement, "candidate_pages", spy)
    return seen


def _whole_first_page(tenant, limit: int) -> list:
    """The candidates ranked from the whole first page (what every launch read before)."""
    policy = policy_for(tenant_id=tenant.pk, now=clock.now())
    rows = list(candidate_offers(offers_of_enabled_accounts(tenant, policy.disabled), SPEC)[:placement.PAGE])
    for o in rows:
        o.account_name = policy.names[str(o.provider_account_id)]
    return [c.offer.pk for c in rank_offers(rows, SPEC, policy, limit=limit).candidates]


def _picked(tenant, limit: int, explain: bool = False) -> list:
    return [c.offer.pk for c in placement_for(tenant_id=tenant.pk, spec=SPEC, now=clock.now(), limit=limit,
                                              explain=explain).candidates]


def test_a_launch_reads_a_head_of_the_cheapest_rows_when_they_settle_it(tenant, reads):
    a = SandboxAccountFactory(tenant=tenant, name="A")
    _offers(tenant, a, [f"{1 + i / 50:.4f}" for i in range(200)])  # one offer per 2 cents: nothing ties
    assert _picked(tenant, 8) == _whole_first_page(tenant, 8)
    assert reads == [(0, 24, 24)]  # not the 60 rows of a whole page
    reads.clear()
    _picked(tenant, 4, explain=True)
    assert reads == [(0, 60, 60)]  # the preview: its exclusions count a whole page


def test_a_tie_at_the_cent_past_the_head_reads_the_rest_of_the_page(tenant, reads):
    """The cheapest 40 rows all cost $1.20/h to the cent; the 41st, at the preferred provider, wins
    the tie: the head's candidates were not final, so the rest of the page is read."""
    a = SandboxAccountFactory(tenant=tenant, name="A", preference_rank=2)
    b = SandboxAccountFactory(tenant=tenant, name="B", preference_rank=1)
    _offers(tenant, a, [f"1.20{i:02d}" for i in range(40)] + ["1.3000"] * 30)
    _offers(tenant, b, ["1.2045"])
    picked = _picked(tenant, 8)
    assert Offer.objects.get(pk=picked[0]).provider_account_id == b.pk
    assert picked == _whole_first_page(tenant, 8)
    assert reads == [(0, 24, 24), (24, 36, 36)]


def test_rows_the_python_rules_exclude_make_it_read_further_pages_as_before(tenant, reads):
    a = SandboxAccountFactory(tenant=tenant, name="A")
    b = SandboxAccountFactory(tenant=tenant, name="B")
    _offers(tenant, a, [f"{1 + i / 100:.4f}" for i in range(100)], region="blocked")  # the 100 cheapest
    _offers(tenant, b, [f"{3 + i / 100:.4f}" for i in range(50)])
    LaunchBlock.objects.create(tenant=tenant, provider_account=a, region="blocked", reason="no capacity",
                               until=clock.now() + timedelta(hours=1))
    picked = _picked(tenant, 8)
    assert {Offer.objects.get(pk=pk).provider_account_id for pk in picked} == {b.pk} and len(picked) == 8
    assert reads == [(0, 24, 24), (24, 36, 36), (60, 60, 60)]  # the whole pages from the first on, as before
