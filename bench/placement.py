#!/usr/bin/env python
"""Placement over 100,000 offers from 10 provider accounts (issue 3).

PostgreSQL (DATABASE_URL, default postgres://postgres@127.0.0.1:5432/bench_placement; created if
missing). The offers are generated once and reused by later runs. Prices, GPU classes, counts
and regions come from the public catalog snapshot under ../shared/catalog/*.csv when present
(AWS, Azure, Lambda, RunPod, Vast), spread over zones, hosts and instance variants with a small
jitter the way marketplaces list them (Vast and RunPod carry most rows, hyperscalers fewer);
without the catalog a synthetic table of 2026 list prices is used.

Measured: the whole ``workloads.placement.placement_for`` call a pod launch makes — the indexed
candidate query, the tenant's policy (preferences, blocklist, launch success), the ranking and
the billing gate for the providers that can win (8 candidates: the failover's 5 attempts and
spares, as ``pod_provision`` asks) (plus, only when nothing fits, the aggregate
query explaining the exclusions) — over a
mix of specs (single GPU anywhere, 8x pinned to the EU, US under a price ceiling, spot-tolerant,
acceptable alternatives). ``value`` is the median in ms; OK when <= 25 ms and the candidate
query's plan (EXPLAIN) uses an index on the offers table (``index_used``). ``preview_median_ms``
is the launch form's preview (4 candidates, every exclusion explained), reported beside it.
``--quick``: 5 rounds of the spec mix instead of 25 (same 100,000 offers).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._pg import ensure_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/bench_placement"
CATALOG = ROOT.parent / "shared" / "catalog"
OFFERS = 100_000
TARGET_MS = 25.0
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

# account name -> (kind, share of the offers, preference rank)
ACCOUNTS = {
    "Vast marketplace": ("vast", 0.30, 40),
    "RunPod": ("runpod", 0.22, 20),
    "AWS": ("aws", 0.10, 60),
    "Azure": ("azure", 0.08, 70),
    "Lambda": ("lambda", 0.08, 10),
    "GCP": ("gcp", 0.06, 65),
    "CoreWeave": ("coreweave", 0.06, 30),
    "Hetzner": ("hetzner", 0.03, 80),
    "On-prem Kubernetes": ("kubernetes", 0.02, 5),
    "Sandbox": ("sandbox", 0.05, 100),
}
SYNTHETIC = {"T4": 0.35, "L4": 0.62, "A10": 0.75, "RTX4090": 0.69, "A40": 0.79, "L40S": 1.19, "A100-40": 1.29,
             "A100-80": 1.79, "H100": 2.69, "H200": 3.59, "MI300X": 2.99, "V100": 0.9}
SYNTH_REGIONS = [("us-east-1", "US"), ("us-west-2", "US"), ("eu-central-1", "DE"), ("eu-west-3", "FR"),
                 ("europe-north1", "FI"), ("westeurope", "NL"), ("ca-central-1", "CA"), ("ap-northeast-1", "JP")]


def setup_django(url: str) -> None:
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def _country(region: str) -> str:
    from providers.catalog import region_country

    if "," in region:  # Vast: "Texas, US, NA"
        parts = [p.strip() for p in region.split(",")]
        return parts[1] if len(parts) > 1 and len(parts[1]) == 2 else ""
    return region_country(region) or (region[:2].upper() if len(region) >= 2 and region[:2].isalpha() else "")


def catalog_rows() -> tuple[list[tuple], str]:
    """(gpu_class, count, region, country, on-demand price, spot price or None) from the catalog."""
    from providers.catalog import canonical_gpu_class

    rows: list[tuple] = []
    for name in ("aws_gpu_vms.csv", "azure_vms.csv", "lambda_vms.csv", "runpod_vms.csv", "vast_vms.csv"):
        path = CATALOG / name
        if not path.exists():
            continue
        with path.open(newline="") as fh:
            for r in csv.DictReader(fh):
                gpu = canonical_gpu_class(r.get("AcceleratorName") or "")
                try:
                    count = int(float(r.get("AcceleratorCount") or 0))
                    price = float(r.get("Price") or 0)
                except ValueError:
                    continue
                if not gpu or count < 1 or price <= 0:
                    continue
                try:
                    spot = float(r.get("SpotPrice") or 0) or None
                except ValueError:
                    spot = None
                region = r.get("AvailabilityZone") or r.get("Region") or ""
                country = _country(r.get("Region") or region) or _country(region)
                if len(country) != 2:
                    continue
                rows.append((gpu, count, region[:64], country, price, spot))
    if len(rows) >= 200:
        return rows, "catalog"
    synth = []
    for gpu, base in SYNTHETIC.items():
        for count in (1, 2, 4, 8):
            for region, country in SYNTH_REGIONS:
                synth.append((gpu, count, region, country, base * count, base * count * 0.5))
    return synth, "synthetic"


def build_dataset() -> tuple:
    """Create (or reuse) the tenant, its 10 accounts and 100,000 offers."""
    from django.db import connection, transaction

    from providers.models import Offer, ProviderAccount
    from tenants.models import Tenant
    from tenants.services import tenant_create

    tenant = Tenant.objects.filter(slug="bench-placement").first()
    source = "reused"
    if tenant is not None and Offer.objects.filter(tenant=tenant).count() == OFFERS:
        return tenant, source
    rows, source = catalog_rows()
    rng = random.Random(3)
    with transaction.atomic():
        if tenant is None:
            tenant = tenant_create(name="Bench placement", slug="bench-placement")
        Offer.objects.filter(tenant=tenant).delete()
        accounts = []
        for name, (kind, share, rank) in ACCOUNTS.items():
            acc, _ = ProviderAccount.objects.get_or_create(
                tenant=tenant, name=name, defaults={"kind": kind, "preference_rank": rank, "settings": {}})
            accounts.append((acc, share))
        batch: list[Offer] = []
        made = 0
        for acc, share in accounts:
            n = round(OFFERS * share) if acc is not accounts[-1][0] else OFFERS - made
            monthly = acc.kind == "hetzner"
            for i in range(n):
                gpu, count, region, country, price, spot_price = rows[rng.randrange(len(rows))]
                is_spot = spot_price is not None and acc.kind not in ("hetzner", "lambda", "kubernetes") and rng.random() < 0.4
                # marketplace spread: hosts quote around the list price; a few spot quotes are dearer
                base = spot_price if is_spot else price
                p = Decimal(str(round(base * rng.uniform(0.85, 1.25), 4)))
                avail = rng.choice([0, 0, 1, 2, 3, 5, 8, None])
                batch.append(Offer(
                    provider_account=acc, tenant=tenant, kind=acc.kind, gpu_class=gpu, gpu_count=count,
                    region=f"{region}-{i % 7}" if acc.kind in ("vast", "runpod") else region, country=country,
                    zone="", spot=is_spot, price_per_hour=p, currency="USD", price_usd_per_hour=p, available=avail,
                    availability="" if avail is None else ("NONE" if avail == 0 else "HIGH"),
                    instance_type=f"{gpu.lower()}x{count}", setup_fee=Decimal("79") if monthly else Decimal("0"),
                    monthly_price=(p * 730).quantize(Decimal("0.01")) if monthly else None,
                    supports_volumes=["ephemeral", "persistent"] if acc.kind != "vast" else ["ephemeral"],
                    fetched_at=NOW,
                ))
                if len(batch) >= 5000:
                    Offer.objects.bulk_create(batch)
                    made += len(batch)
                    batch = []
        if batch:
            Offer.objects.bulk_create(batch)
            made += len(batch)
    with connection.cursor() as cur:
        cur.execute("ANALYZE providers_offer")
    return tenant, source


def specs() -> list:
    from providers.catalog import expand_countries
    from workloads.placement.engine import PlacementSpec

    eu = tuple(expand_countries(["EU"]))
    return [
        PlacementSpec(gpu_classes=("H100",), gpu_count=1),
        PlacementSpec(gpu_classes=("A100-80",), gpu_count=8, countries=eu, pin_label="EU"),
        PlacementSpec(gpu_classes=("L4",), gpu_count=1, countries=("US",), max_price_per_hour=Decimal("1.00")),
        PlacementSpec(gpu_classes=("A10",), gpu_count=1, interruption_tolerant=True),
        PlacementSpec(gpu_classes=("A100-80", "H100"), gpu_count=1, interruption_tolerant=True, countries=("US", "CA")),
        PlacementSpec(gpu_classes=("H100",), gpu_count=8, lifecycle="service", volume_kinds=("persistent",)),
        PlacementSpec(gpu_classes=("T4",), gpu_count=1, countries=("DE",), pin_label="DE"),
    ]


def explain(tenant, spec) -> tuple[bool, str]:
    from providers.models import ProviderAccount
    from providers.selectors import offers_of_accounts
    from workloads.placement.engine import PAGE, candidate_offers

    enabled = ProviderAccount.objects.filter(tenant=tenant, enabled=True).values_list("pk", flat=True)
    qs = candidate_offers(offers_of_accounts(tenant, [str(pk) for pk in enabled]), spec, upto=PAGE)[:PAGE]
    plan = qs.explain()
    used = any(tok in plan for tok in ("Index Scan", "Index Only Scan", "Bitmap Index Scan")) and "offer_" in plan
    return used, plan


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL", DEFAULT_DB)
    ensure_database(url)
    setup_django(url)
    from provisioner import clock
    from workloads.placement.engine import placement_for

    t0 = time.perf_counter()
    tenant, source = build_dataset()
    build_s = time.perf_counter() - t0
    mix = specs()
    rounds = 5 if args.quick else 25
    timings: list[float] = []
    preview: list[float] = []
    chosen = 0
    with clock.frozen(NOW):
        for spec in mix:  # warm-up (connections, plans)
            placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=8, explain=False)
        for _ in range(rounds):
            for spec in mix:
                start = time.perf_counter()
                result = placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=8, explain=False)
                timings.append((time.perf_counter() - start) * 1000)
                chosen += result.chosen is not None
                start = time.perf_counter()
                placement_for(tenant_id=tenant.pk, spec=spec, now=NOW, limit=4)  # the launch form's preview
                preview.append((time.perf_counter() - start) * 1000)
    index_used, plan = explain(tenant, mix[1])
    print(plan, file=sys.stderr)
    median = statistics.median(timings)
    from providers.models import Offer

    print(json.dumps({
        "bench": "placement", "metric": "median placement time over 100,000 offers", "value": round(median, 2),
        "unit": "ms", "target": TARGET_MS, "ok": median <= TARGET_MS and index_used, "index_used": index_used,
        "p95_ms": round(sorted(timings)[int(len(timings) * 0.95) - 1], 2), "runs": len(timings),
        "offers": Offer.objects.filter(tenant=tenant).count(), "providers": len(ACCOUNTS),
        "preview_median_ms": round(statistics.median(preview), 2), "placed": chosen, "data": source, "setup_s": round(build_s, 1),
        "plan": " | ".join(line.strip() for line in plan.splitlines()[:6]),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
