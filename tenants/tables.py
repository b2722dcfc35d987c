"""The audit log's table and filters."""

from __future__ import annotations

from datetime import datetime, time

import django_filters
import django_tables2 as tables
from django import forms
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from provisioner.tables import FilterSet, Table

from .models import AuditEvent


def _target_types(events: QuerySet[AuditEvent]) -> list[tuple[str, str]]:
    types = events.exclude(target_type="").order_by("target_type").values_list("target_type", flat=True).distinct()
    return [(t, t) for t in types]


class AuditFilter(FilterSet):
    action = django_filters.CharFilter(label="Action", lookup_expr="icontains", max_length=64)
    actor = django_filters.CharFilter(label="Who", field_name="actor_name", lookup_expr="icontains", max_length=150)
    target_type = django_filters.ChoiceFilter(label="Target", choices=(), empty_label="Any")
    since = django_filters.DateFilter(label="Since", method="filter_since",
                                      widget=forms.DateInput(attrs={"type": "date"}))
    until = django_filters.DateFilter(label="Until", method="filter_until",
                                      widget=forms.DateInput(attrs={"type": "date"}))

    class Meta:
        model = AuditEvent
        fields = ("action", "actor", "target_type", "since", "until")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.filters["target_type"].extra["choices"] = _target_types(self.queryset)

    def filter_since(self, queryset, name, value):
        return queryset.filter(at__gte=timezone.make_aware(datetime.combine(value, time.min)))

    def filter_until(self, queryset, name, value):
        return queryset.filter(at__lte=timezone.make_aware(datetime.combine(value, time.max)))


class AuditTable(Table):
    at = tables.DateTimeColumn(verbose_name="When", format="Y-m-d H:i:s")
    actor_name = tables.Column("Who", empty_values=())
    action = tables.Column("Action")
    target_repr = tables.Column("Target", order_by=("target_type", "target_repr"))
    details = tables.Column("Details", orderable=False, attrs={"td": {"class": "muted"}})
    ip = tables.Column("From", orderable=False, empty_values=(), attrs={"td": {"class": "muted"}})

    dom_id = "audit"
    noun = "events"
    empty_all = "Nothing recorded yet."
    empty_filtered = "No events match these filters."

    class Meta(Table.Meta):
        model = AuditEvent
        fields = ("at", "actor_name", "action", "target_repr", "details", "ip")
        order_by = ("-at",)

    def order_at(self, queryset, is_descending):
        # newest first breaks ties by id, so a page boundary never repeats or skips an event
        return queryset.order_by(*(("-at", "-id") if is_descending else ("at", "id"))), True

    def render_actor_name(self, value):
        return value or "system"

    def render_action(self, value):
        return format_html("<code>{}</code>", value)

    def render_target_repr(self, record):
        return format_html('<span class="clip" title="{}">{}</span>', record.target_repr, record.target_repr)

    def render_details(self, value):
        return format_html_join(" ", "{}={}", ((k, v) for k, v in (value or {}).items()))

    def render_ip(self, record):
        return f"{record.ip or ''} {record.request_id[:8]}".strip() or "—"
