"""Offers are priced in USD at their own organization's invoice rate: in the capacity poll (from
the next poll after a change) and in the connection wizard's live preview."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from providers import wizard
from providers.adapters import registry
from providers.adapters.base import OfferData, ProviderInfo
from providers.adapters.sandbox import SandboxAdapter
from providers.models import InvoiceRate, Offer, ProviderAccount
from providers.services import PollResult, capacity_poll, capacity_store_many, invoice_rate_clear, invoice_rate_set

from ..factories import ProviderAccountFactory

PLATFORM_EUR = Decimal("1.10")
OWN_EUR = Decimal("1.25")


class EuroAdapter(SandboxAdapter):
    """A provider that invoices in EUR (like Hetzner): one shape at EUR 2.00 an hour."""

    info = ProviderInfo(kind="test_euro", label="Euro cloud", description="tests", supports_spot=False)

    def list_offers(self) -> list[OfferData]:
        return [OfferData(gpu_class="L4", gpu_count=2, region="eu-central", country="DE",
                          price_per_hour=Decimal("2.00"), currency="EUR", spot=False, available=3)]


@pytest.fixture(autouse=True)
def euro_kind(monkeypatch):
    monkeypatch.setitem(registry.ADAPTERS, "test_euro", f"{__name__}:EuroAdapter")


@pytest.fixture
def platform_eur(db):
    return InvoiceRate.objects.create(currency="EUR", usd_per_unit=PLATFORM_EUR)


def euro_account(tenant, name: str = "Euro cloud") -> ProviderAccount:
    return ProviderAccountFactory(tenant=tenant, kind="test_euro", name=name)


def usd_prices(account: ProviderAccount) -> set[Decimal]:
    return set(Offer.objects.filter(provider_account=account).values_list("price_usd_per_hour", flat=True))


@pytest.mark.django_db
def test_offers_are_repriced_with_the_tenants_rate_at_the_next_poll(tenant, other_tenant, platform_eur):
    ours, theirs = euro_account(tenant), euro_account(other_tenant)
    capacity_poll(accounts=[ours, theirs])
    assert usd_prices(ours) == usd_prices(theirs) == {Decimal("2.200000")}

    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    assert usd_prices(ours) == {Decimal("2.200000")}  # a snapshot: repriced by the next poll, not in place
    capacity_poll(accounts=[ours, theirs])
    assert usd_prices(ours) == {Decimal("2.500000")}
    assert usd_prices(theirs) == {Decimal("2.200000")}  # another organization keeps the platform rate

    invoice_rate_clear(tenant=tenant, currency="EUR")
    capacity_poll(accounts=[ours])
    assert usd_prices(ours) == {Decimal("2.200000")}


@pytest.mark.django_db
def test_storing_a_batch_reads_every_tenants_rates_in_one_query(tenant, other_tenant, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    accounts = [euro_account(tenant, "a1"), euro_account(tenant, "a2"), euro_account(other_tenant, "b1")]
    results = [(a, PollResult(str(a.pk), EuroAdapter({}, {}).list_offers())) for a in accounts]
    with CaptureQueriesContext(connection) as ctx:
        capacity_store_many(results=results)
    assert sum("providers_invoicerate" in q["sql"] for q in ctx.captured_queries) == 1
    assert [usd_prices(a) for a in accounts] == [{Decimal("2.500000")}, {Decimal("2.500000")}, {Decimal("2.200000")}]


@pytest.mark.django_db
def test_wizard_preview_prices_live_offers_at_the_tenants_rate(tenant, other_tenant, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    for t, rate in ((tenant, OWN_EUR), (other_tenant, PLATFORM_EUR)):
        state = wizard.WizardState(id="w", tenant_id=str(t.pk), created=time.time(), kind="test_euro")
        rows, error = wizard.review_offers(state)
        assert not error and [r.price_usd_per_hour for r in rows] == [Decimal("2.00") * rate]
        per_gpu = (Decimal("2.00") * rate / 2).quantize(Decimal("0.0001"))
        assert state.offer_summary["classes"]["L4"]["min_usd_gpu_hour"] == str(per_gpu)
