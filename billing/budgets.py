"""Budgets, launch reservations, provider spending caps, and threshold alerts.

**Projected cost of a launch** (what a reservation holds): the offer's USD price per hour x
the reservation horizon, where the horizon is the workload's maximum duration when it has
one, otherwise ``settings.BILLING_RESERVATION_HOURS`` (default 1 h), and never beyond the end
of the budget's (or cap's) current period. A reservation counts against every hard budget
covering the pod's tenant/project and against the provider account's spending cap as
``max(0, reserved - pod's booked cost)``, so as real cost lands it replaces the reservation
instead of adding to it. Reservations are released when the pod ends or stops, or its
launch fails.

Concurrency: ``reserve_launch`` locks the covering Budget rows (by primary key order) and then
the ProviderAccount row with ``SELECT ... FOR UPDATE`` before reading spend and reservations,
so concurrent launches are serialized exactly where they compete for the same headroom.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q, Sum

from providers.models import ProviderAccount
from provisioner import clock
from tenants.audit import audit_record
from tenants.models import Membership, Project, Role
from workloads.models import LIVE_POD_STATES, Pod, PodState

from . import money
from .models import Budget, BudgetAlert, BudgetReservation, LedgerEntry, SpendRollup
from .selectors import ZERO, day_start, period_end, period_start, reserved_outstanding, spend_since

logger = logging.getLogger(__name__)
CENT = Decimal("0.01")
CAP_THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    budget_name: str = ""
    scope: str = ""  # "budget" | "provider_cap" when refused
    reservation_id: str = ""


def _horizon_hours(hours, now: datetime, end: datetime) -> Decimal:
    default = Decimal(str(settings.BILLING_RESERVATION_HOURS))
    h = Decimal(str(hours)) if hours else default
    rest = Decimal(str((end - now).total_seconds())) / Decimal(3600)
    return max(Decimal(0), min(h, rest))


def _money(x: Decimal) -> str:
    return money.usd_label(x)


def evaluate(*, tenant_id, project_id, provider_account_id, usd_per_hour: Decimal, hours=None,
             lock: bool = False) -> tuple[Verdict, Decimal]:
    """Would a launch at ``usd_per_hour`` fit under every hard budget and the provider cap?

    With ``lock`` the covering rows are locked (caller holds a transaction). Returns the
    verdict and the hours to reserve (the shortest horizon among the checks).
    """
    from .selectors import hard_budgets_for

    now = clock.now()
    usd_per_hour = Decimal(str(usd_per_hour or 0))
    budgets = hard_budgets_for(tenant_id=tenant_id, project_id=project_id).select_related("project")
    if lock:
        budgets = budgets.select_for_update(of=("self",))
    reserve_hours = _horizon_hours(hours, now, now + timedelta(days=3650))
    for b in list(budgets):
        start, end = period_start(b.period, now), period_end(b.period, now)
        horizon = _horizon_hours(hours, now, end)
        reserve_hours = min(reserve_hours, horizon)
        spent = spend_since(tenant_id=tenant_id, since=start, project_id=b.project_id, at=now)
        reserved = reserved_outstanding(tenant_id=tenant_id, project_id=b.project_id)
        projected = usd_per_hour * horizon
        scope = f"project {b.project.name}" if b.project_id else "the organization"
        if spent >= b.amount_usd:
            return Verdict(False, f'Budget "{b.name}" ({scope}, {b.get_period_display().lower()}) is exhausted: '
                                  f'{_money(spent)} of {_money(b.amount_usd)} spent', b.name, "budget"), reserve_hours
        if spent + reserved + projected > b.amount_usd:
            left = max(Decimal(0), b.amount_usd - spent - reserved)
            return Verdict(False, f'Budget "{b.name}" ({scope}) has {_money(left)} left this period; this launch '
                                  f'needs {_money(projected)} ({horizon:.2f} h at {_money(usd_per_hour)}/h)',
                           b.name, "budget"), reserve_hours
    if provider_account_id is not None:
        accounts = ProviderAccount.objects.filter(pk=provider_account_id)
        if lock:
            accounts = accounts.select_for_update()
        account = accounts.only("name", "spending_cap_usd", "spending_cap_period").first()
        if account is not None and account.spending_cap_usd is not None:
            start, end = period_start(account.spending_cap_period, now), period_end(account.spending_cap_period, now)
            horizon = _horizon_hours(hours, now, end)
            reserve_hours = min(reserve_hours, horizon)
            spent = spend_since(tenant_id=tenant_id, since=start, provider_account_id=account.pk, at=now)
            reserved = reserved_outstanding(tenant_id=tenant_id, provider_account_id=account.pk)
            if spent + reserved + usd_per_hour * horizon > account.spending_cap_usd or spent >= account.spending_cap_usd:
                return Verdict(False, f'over provider cap: "{account.name}" has {_money(spent)} spent and '
                                      f'{_money(reserved)} reserved of its {_money(account.spending_cap_usd)} '
                                      f'{account.get_spending_cap_period_display()} cap', "", "provider_cap"), reserve_hours
    return Verdict(True), reserve_hours


def reserve_launch(*, tenant_id, project_id, provider_account_id, usd_per_hour: Decimal, pod_id,
                   hours=None) -> Verdict:
    """Check and, if allowed, reserve the launch's projected cost for ``pod_id`` atomically.

    A previous active reservation of the same pod (an earlier failover candidate) is replaced.
    """
    with transaction.atomic():
        verdict, reserve_hours = evaluate(tenant_id=tenant_id, project_id=project_id,
                                          provider_account_id=provider_account_id,
                                          usd_per_hour=usd_per_hour, hours=hours, lock=True)
        if not verdict.allowed:
            return verdict
        now = clock.now()
        BudgetReservation.objects.filter(pod_id=pod_id, released_at__isnull=True).update(released_at=now)
        usd_per_hour = Decimal(str(usd_per_hour or 0))
        r = BudgetReservation.objects.create(
            tenant_id=tenant_id, project_id=project_id, provider_account_id=provider_account_id, pod_id=pod_id,
            usd_per_hour=usd_per_hour, hours=reserve_hours.quantize(Decimal("0.0001")),
            amount_usd=(usd_per_hour * reserve_hours).quantize(Decimal("0.000001")), created_at=now)
        return Verdict(True, reservation_id=str(r.pk))


def reservation_release(*, pod_id) -> int:
    """Release the pod's active reservation (launch failed, pod ended). Safe to call twice."""
    return BudgetReservation.objects.filter(pod_id=pod_id, released_at__isnull=True).update(released_at=clock.now())


