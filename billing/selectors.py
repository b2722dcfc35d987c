"""Reads for billing."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Q, Sum

from provisioner import clock

from .models import Budget, LedgerEntry


def period_start(period: str, at: datetime | None = None) -> datetime:
    at = at or clock.now()
    day = at.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def spend_since(*, tenant_id, since: datetime, project_id=None, provider_account_id=None) -> Decimal:
    qs = LedgerEntry.objects.filter(tenant_id=tenant_id, bucket_start__gte=since)
    if project_id is not None:
        qs = qs.filter(project_id=project_id)
    if provider_account_id is not None:
        qs = qs.filter(provider_account_id=provider_account_id)
    return qs.aggregate(s=Sum("amount_usd"))["s"] or Decimal("0")


def exhausted_hard_budget(*, tenant_id, project_id) -> Budget | None:
    budgets = Budget.objects.filter(tenant_id=tenant_id, hard_limit=True).filter(Q(project__isnull=True) | Q(project_id=project_id))
    for b in budgets:
        spent = spend_since(tenant_id=tenant_id, since=period_start(b.period),
                            project_id=b.project_id)
        if spent >= b.amount_usd:
            return b
    return None
