"""Names that users choose end up inside chart JSON (a workload as a trace of the spend chart, a
budget on the gauges): rendered through ``provisioner.charts`` (``json_script``), a name like
``</script><script>…`` stays data and cannot end the element and run as a script."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.budgets import budget_create
from billing.rollups import rollup_dirty
from provisioner import clock
from provisioner.charts import chart
from tests.chart_helpers import figures
from workloads.models import PodState

from .test_csp_and_caching import INLINE_SCRIPT

EVIL = '</script><script>alert("x")</script><!--&'


def test_a_figure_string_and_a_data_attribute_cannot_break_out():
    html = chart({"data": [{"type": "bar", "name": EVIL, "x": [1], "y": [2]}], "layout": {}}, "c", note=EVIL)
    assert "</script><script>" not in html and "<!--" not in html
    assert html.count("<script") == 1 and html.count("</script>") == 1 and not INLINE_SCRIPT.search(html)
    assert figures(html)["c"]["data"][0]["name"] == EVIL  # the browser's JSON.parse gets the name back
    assert 'data-note="&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)' in html


@pytest.mark.django_db
def test_spend_page_with_a_hostile_workload_and_budget_name(client, finance, tenant, project, owner):
    from tests.billing.helpers import account, make_pod, run_timeline

    pod = make_pod(tenant, project, owner, account(tenant), price="2.00", name=EVIL)
    run_timeline(pod, clock.now() - timedelta(days=2), [(timedelta(0), PodState.RUNNING),
                                                         (timedelta(hours=2), PodState.TERMINATED)],
                 meter_every=timedelta(hours=1))
    rollup_dirty()  # the dashboard reads the rollups
    budget_create(tenant=tenant, name=EVIL, amount_usd=Decimal("100"))
    client.force_login(finance)
    html = client.get(reverse("billing:spend"), {"group": "workload"}).content.decode()
    assert EVIL not in html and "</script><script>" not in html and not INLINE_SCRIPT.search(html)
    drawn = figures(html)
    assert EVIL in {t["name"] for t in drawn["chart-spend"]["data"]}
    # the row label is the name cut short; the whole name rides in the hover's customdata
    assert any(EVIL in name for name in drawn["chart-budgets"]["data"][0]["customdata"])
