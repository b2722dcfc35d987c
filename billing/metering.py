"""The ledger writer: turn pods' running/stopped time into hourly ledger entries.

For each pod, ``rules.charges_at`` says what the provider's invoice rules make it owe at any
instant. Metering books the difference between two instants into hourly buckets (one entry
per pod, kind and hour, upserted), so the pod's ledger always sums to exactly what it owes.
Each entry keeps the invoice rate it was booked at; a later rate change does not touch it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Q

from providers.models import ProviderAccount
from providers.selectors import is_usd, rate_for, usd_rates_by_tenant, usd_rates_needed
from provisioner import clock
from workloads.models import BILLABLE_POD_STATES, Pod, PodState

from .models import LedgerEntry, RollupDirty
from .rules import PodFacts, charges_at, q6, rule_for

HOUR = timedelta(hours=1)
FINAL = (PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED)


def floor_hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def persistent_gb(volumes) -> int:
    return sum(int(v.get("size_gb") or 0) for v in (volumes or []) if v.get("kind") == "persistent")


def _dt(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value)


def _dec(value) -> Decimal | None:
    return Decimal(str(value)) if value not in (None, "") else None


def run_sessions(pod: Pod, ended: datetime | None) -> tuple[tuple[datetime, datetime | None], ...]:
    """The pod's running sessions; pods from before sessions were recorded have one, from
    ``started_at`` to their stop or end."""
    if pod.run_sessions:
        return tuple((_dt(s), _dt(e)) for s, e in pod.run_sessions)
    if pod.started_at is None:
        return ()
    if pod.stopped_at is not None:
        return ((pod.started_at, pod.stopped_at),)
    return ((pod.started_at, None if pod.state in BILLABLE_POD_STATES else ended),)


def pod_facts(pod: Pod, volumes=None) -> PodFacts:
    """The billing-relevant facts of a pod, from its timestamps and launch snapshot."""
    final = pod.state in FINAL
    ended = pod.ended_at
    if final and ended is None:  # defensive: a final pod always has ended_at
        ended = pod.metered_until or pod.started_at
    sessions = run_sessions(pod, ended)
    if final and sessions and sessions[-1][1] is None:  # a session still open on an ended pod ends with it
        sessions = (*sessions[:-1], (sessions[-1][0], ended))
    snap = pod.offer_snapshot or {}
    return PodFacts(
        price_per_hour=pod.price_per_hour or Decimal(0), started_at=pod.started_at, ended_at=ended,
        sessions=sessions, interrupted=pod.state == PodState.INTERRUPTED, spot=bool(getattr(pod, "spot", False)),
        persistent_gb=persistent_gb(volumes if volumes is not None else pod.workload.volumes),
        boot_gb=int(snap.get("disk_gb") or 0),
        monthly_price=_dec(snap.get("monthly_price")), setup_fee=_dec(snap.get("setup_fee")) or Decimal(0),
        # a bidding provider charges the bid for the GPU (workloads.placement.bids): it replaces the
        # offer's GPU rate; the host's storage price still applies apart
        base_price_per_hour=_dec(snap.get("bid_per_hour")) or _dec(snap.get("base_price_per_hour")),
        offer_storage_per_gb_month=_dec(snap.get("storage_per_gb_month")),
    )


def settle_instant(pod: Pod, facts: PodFacts) -> datetime | None:
    """After this instant the pod's charges never change (None: still accruing)."""
    return facts.ended_at if pod.state in FINAL else None


def _instants(since: datetime, until: datetime) -> list[datetime]:
    points = [since]
    h = floor_hour(since) + HOUR
    while h < until:
        points.append(h)
        h += HOUR
    points.append(until)
    return points


def _running_overlap(facts: PodFacts, a: datetime, b: datetime) -> float:
    """Seconds of [a, b) the pod ran (GPU seconds of a ledger bucket)."""
    total = 0.0
    for s, e in facts.sessions or ((facts.started_at, facts.ended_at),):
        if s is None:
            continue
        end = b if e is None else min(e, b)
        total += max(0.0, (end - max(a, s)).total_seconds())
    return total


