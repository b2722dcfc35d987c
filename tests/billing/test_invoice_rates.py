"""Per-organization invoice rates: precedence, the ledger and live cost of each tenant at its own
rate, history kept, the audited service, and the admin's platform rates. The page is in
test_invoice_rates_page.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing import dashboard
from billing.gate import live_cost_usd
from billing.metering import ledger_correct, meter_all, pod_meter
from billing.models import LedgerEntry
from providers.models import InvoiceRate
from providers.selectors import (
    DEFAULT_RATES,
    RateSource,
    effective_invoice_rates,
    usd_rates_by_tenant,
    usd_rates_for_tenant,
)
from providers.services import InvoiceRateInvalid, invoice_rate_clear, invoice_rate_set
from provisioner import clock
from tenants.models import AuditEvent
from workloads.models import PodState

from ..factories import OfferFactory
from .helpers import account, make_pod, to

H = timedelta(hours=1)
T0 = datetime(2026, 3, 10, 10, 0, tzinfo=UTC)
PLATFORM_EUR = Decimal("1.10")
OWN_EUR = Decimal("1.25")


@pytest.fixture
def platform_eur(db):
    return InvoiceRate.objects.create(currency="EUR", usd_per_unit=PLATFORM_EUR)


def eur_pod(tenant, owner, *, name: str = "job", price: str = "2.00"):
    """A pod billed per second in EUR at ``price`` per hour, not started yet."""
    acct = account(tenant, "sandbox", increment_seconds=1, currency="EUR")
    return make_pod(tenant, tenant.projects.get(name="Default"), owner, acct, price=price, currency="EUR", name=name)


def start(pod, at: datetime = T0) -> None:
    with clock.frozen(at):
        to(pod, PodState.RUNNING)


def rate_queries(ctx: CaptureQueriesContext) -> int:
    return sum("providers_invoicerate" in q["sql"] for q in ctx.captured_queries)


# --- which rate applies ------------------------------------------------------------------------


@pytest.mark.django_db
def test_effective_rate_precedence_override_then_platform_then_built_in(tenant, other_tenant):
    assert usd_rates_for_tenant(tenant.pk)["EUR"] == DEFAULT_RATES["EUR"]
    assert [(r.currency, r.source) for r in effective_invoice_rates(tenant)] == [
        ("EUR", RateSource.BUILT_IN), ("GBP", RateSource.BUILT_IN)]

    InvoiceRate.objects.create(currency="EUR", usd_per_unit=PLATFORM_EUR)
    InvoiceRate.objects.create(currency="USD", usd_per_unit=Decimal("2"))  # an operator's slip: USD stays 1
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    invoice_rate_set(tenant=tenant, currency="CHF", usd_per_unit=Decimal("1.13"))

    ours, theirs = usd_rates_for_tenant(tenant.pk), usd_rates_for_tenant(other_tenant.pk)
    assert ours["EUR"] == OWN_EUR and theirs["EUR"] == PLATFORM_EUR
    assert ours["CHF"] == Decimal("1.13") and "CHF" not in theirs
    assert ours["GBP"] == theirs["GBP"] == DEFAULT_RATES["GBP"]
    assert ours["USD"] == theirs["USD"] == Decimal(1)
    assert usd_rates_for_tenant(str(tenant.pk))["EUR"] == OWN_EUR  # a string id (wizard state) matches too

    rows = {r.currency: r for r in effective_invoice_rates(tenant)}
    assert set(rows) == {"CHF", "EUR", "GBP"}  # USD is not a row: it is always 1
    assert (rows["EUR"].usd_per_unit, rows["EUR"].source, rows["EUR"].fallback, rows["EUR"].fallback_source) == (
        OWN_EUR, RateSource.ORGANIZATION, PLATFORM_EUR, RateSource.PLATFORM)
    assert rows["CHF"].source == RateSource.ORGANIZATION and rows["CHF"].fallback is None
    assert rows["GBP"].source == RateSource.BUILT_IN and rows["GBP"].override is None
    assert {r.source for r in effective_invoice_rates(other_tenant)} == {RateSource.PLATFORM, RateSource.BUILT_IN}


@pytest.mark.django_db
def test_rates_of_many_tenants_are_read_in_one_query(tenant, other_tenant, platform_eur, django_assert_num_queries):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    with django_assert_num_queries(1):
        rates = usd_rates_by_tenant([tenant.pk, other_tenant.pk])
    assert rates[tenant.pk]["EUR"] == OWN_EUR and rates[other_tenant.pk]["EUR"] == PLATFORM_EUR


# --- the ledger and live cost ------------------------------------------------------------------


@pytest.mark.django_db
def test_override_prices_new_ledger_lines_of_that_tenant_only(tenant, other_tenant, owner, outsider, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    ours, theirs = eur_pod(tenant, owner), eur_pod(other_tenant, outsider)
    start(ours), start(theirs)
    with clock.frozen(T0 + H):
        meter_all()
    assert {(e.usd_rate, e.amount_usd) for e in LedgerEntry.objects.filter(pod=ours)} == {(OWN_EUR, Decimal("2.500000"))}
    assert {(e.usd_rate, e.amount_usd) for e in LedgerEntry.objects.filter(pod=theirs)} == {
        (PLATFORM_EUR, Decimal("2.200000"))}
    ours.refresh_from_db()
    assert ours.cost_usd == Decimal("2.50")


@pytest.mark.django_db
def test_meter_all_reads_the_rates_once_per_run_not_per_pod(tenant, other_tenant, owner, outsider, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    pods = [eur_pod(tenant, owner, name=f"a{i}") for i in range(3)] + [eur_pod(other_tenant, outsider, name=f"b{i}")
                                                                       for i in range(3)]
    usd = make_pod(tenant, tenant.projects.get(name="Default"), owner, account(tenant, increment_seconds=1),
                   price="1.00", name="usd")
    for pod in [*pods, usd]:
        start(pod)
    with clock.frozen(T0 + H), CaptureQueriesContext(connection) as ctx:
        assert meter_all() == 7
    assert rate_queries(ctx) == 1
    rates = {e.pod.tenant_id: e.usd_rate for e in LedgerEntry.objects.filter(currency="EUR").select_related("pod")}
    assert rates == {tenant.pk: OWN_EUR, other_tenant.pk: PLATFORM_EUR}


@pytest.mark.django_db
def test_meter_all_reads_no_rate_when_every_pod_bills_in_usd(tenant, owner):
    pod = make_pod(tenant, tenant.projects.get(name="Default"), owner, account(tenant, increment_seconds=1), price="1.00")
    start(pod)
    with clock.frozen(T0 + H), CaptureQueriesContext(connection) as ctx:
        assert meter_all() == 1
    assert rate_queries(ctx) == 0


@pytest.mark.django_db
def test_history_keeps_its_rate_when_the_rate_changes_or_is_cleared(tenant, owner, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    pod = eur_pod(tenant, owner)
    start(pod)
    with clock.frozen(T0 + H):
        pod_meter(pod_id=pod.pk)
    booked = list(LedgerEntry.objects.filter(pod=pod).values("pk", "usd_rate", "amount", "amount_usd"))
    assert [(b["usd_rate"], b["amount_usd"]) for b in booked] == [(OWN_EUR, Decimal("2.500000"))]

    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=Decimal("1.50"))
    with clock.frozen(T0 + 2 * H):
        pod_meter(pod_id=pod.pk)
    invoice_rate_clear(tenant=tenant, currency="EUR")  # back to the platform's rate
    with clock.frozen(T0 + 3 * H):
        pod_meter(pod_id=pod.pk)

    entries = list(LedgerEntry.objects.filter(pod=pod).order_by("bucket_start").values("pk", "usd_rate", "amount",
                                                                                         "amount_usd"))
    assert entries[0] == booked[0]  # the hour booked before the changes, exactly as it was
    assert [(e["usd_rate"], e["amount_usd"]) for e in entries[1:]] == [
        (Decimal("1.50"), Decimal("3.000000")), (PLATFORM_EUR, Decimal("2.200000"))]
    pod.refresh_from_db()
    assert pod.cost_usd == Decimal("7.70")


@pytest.mark.django_db
def test_a_bucket_keeps_the_rate_it_was_opened_with(tenant, owner, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    pod = eur_pod(tenant, owner)
    start(pod)
    with clock.frozen(T0 + H / 2):
        pod_meter(pod_id=pod.pk)
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=Decimal("2.00"))
    with clock.frozen(T0 + H):
        pod_meter(pod_id=pod.pk)
    (entry,) = LedgerEntry.objects.filter(pod=pod)
    assert (entry.usd_rate, entry.amount_usd) == (OWN_EUR, Decimal("2.500000"))


@pytest.mark.django_db
def test_corrections_use_the_tenants_rate(tenant, other_tenant, owner, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    pod = eur_pod(tenant, owner)
    ours = ledger_correct(pod=pod, at=T0, amount=Decimal("-4"), currency="EUR", note="credit")
    theirs = ledger_correct(tenant_id=other_tenant.pk, project_id=other_tenant.projects.get(name="Default").pk,
                            at=T0, amount=Decimal("-4"), currency="EUR", note="credit")
    assert (ours.usd_rate, ours.amount_usd) == (OWN_EUR, Decimal("-5.000000"))
    assert (theirs.usd_rate, theirs.amount_usd) == (PLATFORM_EUR, Decimal("-4.400000"))


@pytest.mark.django_db
def test_live_cost_and_the_dashboards_accrual_use_the_tenants_rate(tenant, other_tenant, owner, outsider, platform_eur):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    ours, theirs = eur_pod(tenant, owner), eur_pod(other_tenant, outsider)
    start(ours), start(theirs)
    now = T0 + H / 2  # half an hour at EUR 2.00/h, nothing metered yet
    with clock.frozen(now):
        ours.refresh_from_db(), theirs.refresh_from_db()
        assert live_cost_usd(ours) == Decimal("1.25") and live_cost_usd(theirs) == Decimal("1.10")
        for t, expected in ((tenant, Decimal("1.25")), (other_tenant, Decimal("1.10"))):
            projects, providers = dashboard.name_maps(t)
            f = dashboard.parse_filters({}, projects=projects, providers=providers, today=now.date())
            assert dashboard.build(t, f, projects=projects, providers=providers).spent_today == expected


# --- the service --------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("currency,rate,field", [
    ("eur", "1.1", "currency"), ("EU", "1.1", "currency"), ("EURO", "1.1", "currency"), ("E1R", "1.1", "currency"),
    ("", "1.1", "currency"), ("USD", "1.1", "currency"), ("EUR", "0", "usd_per_unit"), ("EUR", "-1", "usd_per_unit"),
    ("EUR", "1000.01", "usd_per_unit"), ("EUR", "NaN", "usd_per_unit"), ("EUR", "Infinity", "usd_per_unit"),
    ("EUR", "1.1234567", "usd_per_unit"), ("EUR", "1E-9", "usd_per_unit"),
])
def test_invalid_rates_are_refused_and_nothing_is_saved(tenant, currency, rate, field):
    with pytest.raises(InvoiceRateInvalid) as exc:
        invoice_rate_set(tenant=tenant, currency=currency, usd_per_unit=Decimal(rate))
    assert exc.value.field == field and str(exc.value)
    assert not InvoiceRate.objects.exists() and not AuditEvent.objects.filter(action__startswith="invoice_rate").exists()


@pytest.mark.django_db
def test_the_service_writes_only_the_tenants_own_row(tenant, other_tenant, platform_eur):
    theirs = invoice_rate_set(tenant=other_tenant, currency="EUR", usd_per_unit=Decimal("0.95"))
    ours = invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    assert ours.pk not in (theirs.pk, platform_eur.pk) and ours.tenant_id == tenant.pk
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=Decimal("1.30"))  # updates ours in place
    assert InvoiceRate.objects.for_tenant(tenant).get().usd_per_unit == Decimal("1.30")
    assert not invoice_rate_clear(tenant=tenant, currency="GBP")  # none of ours: nothing to clear
    assert invoice_rate_clear(tenant=tenant, currency="EUR")
    assert not invoice_rate_clear(tenant=tenant, currency="EUR")
    platform_eur.refresh_from_db(), theirs.refresh_from_db()
    assert platform_eur.usd_per_unit == PLATFORM_EUR and platform_eur.tenant_id is None
    assert theirs.usd_per_unit == Decimal("0.95") and theirs.tenant_id == other_tenant.pk


@pytest.mark.django_db
def test_rate_changes_are_audited(tenant, other_tenant):
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)  # no change, no event
    invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=Decimal("1.30"))
    invoice_rate_clear(tenant=tenant, currency="EUR")
    events = list(AuditEvent.objects.filter(tenant=tenant, action__startswith="invoice_rate").order_by("at", "pk"))
    assert [(e.action, e.details) for e in events] == [
        ("invoice_rate.set", {"currency": "EUR", "from": "", "to": "1.250000"}),
        ("invoice_rate.set", {"currency": "EUR", "from": "1.250000", "to": "1.300000"}),
        ("invoice_rate.cleared", {"currency": "EUR", "from": "1.300000"}),
    ]
    assert {e.target_type for e in events} == {"providers.InvoiceRate"}
    assert not AuditEvent.objects.filter(tenant=other_tenant, action__startswith="invoice_rate").exists()


@pytest.mark.django_db
def test_the_admin_lists_and_edits_platform_rates_only(client, tenant):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.create_superuser("operator", "op@example.com", "op-password-2026"))
    own = invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    assert client.post("/admin/providers/invoicerate/add/", {"currency": "eur", "usd_per_unit": "1.1"}).status_code == 302
    again = client.post("/admin/providers/invoicerate/add/", {"currency": "EUR", "usd_per_unit": "1.2"})
    assert again.status_code == 200 and "already a platform rate for EUR" in again.content.decode()
    assert InvoiceRate.objects.platform().get().usd_per_unit == PLATFORM_EUR
    assert client.get(f"/admin/providers/invoicerate/{own.pk}/change/").status_code == 302  # not listed: not found
    assert "1.250000" not in client.get("/admin/providers/invoicerate/").content.decode()


@pytest.mark.django_db
def test_a_rate_still_in_use_without_a_fallback_cannot_be_removed(tenant, client, finance):
    """CHF has no platform or built-in rate: while an offer of the organization bills in CHF,
    removing its CHF rate would break the next poll and meter, so it is refused."""
    from providers.models import Offer

    invoice_rate_set(tenant=tenant, currency="CHF", usd_per_unit=Decimal("1.13"))
    acct = account(tenant, "hetzner", name="Hetzner CH")
    OfferFactory(provider_account=acct, tenant=tenant, kind="hetzner", gpu_class="L4", gpu_count=1,
                 region="zrh", country="CH", price_per_hour=Decimal("1.00"), currency="CHF",
                 price_usd_per_hour=Decimal("1.13"), fetched_at=clock.now())
    with pytest.raises(InvoiceRateInvalid, match="still bill in CHF"):
        invoice_rate_clear(tenant=tenant, currency="CHF")
    row = InvoiceRate.objects.for_tenant(tenant).get(currency="CHF")
    client.force_login(finance)
    page = client.post(f"/spend/rates/{row.pk}/clear/", follow=True)
    assert "still bill in CHF" in page.content.decode()
    assert InvoiceRate.objects.for_tenant(tenant).filter(currency="CHF").exists()
    Offer.objects.filter(provider_account=acct).delete()
    assert invoice_rate_clear(tenant=tenant, currency="CHF") is True
