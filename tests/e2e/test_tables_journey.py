"""The tables in real Chromium (issue 15 §4): on the Capacity page a filter and a sort (an htmx-boosted
header link that swaps only the table and pushes its URL) survive a reload; the workload list's Stop
asks for a confirmation — dismissed, nothing happens — and, confirmed, returns to the same filtered
list; the audit log keeps its filter and sort across a reload too."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import log_in
from tests.factories import WorkloadFactory
from workloads.models import Workload

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


def _rows(page, dom_id: str) -> list[str]:
    return page.locator(f"#{dom_id} tbody tr").all_inner_texts()


@pytest.mark.django_db(transaction=True)
def test_filters_and_sorting_survive_a_reload_and_row_actions_ask_first(live_server, page, tenant, project, owner,
                                                                         sandbox, tmp_path):
    alpha = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="alpha")
    WorkloadFactory(tenant=tenant, project=project, owner=owner, name="bravo")
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "owner", "pw-test-123")

    # 1. capacity: a GPU class, then the most expensive first
    page.goto(live_server.url + "/providers/capacity/")
    gpu = page.locator("#f-gpu_class option").nth(1).get_attribute("value")
    page.select_option("#f-gpu_class", gpu)  # applies at once (data-autosubmit)
    expect(page).to_have_url(re.compile(rf"gpu_class={re.escape(gpu)}"))
    # price is already the table's third default key (shown ascending), so the first click may
    # already ask for descending: wait for that click's swap (its URL is pushed after it) before
    # clicking again, else a second click on the old header races the first (the later response
    # wins and the test read whichever arrived last)
    page.click("#offers th a[data-sort=price_usd_per_hour]")
    expect(page).to_have_url(re.compile(r"sort=-?price_usd_per_hour"))
    if "sort=-price_usd_per_hour" not in page.url:  # ascending now: once more for descending
        expect(page.locator("#offers th[aria-sort=ascending] a[data-sort=price_usd_per_hour]")).to_be_visible()
        page.click("#offers th a[data-sort=price_usd_per_hour]")  # swapped by htmx, URL pushed
    expect(page).to_have_url(re.compile(r"sort=-price_usd_per_hour"))
    expect(page.locator("#offers th[aria-sort=descending]")).to_be_visible()
    expect(page.locator("#offers")).to_have_count(1)  # the swapped-out table is gone

    def prices_shown() -> tuple[list[str], list[float]]:
        rows = _rows(page, "offers")
        return rows, [float(re.search(r"\$([0-9,.]+)", r)[1].replace(",", "")) for r in rows]

    for _ in range(50):  # the rows may settle a moment after the header (htmx swap on a loaded machine)
        rows, prices = prices_shown()
        if prices == sorted(prices, reverse=True):
            break
        page.wait_for_timeout(100)
    assert rows and all(gpu in r for r in rows)
    assert prices == sorted(prices, reverse=True)
    url = page.url
    page.reload()
    assert page.url == url
    expect(page.locator("#f-gpu_class")).to_have_value(gpu)
    expect(page.locator("#offers th[aria-sort=descending]")).to_be_visible()
    assert _rows(page, "offers") == rows
    page.screenshot(path=str(tmp_path / "capacity.png"), full_page=True)
    # a filter chosen after an htmx sort keeps that sort (the form reads it from the URL)
    page.click("#offers th a[data-sort=region]")
    expect(page).to_have_url(re.compile(r"sort=region"))
    page.select_option("#f-market", "spot")
    expect(page).to_have_url(re.compile(r"market=spot"))
    assert "sort=region" in page.url and f"gpu_class={gpu}" in page.url
    expect(page.locator("#offers th[aria-sort=ascending] a[data-sort=region]")).to_be_visible()
    # a row's provider drills down to that account's page (a page, not a swapped table), filters kept
    page.locator("#offers tbody tr").first.locator("td a").last.click()
    expect(page).to_have_url(re.compile(rf"/providers/{sandbox.pk}/\?.*gpu_class={re.escape(gpu)}"))
    expect(page.locator("h1")).to_contain_text(sandbox.name)
    expect(page.locator("#f-gpu_class")).to_have_value(gpu)

    # 2. workloads: filter, then Stop from a row — asked first
    page.goto(live_server.url + "/workloads/")
    page.select_option("#f-state", "active")
    expect(page).to_have_url(re.compile(r"/workloads/\?state=active"))
    filtered = page.url
    row = page.locator(f"tr[data-workload='{alpha.pk}']")
    page.once("dialog", lambda d: d.dismiss())
    row.locator("button[data-action=stop]").click()
    expect(row.locator(".badge")).to_have_text("Active")
    alpha.refresh_from_db()
    assert alpha.state == Workload.State.ACTIVE
    page.once("dialog", lambda d: d.accept())
    row.locator("button[data-action=stop]").click()
    expect(page.locator(".messages")).to_contain_text("Stopped alpha")
    assert page.url == filtered
    expect(page.locator(f"tr[data-workload='{alpha.pk}']")).to_have_count(0)  # no longer active
    page.reload()
    expect(page.locator("#f-state")).to_have_value("active")
    page.click("#workloads a:text('bravo')")  # a name opens the workload's page
    expect(page.locator("h1")).to_contain_text("bravo")
    expect(page.locator("#workload-state")).to_have_text("Active")
    page.screenshot(path=str(tmp_path / "workloads.png"), full_page=True)

    # 3. audit log: the stop is recorded; filter and sort survive a reload
    page.goto(live_server.url + "/org/audit/?action=workload")
    page.click("#audit th a[data-sort=at]")  # oldest first
    expect(page).to_have_url(re.compile(r"action=workload&sort=at"))
    rows = _rows(page, "audit")
    assert rows and all("workload" in r for r in rows)
    page.reload()
    expect(page.locator("#f-action")).to_have_value("workload")
    assert _rows(page, "audit") == rows


@pytest.mark.django_db(transaction=True)
def test_pod_list_column_chooser_keeps_filters_sort_and_survives_refresh(live_server, page, tenant, project, owner,
                                                                          sandbox):
    from tests.factories import PodFactory

    workload = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="chooser-job")
    PodFactory(tenant=tenant, project=project, workload=workload, provider_account=sandbox)
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "owner", "pw-test-123")
    page.goto(live_server.url + "/pods/?q=chooser")
    page.click("#pods th a[data-sort=name]")  # an htmx sort: the URL has it, the chooser's fields may not
    expect(page).to_have_url(re.compile(r"sort=name"))
    page.click("#pods-columns summary")
    page.uncheck("#col-cost")
    page.uncheck("#col-project")
    page.click("#pods-columns-apply")
    expect(page).to_have_url(re.compile(r"cols_set=1"))
    assert "q=chooser" in page.url and "sort=name" in page.url
    def headers() -> list[str]:  # innerText follows the CSS upper-casing of headers
        return [h.strip().lower() for h in page.locator("#pods thead th").all_inner_texts()]

    assert "cost so far" not in headers() and "project" not in headers() and any("workload" in h for h in headers())
    page.wait_for_timeout(3500)  # one live refresh of the table: still without those columns
    assert "cost so far" not in headers()
    page.select_option("#f-status", "live")  # a filter keeps the column choice
    expect(page).to_have_url(re.compile(r"status=live"))
    assert "cols_set=1" in page.url and "cost so far" not in headers()
    page.click("#pods-columns summary")
    page.screenshot(path="/tmp/pod-columns.png", full_page=True)
