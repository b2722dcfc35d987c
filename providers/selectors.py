"""Reads for providers."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from django.db.models import QuerySet

from tenants.models import Tenant

from .models import InvoiceRate, Offer, ProviderAccount

DEFAULT_RATES = {"USD": Decimal("1"), "EUR": Decimal("1.08"), "GBP": Decimal("1.27")}


def provider_accounts_for_tenant(tenant: Tenant | None) -> QuerySet[ProviderAccount]:
    """The tenant's accounts, without archived ones (removed but kept for pod/cost history)."""
    return (ProviderAccount.objects.for_tenant(tenant).exclude(settings__has_key="removed_at")
            .order_by("preference_rank", "name"))


def offers_for_tenant(tenant: Tenant | None) -> QuerySet[Offer]:
    return Offer.objects.for_tenant(tenant).filter(provider_account__enabled=True)


def offers_of_accounts(tenant: Tenant | None, account_ids: Iterable[str]) -> QuerySet[Offer]:
    """The tenant's offers from these accounts (already known to be enabled, e.g. read by the
    placement policy). No join to the account table: placement's ordered index scan stays one."""
    return Offer.objects.for_tenant(tenant).filter(provider_account_id__in=list(account_ids))


def usd_rate(currency: str) -> Decimal:
    """The configured invoice rate for ``currency`` (USD per unit)."""
    currency = currency.upper()
    if currency == "USD":
        return Decimal("1")
    row = InvoiceRate.objects.filter(currency=currency).values_list("usd_per_unit", flat=True).first()
    if row is not None:
        return row
    if currency in DEFAULT_RATES:
        return DEFAULT_RATES[currency]
    raise ValueError(f"no invoice rate configured for {currency}")
