"""Issue 2's journey in real Chromium: log in as the demo admin, connect the Sandbox, launch a
pod, see it running, terminate it, see a cost above zero."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from providers.catalog import expand_countries
from providers.models import Offer
from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


@pytest.mark.django_db(transaction=True)
def test_admin_connects_sandbox_launches_and_terminates(live_server, page, demo, beat, settings, tmp_path):
    settings.SANDBOX_BOOT_SECONDS = 2
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "admin", "admin-demo-2026", "/")
    # a new organization lands its admin on the connect page
    expect(page.locator("h1")).to_have_text("Connect a provider")
    # the connection wizard: Sandbox tile -> name -> cap -> EU only -> default class -> review
    page.click(".provider-tile[data-kind=sandbox]")
    page.click("#wizard-next")
    expect(page.locator("#wizard[data-step=credentials]")).to_be_visible()
    page.click("#wizard-next")
    expect(page.locator("#wizard[data-step=cap]")).to_be_visible()
    page.click("#wizard-next")
    expect(page.locator("#wizard[data-step=regions]")).to_be_visible()
    page.check("input[name=preset][value=EU]")
    page.click("#wizard-next")
    expect(page.locator("#wizard[data-step=gpu]")).to_be_visible()
    page.check("input[name=default_gpu_class][value=A100-80]")
    page.click("#wizard-next")
    expect(page.locator("#review-offers table tbody tr").first).to_be_visible()
    page.click("text=Connect Sandbox")
    expect(page.locator(".messages")).to_contain_text("Connected Sandbox")
    expect(page.locator("table tbody tr").first).to_be_visible()
    # launch one GPU of a class the Sandbox has free in the EU this hour: its capacity moves with
    # the hour, and a fixed A100-80 was refused (pod Failed) in an hour with none free there
    gpu = (Offer.objects.filter(provider_account__tenant__name="Acme AI", gpu_count=1, spot=False,
                                country__in=expand_countries(["EU"]))
           .exclude(available=0).order_by("price_usd_per_hour").values_list("gpu_class", flat=True).first())
    assert gpu, "the Sandbox offers no single GPU with capacity in the EU this hour"
    page.click("header >> text=Launch")
    page.fill("#id_name", "first-finetune")
    page.select_option("#id_gpu_class", gpu)
    page.click("button:has-text('Launch')")
    expect(page.locator("h1")).to_contain_text("first-finetune")
    # live updates: requested/provisioning -> running without a reload
    expect(page.locator("#pod-state")).to_have_text("Running", timeout=20_000)
    expect(page.locator("text=ssh root@")).to_be_visible()
    page.wait_for_timeout(1500)
    page.screenshot(path=str(tmp_path / "pod-page.png"), full_page=True)
    # terminate (confirm dialog)
    page.once("dialog", lambda d: d.accept())
    page.click("#terminate")
    expect(page.locator("#pod-state")).to_have_text("Terminated")
    cost = float(re.sub(r"[^0-9.]", "", page.locator("#pod-cost").inner_text()))
    assert cost > 0
    # the country pin held: an EU region
    expect(page.locator("text=verified at the provider")).to_be_visible()
