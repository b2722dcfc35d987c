#!/usr/bin/env python
"""One idle-reaper tick over 10,000 running pods with an hour of GPU samples each (issue 8).

PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_reaper; the database is
created if missing). Samples are loaded with COPY at a fixed clock, so the data set is reused by
later runs. The fleet, a busy tick of a steady state: 88 % busy, 5 % idle and already warned
(inside their grace period), 3 % newly idle (warned by this tick), 1 % newly silent (warned of
missing telemetry), 2 % silent and already flagged, 1 % idle past their grace (handed to the
stop task). Each tick runs inside a transaction that is rolled back, so every measurement sees
the same state. Warning emails and the stops themselves are separate tasks, not timed here.

Prints one JSON line: wall time of the 10,000-pod tick (median of 3), its SQL query count, and
the same for 1,000 pods (the count must be equal: it does not grow with the fleet).
Full mode: one sample per pod every 30 s (1.2 M rows). ``--quick``: every 60 s (0.6 M rows).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._pg import ensure_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_reaper"
NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)  # fixed clock: the data set stays valid between runs
PODS = 10_000
TARGET_S = 2.0


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    os.environ["EMAIL_BACKEND"] = "django.core.mail.backends.locmem.EmailBackend"  # stdout is the JSON line
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def build(cadence_s: int) -> dict:
    """Create (or reuse) the fleet for this cadence. Returns its description."""
    from django.contrib.auth import get_user_model
    from django.db import connection, transaction

    from providers.models import ProviderAccount
    from tenants.models import Project, Tenant
    from workloads.models import Pod, PodState, UtilizationSample, Workload

    slug = f"bench-reaper-v2-{cadence_s}s"
    per_pod = 3600 // cadence_s + 1
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is not None and Pod.objects.filter(tenant=tenant).count() == PODS:
        return {"tenant": tenant, "samples": UtilizationSample.objects.filter(pod__tenant=tenant).count(), "reused": True}
    # a different or partial data set: start from a clean database for the bench tables
    with connection.cursor() as cur:
        cur.execute("TRUNCATE workloads_utilizationsample, workloads_podevent, workloads_pod CASCADE")
    old = Tenant.objects.filter(slug__startswith="bench-reaper-")
    Workload.objects.filter(tenant__in=old).delete()
    ProviderAccount.objects.filter(tenant__in=old).delete()
    Project.objects.filter(tenant__in=old).delete()
    old.delete()
    rng = random.Random(8)
    with transaction.atomic():
        tenant = Tenant.objects.create(slug=slug, name="Bench reaper")
        project = Project.objects.filter(tenant=tenant).first() or Project.objects.create(tenant=tenant, name="Default")
        user, _ = get_user_model().objects.get_or_create(username="bench-reaper", defaults={"email": "bench@example.com"})
        account = ProviderAccount.objects.create(tenant=tenant, kind="sandbox", name="Bench sandbox", credentials={},
                                                 settings={"seed": "bench"})
        workloads = [Workload.objects.create(
            tenant=tenant, project=project, owner=user, name=f"w{i}", image="img", gpu_class="A10",
            idle_enabled=True, idle_threshold_pct=5, idle_window_minutes=30 if i % 2 else 45, idle_grace_minutes=5,
        ) for i in range(100)]
        kinds = []
        pods = []
        for i in range(PODS):
            r = rng.random()
            kind = ("busy" if r < 0.88 else "warned" if r < 0.93 else "idle" if r < 0.96 else "silent" if r < 0.97
                    else "flagged" if r < 0.99 else "due")
            kinds.append(kind)
            pods.append(Pod(
                id=uuid.UUID(int=rng.getrandbits(128)), tenant=tenant, workload=workloads[i % 100], project=project,
                provider_account=account, external_id=f"bench-{i}", gpu_class="A10", gpu_count=1,
                state=PodState.RUNNING, requested_at=NOW - timedelta(hours=2), started_at=NOW - timedelta(hours=2),
                price_usd_per_hour=Decimal("1.0"),
                idle_warning_at=(NOW - timedelta(minutes=10) if kind == "due" else
                                 NOW - timedelta(minutes=2) if kind == "warned" else None),
                telemetry_warned_at=NOW - timedelta(minutes=30) if kind == "flagged" else None,
            ))
        Pod.objects.bulk_create(pods, batch_size=2000)
    start = NOW - timedelta(hours=1)
    n = 0
    with connection.cursor() as cur, cur.cursor.copy(
            "COPY workloads_utilizationsample (pod_id, at, gpu_index, util_pct, mem_used_mb, mem_total_mb, source, gap_s) "
            "FROM STDIN") as copy:
        for pod, kind in zip(pods, kinds, strict=True):
            if kind in ("silent", "flagged"):
                continue
            for k in range(per_pod):
                util = rng.uniform(20, 95) if kind == "busy" else rng.uniform(0, 4)
                copy.write_row((pod.id, start + timedelta(seconds=k * cadence_s), 0, round(util, 1), 1000.0, 24576.0,
                                "agent", float(cadence_s) if k else None))
                n += 1
    with connection.cursor() as cur:
        cur.execute("ANALYZE workloads_utilizationsample")
        cur.execute("ANALYZE workloads_pod")
        cur.execute("ANALYZE workloads_workload")
    return {"tenant": tenant, "samples": n, "reused": False}


class _Rollback(Exception):
    pass


def tick(keep_running: int | None) -> tuple:
    """One measured tick (rolled back afterwards). ``keep_running`` shrinks the fleet first."""
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    from provisioner import clock
    from workloads.autoshutdown.idle import idle_reap
    from workloads.models import Pod, PodState

    out: list = []
    try:
        with transaction.atomic():
            if keep_running is not None:
                keep = Pod.objects.filter(state=PodState.RUNNING).order_by("pk").values("pk")[:keep_running]
                Pod.objects.filter(state=PodState.RUNNING).exclude(pk__in=keep).update(state=PodState.TERMINATED)
            with clock.frozen(NOW), CaptureQueriesContext(connection) as ctx:
                t0, c0 = time.perf_counter(), time.process_time()
                result = idle_reap()
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            # the benchmark's wrapping transaction turns the tick's own BEGIN/COMMIT into savepoints
            queries = [q for q in ctx.captured_queries if not q["sql"].upper().startswith(("SAVEPOINT", "RELEASE"))]
            out = [wall, len(queries), result, cpu, sum(float(q["time"]) for q in queries)]
            raise _Rollback
    except _Rollback:
        pass
    return tuple(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="one sample per minute instead of every 30 s")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if not url.startswith("postgres"):
        print(json.dumps({"bench": "reaper", "ok": False, "error": "needs PostgreSQL (DATABASE_URL)"}))
        return 1
    ensure_database(url)
    setup_django(url)
    cadence = 60 if args.quick else 30
    t_build = time.perf_counter()
    data = build(cadence)
    build_s = time.perf_counter() - t_build

    tick(None)  # warm the caches and the plan once, as a long-running worker would be
    runs = [tick(None) for _ in range(3)]
    wall = statistics.median(r[0] for r in runs)
    queries = runs[0][1]
    result = runs[0][2]
    small = [tick(1000) for _ in range(2)]
    wall_small = statistics.median(r[0] for r in small)
    queries_small = small[0][1]
    constant = queries == queries_small and len({r[1] for r in runs + small}) == 1
    print(json.dumps({
        "bench": "reaper", "metric": "reaper_tick_10000_running_pods", "value": round(wall, 3), "unit": "s",
        "target": TARGET_S, "ok": wall < TARGET_S and constant,
        "queries": queries, "queries_1000_pods": queries_small, "query_count_constant": constant,
        "wall_1000_pods_s": round(wall_small, 3), "runs_s": [round(r[0], 3) for r in runs],
        "client_cpu_s": round(statistics.median(r[3] for r in runs), 3),
        "sql_s": round(statistics.median(r[4] for r in runs), 3), "loadavg_1m": round(os.getloadavg()[0], 1),
        "pods": PODS, "samples": data["samples"], "sample_every_s": cadence, "dataset_reused": data["reused"],
        "dataset_build_s": round(build_s, 1), "warned": len(result.warned), "to_stop": len(result.to_stop),
        "no_telemetry": len(result.telemetry_warned), "mode": "quick" if args.quick else "full",
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
