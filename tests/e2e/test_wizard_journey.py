"""Issue 6's wizard journey in real Chromium against the RunPod stand-in served on 127.0.0.1:
a wrong key shows an inline error and saves nothing; Back/refresh keep what was typed; the
right key connects and the review step lists live offers from the stand-in."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from providers.models import ProviderAccount
from tests.e2e.helpers import log_in
from tests.standins.fixtures import STANDIN_CREDENTIALS, served_runpod  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


def _step(page, name: str) -> None:
    expect(page.locator(f"#wizard[data-step={name}]")).to_be_visible()


@pytest.mark.django_db(transaction=True)
def test_runpod_wrong_key_then_right_key_connects_with_live_offers(live_server, page, demo, served_runpod, tmp_path):  # noqa: F811
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "admin", "admin-demo-2026", "/")
    # a new organization lands its admin in the wizard; tiles with billing notes, one recommended
    expect(page.locator("h1")).to_have_text("Connect a provider")
    expect(page.locator(".provider-tile").first).to_have_attribute("data-kind", "sandbox")
    expect(page.locator("#recommendation")).to_contain_text("spot")
    page.screenshot(path=str(tmp_path / "wizard-providers.png"), full_page=True)
    # Cancel leaves nothing behind
    page.click(".provider-tile[data-kind=sandbox]")
    page.click("#wizard-next")
    _step(page, "credentials")
    page.click("#wizard-cancel")
    expect(page.locator(".messages")).to_contain_text("Nothing was saved")
    assert page.url.endswith("/providers/") and not ProviderAccount.objects.exists()
    page.goto(live_server.url + "/providers/connect/")
    page.click(".provider-tile[data-kind=runpod]")
    page.click("#wizard-next")
    _step(page, "credentials")

    # a wrong key: inline error, nothing saved, the key not echoed back
    wrong = "rpa_WRONG_KEY_e2e_0123456789"
    page.fill("#id_name", "RunPod")
    page.fill("#id_api_key", wrong)
    page.fill("#id_base_url", served_runpod.url)
    page.click("#wizard-next")
    expect(page.locator(".credential-error")).to_contain_text("refused these credentials")
    _step(page, "credentials")
    expect(page.locator("#id_api_key")).to_have_value("")
    assert wrong not in page.content()
    expect(page.locator("#id_name")).to_have_value("RunPod")  # non-secret input kept
    assert not ProviderAccount.objects.exists()

    # the right key moves on
    page.fill("#id_api_key", STANDIN_CREDENTIALS["runpod"]["api_key"])
    page.click("#wizard-next")
    _step(page, "cap")
    page.fill("#id_spending_cap_usd", "777")
    page.click("#wizard-next")
    _step(page, "regions")
    expect(page.locator("#provider-countries")).to_contain_text("RunPod has capacity right now in")
    # Back keeps what was typed, and so does a reload of the page
    page.click("#wizard-back")
    _step(page, "cap")
    expect(page.locator("#id_spending_cap_usd")).to_have_value("777")
    assert page.url.endswith("/cap/")  # the URL follows the step (HTMX push)
    page.reload()
    _step(page, "cap")
    expect(page.locator("#id_spending_cap_usd")).to_have_value("777")
    page.click("#wizard-next")
    _step(page, "regions")
    page.check("input[name=preset][value=any]")
    page.click("#wizard-next")
    _step(page, "gpu")
    page.locator("input[name=default_gpu_class]").first.check()
    page.click("#wizard-next")
    _step(page, "review")

    # review: live offers fetched now from the stand-in
    rows = page.locator("#review-offers table tbody tr")
    expect(rows.first).to_be_visible()
    expect(page.locator("#review-offers")).not_to_contain_text("No offers yet")
    assert rows.count() > 3
    expect(page.locator(".review-summary")).to_contain_text("$777")
    page.screenshot(path=str(tmp_path / "wizard-review.png"), full_page=True)
    assert not ProviderAccount.objects.exists()  # still nothing saved before Connect

    page.click("#wizard-connect")
    expect(page.locator(".messages")).to_contain_text("Connected RunPod")
    expect(page.locator("h1")).to_contain_text("RunPod")
    expect(page.locator("table tbody tr").first).to_be_visible()
    account = ProviderAccount.objects.get()
    assert account.kind == "runpod" and account.settings["base_url"] == served_runpod.url
    assert account.offer_count > 0 and str(account.spending_cap_usd) == "777.00"
    assert STANDIN_CREDENTIALS["runpod"]["api_key"] not in page.content()
