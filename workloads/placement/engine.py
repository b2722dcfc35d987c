"""Placement: which offer should a workload's pod go to, and why.

Two halves:

* ``rank_offers`` is pure: offers + spec + policy in, ranked candidates (each with a reason
  a person can read) and exclusions (each with a reason) out. No database, no clock.
* ``place`` narrows the offers in the database first (indexed: tenant, class, count, then
  price order; see ``Offer.Meta.indexes``), asks one aggregate query why the rest did not make it,
  builds the organization's policy (preference, blocklist, launch success, spend gate) and
  hands the survivors to ``rank_offers``.

Rules, in the order a person would apply them:
  GPU class (or acceptable alternatives) and count · spot only when the workload tolerates
  interruption, and never when spot costs as much as on-demand for the same shape and place ·
  country / region pins (ISO codes, presets EU/EEA/US expanded) · max price per hour ·
  provider spending caps and budget headroom (billing gate) · recently failed provider-regions
  (LaunchBlock, with a TTL) · volume kinds the provider supports · monthly-billed, slow-delivery
  servers are kept away from short jobs.
Ranking: cheapest (to the cent) first; ties broken by provider preference, then by observed
launch success.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings
from django.db import connections
from django.db.models import Count, Min, Q

from providers.adapters.image_registry import image_registry_host
from providers.catalog import expand_countries, expand_gpu_classes

from .bids import spot_bid

SHORT_JOB_MINUTES = 7 * 24 * 60  # below about a week a monthly-billed server is a poor fit
SUCCESS_WINDOW_DAYS = 7
PAGE = 60  # survivors fetched per round (cheapest first); Python ranks only these
MAX_PAGES = 5
HEAD_PER_CANDIDATE, HEAD_MIN = 3, 16  # a launch's first read: rows per candidate wanted (see ``_head``)
CENT = Decimal("0.01")


# --- inputs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlacementSpec:
    """What the workload needs, already expanded (presets -> ISO codes, families -> classes)."""

    gpu_classes: tuple[str, ...]
    gpu_count: int
    interruption_tolerant: bool = False
    countries: tuple[str, ...] = ()
    regions: tuple[str, ...] = ()
    max_price_per_hour: Decimal | None = None
    force_on_demand: bool = False  # too many interruptions: on-demand only
    volume_kinds: tuple[str, ...] = ()  # e.g. ("persistent",); ephemeral needs nothing
    lifecycle: str = "job"
    max_duration_minutes: int | None = None
    provider_account_ids: tuple[str, ...] = ()  # restrict to these accounts (a move)
    avoid: tuple[tuple[str, str], ...] = ()  # (account id, region) to leave (a move)
    pin_label: str = ""  # the pins as the user wrote them ("EU"), for messages
    instance_type: str = ""  # a custom, provider-specific type: matched exactly instead of class/count
    registry_host: str = ""  # a private image's registry (a login is needed there), e.g. nvcr.io
    bid_margin_pct: int | None = None  # spot bids above the floor (workloads.placement.bids); None: account's/platform's

    @property
    def allows_spot(self) -> bool:
        return self.interruption_tolerant and not self.force_on_demand

    @property
    def short_job(self) -> bool:
        if self.lifecycle == "service":
            return False
        return self.max_duration_minutes is None or self.max_duration_minutes < SHORT_JOB_MINUTES

    @property
    def shape(self) -> str:
        if self.instance_type:
            return f"instance type {self.instance_type}"
        return f"{self.gpu_count}× {' or '.join(self.gpu_classes)}"

    @property
    def where(self) -> str:
        parts = []
        if self.countries:
            parts.append(self.pin_label or ", ".join(self.countries))
        if self.regions:
            parts.append(", ".join(self.regions))
        return " / ".join(parts)


def placement_spec(*, gpu_class: str, gpu_count: int, acceptable: Iterable[str] = (), countries: Iterable[str] = (),
                   regions: Iterable[str] = (), interruption_tolerant: bool = False,
                   max_price_per_hour: Decimal | None = None, volume_kinds: Iterable[str] = (), lifecycle: str = "job",
                   max_duration_minutes: int | None = None, instance_type: str = "", registry_host: str = "",
                   bid_margin_pct: int | None = None, force_on_demand: bool = False,
                   provider_account_ids: Iterable[str] = (), avoid: Iterable[Iterable[str]] = ()) -> PlacementSpec:
    """The one way to a PlacementSpec from a declaration's fields, whether they come from a launch
    form's cleaned data, the live preview's parameters or a stored workload: GPU families and
    country presets expanded, the pin's label from the countries as typed ("EU")."""
    countries = [c.upper() for c in countries]
    return PlacementSpec(
        gpu_classes=tuple(expand_gpu_classes([gpu_class, *acceptable])), gpu_count=gpu_count,
        interruption_tolerant=interruption_tolerant, countries=tuple(expand_countries(countries)),
        regions=tuple(regions), max_price_per_hour=max_price_per_hour, force_on_demand=force_on_demand,
        volume_kinds=tuple(sorted(set(volume_kinds))), lifecycle=lifecycle, max_duration_minutes=max_duration_minutes,
        provider_account_ids=tuple(str(a) for a in provider_account_ids), avoid=tuple(tuple(x) for x in avoid),
        pin_label=", ".join(countries), instance_type=instance_type, registry_host=registry_host,
        bid_margin_pct=bid_margin_pct,
    )


