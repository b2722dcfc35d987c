"""In real Chromium (issue 15 §2.3): browser Back from the GPU step shows the Regions step with the
choice that was saved (EU), not the page's first rendering ("Anywhere"), and Next keeps EU. A
residency choice is never widened silently: the server asks for an explicit confirmation."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


def _step(page, name: str) -> None:
    expect(page.locator(f"#wizard[data-step={name}]")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_browser_back_from_gpu_step_shows_and_keeps_the_saved_eu_choice(live_server, page, tenant, owner, tmp_path):
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "owner", "pw-test-123")
    page.goto(live_server.url + "/providers/connect/")
    page.click(".provider-tile[data-kind=sandbox]")
    page.click("#wizard-next")
    _step(page, "credentials")
    page.click("#wizard-next")
    _step(page, "cap")
    page.fill("#id_spending_cap_usd", "100")
    page.click("#wizard-next")
    _step(page, "regions")
    expect(page.locator("input[name=preset][value=any]")).to_be_checked()
    page.check("input[name=preset][value=EU]")
    page.click("#wizard-next")
    _step(page, "gpu")
    page.go_back()  # the browser's Back, not the wizard's "Previous"
    _step(page, "regions")
    page.screenshot(path=str(tmp_path / "regions-after-back.png"), full_page=True)
    expect(page.locator("input[name=preset][value=EU]")).to_be_checked()
    expect(page.locator("input[name=preset][value=any]")).not_to_be_checked()
    page.click("#wizard-next")
    _step(page, "gpu")
    page.locator("input[name=default_gpu_class]").first.check()
    page.click("#wizard-next")
    _step(page, "review")
    where = page.locator("dt:text-is('Where pods may run') + dd").inner_text()
    assert "anywhere" not in where.lower() and "DE" in where and "FR" in where and "US" not in where
