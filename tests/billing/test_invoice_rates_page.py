"""The Invoice rates page (Spend -> Budgets -> Invoice rates): who may read and set the
organization's rates, inline validation with nothing saved, and clearing only its own."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.urls import reverse

from providers.models import InvoiceRate
from providers.selectors import RateSource, usd_rates_for_tenant
from providers.services import invoice_rate_set
from tenants.models import AuditEvent, Role
from tests.factories import make_member

PLATFORM_EUR = Decimal("1.10")
OWN_EUR = Decimal("1.25")


@pytest.fixture
def platform_eur(db):
    return InvoiceRate.objects.create(currency="EUR", usd_per_unit=PLATFORM_EUR)


@pytest.mark.django_db
def test_finance_sets_a_rate_and_everyone_with_spend_sees_where_each_comes_from(client, tenant, finance, developer,
                                                                               platform_eur):
    client.force_login(finance)
    r = client.post(reverse("billing:rates"), {"currency": " chf ", "usd_per_unit": "1.134"})
    assert r.status_code == 302
    row = InvoiceRate.objects.for_tenant(tenant).get()
    assert (row.currency, row.usd_per_unit) == ("CHF", Decimal("1.134"))
    event = AuditEvent.objects.get(tenant=tenant, action="invoice_rate.set")
    assert event.actor == finance and event.details["to"] == "1.134000"
    client.post(reverse("billing:rates"), {"currency": "EUR", "usd_per_unit": "1.25"})

    client.force_login(developer)  # VIEW_SPEND: reads the rates, has no form and no clear buttons
    page = client.get(reverse("billing:rates"))
    assert page.status_code == 200
    body = page.content.decode()
    assert "this organization" in body and "platform default" in body and "built-in" in body
    assert "1.250000" in body and "1.134000" in body and 'name="usd_per_unit"' not in body
    assert reverse("billing:rate_clear", args=[row.pk]) not in body
    rows = {r.currency: r.source for r in page.context["rates"]}
    assert rows == {"CHF": RateSource.ORGANIZATION, "EUR": RateSource.ORGANIZATION, "GBP": RateSource.BUILT_IN}
    budgets = client.get(reverse("billing:budgets")).content.decode()
    assert "<td>EUR</td><td class=\"num\">1.250000</td><td>this organization</td>" in budgets
    assert reverse("billing:rates") in budgets


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.DEVELOPER, Role.VIEWER])
def test_members_without_manage_budgets_cannot_set_rates(client, tenant, role):
    client.force_login(make_member(tenant, role, f"m-{role}"))
    assert client.post(reverse("billing:rates"), {"currency": "EUR", "usd_per_unit": "1.25"}).status_code == 403
    assert not InvoiceRate.objects.exists()
    assert client.get(reverse("billing:rates")).status_code == (200 if role == Role.DEVELOPER else 403)


@pytest.mark.django_db
@pytest.mark.parametrize("role", [Role.OWNER, Role.ADMIN])
def test_owners_and_admins_set_rates_too(client, tenant, role):
    client.force_login(make_member(tenant, role, f"m-{role}"))
    assert client.post(reverse("billing:rates"), {"currency": "GBP", "usd_per_unit": "1.3"}).status_code == 302
    assert InvoiceRate.objects.for_tenant(tenant).get().usd_per_unit == Decimal("1.3")


@pytest.mark.django_db
@pytest.mark.parametrize("data,field,message", [
    ({"currency": "USD", "usd_per_unit": "1"}, "currency", "always 1"),
    ({"currency": "E1R", "usd_per_unit": "1"}, "currency", "ISO 4217"),
    ({"currency": "EURO", "usd_per_unit": "1"}, "currency", "at most 3 characters"),
    ({"currency": "EUR", "usd_per_unit": "0"}, "usd_per_unit", "more than 0"),
    ({"currency": "EUR", "usd_per_unit": "5000"}, "usd_per_unit", "at most 1000"),
    ({"currency": "EUR", "usd_per_unit": "1.1234567"}, "usd_per_unit", "decimal places"),
    ({"currency": "EUR", "usd_per_unit": "abc"}, "usd_per_unit", "Enter a number"),
    ({"currency": "EUR"}, "usd_per_unit", "required"),
])
def test_invalid_input_is_refused_inline_and_nothing_is_saved(client, tenant, finance, data, field, message):
    client.force_login(finance)
    r = client.post(reverse("billing:rates"), data)
    assert r.status_code == 200
    assert any(message in e for e in r.context["form"].errors[field]), r.context["form"].errors
    assert message in r.content.decode() or message.replace("'", "&#x27;") in r.content.decode()
    assert not InvoiceRate.objects.exists() and not AuditEvent.objects.filter(action__startswith="invoice_rate").exists()


@pytest.mark.django_db
def test_clearing_a_rate_addresses_only_the_organizations_own(client, tenant, other_tenant, finance, developer,
                                                              outsider, platform_eur):
    ours = invoice_rate_set(tenant=tenant, currency="EUR", usd_per_unit=OWN_EUR)
    theirs = invoice_rate_set(tenant=other_tenant, currency="EUR", usd_per_unit=Decimal("0.95"))
    url = reverse("billing:rate_clear", args=[ours.pk])

    client.force_login(outsider)  # another organization's owner: not found, and nothing removed
    assert client.post(url).status_code == 404
    client.force_login(finance)
    assert client.post(reverse("billing:rate_clear", args=[theirs.pk])).status_code == 404
    assert client.post(reverse("billing:rate_clear", args=[platform_eur.pk])).status_code == 404  # operators' row
    client.force_login(developer)
    assert client.post(url).status_code == 403
    assert InvoiceRate.objects.count() == 3

    client.force_login(finance)
    assert client.get(url).status_code == 405
    page = client.get(reverse("billing:rates")).content.decode()
    assert url in page and reverse("billing:rate_clear", args=[theirs.pk]) not in page
    assert client.post(url).status_code == 302
    assert not InvoiceRate.objects.filter(pk=ours.pk).exists()
    assert InvoiceRate.objects.filter(pk__in=[theirs.pk, platform_eur.pk]).count() == 2
    assert AuditEvent.objects.filter(tenant=tenant, action="invoice_rate.cleared", actor=finance).exists()
    assert usd_rates_for_tenant(tenant.pk)["EUR"] == PLATFORM_EUR
