"""Which provider to try first: the best spot availability near the organization.

Judged from the capacity already known — the offers that this organization's connected
accounts reported — and, for providers it has not connected, from the bundled provider table
(``providers/data/provider_table.json``, refreshed by ``manage.py refresh_provider_table``).
Pure reads: nothing here writes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.db.models import QuerySet

from tenants.models import Tenant

from .adapters.base import ProviderInfo
from .catalog import EU_EEA
from .models import Offer

TABLE_PATH = Path(__file__).resolve().parent / "data" / "provider_table.json"

# units of capacity a provider's availability level stands for, where it gives no count
LEVEL_UNITS = {"NONE": 0, "LOW": 1, "MEDIUM": 3, "HIGH": 6}

# "near" = the same market area; capacity in the home country counts double
AREAS: tuple[tuple[str, frozenset[str]], ...] = (
    ("Europe", frozenset(EU_EEA) | {"GB", "CH"}),
    ("North America", frozenset({"US", "CA", "MX"})),
    ("Asia-Pacific", frozenset({"JP", "KR", "SG", "TW", "IN", "AU", "NZ", "HK"})),
    ("South America", frozenset({"BR", "AR", "CL", "CO"})),
    ("Middle East", frozenset({"AE", "IL", "SA", "QA"})),
)


def area_of(country: str) -> tuple[str, frozenset[str]]:
    for name, members in AREAS:
        if country in members:
            return name, members
    return country, frozenset({country})


def offer_units(available: int | None, availability: str) -> int:
    """How many GPUs-at-once an offer stands for (a count when known, else its level)."""
    if available is not None:
        return max(0, int(available))
    return LEVEL_UNITS.get((availability or "").upper(), 1)


def table_from_offers(offers: QuerySet[Offer]) -> dict[str, dict[str, dict[str, int]]]:
    """kind -> country -> {spot_units, spot_offers, on_demand_offers} from offer rows."""
    table: dict[str, dict[str, dict[str, int]]] = {}
    rows = offers.values_list("kind", "country", "spot", "available", "availability", "gpu_count")
    for kind, country, spot, available, availability, gpu_count in rows.iterator():
        cell = table.setdefault(kind, {}).setdefault(country or "??", {"spot_units": 0, "spot_offers": 0, "on_demand_offers": 0})
        if spot:
            cell["spot_offers"] += 1
            cell["spot_units"] += offer_units(available, availability) * int(gpu_count or 1)
        else:
            cell["on_demand_offers"] += 1
    return table


def load_table(path: Path | str | None = None) -> dict[str, Any]:
    """The bundled provider table; an empty one when the file is missing or unreadable."""
    try:
        with open(path or TABLE_PATH, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {"providers": {}}
    data.setdefault("providers", {})
    return data


@dataclass(frozen=True)
class Recommendation:
    kind: str
    label: str
    reason: str
    source: str  # "connected" (live offers of this organization) or "table"
    score: int
    home_units: int
    area_units: int


def _score(countries: dict[str, dict[str, int]], home: str, area: frozenset[str]) -> tuple[int, int, int]:
    home_units = int(countries.get(home, {}).get("spot_units", 0))
    area_units = sum(int(c.get("spot_units", 0)) for cc, c in countries.items() if cc in area and cc != home)
    return 2 * home_units + area_units, home_units, area_units


def _when(value: str | datetime | None) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M UTC")
    return (value or "")[:10]


def recommend_provider(*, tenant: Tenant, infos: list[ProviderInfo], table: dict[str, Any] | None = None) -> Recommendation | None:
    """The provider (among ``infos``, spot-capable, not the Sandbox) with the best spot
    availability near ``tenant.home_country``, with the reason in words; None when nothing
    is known to have spot capacity there."""
    home = (tenant.home_country or "US").upper()
    area_name, area = area_of(home)
    known_qs = Offer.objects.for_tenant(tenant).filter(provider_account__enabled=True, stale=False)
    known = table_from_offers(known_qs)
    latest = {k: v for k, v in known_qs.order_by().values_list("kind", "fetched_at")}
    table = table if table is not None else load_table()
    candidates = [i for i in infos if i.kind != "sandbox" and i.supports_spot]
    # capacity already known (this organization's live offers) decides first; the bundled
    # table only when no connected account shows spot capacity near home
    return (_best(candidates, home, area, area_name, known, latest, None)
            or _best(candidates, home, area, area_name, {}, {}, table))


def _best(infos: list[ProviderInfo], home: str, area: frozenset[str], area_name: str,
          known: dict[str, dict[str, dict[str, int]]], latest: dict[str, Any],
          table: dict[str, Any] | None) -> Recommendation | None:
    best: Recommendation | None = None
    for info in infos:
        if table is None:
            if info.kind not in known:
                continue
            countries, source = known[info.kind], "connected"
            basis = f"the offers your connected {info.label} account reported ({_when(latest.get(info.kind))})"
        else:
            if info.kind not in table["providers"]:
                continue
            entry = table["providers"][info.kind]
            countries, source = entry.get("countries", {}), "table"
            basis = f"the bundled provider table ({_when(entry.get('generated_at') or table.get('generated_at'))})"
        score, home_units, area_units = _score(countries, home, area)
        if score <= 0 or (best is not None and score <= best.score):
            continue
        where = []
        if home_units:
            where.append(f"about {home_units} spot GPUs in {home}")
        if area_units:
            more = "more " if home_units else "spot GPUs "
            where.append(f"{'about ' if not home_units else ''}{area_units} {more}elsewhere in {area_name}"
                         if area_name != home else f"{area_units} {more}nearby")
        reason = f"Best spot availability for your region ({home}): {' and '.join(where)}, according to {basis}."
        best = Recommendation(kind=info.kind, label=info.label, reason=reason, source=source, score=score,
                              home_units=home_units, area_units=area_units)
    return best