@dataclass(frozen=True)
class ProviderTraits:
    label: str = ""
    monthly_billed: bool = False
    slow_delivery: bool = False
    private_registry: bool = True  # can log in to a private registry (ProviderInfo.private_registry)
    spot_bids: bool = False  # spot is rented by bid and the bid is charged (ProviderInfo.spot_bids)


NO_TRAITS = ProviderTraits()  # an unknown kind's (frozen: one shared default, not one per offer)

SpendCheck = Callable[[str, Decimal], tuple[bool, str]]


@dataclass
class PlacementPolicy:
    """The organization's side: preferences, recent failures, launch history, spend gate."""

    preference: dict[str, int] = field(default_factory=dict)  # account id -> rank (lower first)
    blocked: dict[tuple[str, str], str] = field(default_factory=dict)  # (account, region|"*") -> why
    success: dict[tuple[str, str], tuple[int, int]] = field(default_factory=dict)  # -> (ok, tried)
    spend_check: SpendCheck | None = None  # (account id, usd/h) -> (allowed, reason)
    traits: dict[str, ProviderTraits] = field(default_factory=dict)  # kind -> traits
    names: dict[str, str] = field(default_factory=dict)  # account id -> display name (enabled accounts)
    disabled: tuple[str, ...] = ()  # the organization's disabled accounts: their offers are not read
    bid_margins: dict[str, int] = field(default_factory=dict)  # account id -> its spot bid margin %
    default_bid_margin_pct: int = 10  # settings.SPOT_BID_MARGIN_PCT

    def spot_cost(self, o, spec: PlacementSpec) -> Decimal:
        """USD/h a spot offer really costs: its bid where the provider charges the bid (floor +
        margin, capped by the ceiling: workloads.placement.bids), else its price."""
        if not self.traits.get(getattr(o, "kind", ""), NO_TRAITS).spot_bids:
            return o.price_usd_per_hour
        margin = spec.bid_margin_pct
        if margin is None:
            margin = self.bid_margins.get(str(o.provider_account_id), self.default_bid_margin_pct)
        return spot_bid(floor=o.price_usd_per_hour, margin_pct=margin, ceiling_usd=spec.max_price_per_hour).price

    def success_rate(self, account_id: str, region: str) -> float:
        ok, tried = self.success.get((account_id, region), (0, 0))
        return (ok + 1) / (tried + 2)  # Laplace: an untried region counts as 50 %

    def block_reason(self, account_id: str, region: str) -> str | None:
        return self.blocked.get((account_id, region)) or self.blocked.get((account_id, "*"))


# --- outputs --------------------------------------------------------------------------------


@dataclass
class Candidate:
    offer: Any  # providers.models.Offer (or anything with the same attributes)
    reason: str
    success_rate: float = 0.5

    @property
    def price(self) -> Decimal:
        return self.offer.price_usd_per_hour

    @property
    def where(self) -> str:
        return offer_where(self.offer)


@dataclass
class Exclusion:
    where: str  # "Sandbox 2 · sbx-de-fra" or "" for a rule that applies everywhere
    reason: str
    count: int = 1
    at_least: bool = False  # the count stopped at a bound (the preview's counting): "100+ offers"

    def __str__(self) -> str:
        n = f" ({self.count}{'+' if self.at_least else ''} offers)" if self.count > 1 else ""
        return f"{self.where}: {self.reason}{n}" if self.where else f"{self.reason}{n}"


