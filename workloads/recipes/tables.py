"""The workload list's table and filters: state, lifecycle, project, owner and name in the URL,
sorting, an owner column and Stop / Relaunch row actions that ask first and return to the list."""

from __future__ import annotations

import django_filters
import django_tables2 as tables
from django import forms
from django.template.loader import render_to_string
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from provisioner import clock
from provisioner.tables import FilterSet, Table
from tenants.access import current_membership, may_on_project
from tenants.permissions import PROVISION
from workloads.models import Lifecycle, Workload
from workloads.pods.tables import members_choice, projects_choice


class WorkloadFilter(FilterSet):
    state = django_filters.ChoiceFilter(label="State", choices=Workload.State.choices, empty_label="Any")
    lifecycle = django_filters.ChoiceFilter(label="Lifecycle", choices=Lifecycle.choices, empty_label="Any")
    project = django_filters.ModelChoiceFilter(label="Project", queryset=projects_choice, empty_label="Any")
    owner = django_filters.ModelChoiceFilter(label="Owner", queryset=members_choice, to_field_name="username",
                                             empty_label="Anyone")
    q = django_filters.CharFilter(label="Search", field_name="name", lookup_expr="icontains", max_length=120,
                                  widget=forms.TextInput(attrs={"placeholder": "name"}))

    class Meta:
        model = Workload
        fields = ("state", "lifecycle", "project", "owner", "q")


class WorkloadTable(Table):
    state = tables.Column("State")
    name = tables.Column("Name", attrs={"td": {"class": "name-cell"}})
    recipe = tables.Column("Recipe", accessor="recipe_version", orderable=False, empty_values=())
    project = tables.Column("Project", accessor="project__name", attrs={"td": {"class": "name-cell"}})
    lifecycle = tables.Column("Lifecycle")
    gpus = tables.Column("GPUs", accessor="gpu_count", orderable=False)
    live_pods = tables.Column("Live pods", attrs={"td": {"class": "num"}, "th": {"class": "num"}})
    owner = tables.Column("Owner", accessor="owner__username", empty_values=())
    created = tables.Column("Created", accessor="created_at")
    actions = tables.Column("", accessor="pk", orderable=False, attrs={"td": {"class": "row-actions-cell"}})

    dom_id = "workloads"
    noun = "workloads"
    empty_all = "No workloads yet."
    empty_filtered = "No workloads match these filters."

    class Meta(Table.Meta):
        model = Workload
        fields = ()
        sequence = ("state", "name", "recipe", "project", "lifecycle", "gpus", "live_pods", "owner", "created",
                    "actions")
        order_by = ("-created",)
        row_attrs = {"data-workload": lambda record: str(record.pk)}

    def order_name(self, queryset, is_descending):
        return queryset.order_by("-name" if is_descending else "name", "-created_at"), True

    def render_state(self, record):
        return format_html('<span class="badge wl-{}">{}</span>', record.state, record.get_state_display())

    def render_name(self, record):
        return format_html('<a class="clip" title="{}" href="/workloads/{}/">{}</a>', record.name, record.pk, record.name)

    def render_recipe(self, record):
        if record.recipe_version is None:
            return mark_safe('<span class="muted">image</span>')  # noqa: S308 - a literal
        return format_html('{} <span class="muted">v{}</span>', record.recipe_version.recipe.name,
                           record.recipe_version.version)

    def render_project(self, value):
        return format_html('<span class="clip" title="{}">{}</span>', value, value)

    def render_lifecycle(self, record):
        if record.schedule_cron:
            return format_html("{} <code>{}</code>", record.get_lifecycle_display(), record.schedule_cron)
        return record.get_lifecycle_display()

    def render_gpus(self, record):
        shape = record.custom_instance_type or record.gpu_class
        return f"{record.replicas} × {record.gpu_count}× {shape}" if record.replicas > 1 else f"{record.gpu_count}× {shape}"

    def render_live_pods(self, record):
        return f"{record.live_pods} / {record.pod_total}"

    def render_owner(self, value):
        if not value:
            return "—"
        return format_html('<a href="?{}" title="Only workloads of {}">{}</a>', self.query_with(owner=value), value, value)

    def render_created(self, value):
        return format_html('<span title="{}">{} ago</span>', value.strftime("%Y-%m-%d %H:%M:%S"),
                           timesince(value, clock.now()))

    def render_actions(self, record):
        """Stop (an active workload) and Relaunch (one without live pods, or a stopped schedule): the
        same conditions as the workload page's buttons, and the same per-project grant."""
        request = self.request
        if not may_on_project(current_membership(request), PROVISION, record.project_id):
            return ""
        scheduled = record.lifecycle == Lifecycle.SCHEDULED
        active = record.state == Workload.State.ACTIVE
        may_relaunch = (not record.live_pods and not scheduled) or (scheduled and not active)
        if not (active or may_relaunch):
            return ""
        return render_to_string("workloads/recipes/partials/workload_row_actions.html",
                                {"w": record, "stop": active, "relaunch": may_relaunch,
                                 "next": request.get_full_path()}, request=request)
