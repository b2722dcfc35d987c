"""Dated annotations on the spend-over-time chart (ux-expectations B, Vantage): a provider
connected or removed, an invoice rate set, marked on the day (or the week/month bar) it happened."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from provisioner import clock
from tenants.audit import audit_record

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)  # a Wednesday


def _figure(html: str) -> dict:
    payload = re.search(r'<script id="chart-spend-figure" type="application/json">(.*?)</script>', html, re.S)
    return json.loads(payload.group(1))


def _event(tenant, action: str, name: str, at: datetime) -> None:
    with clock.frozen(at):
        event = audit_record(tenant=tenant.pk, action=action, target=None, details={})
    type(event).objects.filter(pk=event.pk).update(target_repr=name)  # as if the target had that name


@pytest.fixture
def spend(tenant, project):
    """Some spend in every range below: a range without any shows no chart at all ("No spend …")."""
    from billing.metering import ledger_correct
    from billing.rollups import rollup_dirty

    from .helpers import account

    acct = account(tenant)
    with clock.frozen(NOW):
        for days_ago in (1, 3, 20):
            ledger_correct(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk,
                           at=NOW - timedelta(days=days_ago), amount=Decimal("4.00"), note="test spend")
        rollup_dirty()
    return acct


@pytest.mark.django_db
def test_provider_changes_are_marked_on_the_day_they_happened(client, finance, tenant, spend):
    _event(tenant, "provider.connected", "RunPod prod", NOW - timedelta(days=2))
    _event(tenant, "provider.removed", "Old Lambda", NOW - timedelta(days=2, hours=1))
    _event(tenant, "provider.connected", "Before range", NOW - timedelta(days=30))
    _event(tenant, "pod.launched", "not a chart event", NOW - timedelta(days=1))
    client.force_login(finance)
    with clock.frozen(NOW):
        html = client.get(reverse("billing:spend"), {"range": "7d"}).content.decode()
    layout = _figure(html)["layout"]
    assert [s["x0"] for s in layout["shapes"]] == ["2026-03-16"]
    (note,) = layout["annotations"]
    assert note["text"] == "Removed Old Lambda; Connected RunPod prod"  # in the order they happened
    assert "Before range" not in html and "not a chart event" not in html


@pytest.mark.django_db
def test_weekly_bars_carry_the_mark_of_their_week_and_labels_are_escaped(client, finance, tenant, spend):
    _event(tenant, "provider.connected", "</script><b>x</b>", NOW - timedelta(days=1))
    client.force_login(finance)
    with clock.frozen(NOW):
        html = client.get(reverse("billing:spend"), {"range": "30d", "grain": "week"}).content.decode()
    layout = _figure(html)["layout"]
    assert [s["x0"] for s in layout["shapes"]] == ["2026-03-16"]  # the Monday of that week
    assert "</script><b>" not in html  # the label stays inert JSON inside the page


@pytest.mark.django_db
def test_no_events_no_marks(client, finance, spend):
    client.force_login(finance)
    with clock.frozen(NOW):
        html = client.get(reverse("billing:spend")).content.decode()
    assert "shapes" not in _figure(html)["layout"]