@dataclass
class PlacementResult:
    candidates: list[Candidate] = field(default_factory=list)
    exclusions: list[Exclusion] = field(default_factory=list)
    refusal: str = ""  # set when nothing fits: one sentence saying why

    @property
    def chosen(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    @property
    def excluded(self) -> list[str]:
        """Exclusions as plain sentences (kept for callers of the first version)."""
        return [str(e) for e in self.exclusions]


def offer_where(offer) -> str:
    return f"{_account_name(offer)} {offer.region}"


def _account_name(offer) -> str:
    name = getattr(offer, "account_name", None)
    return name if name else offer.provider_account.name


def _money(x: Decimal) -> str:
    return f"${x:.2f}/h" if x >= Decimal("0.1") else f"${x:.3f}/h"


def _kind(offer) -> str:
    return "spot" if offer.spot else "on-demand"


# --- the pure ranking -----------------------------------------------------------------------


def rank_offers(offers: Iterable, spec: PlacementSpec, policy: PlacementPolicy | None = None,
                *, limit: int = 10) -> PlacementResult:
    """Rank offers that already passed the database filters; exclude the rest with reasons.

    Pure: everything it needs is in its arguments (the spend check is a callable the caller
    built; it is consulted at most a few times per provider account thanks to monotonicity:
    if $x/h is allowed, anything cheaper is too).
    """
    policy = policy or PlacementPolicy()
    offers = list(offers)
    result = PlacementResult()
    grouped: dict[tuple[str, str], Exclusion] = {}

    def exclude(where: str, reason: str) -> None:
        key = (where, reason)
        if key in grouped:
            grouped[key].count += 1
        else:
            grouped[key] = Exclusion(where, reason)

    # each offer's account id as text, once (formatting a UUID is a tenth of the ranking's CPU)
    accounts = [str(o.provider_account_id) for o in offers]
    # on-demand price per exact shape and place, to test "is spot really cheaper?"
    on_demand: dict[tuple, Decimal] = {}
    for o, account in zip(offers, accounts, strict=True):
        if not o.spot:
            key = (account, o.region, o.gpu_class, o.gpu_count)
            if key not in on_demand or o.price_usd_per_hour < on_demand[key]:
                on_demand[key] = o.price_usd_per_hour

    gate = _MemoGate(policy.spend_check)  # asked first at each account's dearest price: one call when it fits
    needed_volumes = {k for k in spec.volume_kinds if k and k != "ephemeral"}
    survivors: list[tuple[tuple, Any, float, str]] = []  # (rank key, offer, success rate, account)
    for o, account in zip(offers, accounts, strict=True):  # an exclusion's offer_where(o) formatted only then
        if o.spot and not spec.allows_spot:
            exclude("", "spot not allowed: on-demand required" + (
                " after repeated interruptions" if spec.force_on_demand else " (workload does not tolerate interruption)"))
            continue
        if (account, o.region) in spec.avoid:
            exclude(offer_where(o), "the workload is moving away from here")
            continue
        cost = policy.spot_cost(o, spec) if o.spot else o.price_usd_per_hour
        if o.spot:
            od = on_demand.get((account, o.region, o.gpu_class, o.gpu_count))
            if od is not None and o.price_usd_per_hour >= od:
                exclude(offer_where(o), f"spot dearer than on-demand ({_money(o.price_usd_per_hour)} ≥ {_money(od)}): on-demand preferred")
                continue
            if od is not None and cost >= od:
                exclude(offer_where(o), f"spot bid dearer than on-demand (bid {_money(cost)} ≥ {_money(od)}): on-demand preferred")
                continue
        blocked = policy.block_reason(account, o.region)
        if blocked:
            exclude(offer_where(o), f"blocklisted: {blocked}")
            continue
        missing = sorted(needed_volumes - set(o.supports_volumes or ())) if needed_volumes else None
        if missing:
            exclude(_account_name(o), f"cannot provide {' / '.join(missing)} volumes")
            continue
        traits = policy.traits.get(getattr(o, "kind", ""), NO_TRAITS)
        if spec.registry_host and not traits.private_registry:
            exclude(_account_name(o), f"cannot log in to the private registry {spec.registry_host} to pull the image")
            continue
        slow_monthly = (traits.monthly_billed or traits.slow_delivery or o.monthly_price is not None
                        or (o.setup_fee or 0) > 0)
        if slow_monthly and spec.short_job:
            exclude(_account_name(o), "monthly-billed server with setup fee and slow delivery: a poor fit "
                    "for a job shorter than a week")
            continue
        rate = policy.success_rate(account, o.region)
        rank = policy.preference.get(account, 100)
        # ranked by what the pod will cost: a bidding provider's spot offer at its bid, not its floor
        key = (cost.quantize(CENT, ROUND_HALF_UP), rank, -rate, cost, o.spot)
        survivors.append((key, o, rate, account))

    # the spend gate last, in rank order, and only until ``limit`` candidates are found: it is
    # the one rule that costs queries, so providers that could never win are not asked
    survivors.sort(key=lambda s: s[0])
    for _, o, _, account in survivors:
        gate.note(account, o.price_usd_per_hour)
    admitted = []
    for item in survivors:
        if len(admitted) >= limit:
            break
        o = item[1]
        allowed, why = gate(item[3], o.price_usd_per_hour)
        if not allowed:
            exclude(_account_name(o), why or "over provider cap")
            continue
        admitted.append(item)
    survivors = admitted
    chosen_key = survivors[0][0] if survivors else None
    for i, (key, o, rate, _) in enumerate(survivors[:limit]):
        result.candidates.append(Candidate(o, _reason(i, key, o, rate, survivors, spec, policy, chosen_key), rate))
    result.exclusions = sorted(grouped.values(), key=lambda e: (-e.count, e.where, e.reason))
    return result


class _MemoGate:
    """Per-account memo of the spend gate, using that a cap admits every cheaper price."""

    def __init__(self, check: SpendCheck | None):
        self.check = check
        self.max_ok: dict[str, Decimal] = {}
        self.min_no: dict[str, tuple[Decimal, str]] = {}
        self.dearest: dict[str, Decimal] = {}

    def note(self, account: str, price: Decimal) -> None:
        if price > self.dearest.get(account, Decimal("-1")):
            self.dearest[account] = price

    def __call__(self, account: str, price: Decimal) -> tuple[bool, str]:
        if self.check is None:
            return True, ""
        if account not in self.max_ok and account not in self.min_no and account in self.dearest:
            top = self.dearest[account]
            allowed, why = self.check(account, top)
            if allowed:
                self.max_ok[account] = top
            else:
                self.min_no[account] = (top, why)
        if account in self.max_ok and price <= self.max_ok[account]:
            return True, ""
        if account in self.min_no and price >= self.min_no[account][0]:
            return False, self.min_no[account][1]
        allowed, why = self.check(account, price)
        if allowed:
            self.max_ok[account] = max(price, self.max_ok.get(account, price))
        else:
            prev = self.min_no.get(account)
            if prev is None or price < prev[0]:
                self.min_no[account] = (price, why)
        return allowed, why


def _reason(i: int, key: tuple, o, rate: float, survivors: list, spec: PlacementSpec,
            policy: PlacementPolicy, chosen_key: tuple | None) -> str:
    what = f"{_kind(o)} {o.gpu_count}× {o.gpu_class} at {_account_name(o)} {o.region} ({o.country}), {_money(o.price_usd_per_hour)}"
    if i == 0:
        why = ["cheapest feasible offer"]
        same = [s for s in survivors[1:] if s[0][0] == key[0]]
        if same:
            other = same[0]
            if other[0][1] != key[1]:
                why.append(f"ties on price with {offer_where(other[1])}; preferred provider (rank {key[1]} vs {other[0][1]})")
            elif other[2] != rate:
                why.append(f"ties on price and preference with {offer_where(other[1])}; better launch record "
                           f"({rate:.0%} vs {other[2]:.0%})")
        if o.spot:
            why.append("spot allowed: the workload tolerates interruption")
        if spec.countries:
            why.append(f"inside the {spec.pin_label or ', '.join(spec.countries)} pin")
        return f"{what}: " + "; ".join(why)
    delta = key[3] - survivors[0][0][3]  # what each will cost (a bidding provider's spot: its bid)
    if delta > 0:
        return f"alternative #{i}: {what} (+{_money(delta)} over the chosen offer)"
    if chosen_key is not None and key[1] != chosen_key[1]:
        return f"alternative #{i}: {what} (same price, less preferred provider)"
    return f"alternative #{i}: {what} (same price, weaker launch record {rate:.0%})"


# --- specs ----------------------------------------------------------------------------------


def spec_for_workload(workload, *, force_on_demand: bool = False, override: dict[str, Any] | None = None) -> PlacementSpec:
    """The placement spec of a workload; ``override`` (a pod's placement_override) narrows it."""
    override = override or {}
    return placement_spec(
        gpu_class=workload.gpu_class, acceptable=workload.acceptable_gpu_classes or [], gpu_count=workload.gpu_count,
        interruption_tolerant=workload.interruption_tolerant,
        countries=override.get("countries", workload.countries) or [],
        regions=override.get("regions", workload.regions) or [],
        max_price_per_hour=workload.max_price_per_hour, force_on_demand=force_on_demand,
        volume_kinds=[str(v.get("kind", "")) for v in (workload.volumes or []) if isinstance(v, dict)],
        lifecycle=workload.lifecycle, max_duration_minutes=workload.max_duration_minutes,
        provider_account_ids=override.get("provider_account_ids", []), avoid=override.get("avoid", []),
        instance_type=(workload.custom_instance_type or "") if workload.gpu_class == "custom" else "",
        registry_host=image_registry_host(workload.image) if workload.registry_credential_id else "",
        bid_margin_pct=workload.spot_bid_margin_pct,
    )


# --- the database side ----------------------------------------------------------------------


def _shape_q(spec: PlacementSpec, keyed: tuple[str, ...] = ()) -> Q:
    """Class and count (or the custom instance type) and the accounts of a move; ``keyed``: the
    columns an ordered per-key scan supplies itself (see ``_keys``), left out here."""
    q = Q()
    if spec.instance_type:
        if "instance_type" not in keyed:
            q &= Q(instance_type=spec.instance_type)
    else:
        q &= Q(gpu_count=spec.gpu_count)
        if "gpu_class" not in keyed:
            q &= Q(gpu_class__in=spec.gpu_classes)
    if spec.provider_account_ids:
        q &= Q(provider_account_id__in=spec.provider_account_ids)
    return q


def _pin_q(spec: PlacementSpec, keyed: tuple[str, ...] = ()) -> Q:
    q = Q()
    if spec.countries and "country" not in keyed:
        q &= Q(country__in=spec.countries)
    if spec.regions and "region" not in keyed:
        q &= Q(region__in=spec.regions)
    return q


CAPACITY_Q = Q(available__isnull=True) | Q(available__gt=0)
RANK_ORDER = ("price_usd_per_hour", "spot", "id")
OFFER_FIELDS = (
    "id", "provider_account_id", "kind", "gpu_class", "gpu_count", "region", "country", "zone", "spot",
    "price_per_hour", "currency", "price_usd_per_hour", "available", "availability", "instance_type",
    "setup_fee", "monthly_price", "supports_volumes", "fetched_at", "stale",
)  # the account (name, kind, rank) comes from the policy; the full row only when launching
COUNT_UPTO = 100  # the preview counts excluded offers up to this many, then says "100+"


def _keys(spec: PlacementSpec, *, pinned: bool = True) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The equality keys of the ordered index scans that serve this spec: (columns, one tuple per scan).

    One key per GPU class (``offer_placement_idx``), per class and pinned country
    (``offer_country_place_idx``) or region (``offer_region_place_idx``), or the custom instance type
    (``offer_instance_type_idx``). Each index ends in the rank order (price, spot, id), so every
    key's cheapest rows are an index scan that stops after a LIMIT, however many offers the key's
    neighbours hold. ``pinned=False``: per class only (for "outside the pin")."""
    if spec.instance_type:
        return ("instance_type",), [(spec.instance_type,)]
    classes = list(dict.fromkeys(spec.gpu_classes))
    if pinned and spec.regions:
        return ("gpu_class", "region"), [(c, r) for c in classes for r in dict.fromkeys(spec.regions)]
    if pinned and spec.countries:
        return ("gpu_class", "country"), [(c, k) for c in classes for k in dict.fromkeys(spec.countries)]
    return ("gpu_class",), [(c,) for c in classes]


def _keyed_sql(qs, cols: tuple[str, ...], keys: list[tuple[str, ...]], *, per_key: int,
               select: str = "o.*") -> tuple[str, list]:
    """``qs`` run once per key as an ordered, limited scan (PostgreSQL LATERAL): "SELECT {select}
    FROM (VALUES keys) k CROSS JOIN LATERAL (qs AND col = k.col ... ORDER BY rank LIMIT per_key) o".
    Counting keeps the order too: it makes the planner walk the index and stop, where an
    unordered LIMIT got a bitmap scan of every row of the key (18 ms instead of 0.3 ms at 1 M).

    ``qs`` carries every other filter (compiled by the ORM, so the rules stay in one place); the
    key columns must not be filtered in it (an IN list there could steer the planner off the index)."""
    head, tail, params = _keyed_parts(qs, cols, keys, select=select)
    return f"{head}{int(per_key)}{tail}", params


def _keyed_parts(qs, cols: tuple[str, ...], keys: list[tuple[str, ...]], *,
                 select: str = "o.*") -> tuple[str, str, list]:
    """``_keyed_sql`` around its per-key LIMIT (head, tail, params): compiling ``qs`` is most of a
    page's client CPU, so a placement that reads several pages compiles it once."""
    conn = connections[qs.db]
    quote = conn.ops.quote_name
    table = quote(qs.model._meta.db_table)
    inner, params = qs.order_by().query.sql_with_params()
    match = " AND ".join(f"{table}.{quote(c)} = k.{quote(c)}" for c in cols)
    order = " ORDER BY " + ", ".join(f"{table}.{quote(c)}" for c in RANK_ORDER)
    values = ", ".join("(" + ", ".join(["%s"] * len(cols)) + ")" for _ in keys)
    joiner = " AND " if " WHERE " in inner else " WHERE "
    head = (f"SELECT {select} FROM (VALUES {values}) AS k ({', '.join(quote(c) for c in cols)}) CROSS JOIN LATERAL "
            f"({inner}{joiner}{match}{order} LIMIT ")
    return head, ") AS o", [v for key in keys for v in key] + list(params)


def _keyed(qs, spec: PlacementSpec) -> bool:
    """Per-key ordered scans where the database can run them (LATERAL) and there is a key (a spec
    naming no class has none: the plain query answers it with nothing); elsewhere the plain query."""
    return connections[qs.db].vendor == "postgresql" and bool(_keys(spec)[1])


def _candidates_qs(offers_qs, spec: PlacementSpec, keyed: tuple[str, ...] = ()):
    qs = offers_qs.filter(CAPACITY_Q).filter(_shape_q(spec, keyed)).filter(_pin_q(spec, keyed))
    if not spec.allows_spot:
        qs = qs.filter(spot=False)
    if spec.max_price_per_hour is not None:
        qs = qs.filter(price_usd_per_hour__lte=spec.max_price_per_hour)
    return qs.only(*OFFER_FIELDS)


def candidate_offers(offers_qs, spec: PlacementSpec):
    """Every candidate, cheapest first: class, count, spot, capacity, pins, price ceiling.

    The definition of placement's order (price, then on-demand before spot, then id, so an
    on-demand offer that costs the same as a spot one arrives first and the spot-vs-on-demand
    test always sees it). ``candidate_page`` reads the same rows a page at a time."""
    return _candidates_qs(offers_qs, spec).order_by(*RANK_ORDER)


def candidate_page_sql(offers_qs, spec: PlacementSpec, *, offset: int, limit: int) -> tuple[str, list]:
    """PostgreSQL: one page of ``candidate_offers`` as per-key ordered scans (``_keys``), each
    stopping after ``offset + limit`` rows, merged in rank order. An IN list over classes or
    countries instead reads and sorts every offer of the classes (265–305 ms at 1 M offers when
    the pinned country has none of them)."""
    return _page_sql(offers_qs, spec)(offset, limit)


def _page_sql(offers_qs, spec: PlacementSpec) -> Callable[[int, int], tuple[str, list]]:
    """``candidate_page_sql`` with the candidate query compiled once: (offset, limit) -> statement."""
    cols, keys = _keys(spec)
    head, tail, params = _keyed_parts(_candidates_qs(offers_qs, spec, cols), cols, keys)
    order = ", ".join(f"o.{connections[offers_qs.db].ops.quote_name(c)}" for c in RANK_ORDER)

    def page(offset: int, limit: int) -> tuple[str, list]:
        sql = f"{head}{int(offset + limit)}{tail} ORDER BY {order} LIMIT {int(limit)} OFFSET {int(offset)}"
        return sql, params

    return page


def candidate_page(offers_qs, spec: PlacementSpec, *, offset: int, limit: int) -> list:
    """Rows ``offset`` .. ``offset + limit`` of ``candidate_offers`` (the same rows, ties included)."""
    return candidate_pages(offers_qs, spec)(offset, limit)


def candidate_pages(offers_qs, spec: PlacementSpec) -> Callable[[int, int], list]:
    """``candidate_page`` for one placement that may read several pages: (offset, limit) -> rows."""
    if not _keyed(offers_qs, spec):
        plain = candidate_offers(offers_qs, spec)
        return lambda offset, limit: list(plain[offset:offset + limit])
    page_sql = _page_sql(offers_qs, spec)
    raw = offers_qs.model.objects.raw

    def page(offset: int, limit: int) -> list:
        return list(raw(*page_sql(offset, limit)))

    return page


@dataclass(frozen=True)
class _Figure:
    """One bounded figure of ``filtered_out``: count the rows of ``q`` (up to COUNT_UPTO + 1; up to
    1 with ``exists``) or take their lowest price; ``pinned``: the rows lie inside the pin (keyed
    per class and pin)."""

    q: Q
    pinned: bool
    cheapest: bool = False
    exists: bool = False

    @property
    def upto(self) -> int:
        return 1 if self.exists else COUNT_UPTO + 1


def _figures_sql(offers_qs, spec: PlacementSpec, figures: dict[str, _Figure]) -> tuple[str, list]:
    """All figures in one statement of bounded, keyed scans (PostgreSQL)."""
    parts, params = [], []
    for name, fig in figures.items():
        cols, keys = _keys(spec, pinned=fig.pinned)
        qs = offers_qs.filter(_shape_q(spec, cols)).filter(_pin_q(spec, cols) if fig.pinned else Q()).filter(fig.q)
        if fig.cheapest:
            sql, p = _keyed_sql(qs.values("price_usd_per_hour"), cols, keys, per_key=1)
            parts.append(f"(SELECT min(m.price_usd_per_hour) FROM ({sql}) AS m) AS {name}")
        else:
            sql, p = _keyed_sql(qs.values("id"), cols, keys, per_key=fig.upto, select="1 AS one")
            parts.append(f"(SELECT count(*) FROM ({sql} LIMIT {fig.upto}) AS c) AS {name}")
        params.extend(p)
    return "SELECT " + ", ".join(parts), params


def _figures(offers_qs, spec: PlacementSpec, figures: dict[str, _Figure]) -> dict[str, Any]:
    if _keyed(offers_qs, spec):
        sql, params = _figures_sql(offers_qs, spec, figures)
        with connections[offers_qs.db].cursor() as cur:
            cur.execute(sql, params)
            return dict(zip(figures, cur.fetchone(), strict=True))
    # elsewhere one exact aggregate, clamped like the bounded counts so messages read the same
    agg = {name: (Min("price_usd_per_hour", filter=(_pin_q(spec) if f.pinned else Q()) & f.q) if f.cheapest
                  else Count("id", filter=(_pin_q(spec) if f.pinned else Q()) & f.q)) for name, f in figures.items()}
    a = offers_qs.filter(_shape_q(spec)).aggregate(**agg)
    return {name: v if figures[name].cheapest else min(v, figures[name].upto) for name, v in a.items()}


def _count(n: int) -> tuple[int, bool]:
    return (COUNT_UPTO, True) if n > COUNT_UPTO else (n, False)


def filtered_out(offers_qs, spec: PlacementSpec) -> list[Exclusion]:
    """Why offers of the right shape did not survive the database filter: one statement of
    bounded counts (up to COUNT_UPTO each, then "100+") and keyed cheapest-price lookups, so the
    launch form's preview costs the same at 1 M offers as at 10 k (counting every offer of the
    shape took 441 ms at 1 M)."""
    pin = _pin_q(spec)
    ok_kind = Q() if spec.allows_spot else Q(spot=False)
    figures: dict[str, _Figure] = {"shape": _Figure(Q(), pinned=False, exists=True)}
    if spec.countries or spec.regions:
        figures["outside"] = _Figure(~pin & CAPACITY_Q & ok_kind, pinned=False)
        figures["outside_min"] = _Figure(~pin & CAPACITY_Q & ok_kind, pinned=False, cheapest=True)
        figures["inside"] = _Figure(Q(), pinned=True, exists=True)
    figures["sold_out"] = _Figure(~CAPACITY_Q, pinned=True)
    if not spec.allows_spot:
        figures["n_spot"] = _Figure(CAPACITY_Q & Q(spot=True), pinned=True)
    if spec.max_price_per_hour is not None:
        over = CAPACITY_Q & ok_kind & Q(price_usd_per_hour__gt=spec.max_price_per_hour)
        figures["over"] = _Figure(over, pinned=True)
        figures["over_min"] = _Figure(over, pinned=True, cheapest=True)
    a = _figures(offers_qs, spec, figures)
    out: list[Exclusion] = []
    where = spec.where
    if not a["shape"]:
        out.append(Exclusion("", f"no connected provider offers {spec.shape}", 0))
        return out
    if spec.countries or spec.regions:
        if a["outside"]:
            out.append(Exclusion("", f"outside the {where} pin (cheapest there {_money(a['outside_min'])})",
                                 *_count(a["outside"])))
        if not a["inside"]:
            out.append(Exclusion("", f"no {spec.shape} offered in {where}", 0))
    if a["sold_out"]:
        out.append(Exclusion("", f"no capacity in {where}" if where else "no capacity (sold out)", *_count(a["sold_out"])))
    if a.get("n_spot"):
        reason = "after repeated interruptions" if spec.force_on_demand else "(workload does not tolerate interruption)"
        out.append(Exclusion("", f"spot not allowed: on-demand required {reason}", *_count(a["n_spot"])))
    if a.get("over"):
        out.append(Exclusion("", f"over the {_money(spec.max_price_per_hour)} price ceiling "
                                 f"(cheapest {_money(a['over_min'])})", *_count(a["over"])))
    return out


def refusal(spec: PlacementSpec, exclusions: list[Exclusion]) -> str:
    """One sentence saying why nothing fits, naming the pin so nobody wonders where we looked."""
    where = f" in {spec.where}" if spec.where else ""
    main = f"No offer fits {spec.shape}{where}"
    reasons = "; ".join(str(e) for e in exclusions[:4])
    return f"{main}: {reasons}" if reasons else main


def _head(limit: int, explain: bool) -> int:
    """Rows of a placement's first read. A launch (``explain=False``) wants ``limit`` candidates:
    three times that many of the cheapest rows (at least 16) usually hold them, cent ties with a
    preferred provider included (instantiating the rest of a 60-row page was a quarter of its
    client CPU). The preview keeps the whole first page: its
    exclusions count what that page holds."""
    return PAGE if explain else min(PAGE, max(HEAD_MIN, HEAD_PER_CANDIDATE * limit))


def _settled(result: PlacementResult, last, spec: PlacementSpec, policy: PlacementPolicy | None,
             limit: int) -> bool:
    """Would more rows leave the candidates as they are? Every unread row costs at least ``last``'s
    price (rows come cheapest first), so it ranks after a candidate whose cost, to the cent, is
    lower, and it cannot make such a spot candidate dearer than on-demand. When the ``limit``-th
    candidate is such, the first ``limit`` are final: the same a whole page gives."""
    if limit <= 0 or len(result.candidates) < limit:
        return False  # (nothing asked for: the whole first page, as before)
    o = result.candidates[limit - 1].offer
    cost = (policy or PlacementPolicy()).spot_cost(o, spec) if o.spot else o.price_usd_per_hour
    floor = last.price_usd_per_hour
    return o.price_usd_per_hour < floor and cost.quantize(CENT, ROUND_HALF_UP) < floor.quantize(CENT, ROUND_HALF_UP)


def place(offers_qs, spec: PlacementSpec, policy: PlacementPolicy | None = None, limit: int = 10,
          explain: bool = True) -> PlacementResult:
    """Filter in the database, rank in Python. Fetches further pages only when the Python-side
    rules (blocklist, caps, volumes...) excluded a whole page. ``explain=False`` (a launch)
    runs the aggregate that explains the database-side exclusions only when nothing fits.

    A launch reads the head of the first page first (``_head``) and the rest of that page only
    when the head's candidates are not final (``_settled``); from there on, whole pages, as
    before: the candidates (and a refusal's reasons) are those of whole pages."""
    result = PlacementResult()
    offers: list = []
    names = policy.names if policy is not None else {}
    fetch = candidate_pages(offers_qs, spec)
    head = _head(limit, explain)
    windows = [(0, head)] + ([(head, PAGE - head)] if head < PAGE else [])
    windows += [(page * PAGE, PAGE) for page in range(1, MAX_PAGES)]
    for offset, size in windows:
        rows = fetch(offset, size)
        for o in rows:
            o.account_name = names.get(str(o.provider_account_id)) or o.provider_account.name
        offers.extend(rows)
        result = rank_offers(offers, spec, policy, limit=limit)
        if len(rows) < size:
            break  # every candidate read
        if (offset + size) % PAGE == 0:
            if len(result.candidates) >= limit:
                break
        elif _settled(result, rows[-1], spec, policy, limit):
            break
    if explain or not result.candidates:
        result.exclusions = filtered_out(offers_qs, spec) + result.exclusions
    if not result.candidates:
        result.refusal = refusal(spec, result.exclusions)
    return result


# --- the organization's policy, read from the database ---------------------------------------


def policy_for(*, tenant_id, project_id=None, now: datetime, gate_factory: Callable[..., Any] | None = None,
               hours: Decimal | None = None) -> PlacementPolicy:
    """Preferences, live blocks, launch success (last week) and the spend gate for a tenant.

    Read in one statement (``policy_read``: four reads cost four round trips and most of a launch
    placement's client CPU). ``gate_factory`` (``billing.gate.spend_gate``) is handed the capped
    accounts and the "a hard budget covers this tenant/project" fact read there with the rest, so
    the gate reads neither again."""
    from providers.adapters.registry import provider_info
    from workloads.models import LaunchAttempt

    from .policy_read import policy_rows

    ok = (LaunchAttempt.Outcome.LAUNCHED.value, LaunchAttempt.Outcome.ADOPTED.value)
    facts = policy_rows(tenant_id=tenant_id, project_id=project_id, now=now, window_days=SUCCESS_WINDOW_DAYS,
                        ok_outcomes=ok)
    preference: dict[str, int] = {}
    names: dict[str, str] = {}
    traits: dict[str, ProviderTraits] = {}
    capped: list[str] = []
    bid_margins: dict[str, int] = {}
    disabled: list[str] = []
    for pk, kind, name, rank, margin, cap, enabled in facts.accounts:
        if not enabled:
            disabled.append(pk)
            continue
        preference[pk] = rank
        names[pk] = name
        if margin is not None:
            bid_margins[pk] = margin
        if cap:
            capped.append(pk)
        if kind not in traits:
            try:
                info = provider_info(kind)
                traits[kind] = ProviderTraits(info.label, info.monthly_billed, info.slow_delivery, info.private_registry,
                                              info.spot_bids)
            except (KeyError, ImportError, AttributeError):
                traits[kind] = ProviderTraits(kind)
    blocked: dict[tuple[str, str], str] = {}
    for acc, region, reason, until in facts.blocks:
        blocked[(acc, region)] = f"{reason}, recently failed (until {until:%H:%M} UTC)"
    success = {(acc, region): (n_ok, tried) for acc, region, n_ok, tried in facts.success}

    spend_check: SpendCheck | None = None
    if gate_factory is not None:
        gate = gate_factory(tenant_id=tenant_id, project_id=project_id, capped_account_ids=capped,
                            budgeted=facts.budgeted)

        def spend_check(account_id: str, usd_per_hour: Decimal) -> tuple[bool, str]:
            decision = gate(tenant_id=tenant_id, project_id=project_id, provider_account_id=account_id,
                            usd_per_hour=usd_per_hour, hours=hours)
            return decision.allowed, decision.reason

    return PlacementPolicy(preference=preference, blocked=blocked, success=success,
                           spend_check=spend_check, traits=traits, names=names, bid_margins=bid_margins,
                           default_bid_margin_pct=int(settings.SPOT_BID_MARGIN_PCT), disabled=tuple(disabled))


def placement_for(*, tenant_id, spec: PlacementSpec, now: datetime, project_id=None, limit: int = 10,
                  explain: bool = True) -> PlacementResult:
    """Placement for a tenant with its full policy, the spend gate included."""
    from billing.gate import spend_gate
    from providers.selectors import offers_of_enabled_accounts
    from tenants.models import Tenant

    tenant = Tenant(pk=tenant_id)
    hours = Decimal(spec.max_duration_minutes) / 60 if spec.max_duration_minutes else None
    policy = policy_for(tenant_id=tenant_id, project_id=project_id, now=now, gate_factory=spend_gate, hours=hours)
    # the policy read the accounts already: leave out the disabled ones' offers instead of a join
    return place(offers_of_enabled_accounts(tenant, policy.disabled), spec, policy, limit=limit, explain=explain)