def reservations_release_finished() -> int:
    """Release reservations whose pod has ended or stopped (runs with every meter)."""
    done = (PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED, PodState.STOPPED)
    return (BudgetReservation.objects.filter(released_at__isnull=True)
            .filter(Q(pod__isnull=True) | Q(pod__state__in=done)).update(released_at=clock.now()))


# --- budgets CRUD -------------------------------------------------------------------------


def _clean_thresholds(values) -> list[int]:
    out = sorted({int(v) for v in values or [] if 0 < int(v) <= 1000})
    return out


MAX_USD_THRESHOLD = 100_000_000


def _clean_usd_thresholds(values) -> list[int]:
    return sorted({int(v) for v in values or [] if 0 < int(v) <= MAX_USD_THRESHOLD})


@transaction.atomic
def budget_create(*, tenant, name: str, amount_usd: Decimal, period: str = Budget.Period.MONTH,
                  project: Project | None = None, soft_thresholds=(50, 80, 100), hard_limit: bool = True,
                  stop_running_pods: bool = False, webhook_url: str = "", webhook_secret: str = "",
                  email_alerts: bool = True, forecast_alert: bool = True, soft_thresholds_usd=()) -> Budget:
    """Create a budget for the whole tenant (``project=None``) or one of its projects."""
    if project is not None and project.tenant_id != tenant.pk:
        raise ValueError("project belongs to another organization")
    budget = Budget.objects.create(tenant=tenant, project=project, name=name, amount_usd=amount_usd, period=period,
                                   soft_thresholds=_clean_thresholds(soft_thresholds), hard_limit=hard_limit,
                                   soft_thresholds_usd=_clean_usd_thresholds(soft_thresholds_usd),
                                   stop_running_pods=stop_running_pods, webhook_url=webhook_url,
                                   webhook_secret=webhook_secret, email_alerts=email_alerts,
                                   forecast_alert=forecast_alert)
    audit_record(tenant=tenant, action="budget.created", target=budget,
                 details={"amount_usd": str(amount_usd), "period": period, "hard_limit": hard_limit})
    return budget


