"""Writes for billing: metering running pods into the ledger."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from django.db import transaction

from providers.selectors import usd_rate
from provisioner import clock
from workloads.models import Pod, PodState

from .models import LedgerEntry

Q6 = Decimal("0.000001")


def pod_meter(*, pod_id, until=None) -> LedgerEntry | None:
    """Accrue a pod's cost from where metering stopped to ``until`` (default now), at the
    hourly price locked at launch. Runs under a row lock, so concurrent meters cannot double
    charge."""
    until = until or clock.now()
    with transaction.atomic():
        pod = Pod.objects.select_for_update().get(pk=pod_id)
        if pod.started_at is None or pod.price_per_hour is None:
            return None
        start = pod.metered_until or pod.started_at
        end = until
        if pod.state not in (PodState.RUNNING, PodState.STOPPING):
            end = min(x for x in (pod.stopped_at, pod.ended_at, until) if x is not None)
        seconds = (end - start).total_seconds()
        if seconds <= 0:
            return None
        rate = usd_rate(pod.currency)
        amount = (pod.price_per_hour * Decimal(str(seconds)) / Decimal(3600)).quantize(Q6, ROUND_HALF_UP)
        amount_usd = (amount * rate).quantize(Q6, ROUND_HALF_UP)
        entry = LedgerEntry.objects.create(
            tenant_id=pod.tenant_id, project_id=pod.project_id, provider_account_id=pod.provider_account_id,
            workload_id=pod.workload_id, pod=pod, bucket_start=start, bucket_end=end, seconds=seconds,
            amount=amount, currency=pod.currency, usd_rate=rate, amount_usd=amount_usd,
        )
        Pod.objects.filter(pk=pod.pk).update(metered_until=end, cost_usd=pod.cost_usd + amount_usd)
        return entry


def meter_all() -> int:
    """Meter every pod with unmetered billable time."""
    from django.db.models import F, Q

    ids = list(
        Pod.objects.filter(started_at__isnull=False, price_per_hour__isnull=False)
        .filter(Q(state__in=[PodState.RUNNING, PodState.STOPPING])
                | Q(metered_until__isnull=True) | Q(metered_until__lt=F("ended_at")) | Q(metered_until__lt=F("stopped_at")))
        .values_list("pk", flat=True)
    )
    n = 0
    for pod_id in ids:
        if pod_meter(pod_id=pod_id):
            n += 1
    return n
