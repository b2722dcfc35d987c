"""The placement benchmark's data: 10 organizations × 10 provider accounts, offers from the catalog.

Prices, GPU classes, counts, instance types and regions come from the public catalog snapshot
under ../shared/catalog/*.csv (AWS, Azure, Lambda, RunPod, Vast), spread over zones, hosts and
instance variants with a small jitter the way marketplaces list them (Vast and RunPod carry most
rows, hyperscalers fewer). There is no synthetic fallback: without the catalog the benchmark
reports ``ok: false`` (``CatalogMissing``).

Each size lives in its own database, filled once with ``COPY`` and reused by later runs.
"""

from __future__ import annotations

import csv
import random
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT.parent / "shared" / "catalog"
CATALOG_FILES = ("aws_gpu_vms.csv", "azure_vms.csv", "lambda_vms.csv", "runpod_vms.csv", "vast_vms.csv")
ORGANIZATIONS = 10
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)

# account name -> (kind, share of an organization's offers, preference rank)
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
COLUMNS = ("provider_account_id", "tenant_id", "kind", "gpu_class", "gpu_count", "region", "country", "zone",
           "spot", "price_per_hour", "currency", "price_usd_per_hour", "available", "availability",
           "instance_type", "setup_fee", "monthly_price", "supports_volumes", "extra", "fetched_at", "stale")


class CatalogMissing(RuntimeError):
    """../shared/catalog is absent or holds too few GPU rows to build offers from."""


def _country(region: str) -> str:
    from providers.catalog import region_country

    if "," in region:  # Vast: "Texas, US, NA"
        parts = [p.strip() for p in region.split(",")]
        return parts[1] if len(parts) > 1 and len(parts[1]) == 2 else ""
    return region_country(region) or (region[:2].upper() if len(region) >= 2 and region[:2].isalpha() else "")


def catalog_rows() -> list[tuple]:
    """(gpu_class, count, region, country, on-demand price, spot price or None, instance type)."""
    from providers.catalog import canonical_gpu_class

    missing = [name for name in CATALOG_FILES if not (CATALOG / name).exists()]
    if missing:
        raise CatalogMissing(f"{CATALOG} lacks {', '.join(missing)}: no real prices to build offers from")
    rows: list[tuple] = []
    for name in CATALOG_FILES:
        with (CATALOG / name).open(newline="") as fh:
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
                rows.append((gpu, count, region[:64], country, price, spot, (r.get("InstanceType") or "")[:128]))
    if len(rows) < 200:
        raise CatalogMissing(f"{CATALOG} holds only {len(rows)} usable GPU rows")
    return rows


def _accounts(org: int) -> list:
    from providers.models import ProviderAccount
    from tenants.models import Tenant
    from tenants.services import tenant_create

    slug = f"bench-placement-{org}"
    tenant = Tenant.objects.filter(slug=slug).first() or tenant_create(name=f"Bench placement {org}", slug=slug)
    out = []
    for name, (kind, share, rank) in ACCOUNTS.items():
        acc, _ = ProviderAccount.objects.get_or_create(
            tenant=tenant, name=name, defaults={"kind": kind, "preference_rank": rank, "settings": {}})
        out.append((tenant, acc, share))
    return out


def _offer_rows(accounts: list, per_org: int, catalog: list[tuple], rng: random.Random):
    made = 0
    for n_acc, (tenant, acc, share) in enumerate(accounts):
        n = round(per_org * share) if n_acc < len(accounts) - 1 else per_org - made
        made += n
        monthly = acc.kind == "hetzner"
        volumes = '["ephemeral"]' if acc.kind == "vast" else '["ephemeral", "persistent"]'
        for i in range(n):
            gpu, count, region, country, price, spot_price, itype = catalog[rng.randrange(len(catalog))]
            is_spot = spot_price is not None and acc.kind not in ("hetzner", "lambda", "kubernetes") and rng.random() < 0.4
            # marketplace spread: hosts quote around the list price; a few spot quotes are dearer
            p = round((spot_price if is_spot else price) * rng.uniform(0.85, 1.25), 4)
            avail = rng.choice((0, 0, 1, 2, 3, 5, 8, None))
            yield (acc.pk, tenant.pk, acc.kind, gpu, count,
                   f"{region}-{i % 7}" if acc.kind in ("vast", "runpod") else region, country, "",
                   is_spot, p, "USD", p, avail, "" if avail is None else ("NONE" if avail == 0 else "HIGH"),
                   itype or f"{gpu.lower()}x{count}", 79 if monthly else 0,
                   round(p * 730, 2) if monthly else None, volumes, "{}", NOW, False)


def build(offers: int) -> tuple[str, float]:
    """Fill this database with ``offers`` offers over 10 organizations (once); ("built"|"reused", s)."""
    import time

    from django.db import connection, transaction

    from providers.models import Offer

    if Offer.objects.count() == offers and Offer.objects.values("tenant").distinct().count() == ORGANIZATIONS:
        return "reused", 0.0
    t0 = time.perf_counter()
    catalog = catalog_rows()
    rng = random.Random(3)
    with transaction.atomic():
        Offer.objects.all().delete()
        orgs = [_accounts(org) for org in range(ORGANIZATIONS)]  # no other statement while COPY runs
        with connection.cursor() as cur, cur.cursor.copy(
                f"COPY providers_offer ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for accounts in orgs:
                for row in _offer_rows(accounts, offers // ORGANIZATIONS, catalog, rng):
                    copy.write_row(row)
    with connection.cursor() as cur:
        cur.execute("VACUUM ANALYZE providers_offer")
    return "built", time.perf_counter() - t0


def measured_tenant():
    """The organization whose placements are timed (every organization has the same mix)."""
    from tenants.models import Tenant

    return Tenant.objects.get(slug="bench-placement-0")