@transaction.atomic
def budget_update(*, budget: Budget, **fields) -> Budget:
    """Change a budget's fields (same names as ``budget_create``)."""
    if "soft_thresholds" in fields:
        fields["soft_thresholds"] = _clean_thresholds(fields["soft_thresholds"])
    if "soft_thresholds_usd" in fields:
        fields["soft_thresholds_usd"] = _clean_usd_thresholds(fields["soft_thresholds_usd"])
    project = fields.get("project")
    if project is not None and project.tenant_id != budget.tenant_id:
        raise ValueError("project belongs to another organization")
    before = {k: getattr(budget, k) for k in fields}
    for k, v in fields.items():
        setattr(budget, k, v)
    budget.save()
    audit_record(tenant=budget.tenant_id, action="budget.changed", target=budget,
                 details={k: {"from": str(before[k]), "to": str(v)} for k, v in fields.items() if before[k] != v})
    return budget


@transaction.atomic
def budget_delete(*, budget: Budget) -> None:
    """Remove a budget and its alert history (reservations are not per budget, so they stay)."""
    audit_record(tenant=budget.tenant_id, action="budget.deleted", target=budget,
                 details={"amount_usd": str(budget.amount_usd), "period": budget.period})
    budget.delete()


# --- enforcement and alerts ---------------------------------------------------------------


def _recipients(tenant_id, roles) -> list[str]:
    return sorted({e for e in Membership.objects.filter(tenant_id=tenant_id, role__in=roles)
                   .values_list("user__email", flat=True) if e})


def alert_once(*, tenant_id, period_start_at: datetime, threshold: int, spent: Decimal, limit: Decimal,
               message: str, budget: Budget | None = None, provider_account: ProviderAccount | None = None,
               kind: str = BudgetAlert.Kind.SPENT, webhook_budget: Budget | None = None) -> BudgetAlert | None:
    """Record the alert unless this threshold (of this kind) already alerted this period; then
    notify (in-app = the row itself; email; webhook for budgets that have one)."""
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                tenant_id=tenant_id, budget=budget, provider_account=provider_account, period_start=period_start_at,
                threshold=threshold, kind=kind, spent_usd=money.cents(spent), limit_usd=money.cents(limit),
                message=message[:300], created_at=clock.now())
    except IntegrityError:
        return None
    roles = ([Role.OWNER, Role.ADMIN, Role.FINANCE] if budget or kind == BudgetAlert.Kind.ANOMALY
             else [Role.OWNER, Role.ADMIN])
    if budget is None or budget.email_alerts:
        to = _recipients(tenant_id, roles)
        if to:
            send_mail(f"[Provisioner] {message}"[:200], message + "\n\nOpen the spend dashboard for details.",
                      settings.DEFAULT_FROM_EMAIL, to, fail_silently=True)
            alert.emailed_to = to
    hook = budget or webhook_budget  # an alert of no budget may borrow one's webhook (the spend anomaly)
    if hook is not None and hook.webhook_url:
        # sent by its own task after commit: public https only, retried with backoff (billing/webhooks.py)
        from .tasks import send_budget_webhook

        alert.webhook_status = "queued"
        alert_id, hook_id = str(alert.pk), None if budget is not None else str(hook.pk)
        transaction.on_commit(lambda: send_budget_webhook.delay(alert_id, 1, hook_id))
    BudgetAlert.objects.filter(pk=alert.pk).update(emailed_to=alert.emailed_to, webhook_status=alert.webhook_status)
    return alert


