"""Daily rollups: ledger -> SpendRollup per tenant x day x project x provider x workload.

Incremental: only (tenant, day) pairs marked dirty by a ledger write are rebuilt, each from
that one day's ledger rows (an indexed range), so the cost of a run is proportional to what
changed, and a late correction for a past day rebuilds exactly that day. The month holding
a rebuilt day is then re-summed from its daily rollups (``SpendRollupMonth``).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

from django.db import transaction
from django.db.models import F, Q, Sum

from .idle import idle_usd_by_key
from .models import LedgerEntry, RollupDirty, RollupGeneration, SpendRollup, SpendRollupMonth


def generation_bump(tenant_id) -> None:
    """The tenant's rollups changed: call inside the transaction that changed them."""
    bump = RollupGeneration.objects.filter(tenant_id=tenant_id)
    if not bump.update(value=F("value") + 1):
        _, created = RollupGeneration.objects.get_or_create(tenant_id=tenant_id, defaults={"value": 1})
        if not created:  # a concurrent first bump won the insert: ours must still count
            bump.update(value=F("value") + 1)


def generation(tenant_id) -> int:
    """The tenant's rollup generation (0 before its first rollup)."""
    return RollupGeneration.objects.filter(tenant_id=tenant_id).values_list("value", flat=True).first() or 0


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time.min, tzinfo=UTC)
    return start, start + timedelta(days=1)


def rollup_day(*, tenant_id, day: date) -> int:
    """Rebuild one tenant's rollup rows for one day from the ledger. Returns rows written."""
    start, end = day_bounds(day)
    rows = (LedgerEntry.objects.filter(tenant_id=tenant_id, bucket_start__gte=start, bucket_start__lt=end)
            .values("project_id", "provider_account_id", "workload_id")
            .annotate(usd=Sum("amount_usd"), secs=Sum("seconds", filter=Q(kind=LedgerEntry.Kind.GPU))))
    # idle GPU spend from the day's samples, kept here so past days outlive sample retention
    idle = idle_usd_by_key(tenant_id=tenant_id, start=start, end=end)

    def key(r) -> tuple:
        return tuple(None if r[f] is None else str(r[f]) for f in ("project_id", "provider_account_id", "workload_id"))
    with transaction.atomic():
        SpendRollup.objects.filter(tenant_id=tenant_id, day=day).delete()
        generation_bump(tenant_id)
        SpendRollup.objects.bulk_create([
            SpendRollup(day=day, tenant_id=tenant_id, project_id=r["project_id"],
                        provider_account_id=r["provider_account_id"], workload_id=r["workload_id"],
                        amount_usd=r["usd"] or 0, gpu_seconds=r["secs"] or 0, idle_usd=idle.get(key(r), 0))
            for r in rows
        ])
    return len(rows)


def rollup_month(*, tenant_id, month: date) -> int:
    """Re-sum one tenant's month from its daily rollups."""
    month = month.replace(day=1)
    nxt = (month + timedelta(days=32)).replace(day=1)
    rows = (SpendRollup.objects.filter(tenant_id=tenant_id, day__gte=month, day__lt=nxt)
            .values("project_id", "provider_account_id", "workload_id")
            .annotate(usd=Sum("amount_usd"), secs=Sum("gpu_seconds"), idle=Sum("idle_usd")))
    with transaction.atomic():
        SpendRollupMonth.objects.filter(tenant_id=tenant_id, month=month).delete()
        generation_bump(tenant_id)
        SpendRollupMonth.objects.bulk_create([
            SpendRollupMonth(month=month, tenant_id=tenant_id, project_id=r["project_id"],
                             provider_account_id=r["provider_account_id"], workload_id=r["workload_id"],
                             amount_usd=r["usd"] or 0, gpu_seconds=r["secs"] or 0, idle_usd=r["idle"] or 0)
            for r in rows
        ])
    return len(rows)


def rollup_dirty(*, before: date | None = None) -> int:
    """Rebuild every dirty (tenant, day), then each touched month once; with ``before``, only
    days before it. Returns the number of days rebuilt.

    Safe to run concurrently or twice: a marker is deleted only if nobody re-marked it while
    we rebuilt (compare on ``marked_at``), otherwise it stays for the next run.
    """
    qs = RollupDirty.objects.all()
    if before is not None:
        qs = qs.filter(day__lt=before)
    groups: dict[tuple, list[RollupDirty]] = {}
    for marker in qs.order_by("tenant_id", "day"):
        groups.setdefault((marker.tenant_id, marker.day.replace(day=1)), []).append(marker)
    n = 0
    for (tenant_id, month), markers in groups.items():
        for marker in markers:
            rollup_day(tenant_id=tenant_id, day=marker.day)
        rollup_month(tenant_id=tenant_id, month=month)
        for marker in markers:  # only after the month is consistent with its days
            RollupDirty.objects.filter(pk=marker.pk, marked_at=marker.marked_at).delete()
        n += len(markers)
    return n


def rollup_rebuild(*, tenant_id, since: date, until: date) -> int:
    """Rebuild a range of days (operator tool, e.g. after importing provider invoices)."""
    n = 0
    day = since
    months = set()
    while day <= until:
        n += rollup_day(tenant_id=tenant_id, day=day)
        months.add(day.replace(day=1))
        day += timedelta(days=1)
    for month in sorted(months):
        rollup_month(tenant_id=tenant_id, month=month)
    return n