def pending_charges(pod: Pod, facts: PodFacts, rule, since: datetime, until: datetime) -> dict[tuple[str, datetime], tuple[Decimal, float]]:
    """(kind, hour bucket) -> (amount in provider currency, seconds) owed between two instants."""
    out: dict[tuple[str, datetime], tuple[Decimal, float]] = {}
    points = _instants(since, until)
    prev = charges_at(facts, rule, points[0])
    for a, b in zip(points, points[1:], strict=False):
        cur = charges_at(facts, rule, b)
        bucket = floor_hour(a)
        for kind, value in cur.items():
            delta = value - prev[kind]
            if delta:
                seconds = 0.0
                if kind == "gpu":
                    seconds = _running_overlap(facts, a, b)
                amt, secs = out.get((kind, bucket), (Decimal(0), 0.0))
                out[(kind, bucket)] = (amt + delta, secs + seconds)
        prev = cur
    return out


def mark_dirty(tenant_id, days) -> None:
    """Record that these days' ledger changed (same transaction as the change)."""
    now = clock.now()
    RollupDirty.objects.bulk_create(
        [RollupDirty(tenant_id=tenant_id, day=d, marked_at=now) for d in sorted(set(days))],
        update_conflicts=True, unique_fields=["tenant", "day"], update_fields=["marked_at"],
    )


def pod_meter(*, pod_id, until: datetime | None = None, rates_by_tenant: dict | None = None) -> int:
    """Book a pod's charges from where metering stopped up to ``until`` (default now).

    New ledger buckets are converted at the pod's tenant's invoice rates: taken from
    ``rates_by_tenant`` (tenant id -> rates, as ``meter_all`` reads them once per run) when it
    has the tenant, else read here. Runs under a row lock on the pod, so concurrent meters
    cannot double charge. Returns the number of ledger buckets written.
    """
    until = until or clock.now()
    with transaction.atomic():
        pod = Pod.objects.select_for_update().get(pk=pod_id)
        if pod.started_at is None or pod.price_per_hour is None or pod.provider_account_id is None:
            return 0
        account = ProviderAccount.objects.only("kind", "settings").get(pk=pod.provider_account_id)
        volumes = pod.workload.volumes
        rule = rule_for(account.kind, account.settings)
        facts = pod_facts(pod, volumes)
        since = pod.metered_until or pod.started_at
        settle = settle_instant(pod, facts)
        end = min(until, settle) if settle else until
        if end <= since:
            return 0
        owed = pending_charges(pod, facts, rule, since, end)
        if rates_by_tenant is not None and pod.tenant_id in rates_by_tenant:
            rates = rates_by_tenant[pod.tenant_id]
        else:
            rates = usd_rates_needed(pod.tenant_id, [pod.currency])
        rate = rate_for(pod.currency, rates)
        total_usd = Decimal(0)
        if owed:
            buckets = {b for _, b in owed}
            existing = {(e.kind, e.bucket_start): e for e in LedgerEntry.objects.filter(
                pod=pod, bucket_start__in=buckets).exclude(kind=LedgerEntry.Kind.CORRECTION)}
            new, changed = [], []
            for (kind, bucket), (amount, seconds) in sorted(owed.items(), key=lambda kv: kv[0][1]):
                entry = existing.get((kind, bucket))
                if entry is None:
                    usd = q6(amount * rate)
                    new.append(LedgerEntry(
                        tenant_id=pod.tenant_id, project_id=pod.project_id, provider_account_id=pod.provider_account_id,
                        workload_id=pod.workload_id, pod=pod, kind=kind, bucket_start=bucket, bucket_end=bucket + HOUR,
                        seconds=seconds, amount=amount, currency=pod.currency, usd_rate=rate, amount_usd=usd))
                else:
                    usd = q6(amount * entry.usd_rate)  # the bucket keeps the rate it was opened with
                    entry.amount += amount
                    entry.amount_usd += usd
                    entry.seconds += seconds
                    changed.append(entry)
                total_usd += usd
            LedgerEntry.objects.bulk_create(new)
            if changed:
                LedgerEntry.objects.bulk_update(changed, ["amount", "amount_usd", "seconds", "updated_at"])
            mark_dirty(pod.tenant_id, [b.date() for b in buckets])
        Pod.objects.filter(pk=pod.pk).update(metered_until=end, cost_usd=F("cost_usd") + total_usd)
        return len(owed)