FORECAST_MIN_ELAPSED = Decimal("0.2")  # extrapolate only from a fifth of the period on: earlier is noise


def forecast_spend(spent: Decimal, *, start: datetime, end: datetime, at: datetime) -> Decimal | None:
    """Spend at the period's end if it goes on at the average rate so far (the linear rule
    AWS and Oracle budgets use); None while too little of the period has passed."""
    total = Decimal((end - start).total_seconds())
    elapsed = Decimal((at - start).total_seconds())
    if total <= 0 or elapsed < total * FORECAST_MIN_ELAPSED:
        return None
    return spent * total / elapsed


def budget_check(budget: Budget, *, at: datetime | None = None) -> list[BudgetAlert]:
    """Alert every soft threshold the budget has crossed this period (once each); on a hard
    limit with ``stop_running_pods``, stop the pods it covers."""
    at = at or clock.now()
    start = period_start(budget.period, at)
    spent = spend_since(tenant_id=budget.tenant_id, since=start, project_id=budget.project_id, at=at)
    if budget.amount_usd <= 0:
        return []
    pct = spent * 100 / budget.amount_usd
    sent = []
    for t in budget.soft_thresholds or []:
        if pct >= t:
            msg = (f'Budget "{budget.name}" reached {t}% ({_money(spent)} of {_money(budget.amount_usd)} '
                   f'{budget.get_period_display().lower()})')
            a = alert_once(tenant_id=budget.tenant_id, budget=budget, period_start_at=start, threshold=int(t),
                           spent=spent, limit=budget.amount_usd, message=msg)
            if a:
                sent.append(a)
    for usd in budget.soft_thresholds_usd or []:  # thresholds in dollars spent, beside the percentages
        if spent >= usd:
            msg = (f'Budget "{budget.name}" reached {_money(Decimal(usd))} spent ({_money(spent)} of '
                   f'{_money(budget.amount_usd)} {budget.get_period_display().lower()})')
            a = alert_once(tenant_id=budget.tenant_id, budget=budget, period_start_at=start, threshold=int(usd),
                           kind=BudgetAlert.Kind.AMOUNT, spent=spent, limit=budget.amount_usd, message=msg)
            if a:
                sent.append(a)
    forecast = forecast_spend(spent, start=start, end=period_end(budget.period, at), at=at)
    if budget.forecast_alert and forecast is not None and spent < budget.amount_usd <= forecast:
        msg = (f'Budget "{budget.name}" is forecast to reach {_money(forecast)} '
               f'({forecast * 100 / budget.amount_usd:.0f}% of {_money(budget.amount_usd)}) by the end of the '
               f'{budget.period} at the current rate ({_money(spent)} so far)')
        a = alert_once(tenant_id=budget.tenant_id, budget=budget, period_start_at=start, threshold=100,
                       kind=BudgetAlert.Kind.FORECAST, spent=spent, limit=budget.amount_usd, message=msg)
        if a:
            sent.append(a)
    if budget.hard_limit and budget.stop_running_pods and spent >= budget.amount_usd:
        from workloads.lifecycle.tasks import terminate_pod

        pods = Pod.objects.filter(tenant_id=budget.tenant_id, state__in=LIVE_POD_STATES)
        if budget.project_id:
            pods = pods.filter(project_id=budget.project_id)
        for pod_id in pods.values_list("pk", flat=True):
            terminate_pod.delay(str(pod_id), f'Budget "{budget.name}" exhausted (hard limit)')
    return sent


