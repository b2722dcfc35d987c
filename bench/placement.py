#!/usr/bin/env python
"""Placement flat from 10,000 to 1,000,000 offers, for every request shape (issue 18 §1).

PostgreSQL. Each size has its own database (``bench_placement_10k``, ``_100k``, ``_1m`` next to
DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432), filled once with COPY: 10
organizations × 10 provider accounts, offers drawn from the ../shared/catalog prices
(``bench/_placement_data.py``). Without the catalog every line says ``ok: false`` and why.

Measured, for the first organization (its 10 enabled accounts: the ``provider_account_id IN (…)``
filter of a real launch) and each request shape below:

* ``value``: the median of the whole ``workloads.placement.placement_for`` call a pod launch makes
  (candidate query, the organization's policy, ranking, spend gate; 8 candidates, as
  ``pod_provision`` asks) at 1,000,000 offers; ``p95_ms`` beside it, and ``median_ms`` /
  ``p95_ms_by_size`` for every size so the curve shows;
* ``preview_median_ms``: the launch form's preview of the same shape (4 candidates, every
  exclusion explained: the bounded counting of ``filtered_out``).

OK when, at every size, median ≤ 10 ms, p95 ≤ 20 ms and the preview's median ≤ 30 ms. ``plan``
summarises the candidate query's EXPLAIN ANALYZE at 1 M (index names, rows read, time); the full
plans of both queries, for every size, go to ``var/bench/placement_explain_<size>.txt``.
``load_avg_by_size`` (the machine's 1-minute load when each size finished) and
``client_cpu_median_ms_by_size`` (this process's CPU per call) tell a busy machine from a slow query,
and ``cpu_reference_ms_by_size`` (``bench/_machine.py``) how fast the CPU itself was.
``--quick``: 20 timed calls per shape and size instead of 100 (same data sets).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._machine import cpu_reference_ms  # noqa: E402
from bench._pg import ensure_database  # noqa: E402

SERVER = "postgres://postgres@127.0.0.1:5432"
SIZES = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
MEDIAN_MS, P95_MS, PREVIEW_MS = 10.0, 20.0, 30.0
EXPLAIN_DIR = ROOT / "var" / "bench"


def shapes() -> dict:
    """The request shapes a launch form produces (name -> PlacementSpec)."""
    from providers.catalog import expand_countries
    from workloads.placement.engine import PlacementSpec

    big = ("L4", "A10", "RTX4090", "A40", "L40S", "A100-40", "A100-80", "H100", "H200")  # "any 24 GB+ GPU"
    return {
        "single_on_demand": PlacementSpec(gpu_classes=("H100",), gpu_count=1),
        "single_spot_eu": PlacementSpec(gpu_classes=("A100-80",), gpu_count=1, interruption_tolerant=True,
                                        countries=tuple(expand_countries(["EU"])), pin_label="EU"),
        "classes_country": PlacementSpec(gpu_classes=big, gpu_count=1, countries=("DE",), pin_label="DE"),
        "classes_region_ceiling": PlacementSpec(gpu_classes=("A100-80", "H100", "H200"), gpu_count=8,
                                                regions=("US-TX-2", "US-WA-1", "US-CA-2", "EUR-IS-3", "CA-MTL-1"),
                                                max_price_per_hour=Decimal("25")),
        "custom_instance_type": PlacementSpec(gpu_classes=("custom",), gpu_count=8, instance_type="p5.48xlarge"),
    }


def _server() -> str:
    url = os.environ.get("DATABASE_URL", "")
    return url.rpartition("/")[0] if url.startswith("postgres") else SERVER


def _summary(plan: str) -> str:
    """Index names, rows the scans returned and the execution time of an EXPLAIN ANALYZE."""
    scans = sorted(set(re.findall(r"(?:Index Only Scan|Index Scan|Bitmap Index Scan|Seq Scan)"
                                  r"(?: Backward)?(?: using \w+)? on \w+", plan)))
    rows = sum(int(n) for n in re.findall(r"Scan.*?actual time=\S+ rows=(\d+) loops=(?:\d+)", plan))
    took = re.search(r"Execution Time: ([\d.]+) ms", plan)
    return f"{'; '.join(scans)} | scans returned {rows} rows | {took.group(1) if took else '?'} ms"


def _explain(tenant, spec) -> tuple[str, str]:
    """EXPLAIN ANALYZE of the first candidate page and of the preview's exclusion counting, as
    ``placement_for`` runs them (the organization's enabled accounts)."""
    from django.db import connection

    from bench._placement_data import NOW
    from providers.selectors import offers_of_enabled_accounts
    from workloads.placement.engine import PAGE, candidate_page_sql, filtered_out, policy_for

    policy = policy_for(tenant_id=tenant.pk, now=NOW)
    offers = offers_of_enabled_accounts(tenant, policy.disabled)
    start = len(connection.queries_log)
    connection.force_debug_cursor = True
    try:
        filtered_out(offers, spec)
    finally:
        connection.force_debug_cursor = False
    counting = [q["sql"] for q in list(connection.queries_log)[start:]]
    plans = []
    with connection.cursor() as cur:
        sql, params = candidate_page_sql(offers, spec, offset=0, limit=PAGE)
        cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
        plans.append("\n".join(r[0] for r in cur.fetchall()))
        for q in counting:  # already interpolated by the debug log
            cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + q.replace("%", "%%"))
            plans.append("\n".join(r[0] for r in cur.fetchall()))
    return plans[0], "\n\n".join(plans[1:])