def pods_to_meter():
    """Pods with time not yet booked: billing now, stopped (storage / held servers), or
    ended after their last meter."""
    return (Pod.objects.filter(started_at__isnull=False, price_per_hour__isnull=False)
            .filter(Q(state__in=[*BILLABLE_POD_STATES, PodState.STOPPED])
                    | Q(metered_until__isnull=True) | Q(metered_until__lt=F("ended_at"))))


def meter_all(*, until: datetime | None = None) -> int:
    """Meter every pod with unbooked time; then release reservations of ended pods."""
    from .budgets import reservations_release_finished

    pods = list(pods_to_meter().values_list("pk", "tenant_id", "currency"))
    # the rates of every tenant billed in another currency, in one query for the whole run
    priced = {t for _, t, c in pods if not is_usd(c)}
    rates_by_tenant = usd_rates_by_tenant(priced) if priced else {}
    n = 0
    for pod_id, _, _ in pods:
        if pod_meter(pod_id=pod_id, until=until, rates_by_tenant=rates_by_tenant):
            n += 1
    reservations_release_finished()
    return n


def ledger_correct(*, pod: Pod | None = None, tenant_id=None, project_id=None, provider_account_id=None,
                   workload_id=None, at: datetime, amount: Decimal, currency: str = "USD", note: str = "") -> LedgerEntry:
    """Book a correction (e.g. a provider credit or a late charge) into the past bucket it
    belongs to, at the tenant's invoice rate; the affected day's rollup is rebuilt by the next
    rollup run."""
    if pod is not None:
        tenant_id, project_id = pod.tenant_id, pod.project_id
        provider_account_id, workload_id = pod.provider_account_id, pod.workload_id
    rate = rate_for(currency, usd_rates_needed(tenant_id, [currency]))
    bucket = floor_hour(at)
    with transaction.atomic():
        entry = LedgerEntry.objects.create(
            tenant_id=tenant_id, project_id=project_id, provider_account_id=provider_account_id,
            workload_id=workload_id, pod=pod, kind=LedgerEntry.Kind.CORRECTION, bucket_start=bucket,
            bucket_end=bucket + HOUR, amount=amount, currency=currency, usd_rate=rate,
            amount_usd=q6(Decimal(amount) * rate), note=note[:300])
        if pod is not None:
            Pod.objects.filter(pk=pod.pk).update(cost_usd=F("cost_usd") + entry.amount_usd)
        mark_dirty(tenant_id, [bucket.date()])
    return entry


_RULES: dict[tuple[str, str], object] = {}


def _cached_rule(kind: str, account_settings: dict | None):
    """``rule_for`` memoized on the account's billing override (read on every dashboard poll)."""
    billing = (account_settings or {}).get("billing") or {}
    key = (kind, json.dumps(billing, sort_keys=True, default=str))
    rule = _RULES.get(key)
    if rule is None:
        if len(_RULES) > 1000:
            _RULES.clear()
        rule = _RULES[key] = rule_for(kind, account_settings)
    return rule


def unbooked_usd(pod: Pod, rates: Mapping[str, Decimal], at: datetime | None = None) -> Decimal:
    """What the pod owes beyond its ledger right now (the live tail since the last meter),
    computed with the same rules as the ledger. Needs ``provider_account`` and ``workload``
    loaded."""
    if pod.started_at is None or pod.price_per_hour is None or pod.provider_account is None:
        return Decimal(0)
    at = at or clock.now()
    facts = pod_facts(pod)
    settle = settle_instant(pod, facts)
    end = min(at, settle) if settle else at
    since = pod.metered_until or pod.started_at
    if end <= since:
        return Decimal(0)
    rule = _cached_rule(pod.provider_account.kind, pod.provider_account.settings)
    a, b = charges_at(facts, rule, since), charges_at(facts, rule, end)
    return q6(sum((b[k] - a[k] for k in b), Decimal(0)) * rate_for(pod.currency, rates))

