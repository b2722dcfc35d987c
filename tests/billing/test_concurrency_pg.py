"""Concurrent launches cannot overspend: the budget has headroom for exactly 10 pods and 50
launches race for it. Needs PostgreSQL's row locks (SELECT ... FOR UPDATE), so it runs only
when DATABASE_URL points at PostgreSQL (as in CI)."""

from __future__ import annotations

import os
import threading
from datetime import timedelta
from decimal import ROUND_CEILING, Decimal

import pytest
from django.db import connection

from billing.budgets import budget_create
from billing.models import BudgetReservation
from billing.selectors import period_end
from provisioner import clock
from workloads.lifecycle import services as wl
from workloads.models import Pod, PodState

pytestmark = [
    pytest.mark.skipif(not os.environ.get("DATABASE_URL", "").startswith("postgres"),
                       reason="row-lock concurrency test needs PostgreSQL (DATABASE_URL=postgres://...)"),
    pytest.mark.xdist_group("postgres-concurrency"),
]

N_LAUNCHES = 50
HEADROOM_PODS = 10


@pytest.mark.django_db(transaction=True)
def test_50_concurrent_launches_with_headroom_for_10(tenant, project, owner, sandbox):
    at = clock.now()
    if period_end("month", at) - at < timedelta(hours=2):
        at -= timedelta(hours=2)  # keep the whole 1 h reservation horizon inside the month
    with clock.frozen(at):
        w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="race", image="i",
                               gpu_class="A100-80", max_duration_minutes=60)
        pods = [wl.pod_request(workload=w, enqueue=False) for _ in range(N_LAUNCHES)]
        price = (sandbox.offers.filter(gpu_class="A100-80", gpu_count=1, spot=False).exclude(available=0)
                 .order_by("price_usd_per_hour").values_list("price_usd_per_hour", flat=True).first())
        # projected cost of one launch = price x 1 h (max duration); the budget (whole cents)
        # is 10 launches rounded up to the cent: room for exactly 10, not 11
        amount = (price * HEADROOM_PODS).quantize(Decimal("0.01"), rounding=ROUND_CEILING)
        assert price * HEADROOM_PODS <= amount < price * (HEADROOM_PODS + 1)
        budget_create(tenant=tenant, name="Race budget", project=project, amount_usd=amount,
                      period="month", soft_thresholds=[])
        barrier = threading.Barrier(N_LAUNCHES)
        errors: list[BaseException] = []

        def launch(pod_id):
            try:
                barrier.wait(timeout=60)
                wl.pod_provision(pod_id=str(pod_id))
            except BaseException as exc:  # surfaced below
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=launch, args=(p.pk,)) for p in pods]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
    assert not errors, errors[:3]
    states = list(Pod.objects.filter(workload=w).values_list("state", "state_reason"))
    launched = [s for s, _ in states if s in (PodState.RUNNING, PodState.PROVISIONING)]
    refused = [r for s, r in states if s == PodState.FAILED]
    prices = sorted(Pod.objects.filter(workload=w, state__in=[PodState.RUNNING, PodState.PROVISIONING])
                    .values_list("price_usd_per_hour", flat=True))
    assert len(launched) == HEADROOM_PODS, (price, prices, refused[:2])
    assert len(refused) == N_LAUNCHES - HEADROOM_PODS
    assert all('Budget "Race budget"' in r for r in refused)
    active = BudgetReservation.objects.filter(project=project, released_at__isnull=True)
    assert active.count() == HEADROOM_PODS
    assert sum(r.amount_usd for r in active) <= amount
    assert Decimal(0) < price
