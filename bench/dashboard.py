#!/usr/bin/env python
"""Spend dashboard over one year of history for 1,000 pods (issue 5).

PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_dashboard; created if
missing). The data set is generated once at a fixed clock and reused by later runs:
1,000 pods over the year before NOW on 5 provider accounts and 4 projects — 200 long-running
services (60-365 days, 60 of them still running) and 800 jobs (1-14 days) — with their
hourly ledger lines written by COPY and the daily rollups built from them in one
INSERT ... SELECT (the same grouping as ``billing.rollups.rollup_day``), then the monthly
rollups from the daily ones (as ``rollup_month``).

Measured at NOW. Both the "last 365 days" view stacked by provider with monthly aggregates (the headline) and
the same range with daily bars (``daily_grain_ms``, reads daily rollups only) are timed.
Runs are interleaved in rounds (two requests, one cold request, one baseline; 8 rounds, 4 in
quick mode) so that the ratios compare runs made under the same machine load.
* ``value``: median server time of the whole dashboard request (Django test client: middleware,
  access check, rollup reads, today's ledger, live accrual of running pods, plotly charts,
  budget gauges, template). This is the request as finance and
  the page's 5-second HTMX refresh make it: the history part read from the rollups is cached
  under the tenant's rollup generation, so repeated requests read only today's ledger and
  the live pods;
* ``cold_ms``: the same request right after the rollups changed (generation bumped, nothing
  cached: every rollup read runs), and ``cold_speedup``;
* ``baseline_ms``: median time to compute the same figures from the raw ledger
  (``billing.dashboard.build`` and ``budget_gauges`` with ``source="ledger"``; no rendering,
  no middleware, so the ratio is conservative);
  the bench checks both give identical figures.
OK when value <= 150 ms, cold_ms <= 150 ms and baseline / value >= 20.
``--quick``: fewer runs over the same one-year data set (built once, about two minutes, then
reused); ``--days N`` builds a shorter history (a separate data set) for experiments.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._pg import ensure_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_dashboard"
NOW = datetime(2026, 6, 15, 14, 30, tzinfo=UTC)  # fixed clock: the data set stays valid between runs
PODS = 1_000
TARGET_MS = 150.0
TARGET_SPEEDUP = 20.0


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def build_dataset(days: int) -> dict:
    """Create (or reuse) the tenant with ``days`` of history. Returns what the bench needs."""
    from django.db import connection, transaction

    from billing.models import Budget, LedgerEntry, SpendRollup
    from providers.models import ProviderAccount
    from tenants.models import Membership, Project, Role, Tenant
    from tenants.services import membership_set, tenant_create
    from workloads.models import Pod, PodState, Workload

    slug = f"bench-dashboard-v1-{days}d"
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is not None and Pod.objects.filter(tenant=tenant).count() == PODS and SpendRollup.objects.filter(tenant=tenant).exists():
        user = Membership.objects.filter(tenant=tenant, role=Role.FINANCE).first().user
        return {"tenant": tenant, "user": user, "ledger_rows": LedgerEntry.objects.filter(tenant=tenant).count(),
                "rollup_rows": SpendRollup.objects.filter(tenant=tenant).count(), "reused": True}
    for old in Tenant.objects.filter(slug=slug):
        with connection.cursor() as cur:
            for table in ("billing_spendrollup", "billing_ledgerentry", "billing_budgetreservation"):
                cur.execute(f"DELETE FROM {table} WHERE tenant_id = %s", [old.pk])
        old.delete()
    rnd = random.Random(42)
    from django.contrib.auth import get_user_model

    with transaction.atomic():
        tenant = tenant_create(name=f"Bench dashboard {days}d", slug=slug)
        user, _ = get_user_model().objects.get_or_create(username=f"bench-finance-{days}")
        membership_set(tenant=tenant, user=user, role=Role.FINANCE)
        projects = [Project.objects.get_or_create(tenant=tenant, name=n)[0] for n in ("Default", "Research", "Prod", "Data")]
        accounts = [ProviderAccount.objects.create(tenant=tenant, kind="sandbox", name=f"Provider {i}",
                                                   settings={"billing": {"increment_seconds": 1}}) for i in range(5)]
        Budget.objects.create(tenant=tenant, name="Org monthly", amount_usd=Decimal("250000"), period="month",
                              soft_thresholds=[50, 80, 100])
        Budget.objects.create(tenant=tenant, project=projects[1], name="Research monthly", amount_usd=Decimal("60000"),
                              period="month", soft_thresholds=[80])
        start_of_history = (NOW - timedelta(days=days)).replace(minute=0, second=0, microsecond=0)
        workloads, pods, plans = [], [], []
        scale = days / 365
        for i in range(PODS):
            project, acct = rnd.choice(projects), rnd.choice(accounts)
            price = Decimal(rnd.choice(["0.44", "1.29", "2.49", "3.99", "7.96", "15.92"]))
            service = i < 200
            hours = int(24 * (rnd.uniform(60, 365) if service else rnd.uniform(1, 14)) * scale) + 1
            still_running = service and i < 60
            if still_running:
                start = NOW.replace(minute=0, second=0, microsecond=0) - timedelta(hours=min(hours, days * 24 - 1))
                end = None
            else:
                span = max(1, days * 24 - hours - 1)
                start = start_of_history + timedelta(hours=rnd.randrange(span))
                end = start + timedelta(hours=hours)
            w = Workload(tenant=tenant, project=project, owner=user, name=f"{'svc' if service else 'job'}-{i:04d}",
                         image="bench", gpu_class="A100-80", lifecycle="service" if service else "job")
            workloads.append(w)
            metered = NOW.replace(minute=0, second=0, microsecond=0) if end is None else end
            pods.append(Pod(tenant=tenant, workload=w, project=project, provider_account=acct, gpu_class="A100-80",
                            price_per_hour=price, currency="USD", price_usd_per_hour=price,
                            state=PodState.RUNNING if end is None else PodState.TERMINATED, requested_at=start,
                            started_at=start, ended_at=end, metered_until=metered, external_id=f"b{i}",
                            cost_usd=price * int((metered - start).total_seconds() // 3600)))
            plans.append((start, metered, price))
        Workload.objects.bulk_create(workloads, batch_size=500)
        for p, w in zip(pods, workloads, strict=True):
            p.workload_id = w.pk
        Pod.objects.bulk_create(pods, batch_size=500)
        buf = io.StringIO()
        rows = 0
        for pod, (start, end, price) in zip(pods, plans, strict=True):
            h = start
            while h < end:
                buf.write(f"{tenant.pk}\t{pod.project_id}\t{pod.provider_account_id}\t{pod.workload_id}\t{pod.pk}\tgpu\t"
                          f"{h.isoformat()}\t{(h + timedelta(hours=1)).isoformat()}\t3600\t{price}\tUSD\t1\t{price}\t\t"
                          f"{NOW.isoformat()}\t{NOW.isoformat()}\n")
                h += timedelta(hours=1)
                rows += 1
        buf.seek(0)
        cols = ("tenant_id, project_id, provider_account_id, workload_id, pod_id, kind, bucket_start, bucket_end, "
                "seconds, amount, currency, usd_rate, amount_usd, note, created_at, updated_at")
        with connection.cursor() as cur:
            with cur.copy(f"COPY billing_ledgerentry ({cols}) FROM STDIN") as copy:
                while chunk := buf.read(1 << 20):
                    copy.write(chunk)
            # rollups for every finished day (today is read from the ledger), grouped as rollup_day does
            cur.execute(
                "INSERT INTO billing_spendrollup (day, tenant_id, project_id, provider_account_id, workload_id, amount_usd, gpu_seconds, idle_usd) "
                "SELECT (bucket_start AT TIME ZONE 'UTC')::date, tenant_id, project_id, provider_account_id, workload_id, "
                "SUM(amount_usd), SUM(CASE WHEN kind = 'gpu' THEN seconds ELSE 0 END), 0 FROM billing_ledgerentry "
                "WHERE tenant_id = %s AND bucket_start < %s GROUP BY 1, 2, 3, 4, 5",
                [tenant.pk, NOW.replace(hour=0, minute=0, second=0, microsecond=0)])
    with connection.cursor() as cur:
        cur.execute("ANALYZE billing_ledgerentry")
        cur.execute("ANALYZE billing_spendrollup")
    return {"tenant": tenant, "user": user, "ledger_rows": rows,
            "rollup_rows": SpendRollup.objects.filter(tenant=tenant).count(), "reused": False}


def ensure_monthly_rollups(tenant) -> int:
    """Monthly rollups summed from the daily ones (as ``billing.rollups.rollup_month`` does)."""
    from django.db import connection

    from billing.models import SpendRollupMonth

    if not SpendRollupMonth.objects.filter(tenant=tenant).exists():
        with connection.cursor() as cur:
            cur.execute(
                "INSERT INTO billing_spendrollupmonth (month, tenant_id, project_id, provider_account_id, workload_id, "
                "amount_usd, gpu_seconds, idle_usd) SELECT date_trunc('month', day)::date, tenant_id, project_id, "
                "provider_account_id, workload_id, SUM(amount_usd), SUM(gpu_seconds), SUM(idle_usd) FROM billing_spendrollup "
                "WHERE tenant_id = %s GROUP BY 1, 2, 3, 4, 5", [tenant.pk])
            cur.execute("ANALYZE billing_spendrollupmonth")
    return SpendRollupMonth.objects.filter(tenant=tenant).count()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    days = args.days
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not url.startswith("postgres"):
        url = DEFAULT_DB
    ensure_database(url)
    setup_django(url)
    from django.conf import settings
    from django.db import transaction
    from django.test import Client

    from billing import dashboard
    from billing.rollups import generation_bump
    from billing.selectors import budgets_for_tenant
    from provisioner import clock

    # served as in production: no query log, and no test instrumentation of template rendering
    # (setup_test_environment's signal copies every template context: not server time)
    settings.DEBUG = False
    t0 = time.perf_counter()
    data = build_dataset(days)
    data["rollup_month_rows"] = ensure_monthly_rollups(data["tenant"])
    setup_s = time.perf_counter() - t0
    tenant, user = data["tenant"], data["user"]
    params = {"range": "365d", "group": "provider", "grain": "month"}
    client = Client()
    client.force_login(user)
    rounds = 4 if args.quick else 8
    with clock.frozen(NOW):
        projects, providers = dashboard.name_maps(tenant)
        f = dashboard.parse_filters(params, projects=projects, providers=providers, today=NOW.date())
        fast = dashboard.build(tenant, f, projects=projects, providers=providers)
        slow = dashboard.build(tenant, f, projects=projects, providers=providers, source="ledger")
        budgets = list(budgets_for_tenant(tenant))
        gauges_fast = [(g["budget"].pk, g["spent"]) for g in dashboard.budget_gauges(tenant, budgets)]
        gauges_slow = [(g["budget"].pk, g["spent"]) for g in dashboard.budget_gauges(tenant, budgets, source="ledger")]
        same = fast.rows() == slow.rows() and fast.total == slow.total and fast.top == slow.top \
            and fast.mtd_daily == slow.mtd_daily and gauges_fast == gauges_slow
        resp = client.get("/spend/", params)  # warm-up (imports, template compile)
        assert resp.status_code == 200, resp.status_code
        # interleaved rounds, so that the ratios compare runs that saw the same machine load:
        # two dashboard requests, one cold request (rollups just changed), one raw-ledger baseline
        times: list[float] = []
        cold: list[float] = []
        base: list[float] = []

        def timed(fn) -> float:
            t = time.perf_counter()
            fn()
            return (time.perf_counter() - t) * 1000

        def request() -> None:
            assert client.get("/spend/", params).status_code == 200

        def baseline() -> None:
            dashboard.build(tenant, f, projects=projects, providers=providers, source="ledger")
            dashboard.budget_gauges(tenant, list(budgets_for_tenant(tenant)), source="ledger")

        for _ in range(rounds):
            times += [timed(request), timed(request)]
            with transaction.atomic():
                generation_bump(tenant.pk)  # what a rollup rewrite does: nothing cached applies any more
            cold.append(timed(request))
            base.append(timed(baseline))
        daily_params = {**params, "grain": "day"}
        client.get("/spend/", daily_params)
        daily_times = []
        for _ in range(max(3, rounds)):
            t = time.perf_counter()
            client.get("/spend/", daily_params)
            daily_times.append((time.perf_counter() - t) * 1000)
    value, baseline = statistics.median(times), statistics.median(base)
    speedup = baseline / value if value else 0.0
    cold_ms = statistics.median(cold)
    out = {"bench": "dashboard", "metric": "spend dashboard server time, 365-day view (median)",
           "value": round(value, 1), "unit": "ms", "target": TARGET_MS,
           "baseline_ms": round(baseline, 1), "baseline": "same figures from the raw ledger (median)",
           "speedup": round(speedup, 1), "cold_ms": round(cold_ms, 1),
           "cold_speedup": round(baseline / cold_ms, 1) if cold_ms else 0.0, "daily_grain_ms": round(statistics.median(daily_times), 1), "target_speedup": TARGET_SPEEDUP, "same_figures": same,
           "history_days": days, "pods": PODS, "ledger_rows": data["ledger_rows"], "rollup_rows": data["rollup_rows"],
           "rollup_month_rows": data["rollup_month_rows"],
           "dataset_reused": data["reused"], "setup_s": round(setup_s, 1), "quick": args.quick,
           "ok": bool(same and value <= TARGET_MS and cold_ms <= TARGET_MS and speedup >= TARGET_SPEEDUP)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
