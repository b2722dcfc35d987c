"""In real Chromium (issue 15 §2.7, §6): a 120-character name (no spaces) never widens a page — it
wraps or clips with an ellipsis and the full name in a title — and the pod list's row action
terminates a pod after a confirmation, back on the same filtered list."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tenants.models import Project
from tests.e2e.helpers import log_in
from workloads.models import Workload

from .telemetry_helpers import running_pod

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]
LONG = "x" * 60 + "-very-long-name-" + "y" * 44  # 120 characters, nothing to break at


def _width_ok(page) -> tuple[int, int]:
    return page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")


@pytest.mark.django_db(transaction=True)
def test_long_names_do_not_widen_pages_and_rows_terminate_after_confirm(live_server, page, tenant, project, owner,
                                                                         sandbox, tmp_path):
    assert len(LONG) == 120
    Project.objects.filter(pk=project.pk).update(name="p" * 120)
    pod = running_pod(tenant, project, owner)
    Workload.objects.filter(pk=pod.workload_id).update(name=LONG)
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "owner", "pw-test-123")
    for path in ("/pods/", f"/pods/{pod.pk}/", "/workloads/"):
        page.goto(live_server.url + path)
        scroll, inner = _width_ok(page)
        page.screenshot(path=str(tmp_path / (path.strip("/").replace("/", "-") + ".png")), full_page=True)
        assert scroll <= inner, (path, scroll, inner)
        if path in ("/pods/", "/workloads/"):  # nor the table inside its container (its row actions stay in view)
            table = page.evaluate("() => { const c = document.querySelector('.table-container');"
                                  " return [c.scrollWidth, c.clientWidth]; }")
            assert table[0] <= table[1], (path, table)
    page.goto(live_server.url + "/pods/")
    expect(page.locator(f"#pods a[title='{LONG}']")).to_be_visible()
    # filter, then terminate from the row: the confirm is asked, dismissing keeps the pod
    page.select_option("#f-status", "live")
    expect(page).to_have_url(re.compile(r"/pods/\?status=live&"))
    filtered = page.url
    page.once("dialog", lambda d: d.dismiss())
    page.click(f"tr[data-pod='{pod.pk}'] button[data-action=terminate]")
    expect(page.locator(f"tr[data-pod='{pod.pk}'] .badge")).to_have_text("Running")
    page.once("dialog", lambda d: d.accept())
    page.click(f"tr[data-pod='{pod.pk}'] button[data-action=terminate]")
    expect(page.locator(".messages")).to_contain_text("Termination of")
    assert page.url == filtered
    page.reload()  # the filters are still in the form after a reload
    expect(page.locator("#f-status")).to_have_value("live")
