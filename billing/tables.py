"""The alerts page's table and filters."""

from __future__ import annotations

import django_filters
import django_tables2 as tables
from django.urls import reverse
from django.utils.html import format_html

from provisioner.tables import FilterSet, Table

from .models import BudgetAlert

STATUSES = (("unread", "Unread"), ("read", "Read"))


class AlertFilter(FilterSet):
    kind = django_filters.ChoiceFilter(label="Kind", choices=BudgetAlert.Kind.choices, empty_label="Any")
    status = django_filters.ChoiceFilter(label="Status", choices=STATUSES, empty_label="Any", method="filter_status")
    q = django_filters.CharFilter(label="Search", field_name="message", lookup_expr="icontains", max_length=120)

    class Meta:
        model = BudgetAlert
        fields = ("kind", "status", "q")

    def filter_status(self, queryset, name, value):
        return queryset.filter(read_at__isnull=(value == "unread")) if value else queryset


class AlertTable(Table):
    created_at = tables.DateTimeColumn(verbose_name="When (UTC)", format="Y-m-d H:i")
    kind = tables.Column("Kind")
    message = tables.Column("Alert")
    source = tables.Column("Budget / account", empty_values=(), order_by=("budget__name", "provider_account__name"))
    emailed_to = tables.Column("Email", orderable=False)
    webhook_status = tables.Column("Webhook", empty_values=())

    dom_id = "alerts"
    noun = "alerts"
    empty_all = "No alerts yet."
    empty_filtered = "No alerts match these filters."

    class Meta(Table.Meta):
        model = BudgetAlert
        fields = ("created_at", "kind", "message", "source", "emailed_to", "webhook_status")
        order_by = ("-created_at",)
        row_attrs = {"class": lambda record: "" if record.read_at else "unread"}

    def order_created_at(self, queryset, is_descending):
        return queryset.order_by(*(("-created_at", "-id") if is_descending else ("created_at", "id"))), True

    def render_source(self, record):
        if record.budget_id:
            return format_html('<span class="clip" title="{}">{}</span>', record.budget.name, record.budget.name)
        if record.provider_account_id:
            name = record.provider_account.name
            return format_html('<a class="clip" title="{}" href="{}">{}</a>', name,
                               reverse("providers:detail", args=[record.provider_account_id]), name)
        return "organization"

    def render_emailed_to(self, value):
        n = len(value or [])
        return f"{n} recipient{'s' if n != 1 else ''}"

    def render_webhook_status(self, value):
        return value or "—"
