"""The finance journey in real Chromium: the demo finance user logs in, reads the live spend
(running cost, spend today) and watches it refresh without a reload, filters the history (date
range, stacked by project, one provider) and exports exactly the rows shown as CSV, creates a
monthly budget and sees its gauge on the dashboard, and finds no way to launch.

Spend is real: two Sandbox accounts, eight finished pods over the previous days and a running
one, driven through the pod transitions and metered / rolled up like the periodic tasks do.
The app's clock (``provisioner.clock``, a process-wide override the live server thread reads
too) is frozen at a fixed instant for the whole test, so every figure is known in advance and
nothing depends on the wall-clock hour; the test advances it to make the live figures move.
"""

from __future__ import annotations

import csv
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from billing.metering import meter_all
from billing.rollups import rollup_dirty
from provisioner import clock
from tests.billing.helpers import account, make_pod, run_timeline, to
from tests.e2e.helpers import log_in
from workloads.models import PodState, UtilizationSample

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

H = timedelta(hours=1)
NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)  # a Wednesday, mid-month: the server's "now"
POLL_TIMEOUT = 15_000  # ms: the page polls every 5 s


@pytest.fixture
def spend(demo):
    """The demo organization's spend as of NOW.

    History: pod i (i = 0..7) ran 2 h at $(i + 1)/h on day NOW - 8 + i, from 06:00; odd i in
    "Default", even i in "Research"; i % 3 == 0 on "Sandbox US", the others on "Sandbox EU".
    Live: "serve" ($3.60/h, Default, Sandbox EU) running since 10:00, metered until 11:30:
    today $5.40 booked + $1.80 accruing = $7.20. Idle: job5 (03-15, Default, Sandbox EU) idle its first hour.
    """
    from django.contrib.auth import get_user_model

    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="acme")
    default, research = tenant.projects.get(name="Default"), tenant.projects.get(name="Research")
    admin = get_user_model().objects.get(username="admin")
    eu, us = account(tenant, name="Sandbox EU"), account(tenant, name="Sandbox US")
    with clock.frozen(NOW) as advance:
        day0 = (NOW - timedelta(days=8)).replace(hour=6)
        for i in range(8):
            start = day0 + timedelta(days=i)
            with clock.frozen(start):
                pod = make_pod(tenant, research if i % 2 == 0 else default, admin, us if i % 3 == 0 else eu,
                               price=f"{i + 1}.00", name=f"job{i}")
            if i == 5:  # job5's GPU sat at 1 % for its first hour (a sample a minute), then worked: $6.00 idle
                UtilizationSample.objects.bulk_create([UtilizationSample(pod=pod, at=start + timedelta(minutes=m),
                                                                         util_pct=1.0 if m < 60 else 95.0)
                                                       for m in range(61)])
            run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (2 * H, PodState.TERMINATED)], meter_every=H)
        with clock.frozen(NOW - 2 * H):
            serve = make_pod(tenant, default, admin, eu, price="3.60", name="serve")
            to(serve, PodState.RUNNING)
        with clock.frozen(NOW - H / 2):
            meter_all()
        rollup_dirty()
        yield {"tenant": tenant, "default": default, "research": research, "admin": admin, "eu": eu, "us": us,
               "advance": advance}


def _money(text: str) -> str:
    return text.strip().lstrip("$")


def _spend_table(page) -> list[tuple[str, str, str]]:
    card = page.locator("div.card", has=page.locator("h2", has_text="Spend by"))
    rows = []
    for tr in card.locator("tbody tr").all():
        cells = [c.strip() for c in tr.locator("td").all_inner_texts()]
        if len(cells) == 4:  # period, group, spend, idle GPU
            rows.append((cells[0], cells[1], _money(cells[2])))
    return rows


def _chart_traces(page) -> list[str]:
    return page.evaluate("() => document.getElementById('chart-spend').data.map(t => t.name)")


