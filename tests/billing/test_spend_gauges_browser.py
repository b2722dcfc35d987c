"""In real Chromium (issue 15 §2.7): the Spend page's budget gauges keep their titles readable —
no title overlaps another or is clipped by the chart's edge, even for a 120-character budget name —
and a range without spend shows an empty state instead of empty axes."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from playwright.sync_api import expect

from provisioner import clock
from tests.e2e.helpers import log_in
from tests.factories import BudgetFactory

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]
NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
LONG = "Monthly GPU spend of the research, evaluation and inference teams across every provider account we use"


@pytest.mark.django_db(transaction=True)
def test_budget_gauge_titles_neither_overlap_nor_clip(live_server, page, tenant, finance, project, tmp_path):
    BudgetFactory(tenant=tenant, name=LONG + " " + "x" * (119 - len(LONG)), amount_usd=Decimal("5000"))
    BudgetFactory(tenant=tenant, name="Research", project=project, amount_usd=Decimal("800"))
    BudgetFactory(tenant=tenant, name="Weekly inference", period="weekly", amount_usd=Decimal("300"))
    page.set_default_timeout(20_000)
    page.set_viewport_size({"width": 1280, "height": 900})
    with clock.frozen(NOW):
        log_in(page, live_server.url, "finance", "pw-test-123")
        page.goto(live_server.url + "/spend/?range=custom&from=2026-03-10&to=2026-03-01")
        expect(page.locator("#range-notice")).to_contain_text("swapped")
        expect(page.locator("#chart-spend")).to_contain_text("No spend from 2026-03-01 to 2026-03-10")
        chart = page.locator("#chart-budgets")
        expect(chart.locator(".ytick text").first).to_be_visible()
        chart.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path / "spend-budgets.png"), full_page=True)
        box = chart.bounding_box()
        labels = [t.bounding_box() for t in chart.locator(".ytick text").all()]
        texts = [t.text_content() for t in chart.locator(".ytick text").all()]
    assert len(labels) == 3, texts
    for label, text in zip(labels, texts, strict=True):
        # inside the chart (not clipped at its left edge), and leaving most of the width to the bars
        assert label["x"] >= box["x"] - 1 and label["x"] + label["width"] <= box["x"] + box["width"] * 0.45, (text, label, box)
    ordered = sorted(labels, key=lambda b: b["y"])
    for upper, lower in zip(ordered, ordered[1:], strict=False):
        assert upper["y"] + upper["height"] <= lower["y"] + 1, ordered  # no title overlaps the next
    assert any(t.startswith("Monthly GPU spend") and "…" in t for t in texts), texts
