"""The capacity tables (the Capacity page, a provider's page): offers with their filters."""

from __future__ import annotations

import django_filters
import django_tables2 as tables
from django.db.models import QuerySet
from django.urls import reverse
from django.utils.html import format_html

from provisioner.tables import FilterSet, Table
from tenants.access import current_membership

from .models import Offer, ProviderAccount
from .selectors import provider_accounts_for_tenant

MARKETS = (("spot", "Spot"), ("on-demand", "On-demand"))


def _accounts(request) -> QuerySet[ProviderAccount]:
    membership = current_membership(request)
    return provider_accounts_for_tenant(membership.tenant if membership else None)


def _gpu_classes(offers: QuerySet[Offer]) -> list[tuple[str, str]]:
    """The GPU classes among these offers (one query, distinct)."""
    return [(c, c) for c in offers.order_by("gpu_class").values_list("gpu_class", flat=True).distinct()]


class OfferFilter(FilterSet):
    gpu_class = django_filters.ChoiceFilter(label="GPU", choices=(), empty_label="Any")
    gpu_count = django_filters.NumberFilter(label="GPUs", min_value=1, max_value=64)
    market = django_filters.ChoiceFilter(label="Market", choices=MARKETS, empty_label="Any", method="filter_market")
    country = django_filters.CharFilter(label="Country", max_length=2, method="filter_country")
    region = django_filters.CharFilter(label="Region", lookup_expr="icontains", max_length=64)
    provider = django_filters.ModelChoiceFilter(label="Provider", field_name="provider_account", queryset=_accounts,
                                                empty_label="Any")
    max_price = django_filters.NumberFilter(label="Max $/h", field_name="price_usd_per_hour", lookup_expr="lte",
                                            min_value=0, max_digits=12, decimal_places=6)

    class Meta:
        model = Offer
        fields = ("gpu_class", "gpu_count", "market", "country", "region", "provider", "max_price")

    def __init__(self, *args, with_provider: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # the choices are the classes of the offers this table lists (restricted by the caller),
        # plus a class the URL names that has no offer now: it filters to nothing, never to everything
        choices = _gpu_classes(self.queryset)
        wanted = (self.data or {}).get("gpu_class", "")
        if wanted and len(wanted) <= 16 and (wanted, wanted) not in choices:
            choices.append((wanted, wanted))
        self.filters["gpu_class"].extra["choices"] = choices
        if not with_provider:  # a provider's own page
            del self.filters["provider"]

    def filter_market(self, queryset, name, value):
        return queryset.filter(spot=(value == "spot")) if value else queryset

    def filter_country(self, queryset, name, value):
        return queryset.filter(country=value.strip().upper()) if value else queryset


class OfferTable(Table):
    gpu_class = tables.Column("GPU")
    gpu_count = tables.Column("Count", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    region = tables.Column("Region")
    country = tables.Column("Country")
    spot = tables.Column("Market")
    price_usd_per_hour = tables.Column("$/h (pod)", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    available = tables.Column("Available", empty_values=(), attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    provider_account = tables.Column("Provider", order_by=("provider_account__name",))

    dom_id = "offers"
    noun = "offers"
    empty_all = "No offers yet."
    empty_filtered = "No offers match these filters."

    class Meta(Table.Meta):
        model = Offer
        fields = ("gpu_class", "gpu_count", "region", "country", "spot", "price_usd_per_hour", "available",
                  "provider_account")
        order_by = ("gpu_class", "gpu_count", "price_usd_per_hour")
        row_attrs = {"class": lambda record: "muted" if record.stale else ""}

    def render_spot(self, value):
        return "spot" if value else "on-demand"

    def render_price_usd_per_hour(self, value):
        return f"${value:,.2f}"

    def render_available(self, record):
        return record.availability or "?" if record.available is None else record.available

    def render_provider_account(self, value):
        # drill down to the account's own offers, the other filters and the sort kept
        return format_html('<a class="clip" title="{}" href="{}?{}">{}</a>', value.name,
                           reverse("providers:detail", args=[value.pk]), self.query_with(provider=None), value.name)
