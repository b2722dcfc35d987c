"""In real Chromium: the pod page draws the per-GPU utilization chart with the vendored plotly.js,
keeps it across the live panel's 2 s refreshes, and shows the idle countdown."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from provisioner import clock
from tests.e2e.helpers import log_in

from .telemetry_helpers import feed, running_pod

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]
SLOW = 30_000  # plotly.min.js is 4.6 MB: give a loaded CI machine time to parse it


@pytest.mark.django_db(transaction=True)
def test_pod_page_draws_the_chart_and_the_countdown(live_server, page, tenant, project, owner, sandbox):
    now = clock.now()
    pod = running_pod(tenant, project, owner)
    feed(pod, start=now - timedelta(minutes=20), end=now, util=lambda at, g: 2.0 if g else 1.0)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(SLOW)
    log_in(page, live_server.url, "owner", "pw-test-123")
    page.goto(f"{live_server.url}/pods/{pod.pk}/")
    expect(page.locator("#idle-countdown")).to_contain_text("at <5 % GPU")
    chart = page.locator("#util-chart .main-svg").first
    expect(chart).to_be_visible(timeout=SLOW)
    expect(page.locator("#util-chart .scatterlayer .trace")).to_have_count(2)  # one line per GPU
    page.wait_for_timeout(2500)  # the live panel swaps every 2 s; the chart is preserved
    expect(chart).to_be_visible()
    page.click("#pod-utilization >> text=15m")
    expect(page.locator("#pod-utilization a[aria-current=true]")).to_have_text("15m")
    expect(page.locator("#util-chart .main-svg").first).to_be_visible(timeout=SLOW)
    assert errors == []