@pytest.mark.django_db(transaction=True)
def test_finance_watches_live_spend_filters_exports_and_sets_a_budget(live_server, page, spend, tmp_path):
    from billing.models import Budget
    from workloads.models import Workload

    page.set_default_timeout(20_000)
    base = live_server.url

    # 1. login through the form; finance lands on Spend, and the header link opens it too
    log_in(page, base, "finance", "finance-demo-2026", "/")
    page.click("header >> a:text-is('Spend')")
    expect(page.locator("h1")).to_have_text("Spend")
    run_rate, today = page.get_by_test_id("run-rate"), page.get_by_test_id("spend-today")
    live = page.locator("#spend-live")
    expect(run_rate).to_have_text("$3.60 / h")  # the running pod's hourly price
    expect(live).to_contain_text("1 pod billing now")
    expect(today).to_have_text("$7.20")  # $5.40 booked + $1.80 accruing since the last meter
    expect(live).to_contain_text("$79.20")  # month to date: $72 of history + today
    expect(live).to_contain_text("Live figures updated 12:00:00 UTC")
    expect(page.get_by_test_id("idle-month")).to_have_text("$6.00")  # job5's idle hour, from its samples
    expect(page.get_by_test_id("idle-explained")).to_contain_text("below its workload's idle threshold")
    expect(page.get_by_test_id("budget-left")).to_have_text("—")  # no budget yet
    assert sorted(_chart_traces(page)) == ["Sandbox EU", "Sandbox US"]  # stacked by provider by default
    before = _spend_table(page)
    assert ("2026-03-18", "Sandbox EU", "7.20") in before and ("2026-03-16", "Sandbox US", "14.00") in before

    # 2. the live figures refresh in place: half an hour later, metered, and a second pod started
    page.evaluate("() => { window.__sameDocument = 'kept'; }")
    with page.expect_response(lambda r: r.url.startswith(base + "/spend/") and r.request.headers.get("hx-request") == "true",
                              timeout=POLL_TIMEOUT):
        pass  # write right after a poll answered: the next one is 5 s away
    spend["advance"](minutes=30)  # 12:30
    meter_all()  # serve: 11:30-12:30 booked, $9.00 today
    train = make_pod(spend["tenant"], spend["research"], spend["admin"], spend["us"], price="1.25", name="train")
    to(train, PodState.RUNNING)
    expect(run_rate).to_have_text("$4.85 / h", timeout=POLL_TIMEOUT)
    expect(live).to_contain_text("2 pods billing now")
    expect(today).to_have_text("$9.00")
    expect(live).to_contain_text("Live figures updated 12:30:00 UTC")
    assert page.evaluate("() => window.__sameDocument") == "kept"  # no reload happened
    expect(page.locator("h1")).to_have_text("Spend")

    # 3. filters: custom dates, stacked by project, one provider -> in the URL, chart and table
    page.select_option("#f-range", "custom")
    expect(page.locator("#f-custom")).to_be_visible()
    page.fill("#f-from", "2026-03-11")
    page.fill("#f-to", "2026-03-18")
    page.select_option("#f-group", "project")
    page.select_option("#f-provider", [str(spend["eu"].pk)])
    page.click("form.filters button:text('Apply')")
    expect(page.locator("h2", has_text="Spend by project")).to_be_visible()
    url = page.url
    for part in ("range=custom", "from=2026-03-11", "to=2026-03-18", "group=project", f"provider={spend['eu'].pk}"):
        assert part in url, (part, url)
    expect(page.locator("#f-group")).to_have_value("project")  # the form keeps the filters
    assert sorted(_chart_traces(page)) == ["Default", "Research"]
    title = page.evaluate("() => document.getElementById('chart-spend').layout.title.text")
    assert title == "Daily spend by project ($ / day)"
    shown = _spend_table(page)
    # Sandbox EU only (no job0/job3/job6, no "train"); 03-18 is serve's $9.00 booked today
    assert shown == [("2026-03-11", "Default", "4.00"), ("2026-03-12", "Research", "6.00"),
                     ("2026-03-14", "Research", "10.00"), ("2026-03-15", "Default", "12.00"),
                     ("2026-03-17", "Default", "16.00"), ("2026-03-18", "Default", "9.00")]
    assert shown != before
    total = page.locator("div.card", has=page.locator("h2", has_text="Spend by")).locator("tfoot")
    expect(total).to_contain_text("Total 2026-03-11 – 2026-03-18")
    expect(total).to_contain_text("$57.00")
    # the export is exactly this view
    with page.expect_download() as dl:
        page.click("a:text('Export CSV')")
    download = dl.value
    assert download.suggested_filename == "spend-2026-03-11-2026-03-18.csv"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    with open(target, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0][:3] == ["section", "period", "project"] and rows[0][5:] == ["amount_usd", "idle_usd"]
    assert [(r[1], r[2], r[5]) for r in rows if r[0] == "spend"] == shown
    assert [r[5] for r in rows if r[0] == "total"] == ["57.00"]
    assert {r[3] for r in rows if r[0] == "top_workload"} == {"job1", "job2", "job4", "job5", "job7", "serve"}
    page.screenshot(path=str(tmp_path / "spend-filtered.png"), full_page=True)

    # 3b. drill-down: a click on the first "Default" bar filters to that project, stacks by workload,
    # and keeps the other filters (custom dates, Sandbox EU)
    bar = page.locator("#chart-spend g.trace.bars").first.locator("path").first
    page.locator("#chart-spend").scroll_into_view_if_needed()
    box = bar.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#chart-spend .hoverlayer .hovertext")).to_have_count(1)  # plotly picked the bar
    page.mouse.down()
    page.mouse.up()
    expect(page.locator("h2", has_text="Spend by workload")).to_be_visible()
    url = page.url
    for part in ("range=custom", "from=2026-03-11", "to=2026-03-18", "group=workload",
                 f"provider={spend['eu'].pk}", f"project={spend['default'].pk}"):
        assert part in url, (part, url)
    assert sorted(_chart_traces(page)) == ["job1", "job5", "job7", "serve"]  # Default's EU workloads only
    expect(page.locator(".filter-chips")).to_contain_text("Project: Default")
    idle_row = page.locator("div.card", has=page.locator("h2", has_text="Spend by")).locator("tr", has_text="job5")
    expect(idle_row).to_contain_text("$12.00")
    expect(idle_row).to_contain_text("$6.00")  # its idle GPU column
    # ...and from a table row: job5 alone, the filters still kept
    idle_row.get_by_role("link", name="job5").click()
    expect(page.locator(".filter-chips")).to_contain_text("Workload: job5")
    assert f"provider={spend['eu'].pk}" in page.url and "range=custom" in page.url
    assert _chart_traces(page) == ["job5"]
    page.screenshot(path=str(tmp_path / "spend-drilled.png"), full_page=True)
    # ...and from the idle chart: a period's bar opens its days, job5 and Sandbox EU kept
    page.locator("#chart-idle").scroll_into_view_if_needed()
    boxes = [b for b in (p.bounding_box() for p in page.locator("#chart-idle g.trace.bars path").all()) if b and b["height"] > 2]
    box = boxes[0]  # the only period with spend: 03-15 (idle part)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    expect(page.locator("#chart-idle .hoverlayer .hovertext")).to_have_count(1)
    page.mouse.down()
    page.mouse.up()
    expect(page.locator("#f-from")).to_have_value("2026-03-15")
    expect(page.locator("#f-to")).to_have_value("2026-03-15")
    assert f"provider={spend['eu'].pk}" in page.url and "group=workload" in page.url
    expect(page.locator(".filter-chips")).to_contain_text("Workload: job5")

    # 4. a monthly budget for the whole organization, created on Budgets, shows on Spend
    page.click("a.btn:text('Budgets')")
    expect(page.locator("h1")).to_have_text("Budgets")
    page.fill("#id_name", "GPU monthly")
    page.select_option("#id_project", label="Whole organization")
    page.select_option("#id_period", "month")
    page.fill("#id_amount_usd", "300")
    page.fill("#id_soft_thresholds", "50, 80, 100")
    page.click("button:text('Create budget')")
    expect(page.locator(".messages")).to_contain_text('Budget "GPU monthly" created.')
    row = page.locator("tbody tr", has_text="GPU monthly")
    expect(row).to_contain_text("$81.00")  # March so far: $72 of history + $9.00 booked today
    expect(row).to_contain_text("50%, 80%, 100%")
    budget = Budget.objects.get(tenant=spend["tenant"], name="GPU monthly")
    assert (budget.period, budget.amount_usd, budget.soft_thresholds, budget.project_id) == ("month", 300, [50, 80, 100], None)
    page.click("a:text('← Spend')")
    expect(page.locator("h1")).to_have_text("Spend")
    expect(page.locator("div.card", has=page.locator("h2", has_text="Budgets"))).to_contain_text(
        "GPU monthly: $81.00 of $300.00 (27%), $219.00 left")
    expect(page.get_by_test_id("budget-left")).to_have_text("$219.00")  # the KPI card, beside idle spend
    # one horizontal bar per budget (spent) with a tick at its amount: the basic plotly bundle
    gauge = page.evaluate("() => { const d = document.getElementById('chart-budgets').data;"
                          " return [d[0].x[0], d[1].x[0], d[0].customdata[0]]; }")
    assert gauge[0] == 81.0 and gauge[1] == 300.0 and gauge[2] == "GPU monthly (Monthly)"
    expect(page.locator("#chart-budgets .bars path").first).to_be_visible()  # drawn, not just data
    page.screenshot(path=str(tmp_path / "spend-budget.png"), full_page=True)

    # 5. no launch control for finance; a launch posted anyway is refused
    expect(page.locator("header a", has_text=re.compile(r"^Launch$"))).to_have_count(0)
    expect(page.get_by_role("link", name="Launch", exact=True)).to_have_count(0)
    resp = page.goto(base + "/launch/")
    assert resp.status == 200  # readable by design (tests/security: VIEWER_READ_ONLY), but inert:
    expect(page.locator("text=Your role can look at recipes but not launch them.")).to_be_visible()
    expect(page.locator("#launch-submit")).to_be_disabled()
    workloads_before = Workload.objects.count()
    post = """async (url) => {
        const token = JSON.parse(document.body.getAttribute('hx-headers'))['X-CSRFToken'];
        const body = new URLSearchParams({name: 'sneaky', image: 'img', gpu_class: 'A100-80', gpu_count: '1'});
        const r = await fetch(url, {method: 'POST', body, headers: {'X-CSRFToken': token}});
        return [r.status, await r.text()];
    }"""
    # the same request shape is accepted where finance may post (marking alerts read)...
    status, _ = page.evaluate(post, base + "/spend/alerts/")
    assert status == 200
    # ...and refused on the launch endpoint, for the role, not for a missing CSRF token
    status, body = page.evaluate(post, base + "/launch/")
    # (the 403 page is in the app's layout, whose htmx headers carry a token: look for the refusal)
    assert status == 403 and "CSRF verification failed" not in body
    assert Workload.objects.count() == workloads_before