def measure_size(size: str, runs: int) -> dict:
    """In a child process: build (or reuse) this size's database and time every shape."""
    url = f"{_server()}/bench_placement_{size}"
    ensure_database(url)
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    from bench._placement_data import NOW, build, measured_tenant
    from provisioner import clock
    from workloads.placement.engine import placement_for

    built, build_s = build(SIZES[size])
    tenant = measured_tenant()
    out: dict = {"data": built, "build_s": round(build_s, 1), "shapes": {}}
    EXPLAIN_DIR.mkdir(parents=True, exist_ok=True)
    explain_file = EXPLAIN_DIR / f"placement_explain_{size}.txt"
    with clock.frozen(NOW), explain_file.open("w") as fh:
        for name, spec in shapes().items():
            for _ in range(3):  # warm-up: connection, plans, caches
                placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=8, explain=False)
                placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=4)
            launch, preview, cpu = [], [], []
            placed = None
            for _ in range(runs):
                t, c = time.perf_counter(), time.process_time()
                result = placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=8, explain=False)
                launch.append((time.perf_counter() - t) * 1000)
                cpu.append((time.process_time() - c) * 1000)
                t = time.perf_counter()
                placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=4)
                preview.append((time.perf_counter() - t) * 1000)
                placed = result.chosen
            cand_plan, count_plan = _explain(tenant, spec)
            fh.write(f"=== {name} @ {size}: {spec}\n--- candidate query\n{cand_plan}\n"
                     f"--- preview's exclusion counting\n{count_plan}\n\n")
            out["shapes"][name] = {
                "median_ms": round(statistics.median(launch), 2),
                "p95_ms": round(sorted(launch)[max(0, int(len(launch) * 0.95) - 1)], 2),
                "preview_median_ms": round(statistics.median(preview), 2),
                "cpu_median_ms": round(statistics.median(cpu), 2),
                "placed": f"{placed.offer.gpu_count}x{placed.offer.gpu_class} {placed.where} "
                          f"${placed.price:.4f}" if placed else "nothing fits",
                "plan": _summary(cand_plan), "preview_plan": _summary(count_plan),
            }
    out["explain_file"] = str(explain_file.relative_to(ROOT))
    out["load_avg"] = round(os.getloadavg()[0], 1)
    out["cpu_reference_ms"] = cpu_reference_ms()
    return out


def _fail(reason: str) -> int:
    print(json.dumps({"bench": "placement", "metric": "median placement time per request shape", "value": None,
                      "unit": "ms", "target": MEDIAN_MS, "ok": False, "reason": reason}))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--size", choices=SIZES, help="(internal) measure one size and print its figures")
    args = parser.parse_args()
    runs = 20 if args.quick else 100
    if args.size:
        print(json.dumps(measure_size(args.size, runs)))
        return 0
    from bench._placement_data import CatalogMissing, catalog_rows

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    import django

    django.setup()
    try:
        catalog_rows()
    except CatalogMissing as exc:  # never synthetic prices: say why there is no figure
        return _fail(str(exc))
    by_size: dict[str, dict] = {}
    for size in SIZES:  # one process per size: each has its own database
        proc = subprocess.run([sys.executable, __file__, "--size", size] + (["--quick"] if args.quick else []),
                              cwd=ROOT, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            return _fail(f"{size}: {(proc.stderr or proc.stdout)[-600:]}")
        by_size[size] = json.loads(lines[-1])
    for name in next(iter(by_size.values()))["shapes"]:
        figures = {size: by_size[size]["shapes"][name] for size in SIZES}
        top = figures["1m"]
        ok = all(f["median_ms"] <= MEDIAN_MS and f["p95_ms"] <= P95_MS and f["preview_median_ms"] <= PREVIEW_MS
                 for f in figures.values())
        print(json.dumps({
            "bench": "placement", "metric": f"median placement time, {name}, 1,000,000 offers",
            "value": top["median_ms"], "unit": "ms", "target": MEDIAN_MS, "ok": ok, "shape": name,
            "p95_ms": top["p95_ms"], "p95_target_ms": P95_MS,
            "preview_median_ms": top["preview_median_ms"], "preview_target_ms": PREVIEW_MS,
            "median_ms_by_size": {s: f["median_ms"] for s, f in figures.items()},
            "p95_ms_by_size": {s: f["p95_ms"] for s, f in figures.items()},
            "preview_median_ms_by_size": {s: f["preview_median_ms"] for s, f in figures.items()},
            # this process's own CPU per launch placement: what the figures are on an idle machine
            # less the database's share (the plans' execution times are in ``plan``)
            "client_cpu_median_ms_by_size": {s: f["cpu_median_ms"] for s, f in figures.items()},
            "load_avg_by_size": {s: by_size[s]["load_avg"] for s in SIZES},
            "cpu_reference_ms_by_size": {s: by_size[s]["cpu_reference_ms"] for s in SIZES},
            "placed": top["placed"], "plan": top["plan"], "preview_plan": top["preview_plan"],
            "explain": by_size["1m"]["explain_file"], "runs": runs, "organizations": 10, "accounts_each": 10,
            "data": {s: by_size[s]["data"] for s in SIZES},
        }), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
