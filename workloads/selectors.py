"""Reads for workloads."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from provisioner import clock
from tenants.models import Tenant

from .models import BILLABLE_POD_STATES, Pod, Workload


def pods_for_tenant(tenant: Tenant | None) -> QuerySet[Pod]:
    return Pod.objects.for_tenant(tenant).select_related("workload", "provider_account", "project")


def workloads_for_tenant(tenant: Tenant | None) -> QuerySet[Workload]:
    return Workload.objects.for_tenant(tenant).select_related("project", "owner")


def pod_cost_so_far(pod: Pod) -> Decimal:
    """Metered cost plus the not-yet-metered tail at the locked price (live accrual)."""
    cost = pod.cost_usd or Decimal("0")
    if pod.price_usd_per_hour is None or pod.started_at is None:
        return cost
    start = pod.metered_until or pod.started_at
    if pod.state in BILLABLE_POD_STATES:
        end = clock.now()
    else:
        end = pod.stopped_at or pod.ended_at
        if end is None:
            return cost
    seconds = max(0.0, (end - start).total_seconds())
    return cost + pod.price_usd_per_hour * Decimal(str(seconds)) / Decimal(3600)
