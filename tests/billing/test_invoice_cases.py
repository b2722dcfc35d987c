"""Invoice cases: each pod's ledger must sum to exactly what the provider's rules invoice,
to the cent, however often the meter ran in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import pytest

from billing.metering import pod_meter
from billing.models import LedgerEntry
from providers.models import InvoiceRate
from provisioner import clock
from tests.standins.fixtures import hetzner_ssh, no_sleep, served_hetzner  # noqa: F401
from workloads.models import PodState

from .helpers import account, invoice_cents, make_pod, run_timeline
from .invoice_path import drive, launch_pod, ledger_cents, page_and_csv_totals
from .invoice_table import CASES, EUR_RATE

H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
T0 = datetime(2026, 3, 10, 22, 15, tzinfo=UTC)
R, STOP, TERM, INT = PodState.RUNNING, PodState.STOPPED, PodState.TERMINATED, PodState.INTERRUPTED

@pytest.mark.django_db
@pytest.mark.parametrize("case_id,kind,offer,volumes,start,steps,cadence,cents", CASES, ids=[c[0] for c in CASES])
def test_invoice_case(owner_client, tenant, project, owner, case_id, kind, offer, volumes, start, steps, cadence,
                      cents):
    """One row of the case table (tests/billing/invoice_table.py), through the real path."""
    InvoiceRate.objects.update_or_create(currency="EUR", defaults={"usd_per_unit": EUR_RATE})
    pod = launch_pod(tenant, project, owner, kind=kind, offer=offer, volumes=volumes, at=start)
    last = drive(pod, start, steps, meter_every=cadence)
    assert ledger_cents(pod) == cents
    pod.refresh_from_db()
    assert (pod.cost_usd * 100).quantize(Decimal(1), ROUND_HALF_UP) == cents  # the pod's running total agrees
    page, export = page_and_csv_totals(owner_client, start, last)
    assert page == export == f"{Decimal(cents) / 100:.2f}"  # the page and the CSV show the invoice, to the cent


def test_the_table_covers_every_provider_and_situation():
    kinds = {c[1] for c in CASES}
    assert kinds >= {"aws", "gcp", "azure", "lambda", "runpod", "vast", "coreweave", "hetzner"}
    assert len(CASES) >= 50
    ids = " ".join(c[0] for c in CASES)
    for word in ("3 s", "30 days", "across the hour", "midnight", "month end", "DST", "restart", "interrupted early",
                 "interrupted late", "stopped", "EUR", "setup", "cap reached"):
        assert word in ids, word


@pytest.mark.django_db
def test_rate_change_never_rewrites_history(tenant, project, owner):
    InvoiceRate.objects.update_or_create(currency="EUR", defaults={"usd_per_unit": Decimal("1.10")})
    pod = make_pod(tenant, project, owner, account(tenant, "sandbox", currency="EUR"), price="1.50", currency="EUR")
    run_timeline(pod, T0, [(0 * S, R), (2 * H, TERM)], meter_every=30 * M)
    InvoiceRate.objects.filter(currency="EUR").update(usd_per_unit=Decimal("2.00"))
    with clock.frozen(T0 + timedelta(days=10)):
        pod_meter(pod_id=pod.pk)
    assert invoice_cents(pod) == 330
    assert set(LedgerEntry.objects.filter(pod=pod).values_list("usd_rate", flat=True)) == {Decimal("1.10")}


@pytest.mark.django_db
def test_interrupted_pod_is_not_charged_after_interruption(tenant, project, owner):
    pod = make_pod(tenant, project, owner, account(tenant, "sandbox", increment_seconds=1), price="3.60", spot=True)
    run_timeline(pod, T0, [(0 * S, R), (10 * M, INT)], meter_every=M, settle=timedelta(hours=5))
    assert invoice_cents(pod) == 60
    last = LedgerEntry.objects.filter(pod=pod).order_by("-bucket_start").first()
    assert last.bucket_start <= T0 + 10 * M


@pytest.mark.django_db
def test_ledger_buckets_are_hourly_and_split_at_midnight(tenant, project, owner):
    pod = make_pod(tenant, project, owner, account(tenant, "sandbox", increment_seconds=1), price="1.00")
    run_timeline(pod, T0, [(0 * S, R), (3 * H, TERM)], meter_every=H * 10)  # one meter covers it all
    entries = list(LedgerEntry.objects.filter(pod=pod).order_by("bucket_start"))
    assert [e.bucket_start.hour for e in entries] == [22, 23, 0, 1]
    assert {e.bucket_end - e.bucket_start for e in entries} == {H}
    assert sum(e.amount_usd for e in entries) == Decimal("3.000000")
    assert entries[0].seconds == pytest.approx(45 * 60)


@pytest.mark.django_db
def test_live_cost_matches_what_the_ledger_will_book(tenant, project, owner):
    from billing.gate import live_cost_usd
    from workloads.pods.selectors import pod_cost_so_far

    from .helpers import to

    pod = make_pod(tenant, project, owner, account(tenant, increment_seconds=3600, minimum_charge_seconds=0),
                   price="2.49")
    with clock.frozen(T0):
        to(pod, R)
    for minutes in (1, 10, 59, 61):
        with clock.frozen(T0 + minutes * M):
            pod.refresh_from_db()
            live = pod_cost_so_far(pod)
            assert live == live_cost_usd(pod)
            pod_meter(pod_id=pod.pk)
            pod.refresh_from_db()
            assert live == pod.cost_usd  # the meter booked exactly what the page showed
    assert pod.cost_usd == Decimal("4.98")  # 61 minutes on an hourly provider: two hours


@pytest.mark.django_db
def test_hetzner_server_launched_through_the_real_path_books_setup_once_and_caps_each_month(
        tenant, project, owner, served_hetzner, no_sleep, hetzner_ssh):  # noqa: F811
    """Robot stand-in -> capacity poll -> placement -> launch (offer snapshot) -> meter: the GEX44's
    EUR 79 setup fee is booked exactly once, and no calendar month costs more than EUR 184.
    Held 2026-03-03 00:00 -> 04-20 00:00: March 696 h x 0.295 = 205.32 -> capped 184; April
    456 h x 0.295 = 134.52 (under the cap); + 79 = 397.52 EUR."""
    from billing.metering import meter_all
    from providers.models import ProviderAccount
    from providers.services import capacity_poll
    from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings
    from workloads.lifecycle import services
    from workloads.lifecycle.bootstrap import pod_bootstrap
    from workloads.models import Lifecycle

    InvoiceRate.objects.update_or_create(currency="EUR", defaults={"usd_per_unit": EUR_RATE})
    account = ProviderAccount.objects.create(tenant=tenant, kind="hetzner", name="Hetzner (stand-in)",
                                             credentials=STANDIN_CREDENTIALS["hetzner"],
                                             settings=account_settings(served_hetzner, **hetzner_ssh))
    start = datetime(2026, 3, 3, tzinfo=UTC)
    with clock.frozen(start - H):
        capacity_poll(accounts=[account])
        w = services.workload_create(tenant=tenant, project=project, owner=owner, name="llm", image="img:1",
                                     gpu_class="RTX4000ADA", gpu_count=1, lifecycle=Lifecycle.SERVICE,
                                     max_price_per_hour=Decimal("0.5"))
        (pod,) = services.workload_launch(workload=w, enqueue=False)
        pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.offer_snapshot["monthly_price"] == "184.00" and pod.offer_snapshot["setup_fee"] == "79.00"
    with clock.frozen(start):
        pod = services.pod_refresh(pod_id=str(pod.pk))  # delivered: the workload is started over SSH
        pod = pod_bootstrap(pod_id=str(pod.pk))  # the bootstrap task (after commit, in production)
    assert pod.state == PodState.RUNNING and pod.currency == "EUR"
    end = datetime(2026, 4, 20, tzinfo=UTC)
    t = start
    while t < end:
        with clock.frozen(t):
            meter_all()
        t += 6 * H
    with clock.frozen(end):
        services.pod_terminate(pod_id=str(pod.pk))
    for later in (end + H, end + 40 * 24 * H):  # after the cancellation: nothing more, no "rest of the month"
        with clock.frozen(later):
            meter_all()
    entries = LedgerEntry.objects.filter(pod=pod)
    assert [e.amount for e in entries.filter(kind="setup")] == [Decimal("79")]
    by_month: dict = {}
    for e in entries.filter(kind="gpu"):
        by_month[e.bucket_start.month] = by_month.get(e.bucket_start.month, Decimal(0)) + e.amount
    assert by_month == {3: Decimal("184"), 4: Decimal("134.52")}
    assert invoice_cents(pod) == int((Decimal("397.52") * EUR_RATE * 100).quantize(Decimal(1)))  # 42932
