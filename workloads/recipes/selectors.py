"""Reads for the recipe catalog, launch estimates and the workload pages."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, Q, QuerySet

from providers.adapters.image_registry import image_registry_host, normalize_host
from provisioner import clock
from tenants.models import Tenant
from workloads.models import LIVE_POD_STATES, PodEvent, Recipe, RecipePin, RegistryCredential, Workload
from workloads.placement.bids import SpotBid, bid_for_offer
from workloads.placement.engine import PlacementResult, placement_for, placement_spec


def recipes_for_tenant(tenant: Tenant | None) -> QuerySet[Recipe]:
    """The built-in catalog plus the organization's own recipes."""
    if tenant is None:
        return Recipe.objects.none()
    return Recipe.objects.filter(Q(tenant__isnull=True) | Q(tenant=tenant))


def pinned_recipe_ids(tenant: Tenant | None, user) -> set:
    if tenant is None or user is None:
        return set()
    return set(RecipePin.objects.filter(tenant=tenant, user=user).values_list("recipe_id", flat=True))


def recipe_search(tenant: Tenant | None, *, q: str = "", category: str = "", source: str = "",
                  pinned: set | frozenset = frozenset()) -> list[Recipe]:
    """The catalog's cards: the member's pinned recipes first, then built-in, then by name."""
    qs = recipes_for_tenant(tenant)
    if q:
        qs = qs.filter(Q(name__icontains=q) | Q(description__icontains=q) | Q(slug__icontains=q) | Q(category__icontains=q))
    if category:
        qs = qs.filter(category=category)
    if source == "builtin":
        qs = qs.filter(tenant__isnull=True)
    elif source == "ours":
        qs = qs.filter(tenant=tenant)
    items = list(qs.order_by("-builtin", "name"))
    for r in items:
        r.pinned = r.pk in pinned
    return sorted(items, key=lambda r: not r.pinned)  # stable: the order above within each group


def recipe_by_slug(tenant: Tenant | None, slug: str) -> Recipe | None:
    """The organization's recipe of that slug, else the built-in one."""
    return recipes_for_tenant(tenant).filter(slug=slug).order_by("builtin").first()


def workloads_with_counts(tenant: Tenant | None) -> QuerySet[Workload]:
    return _with_counts(Workload.objects.for_tenant(tenant))


def workloads_for(membership) -> QuerySet[Workload]:
    """The workloads a member may see (the access helper's restricted queryset), with their pod
    counts: the workload list."""
    return _with_counts(Workload.objects.restrict(membership))


def _with_counts(workloads: QuerySet[Workload]) -> QuerySet[Workload]:
    return (workloads.select_related("project", "owner", "recipe_version__recipe")
            .annotate(live_pods=Count("pods", filter=Q(pods__state__in=LIVE_POD_STATES)), pod_total=Count("pods")))


def workload_events(workload: Workload, limit: int = 200) -> list[PodEvent]:
    """The events timeline across every pod of the workload, newest first."""
    return list(PodEvent.objects.filter(pod__workload=workload).select_related("pod").order_by("-at", "-id")[:limit])


@dataclass(frozen=True)
class RegistryLoginPreview:
    """What the launch preview says about a private image's login (never the secret)."""

    host: str  # where the image is pulled from: the login goes there
    username: str
    credential_name: str
    credential_registry: str

    @property
    def mismatch(self) -> bool:
        return bool(self.credential_registry) and self.credential_registry != self.host


def registry_login_preview(tenant: Tenant | None, version, image: str = "") -> RegistryLoginPreview | None:
    """The registry login a recipe version's launch will use, or None (public image)."""
    cred_id = (version.defaults or {}).get("registry_credential_id") if version is not None else None
    if not cred_id:
        return None
    cred = RegistryCredential.objects.for_tenant(tenant).filter(pk=cred_id).only("name", "registry", "username").first()
    if cred is None:
        return None
    return RegistryLoginPreview(host=image_registry_host(image or version.image), username=cred.username,
                                credential_name=cred.name, credential_registry=normalize_host(cred.registry))


@dataclass
class Estimate:
    result: PlacementResult
    replicas: int
    max_duration_minutes: int | None
    bid: SpotBid | None = None  # spot on a bidding provider: the pod is charged its bid

    @property
    def unit_price(self) -> Decimal | None:
        """One pod's USD/h: its bid where the provider charges the bid, else the offer's price."""
        chosen = self.result.chosen
        if chosen is None:
            return None
        return self.bid.price_usd if self.bid else chosen.price

    @property
    def per_hour(self) -> Decimal | None:
        unit = self.unit_price
        return unit * self.replicas if unit is not None else None

    @property
    def for_max_duration(self) -> Decimal | None:
        if self.per_hour is None or not self.max_duration_minutes:
            return None
        return self.per_hour * Decimal(self.max_duration_minutes) / Decimal(60)


def launch_estimate(tenant: Tenant, *, project_id=None, gpu_class: str, gpu_count: int, acceptable: list[str],
                    interruption_tolerant: bool, countries: list[str], regions: list[str],
                    max_price_per_hour: Decimal | None, volume_kinds: list[str], lifecycle: str,
                    max_duration_minutes: int | None, replicas: int, registry_host: str = "",
                    spot_bid_margin_pct: int | None = None) -> Estimate:
    """Where a declaration would land right now and what it would cost (per hour, and for the
    maximum duration), through the same placement the launch uses."""
    spec = placement_spec(
        gpu_class=gpu_class, acceptable=acceptable, gpu_count=gpu_count, interruption_tolerant=interruption_tolerant,
        countries=countries, regions=regions, max_price_per_hour=max_price_per_hour, volume_kinds=volume_kinds,
        lifecycle=lifecycle, max_duration_minutes=max_duration_minutes, registry_host=registry_host,
        bid_margin_pct=spot_bid_margin_pct,
    )
    result = placement_for(tenant_id=tenant.pk, spec=spec, now=clock.now(), project_id=project_id, limit=4)
    bid = (bid_for_offer(result.chosen.offer, margin_pct=spot_bid_margin_pct, ceiling_usd=max_price_per_hour)
           if result.chosen else None)
    return Estimate(result=result, replicas=max(1, replicas), max_duration_minutes=max_duration_minutes, bid=bid)
