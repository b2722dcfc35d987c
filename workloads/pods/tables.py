"""The pod list's table and filters: status, project, provider, user and search in the URL, sorting by
status, workload, project, price or request time, a user column and a Terminate row action that asks
first and returns to the same filtered list."""

from __future__ import annotations

import django_filters
import django_tables2 as tables
from django import forms
from django.db.models import Q
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.timesince import timesince

from providers.selectors import provider_accounts_for_tenant
from provisioner import clock
from provisioner.tables import FilterSet, Table
from tenants.access import current_membership, may_on_project
from tenants.permissions import PROVISION
from tenants.selectors import member_users, organization_projects
from workloads.models import FINAL_POD_STATES, LIVE_POD_STATES, Pod, PodState

from .selectors import pod_cost_so_far

# ?status= value -> the states it means
STATUS_FILTERS = {"live": LIVE_POD_STATES, "ended": FINAL_POD_STATES, **{s.value: (s.value,) for s in PodState}}
# the pods a row's Terminate applies to (the service refuses the others anyway)
TERMINABLE = (PodState.REQUESTED, PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPED)


def projects_choice(request):
    return organization_projects(current_membership(request))


def accounts_choice(request):
    membership = current_membership(request)
    return provider_accounts_for_tenant(membership.tenant if membership else None)


def members_choice(request):
    return member_users(current_membership(request))


class PodFilter(FilterSet):
    status = django_filters.ChoiceFilter(label="Status", empty_label="Any", method="filter_status",
                                         choices=[(k, k.capitalize()) for k in STATUS_FILTERS])
    project = django_filters.ModelChoiceFilter(label="Project", queryset=projects_choice, empty_label="Any")
    provider = django_filters.ModelChoiceFilter(label="Provider", field_name="provider_account", queryset=accounts_choice,
                                                empty_label="Any")
    owner = django_filters.ModelChoiceFilter(label="User", field_name="workload__owner", queryset=members_choice,
                                             to_field_name="username", empty_label="Anyone")
    q = django_filters.CharFilter(label="Search", method="filter_q", max_length=120,
                                  widget=forms.TextInput(attrs={"placeholder": "name, region, GPU, instance id"}))

    class Meta:
        model = Pod
        fields = ("status", "project", "provider", "owner", "q")

    def filter_status(self, queryset, name, value):
        return queryset.filter(state__in=STATUS_FILTERS[value]) if value else queryset

    def filter_q(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(Q(workload__name__icontains=value) | Q(external_id__icontains=value)
                               | Q(region__icontains=value) | Q(gpu_class__icontains=value))


class PodTable(Table):
    state = tables.Column("Status", order_by=("state", "-requested_at"))
    name = tables.Column("Workload", accessor="workload__name", order_by=("workload__name", "-requested_at"),
                         attrs={"td": {"class": "name-cell"}})
    project = tables.Column("Project", accessor="project__name", order_by=("project__name", "-requested_at"),
                            attrs={"td": {"class": "name-cell"}})
    user = tables.Column("User", accessor="workload__owner", orderable=False, empty_values=())
    place = tables.Column("Provider / region", accessor="provider_account", orderable=False, empty_values=(),
                          attrs={"td": {"class": "name-cell"}})
    gpus = tables.Column("GPUs", accessor="gpu_count", orderable=False)
    market = tables.Column("Market", accessor="spot", orderable=False, empty_values=())
    price = tables.Column("$/h", accessor="price_usd_per_hour", empty_values=(),
                          order_by=("price_usd_per_hour", "-requested_at"),
                          attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    cost = tables.Column("Cost so far", accessor="pk", orderable=False, attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    requested = tables.Column("Requested", accessor="requested_at")
    actions = tables.Column("", accessor="pk", orderable=False, attrs={"td": {"class": "row-actions-cell"}})

    dom_id = "pods"
    noun = "pods"
    refresh_seconds = 3  # states and costs move; the refresh asks for the page's own URL (filters kept)
    optional_columns = ("project", "user", "place", "gpus", "market", "price", "cost", "requested")
    empty_all = "No pods yet."
    empty_filtered = "No pods match these filters."

    class Meta(Table.Meta):
        model = Pod
        fields = ()
        sequence = ("state", "name", "project", "user", "place", "gpus", "market", "price", "cost", "requested",
                    "actions")
        order_by = ("-requested",)
        row_attrs = {"data-pod": lambda record: str(record.pk)}

    def render_state(self, record):
        return format_html('<span class="badge {}">{}</span>', record.state, record.get_state_display())

    def render_name(self, record):
        link = format_html('<a class="clip" title="{}" href="/pods/{}/">{}</a>', record.workload.name, record.pk,
                           record.workload.name)
        if record.workload.replicas > 1:
            return format_html('{} <span class="muted">#{}</span>', link, record.replica_index)
        return link

    def render_project(self, value):
        return format_html('<span class="clip" title="{}">{}</span>', value, value)

    def render_user(self, value):
        if value is None:
            return "—"
        return format_html('<a href="?{}" title="Only pods launched by {}">{}</a>', self.query_with(owner=value.username),
                           value.username, value.username)

    def render_place(self, record):
        if record.provider_account is None:
            return "—"
        name = record.provider_account.name
        return format_html('<span class="clip" title="{}">{}</span> · {} ({})', name, name, record.region, record.country)

    def render_gpus(self, record):
        return f"{record.gpu_count}× {record.gpu_class}"

    def render_market(self, record):
        if record.provider_account_id is None:
            return ""
        return "spot" if record.spot else "on-demand"

    def render_price(self, value):
        return f"${value:,.2f}" if value else "—"

    def render_cost(self, record):
        return f"${pod_cost_so_far(record):,.4f}"

    def render_requested(self, value):
        return format_html('<span title="{}">{} ago</span>', value.strftime("%Y-%m-%d %H:%M:%S"),
                           timesince(value, clock.now()))

    def render_actions(self, record):
        request = self.request
        if record.state not in TERMINABLE or not may_on_project(current_membership(request), PROVISION, record.project_id):
            return ""
        return render_to_string("workloads/partials/pod_row_actions.html",
                                {"pod": record, "next": request.get_full_path()}, request=request)
