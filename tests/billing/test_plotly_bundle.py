"""The vendored plotly.js is the small 'basic' bundle (bar, scatter, pie) and every chart the
app draws uses only trace types registered in it: an unknown type draws nothing in the browser."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from billing.budgets import budget_create
from tests.chart_helpers import figures

BUNDLE = Path(settings.BASE_DIR) / "static" / "vendor" / "plotly.min.js"
FULL_BUNDLE_BYTES = 4_815_814  # plotly.min.js 4.1.1, the full bundle shipped before


def _registered_traces() -> set[str]:
    return set(re.findall(r'moduleType:"trace",name:"([a-z0-9]+)"', BUNDLE.read_text()))


def test_vendored_bundle_is_basic_and_matches_the_python_plotly_major():
    head = BUNDLE.read_text()[:200]
    assert "plotly.js (basic - minified) v4.1.1" in head
    assert BUNDLE.stat().st_size < FULL_BUNDLE_BYTES / 3
    assert {"bar", "scatter"} <= _registered_traces()


@pytest.mark.django_db
def test_every_spend_chart_uses_a_trace_type_in_the_bundle(client, finance, tenant, project, owner):
    from tests.billing.helpers import account, make_pod, run_timeline
    from workloads.models import PodState

    pod = make_pod(tenant, project, owner, account(tenant), price="2.00")
    from provisioner import clock

    run_timeline(pod, clock.now() - timedelta(days=2), [(timedelta(0), PodState.RUNNING),
                                                         (timedelta(hours=2), PodState.TERMINATED)],
                 meter_every=timedelta(hours=1))
    from billing.rollups import rollup_dirty

    rollup_dirty()  # the past days' spend, as the periodic task books it: a chart with nothing is an empty state
    budget_create(tenant=tenant, name="Monthly", amount_usd=Decimal("100"))
    client.force_login(finance)
    used = set()
    for params in ({}, {"mode": "cumulative"}):
        html = client.get(reverse("billing:spend"), params).content.decode()
        drawn = figures(html)
        assert {"chart-spend", "chart-forecast", "chart-budgets"} <= set(drawn)
        used |= {t.get("type", "scatter") for fig in drawn.values() for t in fig["data"]}
    assert used and used <= _registered_traces(), used - _registered_traces()
