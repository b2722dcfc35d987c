"""In real Chromium (issue 15 §2.1): the pod page's charts (GPU utilization, GPU memory, host CPU and
memory) stay whole across the live panel's 2 s HTMX swaps — its plot layers, title and idle-threshold line stay inside the chart card, never
spilling into the Events card — and a pod with a single sample shows it as a point at once."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from provisioner import clock
from tests.e2e.helpers import log_in
from workloads.models import HostSample

from .telemetry_helpers import feed, running_pod

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]
SLOW = 30_000
SHOTS = os.environ.get("UX_SHOTS")  # a folder to keep the before/after screenshots in


def _login(page, live_server):
    page.set_default_timeout(SLOW)
    log_in(page, live_server.url, "owner", "pw-test-123")


def _inside(inner, outer, slack=2):
    return (inner["x"] >= outer["x"] - slack and inner["y"] >= outer["y"] - slack
            and inner["x"] + inner["width"] <= outer["x"] + outer["width"] + slack
            and inner["y"] + inner["height"] <= outer["y"] + outer["height"] + slack)


def _chart_geometry(page) -> dict:
    card = page.locator("#pod-utilization").bounding_box()
    events = page.locator('#pod-live .card:has(h2:text-is("Events"))').bounding_box()
    parts = {name: page.locator(sel).first.bounding_box() for name, sel in {
        "svg": "#util-chart .main-svg", "plot": "#util-chart .scatterlayer", "threshold": "#util-chart .annotation",
        "title": "#pod-utilization h2", "memory": "#gpu-mem-chart .scatterlayer", "host": "#host-chart .scatterlayer"}.items()}
    return {"card": card, "events": events, **parts}


@pytest.mark.django_db(transaction=True)
def test_chart_stays_in_its_card_across_refreshes(live_server, page, tenant, project, owner, sandbox, tmp_path):
    now = clock.now()
    pod = running_pod(tenant, project, owner)
    feed(pod, start=now - timedelta(minutes=20), end=now, util=lambda at, g: 2.0 if g else 40.0)
    HostSample.objects.bulk_create([HostSample(pod=pod, at=now - timedelta(minutes=m), cpu_pct=10.0 + m, mem_used_mb=4096,
                                               mem_total_mb=16384) for m in range(0, 20, 2)])
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    _login(page, live_server)
    page.goto(f"{live_server.url}/pods/{pod.pk}/")
    expect(page.locator("#util-chart .scatterlayer .trace")).to_have_count(2, timeout=SLOW)
    expect(page.locator("#gpu-mem-chart .scatterlayer .trace")).to_have_count(2)
    expect(page.locator("#host-chart .scatterlayer .trace")).to_have_count(2)  # CPU and memory
    before = _chart_geometry(page)
    page.screenshot(path=f"{SHOTS or tmp_path}/chart-before.png", full_page=True)
    # several 2 s swaps of the live panel and at least one of the chart's own 15 s refreshes
    swaps = page.evaluate("""() => new Promise(resolve => { const n = {panel: 0, chart: 0};
        document.body.addEventListener('htmx:afterSettle', e => {
            if (e.target.id === 'pod-live') { n.panel++; } else if (e.target.id === 'pod-utilization') { n.chart++; }
            if (n.panel >= 4 && n.chart >= 1) { setTimeout(() => resolve(n), 2100); } }); })""")
    assert swaps["panel"] >= 4 and swaps["chart"] >= 1
    page.wait_for_timeout(300)
    after = _chart_geometry(page)
    page.screenshot(path=f"{SHOTS or tmp_path}/chart-after.png", full_page=True)
    for geo in (before, after):
        for part in ("svg", "plot", "threshold", "title", "memory", "host"):
            assert geo[part] is not None, part
            assert _inside(geo[part], geo["card"]), (part, geo[part], geo["card"])
            assert not _inside(geo[part], geo["events"], slack=0), part
    assert abs(after["svg"]["y"] - after["card"]["y"] - (before["svg"]["y"] - before["card"]["y"])) < 2
    expect(page.locator("#util-chart .scatterlayer .trace")).to_have_count(2)
    expect(page.locator("#gpu-mem-chart .scatterlayer .trace")).to_have_count(2)
    expect(page.locator("#host-chart .scatterlayer .trace")).to_have_count(2)
    assert errors == []


@pytest.mark.django_db(transaction=True)
def test_a_single_sample_shows_as_a_point(live_server, page, tenant, project, owner, sandbox):
    now = clock.now()
    pod = running_pod(tenant, project, owner, gpu_count=1)
    feed(pod, start=now - timedelta(seconds=30), end=now - timedelta(seconds=30), util=lambda at, g: 55.0)
    _login(page, live_server)
    page.goto(f"{live_server.url}/pods/{pod.pk}/")
    expect(page.locator("#util-chart .scatterlayer .trace")).to_have_count(1, timeout=SLOW)
    # a lone sample is a marker: a line alone would draw nothing until the second sample
    expect(page.locator("#util-chart .scatterlayer .trace .points path.point")).to_have_count(1)


@pytest.mark.django_db(transaction=True)
def test_logs_load_on_demand_and_stay_across_refreshes(live_server, page, tenant, project, owner, sandbox, tmp_path):
    pod = running_pod(tenant, project, owner, gpu_count=1)
    _login(page, live_server)
    page.goto(f"{live_server.url}/pods/{pod.pk}/")
    expect(page.locator("#logs-text")).to_have_count(0)
    page.click("#logs-load")  # "Load last 200 lines"
    expect(page.locator("#logs-text")).to_contain_text("Started container on 1x A10", timeout=SLOW)
    expect(page.locator("#logs-load")).to_have_text("Refresh")
    page.evaluate("""() => new Promise(resolve => { let n = 0;
        document.body.addEventListener('htmx:afterSettle', e => { if (e.target.id === 'pod-live' && ++n >= 2) resolve(n); }); })""")
    expect(page.locator("#logs-text")).to_contain_text("Started container")  # hx-preserve kept it
    page.screenshot(path=f"{SHOTS or tmp_path}/logs.png", full_page=True)
