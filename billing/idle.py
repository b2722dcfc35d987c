"""Idle GPU spend: the dollars booked while EVERY GPU of a pod was below its workload's idle
threshold, from the utilization samples we already store (``workloads.UtilizationSample``).

The rule is the reaper's (``workloads.autoshutdown.idle``), applied to the past instead of a window ending
now: a GPU is idle while its latest sample is below ``idle_threshold_pct`` (busy at or above
it), and a sample speaks for its GPU for at most ``IDLE_MAX_GAP_SECONDS`` (the reaper's longest
hole that still counts as covered). A pod is idle while all of its GPUs (``gpu_count``, and
any other index that reported) are idle; without telemetry it is never idle, because a pod we
cannot see may be busy. Each GPU ledger line's idle share is its amount x (idle seconds inside
the line / its billed seconds), capped at the whole line.

Read in bulk: one query for the GPU ledger lines (with their pod's GPU count and threshold) and
one for their pods' samples, whatever the number of pods. ``billing.rollups`` stores the result
per day in ``SpendRollup.idle_usd`` so that past days survive sample retention
(``UTILIZATION_RETENTION_DAYS``); the dashboard computes only today live.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db.models import QuerySet

from workloads.models import UtilizationSample

from .models import LedgerEntry

ZERO = Decimal(0)
Key = tuple[str | None, str | None, str | None]  # (project, provider account, workload)


def _k(x) -> str | None:
    return None if x is None else str(x)


def idle_intervals(samples: list[tuple[float, int, float]], *, gpu_count: int, threshold: float,
                   hold_s: float) -> list[tuple[float, float]]:
    """Idle intervals (epoch seconds, merged, sorted) from one pod's samples ``(at, gpu, util)``
    sorted by ``at``: every required GPU has a sample no older than ``hold_s`` below ``threshold``."""
    if not samples:
        return []
    gpus = set(range(max(gpu_count, 1))) | {g for _at, g, _u in samples}
    # breakpoints: each sample and the moment it stops speaking for its GPU
    points = sorted({at for at, _g, _u in samples} | {at + hold_s for at, _g, _u in samples})
    last: dict[int, tuple[float, float]] = {}
    out: list[tuple[float, float]] = []
    i = 0
    for j, t in enumerate(points[:-1]):
        while i < len(samples) and samples[i][0] <= t:
            at, g, u = samples[i]
            last[g] = (at, u)
            i += 1
        idle = all(g in last and last[g][0] + hold_s > t and last[g][1] < threshold for g in gpus)
        if idle:
            end = points[j + 1]
            if out and out[-1][1] == t:
                out[-1] = (out[-1][0], end)
            else:
                out.append((t, end))
    return out


def _overlap(intervals: list[tuple[float, float]], starts: list[float], a: float, b: float) -> float:
    total = 0.0
    k = max(0, bisect_right(starts, a) - 1)
    while k < len(intervals) and intervals[k][0] < b:
        lo, hi = intervals[k]
        total += max(0.0, min(hi, b) - max(lo, a))
        k += 1
    return total


def idle_usd_by_key(*, tenant_id, start: datetime, end: datetime,
                    scope: Callable[[QuerySet], QuerySet] | None = None) -> dict[Key, Decimal]:
    """Idle USD per (project, provider account, workload) of the GPU ledger lines whose bucket
    starts in ``[start, end)``. ``scope``: narrows the ledger lines (the dashboard's filters).
    Two queries whatever the number of pods."""
    qs = LedgerEntry.objects.filter(tenant_id=tenant_id, kind=LedgerEntry.Kind.GPU, pod__isnull=False,
                                    bucket_start__gte=start, bucket_start__lt=end)
    if scope is not None:
        qs = scope(qs)
    lines = list(qs
                 .values_list("pod_id", "project_id", "provider_account_id", "workload_id", "bucket_start",
                              "bucket_end", "seconds", "amount_usd", "pod__gpu_count", "pod__workload__idle_threshold_pct")
                 .order_by())
    if not lines:
        return {}
    hold = float(settings.IDLE_MAX_GAP_SECONDS)
    last_end = max(r[5] for r in lines)
    by_pod: dict[str, list[tuple[float, int, float]]] = defaultdict(list)
    for pod_id, at, g, u in (UtilizationSample.objects
                             .filter(pod_id__in={r[0] for r in lines}, at__gte=start - timedelta(seconds=hold),
                                     at__lt=last_end)
                             .values_list("pod_id", "at", "gpu_index", "util_pct").order_by("pod_id", "at")):
        by_pod[str(pod_id)].append((at.timestamp(), g, u))
    intervals: dict[str, tuple[list, list]] = {}
    out: dict[Key, Decimal] = defaultdict(Decimal)
    for pod_id, project, provider, workload, b0, b1, secs, usd, gpu_count, threshold in lines:
        pod_id = str(pod_id)
        if pod_id not in intervals:
            iv = idle_intervals(by_pod.get(pod_id, []), gpu_count=gpu_count or 1,
                                threshold=float(threshold if threshold is not None else 0), hold_s=hold)
            intervals[pod_id] = (iv, [lo for lo, _hi in iv])
        iv, starts = intervals[pod_id]
        if not iv or not usd:
            continue
        a, b = b0.timestamp(), b1.timestamp()
        idle_s = _overlap(iv, starts, a, b)
        billed = secs if secs and secs > 0 else b - a
        if idle_s > 0 and billed > 0:
            share = Decimal(str(min(1.0, idle_s / billed)))
            out[(_k(project), _k(provider), _k(workload))] += (usd * share).quantize(Decimal("0.000001"))
    return dict(out)
