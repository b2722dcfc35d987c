"""Recurring spend digests: a daily or weekly e-mail per member who asks for one.

Finance tools send a summary on a schedule besides their threshold alerts (Kubecost's recurring
"spend digest" alerts, AWS Budgets' daily/weekly reports): the figures arrive without anyone
opening the dashboard. Ours reads the same figures as the Spend page (``dashboard.build``,
``dashboard.budget_gauges``) and is limited, like the page, to the projects the member may see.
Budget, cap, drift and anomaly alerts stay immediate (``billing.budgets.alert_once``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.urls import reverse

from provisioner import clock
from tenants.models import Membership

from . import dashboard, money
from .models import SpendDigest
from .selectors import ZERO, budgets_for, spend_names
from .spend_filters import Filters

log = logging.getLogger(__name__)

SEND_HOUR_UTC = 7  # digests go out with the first hourly tick from 07:00 UTC: yesterday is complete by then
TOP_WORKLOADS = 5
OFF = "off"


@dataclass(frozen=True)
class Digest:
    subject: str
    body: str
    spend_url: str


def digest_for(membership: Membership) -> SpendDigest | None:
    return SpendDigest.objects.filter(tenant_id=membership.tenant_id, user_id=membership.user_id).first()


@transaction.atomic
def digest_set(*, membership: Membership, frequency: str) -> SpendDigest | None:
    """Subscribe the member (``daily``/``weekly``) or stop their digest (``off``)."""
    if frequency == OFF:
        SpendDigest.objects.filter(tenant_id=membership.tenant_id, user_id=membership.user_id).delete()
        return None
    if frequency not in SpendDigest.Frequency.values:
        raise ValueError(f"unknown digest frequency {frequency!r}")
    digest, _ = SpendDigest.objects.update_or_create(
        tenant_id=membership.tenant_id, user_id=membership.user_id, defaults={"frequency": frequency})
    return digest


def period_of(frequency: str, today: date) -> tuple[date, date]:
    """The complete UTC days a digest sent ``today`` covers: yesterday, or the 7 days before today."""
    end = today - timedelta(days=1)
    return (end, end) if frequency == SpendDigest.Frequency.DAILY else (today - timedelta(days=7), end)


def is_due(digest: SpendDigest, now: datetime) -> bool:
    """Daily: once a day from SEND_HOUR_UTC. Weekly: on Monday from SEND_HOUR_UTC, or on a later
    day of the week when Monday's was missed (the worker was down)."""
    today = now.date()
    if now.hour < SEND_HOUR_UTC or digest.last_sent_on == today:
        return False
    if digest.frequency == SpendDigest.Frequency.DAILY:
        return True
    monday = today - timedelta(days=today.weekday())
    if digest.last_sent_on is None:
        return today == monday
    return digest.last_sent_on < monday


def compose(membership: Membership, frequency: str, today: date) -> Digest | None:
    """The digest's text, or None when the member may see no project's spend."""
    names = spend_names(membership)
    if names is None:
        return None
    tenant = membership.tenant
    projects, providers, every = names
    start, end = period_of(frequency, today)
    f = Filters(preset="custom", start=start, end=end, project_ids=() if every else tuple(sorted(projects)),
                group="project", grain="day")
    v = dashboard.build(tenant, f, projects=projects, providers=providers)
    gauges = dashboard.budget_gauges(tenant, list(budgets_for(membership)), view=v)
    when = f"yesterday ({start:%a %d %b})" if start == end else f"last week ({start:%d %b} – {end:%d %b})"
    spend_url = settings.PUBLIC_BASE_URL.rstrip("/") + reverse("billing:spend") + "?" + f.query()
    lines = [f"Spend {when}: {money.usd_label(v.total)}"
             + (f", of which {money.usd_label(v.idle_total)} on idle GPUs (every GPU below its idle threshold)"
                if v.idle_total else ""), ""]
    totals = sorted(((sum(s.values(), ZERO), label) for label, s in v.series.items()), reverse=True)
    if totals:
        lines.append("By project:")
        lines += [f"  {label}: {money.usd_label(usd)}" for usd, label in totals if usd]
        lines.append("")
    top = [t for t in v.top if t["workload_id"]][:TOP_WORKLOADS]  # corrections booked to no workload are left out
    if top:
        lines.append("Top workloads:")
        lines += [f"  {t['name']} ({t['project']}): {money.usd_label(t['usd'])}" for t in top]
        lines.append("")
    lines.append(f"Month to date: {money.usd_label(v.month_to_date)}; forecast to month end: {money.usd_label(v.forecast_month)}")
    if gauges:
        lines += ["", "Budgets (current period):"]
        for g in gauges:
            b = g["budget"]
            forecast = f", forecast {money.usd_label(g['forecast'])}" if g["forecast"] is not None else ""
            lines.append(f"  {b.name}: {money.usd_label(g['spent'])} of {money.usd_label(b.amount_usd)} ({g['pct']:.0f} %){forecast}")
    lines += ["", f"Open these figures on the Spend page: {spend_url}",
              "Change or stop this e-mail under Spend → Alerts → Spend digest."]
    subject = f"[Provisioner] {tenant.name}: {money.usd_label(v.total)} spent {when}"
    return Digest(subject=subject[:200], body="\n".join(lines), spend_url=spend_url)


def send_due_digests(now: datetime | None = None) -> int:
    """Send every digest that is due (hourly task). Each is claimed with a conditional update
    before it is sent, so two workers never send the same digest twice on one day."""
    now = now or clock.now()
    today, sent = now.date(), 0
    for digest in SpendDigest.objects.select_related("tenant", "user"):
        if not is_due(digest, now):
            continue
        membership = (Membership.objects.select_related("tenant", "user")
                      .filter(tenant_id=digest.tenant_id, user_id=digest.user_id).first())
        if membership is None:  # left the organization: nothing more to send
            digest.delete()
            continue
        claimed = (SpendDigest.objects.filter(pk=digest.pk).exclude(last_sent_on=today)
                   .update(last_sent_on=today))
        if not claimed:
            continue
        message = compose(membership, digest.frequency, today)
        if message is None or not membership.user.email:
            continue
        try:
            send_mail(message.subject, message.body, settings.DEFAULT_FROM_EMAIL, [membership.user.email])
        except Exception:  # a mail server outage must not stop the other digests
            log.exception("spend digest for user %s could not be sent", membership.user_id)
            SpendDigest.objects.filter(pk=digest.pk).update(last_sent_on=digest.last_sent_on)  # retry next tick
            continue
        sent += 1
    return sent
