"""The path a real launch's money takes, for the invoice-case table: an offer stored by the
capacity poll's own store, the launch's intent write (which snapshots the offer onto the pod),
real state transitions, the periodic meter, the rollups, then the Spend page and its CSV."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Sum
from django.urls import reverse

from billing.metering import meter_all
from billing.models import LedgerEntry
from billing.rollups import rollup_dirty
from providers.adapters.base import OfferData
from providers.models import Offer, ProviderAccount
from providers.services import PollResult, capacity_store
from provisioner import clock
from workloads.lifecycle import services as wl
from workloads.lifecycle.failover import _intent_fields
from workloads.models import Pod, PodState
from workloads.placement.bids import bid_for
from workloads.placement.engine import OFFER_FIELDS


def launch_pod(tenant, project, owner, *, kind: str, offer: OfferData, volumes=None, at: datetime) -> Pod:
    """A pod launched on ``offer`` at a ``kind`` account: stored as the poll stores offers, loaded
    as placement loads them, written onto the pod by the launch's own intent write."""
    at = at.astimezone(UTC)
    acct = ProviderAccount.objects.create(tenant=tenant, kind=kind, name=f"{kind} {ProviderAccount.objects.count()}")
    with clock.frozen(at - timedelta(minutes=5)):
        capacity_store(account=acct, result=PollResult(str(acct.pk), [offer]))
        w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="job", image="img",
                               gpu_class=offer.gpu_class, gpu_count=offer.gpu_count, volumes=volumes or [])
        pod = Pod.objects.create(tenant=tenant, workload=w, project=project, state=PodState.PROVISIONING,
                                 requested_at=clock.now(), provisioning_at=clock.now())
    stored = Offer.objects.only(*OFFER_FIELDS).get(provider_account=acct)
    bid = bid_for(w, stored)  # a bidding provider's spot pod is priced at the launch's bid, as launches do
    assert Pod.objects.filter(pk=pod.pk, state=PodState.PROVISIONING).update(**_intent_fields(stored, bid))
    pod.refresh_from_db()
    return pod


def drive(pod: Pod, start: datetime, steps: list[tuple[timedelta, str]], *, meter_every: timedelta) -> datetime:
    """Move ``pod`` through ``steps`` (offset, state) with real transitions while the periodic
    meter runs every ``meter_every``; then meter twice more well after the end (adds nothing).
    Returns the instant of the last step."""
    start = start.astimezone(UTC)  # the meter's clock runs in real (UTC) time, not on a wall clock
    events = sorted(steps, key=lambda s: s[0])
    last = start + events[-1][0]
    t, i = start, 0
    while i < len(events) or t <= last + meter_every:
        while i < len(events) and start + events[i][0] <= t:
            with clock.frozen(start + events[i][0]):
                pod.refresh_from_db()
                assert wl.pod_transition(pod, events[i][1], f"test -> {events[i][1]}")
            i += 1
        with clock.frozen(t):
            meter_all()
        t += meter_every
    for extra in (last + timedelta(days=1), last + timedelta(days=3)):
        with clock.frozen(extra):
            meter_all()
    return last


def ledger_cents(pod: Pod) -> int:
    total = LedgerEntry.objects.filter(pod=pod).aggregate(s=Sum("amount_usd"))["s"] or Decimal(0)
    return int((total * 100).quantize(Decimal(1), ROUND_HALF_UP))


_PAGE_TOTAL = re.compile(r"<tfoot><tr><th[^>]*>Total [^<]*</th><th class=\"num\">\$([0-9,.\-]+)</th>")


def page_and_csv_totals(client, first: datetime, last: datetime) -> tuple[str, str]:
    """Rollups rebuilt, then the Spend page's and the CSV's total for the days ``first``..``last``."""
    rollup_dirty()
    first, last = first.astimezone(UTC), last.astimezone(UTC)
    q = {"range": "custom", "from": first.date().isoformat(), "to": last.date().isoformat()}
    with clock.frozen(last + timedelta(days=4)):
        page = client.get(reverse("billing:spend"), q)
        export = client.get(reverse("billing:export"), q)
    assert page.status_code == 200 and export.status_code == 200
    m = _PAGE_TOTAL.search(page.content.decode())
    assert m, "no total on the Spend page"
    header, *rows = list(csv.reader(io.StringIO(export.content.decode())))
    total = next(r for r in rows if r and r[0] == "total")
    return m.group(1).replace(",", ""), total[header.index("amount_usd")]  # by name: idle_usd follows it
