"""Placement: which offer should a workload's pod go to, and why.

``rank_offers`` is pure: offers + spec + policy in, ranked candidates and exclusions out.
``candidate_offers`` narrows the offers in the database first (indexed), so Python only ranks
the survivors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from providers.catalog import expand_countries, expand_gpu_classes


@dataclass(frozen=True)
class PlacementSpec:
    gpu_classes: tuple[str, ...]
    gpu_count: int
    interruption_tolerant: bool = False
    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    max_price_per_hour: Decimal | None = None
    force_on_demand: bool = False


@dataclass
class Candidate:
    offer: Any  # providers.models.Offer
    reason: str

    @property
    def price(self) -> Decimal:
        return self.offer.price_usd_per_hour


@dataclass
class PlacementResult:
    candidates: list[Candidate] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def spec_for_workload(workload, *, force_on_demand: bool = False) -> PlacementSpec:
    classes = expand_gpu_classes([workload.gpu_class, *workload.acceptable_gpu_classes])
    return PlacementSpec(
        gpu_classes=tuple(classes), gpu_count=workload.gpu_count,
        interruption_tolerant=workload.interruption_tolerant,
        countries=tuple(expand_countries(workload.countries)), regions=tuple(workload.regions),
        max_price_per_hour=workload.max_price_per_hour, force_on_demand=force_on_demand,
    )


def candidate_offers(offers_qs, spec: PlacementSpec):
    """Database-side filter: class, count, capacity, pins, price ceiling."""
    qs = offers_qs.filter(gpu_class__in=spec.gpu_classes, gpu_count=spec.gpu_count).exclude(available=0)
    if not spec.interruption_tolerant or spec.force_on_demand:
        qs = qs.filter(spot=False)
    if spec.countries:
        qs = qs.filter(country__in=spec.countries)
    if spec.regions:
        qs = qs.filter(region__in=spec.regions)
    if spec.max_price_per_hour is not None:
        qs = qs.filter(price_usd_per_hour__lte=spec.max_price_per_hour)
    return qs.select_related("provider_account").order_by("price_usd_per_hour")


def rank_offers(offers: list, spec: PlacementSpec) -> PlacementResult:
    """Cheapest first; ties broken by provider preference rank."""
    ranked = sorted(offers, key=lambda o: (o.price_usd_per_hour, o.provider_account.preference_rank))
    result = PlacementResult()
    for i, o in enumerate(ranked):
        why = "cheapest feasible offer" if i == 0 else f"alternative #{i}"
        kind = "spot" if o.spot else "on-demand"
        result.candidates.append(Candidate(o, f"{why}: {kind} {o.gpu_count}x{o.gpu_class} in {o.region} ({o.country}) at ${o.price_usd_per_hour:.2f}/h"))
    if not ranked:
        where = f" in {', '.join(spec.countries)}" if spec.countries else ""
        result.excluded.append(f"no capacity for {spec.gpu_count}x {' or '.join(spec.gpu_classes)}{where}")
    return result


def place(offers_qs, spec: PlacementSpec, limit: int = 20) -> PlacementResult:
    return rank_offers(list(candidate_offers(offers_qs, spec)[:limit]), spec)
