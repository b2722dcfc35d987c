"""Reads for billing: period arithmetic, spend in a period, outstanding reservations.

Spend for a period = daily rollups for its past days + the ledger for today only, so no
read ever scans the raw ledger of a past day.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, Q, Sum, Value
from django.db.models.functions import Coalesce, Greatest

from providers.models import ProviderAccount
from provisioner import clock
from tenants.access import project_scope
from tenants.models import AuditEvent
from tenants.permissions import VIEW_SPEND

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


def _alerts_visible(membership):
    """The member's alerts: a budget's only where they may see its spend (``Budget.restrict``),
    provider-cap alerts (no budget) to whoever sees spend."""
    qs = BudgetAlert.objects.restrict(membership, VIEW_SPEND)
    if not project_scope(membership, VIEW_SPEND)[1]:
        qs = qs.filter(Q(budget__isnull=True) | Q(budget__in=Budget.objects.restrict(membership, VIEW_SPEND)))
    return qs


def alerts_for(membership, *, unread_only: bool = False):
    qs = _alerts_visible(membership).select_related("budget", "provider_account")
    return qs.filter(read_at__isnull=True) if unread_only else qs


def alert_banners(membership, *, limit: int = 5) -> list[dict]:
    """The newest unread alerts' text for the dashboard banner (no joins: only the message)."""
    return list(_alerts_visible(membership).filter(read_at__isnull=True).values("message", "created_at")[:limit])


def saved_views_for_tenant(tenant) -> list[dict]:
    """The organization's saved dashboard views, by name (for the Spend page's list)."""
    return list(SavedSpendView.objects.for_tenant(tenant).values("id", "name", "query", "created_by_id"))


def budgets_for_tenant(tenant):
    """Every budget of the organization (benchmarks, tasks); pages use ``budgets_for``."""
    return Budget.objects.for_tenant(tenant).select_related("project")


def reconciliation_accounts(tenant) -> list[ProviderAccount]:
    """The organization's provider accounts (name, kind) for the reconciliation card."""
    return list(ProviderAccount.objects.for_tenant(tenant).order_by("name").select_related("billing_fetch")
                .only("pk", "name", "kind", "billing_fetch__attempted_at", "billing_fetch__succeeded_at",
                      "billing_fetch__error"))


def reconciliation_rows(tenant, *, accounts: list[ProviderAccount], start: date, end: date, provider_ids=(),
                        today: date | None = None) -> list[dict]:
    """Per provider account over ``[start, end]``: our figure, the provider's, the drift and
    the days that drifted (the Spend page's reconciliation card). Accounts whose provider has
    no billing API come back with ``api=False``. One query whatever the period."""
    from providers.adapters.billing import CLIENTS

    from .models import ProviderBillingDay
    from .reconcile import drift_pct, settled, untagged_only

    today = today or clock.now().date()
    last_complete = min(end, today - timedelta(days=1))
    if provider_ids:
        accounts = [a for a in accounts if str(a.pk) in provider_ids]
    days = (ProviderBillingDay.objects.for_tenant(tenant)
            .filter(provider_account__in=[a.pk for a in accounts if a.kind in CLIENTS], day__gte=start, day__lte=end)
            .order_by("day"))
    by_account: dict = {}
    for d in days:
        d.provisional = not settled(d.day, datetime.combine(today, time.min, tzinfo=UTC))  # not alerted yet
        by_account.setdefault(d.provider_account_id, []).append(d)
    out = []
    for a in accounts:
        if a.kind not in CLIENTS:
            out.append({"account": a, "label": a.get_kind_display(), "api": False})
            continue
        rows = by_account.get(a.pk, [])
        ours = sum((r.ours_amount for r in rows), ZERO)
        theirs = sum((r.provider_amount for r in rows), ZERO)
        # gaps since the first day fetched in the period (earlier days were never asked for)
        expected = max(0, (last_complete - rows[0].day).days + 1) if rows else 0
        out.append({
            "account": a, "label": a.get_kind_display(), "api": True, "source": CLIENTS[a.kind][2],
            "currency": rows[0].currency if rows else "USD", "ours": ours, "provider": theirs,
            "other": sum((r.other_amount for r in rows), ZERO), "drift": ours - theirs, "drift_pct": drift_pct(ours, theirs),
            "flagged": [r for r in rows if r.drift_flagged], "days": len(rows), "missing": max(0, expected - len(rows)),
            "estimated": any(r.estimated for r in rows),
            "fetched_at": max((r.fetched_at for r in rows), default=None),
            "failure": _fetch_failure(a),
            "untagged": untagged_only(a.kind, ours=ours, provider=theirs,
                                      other=sum((r.other_amount for r in rows), ZERO)),
        })
    return out


def _fetch_failure(account: ProviderAccount):
    """The account's last reconciliation attempt when it failed, else None."""
    fetch = getattr(account, "billing_fetch", None)  # no row: Django's DoesNotExist is an AttributeError
    return fetch if fetch is not None and fetch.error else None


def budgets_for(membership, action: str = VIEW_SPEND):
    """The budgets the member may ``action`` (role × per-project grant; a whole-organization
    budget needs ``action`` on every project)."""
    return Budget.objects.restrict(membership, action).select_related("project")


# Organization events worth a mark on the spend-over-time chart (Vantage's dated annotations): a
# jump or a drop in spend usually follows one of these. Organization-level only, so a member
# limited to some projects learns nothing about the others.
ANNOTATED_ACTIONS = {"provider.connected": "Connected", "provider.removed": "Removed",
                     "invoice_rate.set": "Invoice rate set", "invoice_rate.cleared": "Invoice rate cleared"}
MAX_ANNOTATIONS = 50


def spend_annotations(tenant, start, end) -> list[tuple[date, str]]:
    """(day, short text) of the annotated events between ``start`` and ``end`` (inclusive)."""
    rows = (AuditEvent.objects.filter(tenant=tenant, action__in=ANNOTATED_ACTIONS,
                                      at__gte=day_start(start), at__lt=day_start(end + timedelta(days=1)))
            .order_by("at").values_list("at", "action", "target_repr")[:MAX_ANNOTATIONS])
    return [(at.date(), f"{ANNOTATED_ACTIONS[action]} {name}".strip()) for at, action, name in rows]


def spend_names(membership) -> tuple[dict, dict, bool] | None:
    """Names of the projects whose spend the member may see and of the organization's provider
    accounts, and whether that is every project (role x per-project grant); None when it is no
    project at all. The Spend page and the spend digest narrow their figures by it."""
    from .dashboard import name_maps

    granted, every = project_scope(membership, VIEW_SPEND)
    if not every and not granted:
        return None
    projects, providers = name_maps(membership.tenant)
    if not every:
        keys = {str(g) for g in granted}
        projects = {k: name for k, name in projects.items() if k in keys}
    return projects, providers, every
