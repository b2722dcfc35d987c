"""Invoice cases: each pod's ledger must sum to exactly what the provider's rules invoice,
to the cent, however often the meter ran in between."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.metering import pod_meter
from billing.models import LedgerEntry
from providers.models import InvoiceRate
from provisioner import clock
from workloads.models import PodState

from .helpers import account, invoice_cents, make_pod, run_timeline

H = timedelta(hours=1)
M = timedelta(minutes=1)
S = timedelta(seconds=1)
T0 = datetime(2026, 3, 10, 22, 15, tzinfo=UTC)
R, STOP, TERM, INT = PodState.RUNNING, PodState.STOPPED, PodState.TERMINATED, PodState.INTERRUPTED

CASES = [
    # id, account billing rule, pod kwargs, timeline, meter cadence, expected cents
    ("per-second 1801 s at $2.49/h", {"increment_seconds": 1}, {"price": "2.49"},
     [(0 * S, R), (1801 * S, TERM)], 7 * M, 125),
    ("per-hour 1801 s at $2.49/h -> 1 h", {"increment_seconds": 3600}, {"price": "2.49"},
     [(0 * S, R), (1801 * S, TERM)], 7 * M, 249),
    ("per-hour 3601 s at $2.49/h -> 2 h", {"increment_seconds": 3600}, {"price": "2.49"},
     [(0 * S, R), (3601 * S, TERM)], 7 * M, 498),
    ("per-minute 61 s at $6.00/h -> 2 min", {"increment_seconds": 60}, {"price": "6.00"},
     [(0 * S, R), (61 * S, TERM)], 20 * S, 20),
    ("minimum charge 60 s: 10 s at $3.60/h", {"increment_seconds": 1, "minimum_charge_seconds": 60},
     {"price": "3.60"}, [(0 * S, R), (10 * S, TERM)], 3 * S, 6),
    ("EUR account: 2 h at EUR 1.50/h, rate 1.10, across midnight", {"increment_seconds": 1, "currency": "EUR"},
     {"price": "1.50", "currency": "EUR", "usd_rate": "1.10"}, [(0 * S, R), (2 * H, TERM)], 7 * M, 330),
    ("spot interrupted mid-hour, hourly: 1 h 30 min -> 1 h", {"increment_seconds": 3600},
     {"price": "1.20", "spot": True}, [(0 * S, R), (90 * M, INT)], 7 * M, 120),
    ("spot interrupted mid-hour, per-second: 1 h 30 min", {"increment_seconds": 1},
     {"price": "1.20", "spot": True}, [(0 * S, R), (90 * M, INT)], 7 * M, 180),
    ("stopped 73 h with 100 GB persistent at $0.10/GB-month + 1 h GPU at $2.00",
     {"increment_seconds": 1, "storage_billed_while_stopped": True, "storage_price_per_gb_month": "0.10"},
     {"price": "2.00", "volumes": [{"kind": "persistent", "size_gb": 100, "mount_path": "/data"},
                                   {"kind": "ephemeral", "size_gb": 500, "mount_path": "/tmp"}]},
     [(0 * S, R), (1 * H, STOP), (74 * H, TERM)], 30 * M, 300),
    ("stopped without storage billing: GPU only", {"increment_seconds": 1, "storage_billed_while_stopped": False},
     {"price": "2.00", "volumes": [{"kind": "persistent", "size_gb": 100, "mount_path": "/data"}]},
     [(0 * S, R), (1 * H, STOP), (74 * H, TERM)], 30 * M, 200),
]


@pytest.mark.django_db
@pytest.mark.parametrize("case_id,rule,pod_kw,timeline,cadence,cents", CASES, ids=[c[0] for c in CASES])
def test_invoice_case(tenant, project, owner, case_id, rule, pod_kw, timeline, cadence, cents):
    InvoiceRate.objects.update_or_create(currency="EUR", defaults={"usd_per_unit": Decimal("1.10")})
    pod = make_pod(tenant, project, owner, account(tenant, "sandbox", **rule), **pod_kw)
    run_timeline(pod, T0, timeline, meter_every=cadence)
    assert invoice_cents(pod) == cents
    pod.refresh_from_db()
    assert (pod.cost_usd * 100).quantize(Decimal(1)) == cents  # the pod's running total agrees


@pytest.mark.django_db
def test_monthly_dedicated_server_with_setup_fee(tenant, project, owner):
    """Hetzner GEX44-like: EUR 184/month + EUR 79 setup, held 10 Mar -> 5 Apr.
    March pro rata 22/31 days, April to month end (cancellation at month end), setup once:
    (184 * 22/31 + 184 + 79) EUR * 1.08 = 425.07 USD."""
    InvoiceRate.objects.update_or_create(currency="EUR", defaults={"usd_per_unit": Decimal("1.08")})
    acct = account(tenant, "hetzner", monthly_billed=True, currency="EUR")
    pod = make_pod(tenant, project, owner, acct, price="0.252055", currency="EUR", usd_rate="1.08",
                   snapshot={"monthly_price": "184.00", "setup_fee": "79.00"})
    start = datetime(2026, 3, 10, tzinfo=UTC)
    run_timeline(pod, start, [(0 * S, R), (timedelta(days=26), TERM)], meter_every=6 * H)
    assert invoice_cents(pod) == 42507
    setup = LedgerEntry.objects.get(pod=pod, kind="setup")
    assert setup.amount == Decimal("79") and setup.currency == "EUR" and setup.usd_rate == Decimal("1.08")
    # amortized: mid-March days carry about 184/31 EUR each, not a lump
    mar_20 = sum(e.amount for e in LedgerEntry.objects.filter(pod=pod, kind="gpu", bucket_start__date="2026-03-20"))
    assert abs(mar_20 - Decimal(184) / 31) < Decimal("0.001")


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
    from workloads.selectors import pod_cost_so_far

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
