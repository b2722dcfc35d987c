from __future__ import annotations

from decimal import Decimal

from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from provisioner import clock
from tenants.access import require_member
from tenants.permissions import VIEW_SPEND
from workloads.models import BILLABLE_POD_STATES
from workloads.selectors import pod_cost_so_far, pods_for_tenant

from .models import LedgerEntry
from .selectors import period_start


@login_required
def spend(request: HttpRequest) -> HttpResponse:
    """First spend page: live run rate, spend today and this month, per-pod cost."""
    membership = require_member(request, VIEW_SPEND)
    tenant = membership.tenant
    running = list(pods_for_tenant(tenant).filter(state__in=BILLABLE_POD_STATES))
    run_rate = sum((p.price_usd_per_hour or Decimal(0) for p in running), Decimal(0))
    today = period_start("day")
    month = period_start("month")
    ledger = LedgerEntry.objects.for_tenant(tenant)
    spent_today = ledger.filter(bucket_start__gte=today).aggregate(s=Sum("amount_usd"))["s"] or Decimal(0)
    spent_month = ledger.filter(bucket_start__gte=month).aggregate(s=Sum("amount_usd"))["s"] or Decimal(0)
    recent = list(pods_for_tenant(tenant)[:50])
    for p in recent:
        p.cost_so_far = pod_cost_so_far(p)
    ctx = {"run_rate": run_rate, "spent_today": spent_today, "spent_month": spent_month,
           "running": running, "recent": recent, "now": clock.now()}
    template = "billing/partials/spend_live.html" if request.htmx else "billing/spend.html"
    return render(request, template, ctx)
