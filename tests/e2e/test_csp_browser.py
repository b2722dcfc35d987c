"""In real Chromium under the strict script policy (issue 16 §6): the pod page's utilization chart
and the spend page's charts draw, the confirm/auto-submit behaviour moved out of inline handlers
still works, and the browser reports no Content-Security-Policy violation."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from billing.budgets import budget_create
from provisioner import clock
from tests.e2e.helpers import log_in
from tests.workloads.telemetry_helpers import feed, running_pod
from workloads.models import Pod

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]
SLOW = 30_000


def _watch(page) -> list[str]:
    violations: list[str] = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    page.on("pageerror", lambda e: violations.append(str(e)))
    page.add_init_script("document.addEventListener('securitypolicyviolation', e => "
                         "console.error('Content Security Policy violation: ' + e.violatedDirective))")
    return violations


@pytest.mark.django_db(transaction=True)
def test_charts_and_handlers_work_without_inline_scripts(live_server, page, tenant, project, owner, sandbox):
    now = clock.now()
    pod = running_pod(tenant, project, owner)
    # running for the 20 minutes of samples: 50 cents of spend, so the spend chart has bars however
    # fast the browser gets there (started "now", the spend was under half a cent for ~12 s: no chart)
    Pod.objects.filter(pk=pod.pk).update(started_at=now - timedelta(minutes=20),
                                         run_sessions=[[(now - timedelta(minutes=20)).isoformat(), None]])
    feed(pod, start=now - timedelta(minutes=20), end=now, util=lambda at, g: 2.0 if g else 1.0)
    budget_create(tenant=tenant, name="Team", amount_usd=100, period="month")
    violations = _watch(page)
    page.set_default_timeout(SLOW)
    log_in(page, live_server.url, "owner", "pw-test-123")

    page.goto(f"{live_server.url}/pods/{pod.pk}/")
    expect(page.locator("#util-chart .main-svg").first).to_be_visible(timeout=SLOW)
    expect(page.locator("#util-chart .scatterlayer .trace")).to_have_count(2)
    page.once("dialog", lambda d: d.dismiss())  # data-confirm: dismissing keeps the pod
    page.click("form[data-confirm] button[type=submit]")
    assert page.url.endswith(f"/pods/{pod.pk}/")

    page.goto(f"{live_server.url}/spend/")
    # the pod has only just started: no spend in the range yet, so the spend chart is its empty state
    # (issue 15 §2.7); the forecast and budget charts are drawn by plotly under the CSP
    expect(page.locator("#chart-forecast .main-svg").first).to_be_visible(timeout=SLOW)
    expect(page.locator("#chart-budgets .main-svg").first).to_be_visible(timeout=SLOW)
    page.select_option("#f-range", "custom")  # data-toggle shows the custom dates
    expect(page.locator("#f-custom")).to_be_visible()
    assert violations == []