def provider_cap_check(account: ProviderAccount, *, at: datetime | None = None) -> list[BudgetAlert]:
    """Alert the admins at 80 % and 100 % of a provider account's spending cap."""
    if account.spending_cap_usd is None or account.spending_cap_usd <= 0:
        return []
    at = at or clock.now()
    start = period_start(account.spending_cap_period, at)
    spent = spend_since(tenant_id=account.tenant_id, since=start, provider_account_id=account.pk, at=at)
    pct = spent * 100 / account.spending_cap_usd
    sent = []
    for t in CAP_THRESHOLDS:
        if pct >= t:
            tail = "; it is out of placement until the period ends" if t >= 100 else ""
            msg = (f'Provider account "{account.name}" reached {t}% of its spending cap '
                   f'({_money(spent)} of {_money(account.spending_cap_usd)}){tail}')
            a = alert_once(tenant_id=account.tenant_id, provider_account=account, period_start_at=start,
                           threshold=t, spent=spent, limit=account.spending_cap_usd, message=msg)
            if a:
                sent.append(a)
    return sent


def budgets_enforce(*, at: datetime | None = None) -> int:
    """The periodic pass: soft alerts, hard cutoffs, provider-cap alerts. Returns alerts sent."""
    n = 0
    for budget in Budget.objects.select_related("project"):
        n += len(budget_check(budget, at=at))
    for account in ProviderAccount.objects.filter(spending_cap_usd__isnull=False):
        n += len(provider_cap_check(account, at=at))
    n += len(spend_anomalies_check(at=at))
    return n


ANOMALY_TRAILING_DAYS = 7


def spend_anomalies_check(*, at: datetime | None = None) -> list[BudgetAlert]:
    """Alert an organization whose booked spend today exceeds ``SPEND_ANOMALY_FACTOR`` x its daily
    mean over the 7 complete days before (AWS Cost Anomaly Detection's idea, with a fixed rule
    anyone can check by hand): once per organization and UTC day, in-app, by email to owners,
    admins and finance, and to the organization-wide budget's webhook. Two queries for every
    organization together, plus one per organization alerted."""
    factor = Decimal(str(settings.SPEND_ANOMALY_FACTOR))
    if factor <= 0:
        return []
    at = at or clock.now()
    today = at.date()
    start = day_start(today)
    trailing = dict(SpendRollup.objects.filter(day__gte=today - timedelta(days=ANOMALY_TRAILING_DAYS), day__lt=today)
                    .values_list("tenant_id").annotate(s=Sum("amount_usd")).order_by())
    todays = (LedgerEntry.objects.filter(bucket_start__gte=start).values_list("tenant_id")
              .annotate(s=Sum("amount_usd")).order_by())
    sent = []
    for tenant_id, spent in todays:
        mean = (trailing.get(tenant_id) or ZERO) / ANOMALY_TRAILING_DAYS
        if mean <= 0 or spent is None or spent <= factor * mean:
            continue
        msg = (f"Spend anomaly: {_money(spent)} booked today, {spent / mean:.1f}x the daily mean of the last "
               f"{ANOMALY_TRAILING_DAYS} days ({_money(mean)}; alert above {factor}x)")
        # the organization-wide budget's webhook (the first with one), as for its own alerts
        hook = (Budget.objects.filter(tenant_id=tenant_id, project__isnull=True).exclude(webhook_url="")
                .order_by("created_at", "pk").first())
        a = alert_once(tenant_id=tenant_id, period_start_at=start, threshold=int(factor * 100), spent=spent,
                       limit=factor * mean, message=msg, kind=BudgetAlert.Kind.ANOMALY, webhook_budget=hook)
        if a:
            sent.append(a)
    return sent


def alerts_mark_read(*, tenant, ids=None) -> int:
    qs = BudgetAlert.objects.for_tenant(tenant).filter(read_at__isnull=True)
    if ids:
        qs = qs.filter(pk__in=ids)
    return qs.update(read_at=clock.now())
