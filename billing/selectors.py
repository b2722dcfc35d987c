"""Reads for billing: period arithmetic, spend in a period, outstanding reservations.

Spend for a period = daily rollups for its past days + the ledger for today only, so no
read ever scans the raw ledger of a past day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Coalesce, Greatest

from provisioner import clock

from .models import Budget, BudgetAlert, BudgetReservation, LedgerEntry, SavedSpendView, SpendRollup

ZERO = Decimal(0)
MONEY = DecimalField(max_digits=16, decimal_places=6)


def period_start(period: str, at: datetime | None = None) -> datetime:
    at = at or clock.now()
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_end(period: str, at: datetime | None = None) -> datetime:
    start = period_start(period, at)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def spend_since(*, tenant_id, since: datetime, project_id=None, provider_account_id=None,
                at: datetime | None = None) -> Decimal:
    """Booked spend (USD) from ``since`` (midnight-aligned) to now: rollups for whole past
    days, the ledger for today."""
    today = (at or clock.now()).date()
    total = ZERO
    if since.date() < today:
        r = SpendRollup.objects.filter(tenant_id=tenant_id, day__gte=since.date(), day__lt=today)
        if project_id is not None:
            r = r.filter(project_id=project_id)
        if provider_account_id is not None:
            r = r.filter(provider_account_id=provider_account_id)
        total += r.aggregate(s=Sum("amount_usd"))["s"] or ZERO
    led = LedgerEntry.objects.filter(tenant_id=tenant_id, bucket_start__gte=max(since, day_start(today)))
    if project_id is not None:
        led = led.filter(project_id=project_id)
    if provider_account_id is not None:
        led = led.filter(provider_account_id=provider_account_id)
    return total + (led.aggregate(s=Sum("amount_usd"))["s"] or ZERO)


def reserved_outstanding(*, tenant_id, project_id=None, provider_account_id=None) -> Decimal:
    """Active reservations not yet covered by their pod's booked cost."""
    qs = BudgetReservation.objects.filter(tenant_id=tenant_id, released_at__isnull=True)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if provider_account_id is not None:
        qs = qs.filter(provider_account_id=provider_account_id)
    left = ExpressionWrapper(F("amount_usd") - Coalesce(F("pod__cost_usd"), Value(ZERO)), output_field=MONEY)
    return qs.aggregate(s=Sum(Greatest(left, Value(ZERO), output_field=MONEY)))["s"] or ZERO


def hard_budgets_for(*, tenant_id, project_id):
    return (Budget.objects.filter(tenant_id=tenant_id, hard_limit=True)
            .filter(Q(project__isnull=True) | Q(project_id=project_id)).order_by("pk"))


def alerts_for_tenant(tenant, *, unread_only: bool = False):
    qs = BudgetAlert.objects.for_tenant(tenant).select_related("budget", "provider_account")
    return qs.filter(read_at__isnull=True) if unread_only else qs


def alert_banners(tenant, *, limit: int = 5) -> list[dict]:
    """The newest unread alerts' text for the dashboard banner (no joins: only the message)."""
    return list(BudgetAlert.objects.for_tenant(tenant).filter(read_at__isnull=True)
                .values("message", "created_at")[:limit])


def saved_views_for_tenant(tenant) -> list[dict]:
    """The organization's saved dashboard views, by name (for the Spend page's list)."""
    return list(SavedSpendView.objects.for_tenant(tenant).values("id", "name", "query", "created_by_id"))


def budgets_for_tenant(tenant):
    return Budget.objects.for_tenant(tenant).select_related("project")
