"""Compute Engine prices from the Cloud Billing Catalog: SKUs -> a price index.

GPU SKUs are matched by their description ("Nvidia Tesla T4 GPU running in Americas", the
Spot ones "... attached to Spot Preemptible VMs ...") through the canonical GPU table, and the
machine family's core and RAM SKUs ("N1 Predefined Instance Core", "G2 Instance Ram", ...)
price the VM around the GPUs. Commitments, reservations and workstation licences are skipped.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from ..catalog import canonical_gpu_class


def _unit_price(sku: dict[str, Any]) -> Decimal | None:
    for info in sku.get("pricingInfo") or []:
        rates = (info.get("pricingExpression") or {}).get("tieredRates") or []
        if rates:
            price = rates[-1].get("unitPrice") or {}
            if price.get("currencyCode", "USD") != "USD":
                return None
            return Decimal(str(price.get("units") or "0")) + Decimal(int(price.get("nanos") or 0)) / Decimal(10**9)
    return None


def index_skus(skus: list[dict[str, Any]]) -> dict[tuple[str, ...], Decimal]:
    """Price index from Compute SKUs: ("gpu", class, region, spot) and ("core"|"ram", family,
    region, spot) -> USD per hour (per GPU, per vCPU, per GiB)."""
    index: dict[tuple[str, ...], Decimal] = {}
    for sku in skus:
        cat = sku.get("category") or {}
        usage = cat.get("usageType")
        if cat.get("resourceFamily") != "Compute" or usage not in ("OnDemand", "Preemptible"):
            continue
        desc = str(sku.get("description", ""))
        low = desc.lower()
        if any(w in low for w in ("commitment", "reserved", "reservation", "workstation", "dws", "calendar", "flex")):
            continue
        price = _unit_price(sku)
        if price is None:
            continue
        spot = "1" if usage == "Preemptible" else "0"
        if cat.get("resourceGroup") == "GPU" or " gpu " in f" {low} ":
            cls = canonical_gpu_class(desc.split(" running in ")[0])
            keys = [("gpu", cls)] if cls else []
        else:
            m = re.search(r"\b(N1 Predefined|N2|G2|A2|A3|E2) Instance (Core|Ram)\b", desc)
            keys = [(m.group(2).lower(), m.group(1))] if m else []
        for kind, what in keys:
            for region in sku.get("serviceRegions") or []:
                index[(kind, what, region, spot)] = price
    return index
