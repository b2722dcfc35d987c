"""Shared builders for billing tests: pods at any provider kind, driven through real
transitions and metered the way the periodic task does."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Sum

from billing.metering import pod_meter
from billing.models import LedgerEntry
from providers.models import ProviderAccount
from provisioner import clock
from workloads.lifecycle import services as wl
from workloads.models import Pod

from ..factories import PodFactory, ProviderAccountFactory, WorkloadFactory


def account(tenant, kind: str = "sandbox", name: str | None = None, **billing) -> ProviderAccount:
    return ProviderAccountFactory(tenant=tenant, kind=kind, name=name or f"{kind} {ProviderAccount.objects.count()}",
                                  settings={"billing": billing} if billing else {})


def make_pod(tenant, project, owner, acct, *, price: str, currency: str = "USD", usd_rate: str = "1",
             spot: bool = False, volumes=None, snapshot=None, name: str = "job") -> Pod:
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner, name=name, image="img", volumes=volumes or [])
    p = Decimal(price)
    return PodFactory(workload=w, provider_account=acct, price_per_hour=p, currency=currency,
                      price_usd_per_hour=p * Decimal(usd_rate), spot=spot, offer_snapshot=snapshot or {}, external_id="x")


def to(pod: Pod, state: str) -> None:
    pod.refresh_from_db()
    assert wl.pod_transition(pod, state, f"test -> {state}")


def run_timeline(pod: Pod, start: datetime, steps: list[tuple[timedelta, str]], *, meter_every=timedelta(minutes=7),
                 settle=timedelta(days=3)) -> None:
    """Drive ``pod`` through ``steps`` (offset from start, new state), metering every
    ``meter_every`` like the periodic task, then once more well after the end."""
    events = sorted(steps)
    t = start
    last = start + events[-1][0]
    i = 0
    while i < len(events) or t <= last + meter_every:
        while i < len(events) and start + events[i][0] <= t:
            with clock.frozen(start + events[i][0]):
                to(pod, events[i][1])
            i += 1
        with clock.frozen(t):
            pod_meter(pod_id=pod.pk)
        t += meter_every
    for extra in (last + settle / 2, last + settle):  # later meters must add nothing
        with clock.frozen(extra):
            pod_meter(pod_id=pod.pk)


def invoice_cents(pod: Pod) -> int:
    total = LedgerEntry.objects.filter(pod=pod).aggregate(s=Sum("amount_usd"))["s"] or Decimal(0)
    return int((total * 100).quantize(Decimal(1), ROUND_HALF_UP))
