"""AWS on-demand prices: the Price List API where reachable, else the bundled table.

The Price List API (`pricing.get_products`) answers only from a few endpoint regions and is
slow (one page of JSON strings per 100 products), so answers are cached per region for
``CACHE_SECONDS``. When it cannot be reached (no ``pricing:GetProducts`` permission, a private
network, the moto stand-in) the adapter quotes from ``providers/data/aws_prices.json``, which
``manage.py refresh_aws_prices`` rewrites from the same API.
"""

from __future__ import annotations

import json
import threading
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

PRICE_TABLE_PATH = Path(__file__).resolve().parent.parent / "data" / "aws_prices.json"
PRICING_REGION = "us-east-1"  # the Price List API lives in us-east-1, eu-central-1 and ap-south-1
CACHE_SECONDS = 6 * 3600
# How long to stop asking a Price List API that failed, so a poll does not pay for it each time.
FAILURE_BACKOFF_SECONDS = 1800

# The attributes that select the ordinary "Linux, shared tenancy, no licensed software,
# not a capacity reservation" price of an instance type.
BASE_FILTERS: tuple[tuple[str, str], ...] = (
    ("operatingSystem", "Linux"),
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
)


def pricing_filters(region: str, instance_types: list[str] | None = None) -> list[dict[str, str]]:
    filters = [{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in BASE_FILTERS]
    filters.append({"Type": "TERM_MATCH", "Field": "regionCode", "Value": region})
    if instance_types:
        # ANY_OF takes a comma-separated list (one call instead of one per type)
        filters.append({"Type": "ANY_OF", "Field": "instanceType", "Value": ",".join(sorted(instance_types))})
    return filters


def parse_price_item(item: str | dict[str, Any]) -> tuple[str, Decimal] | None:
    """(instance type, USD per hour) from one ``PriceList`` entry, or None when it has none."""
    doc = json.loads(item) if isinstance(item, str) else item
    itype = doc.get("product", {}).get("attributes", {}).get("instanceType")
    if not itype:
        return None
    for term in (doc.get("terms", {}).get("OnDemand") or {}).values():
        for dim in (term.get("priceDimensions") or {}).values():
            if dim.get("unit") not in ("Hrs", "Hours", "hours"):
                continue
            try:
                usd = Decimal(str(dim.get("pricePerUnit", {}).get("USD", "")))
            except InvalidOperation:
                continue
            if usd > 0:
                return itype, usd.normalize()
    return None


def fetch_region_prices(pricing_client, region: str, instance_types: list[str] | None = None) -> dict[str, Decimal]:
    """Every on-demand price the Price List API has for ``region`` (optionally only some types)."""
    prices: dict[str, Decimal] = {}
    paginator = pricing_client.get_paginator("get_products")
    for page in paginator.paginate(ServiceCode="AmazonEC2", Filters=pricing_filters(region, instance_types),
                                   FormatVersion="aws_v1"):
        for item in page.get("PriceList", []):
            parsed = parse_price_item(item)
            if parsed:
                itype, usd = parsed
                # several SKUs can match (e.g. with/without EBS optimisation): keep the lowest
                prices[itype] = min(usd, prices.get(itype, usd))
    return prices


class Prices(dict):
    """Prices plus where they came from (shown on the offer, so admins know how fresh they are)."""

    def __init__(self, prices: dict[str, Decimal], source: str):
        super().__init__(prices)
        self.source = source


# --- bundled table ---------------------------------------------------------------------------


def load_table(path: Path = PRICE_TABLE_PATH) -> dict[str, dict[str, Decimal]]:
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {region: {t: Decimal(p) for t, p in types.items()} for region, types in raw.get("prices", {}).items()}


def write_table(prices: dict[str, dict[str, Decimal]], *, source: str, updated: str, path: Path = PRICE_TABLE_PATH) -> None:
    doc = {
        "source": source,
        "updated": updated,
        "currency": "USD",
        "unit": "instance-hour, Linux, shared tenancy",
        "prices": {r: {t: str(p) for t, p in sorted(types.items())} for r, types in sorted(prices.items())},
    }
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)  # atomic: a poll never reads a half-written table
    _table_cache.clear()


_table_cache: dict[str, dict[str, dict[str, Decimal]]] = {}


def table_prices(region: str) -> dict[str, Decimal]:
    if "t" not in _table_cache:
        _table_cache["t"] = load_table()
    return _table_cache["t"].get(region, {})


# --- cache of API answers ----------------------------------------------------------------------


class PriceCache:
    """Process-wide cache of Price List answers per (account key, region), with failure backoff."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._data: dict[tuple[str, str], tuple[float, dict[str, Decimal]]] = {}
        self._failed_until: dict[str, float] = {}

    def get(self, key: str, region: str) -> dict[str, Decimal] | None:
        with self._lock:
            hit = self._data.get((key, region))
            if hit and hit[0] > time.monotonic():
                return hit[1]
            return None

    def put(self, key: str, region: str, prices: dict[str, Decimal]) -> None:
        with self._lock:
            self._data[(key, region)] = (time.monotonic() + CACHE_SECONDS, prices)

    def api_down(self, key: str) -> bool:
        with self._lock:
            return self._failed_until.get(key, 0) > time.monotonic()

    def mark_down(self, key: str) -> None:
        with self._lock:
            self._failed_until[key] = time.monotonic() + FAILURE_BACKOFF_SECONDS

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._failed_until.clear()


price_cache = PriceCache()
