"""Issue 4's journey in real Chromium: the demo developer picks "LLM inference" in the recipe
catalog, sets the model and 2 × A100, sees the rendered spec, the placement and the cost, launches,
sees the pod running with its URL, and stops it."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.helpers import log_in

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


@pytest.fixture
def demo_sandbox(demo):
    """The admin connected the Sandbox earlier (issue 2's journey); the developer only launches."""
    from providers.services import capacity_poll
    from tenants.models import Tenant
    from tests.factories import SandboxAccountFactory

    account = SandboxAccountFactory(tenant=Tenant.objects.get(slug="acme"), name="Sandbox",
                                    settings={"seed": "demo", "boot_seconds": 2})
    capacity_poll(accounts=[account])
    return account


@pytest.mark.django_db(transaction=True)
def test_developer_launches_llm_inference_and_stops_it(live_server, page, demo_sandbox, beat, settings, tmp_path):
    settings.SANDBOX_BOOT_SECONDS = 2
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "dev", "dev-demo-2026", "/")
    # the catalog: search narrows the cards without a reload, the filter lands in the URL
    page.click("header >> text=Recipes")
    expect(page.locator("h1")).to_have_text("Recipes")
    expect(page.locator(".recipe-card")).to_have_count(6)
    page.fill("#recipe-q", "llm")
    expect(page.locator(".recipe-card")).to_have_count(1)
    assert "q=llm" in page.url
    page.click(".recipe-card[data-slug=llm-inference]")
    expect(page.locator("h1")).to_contain_text("LLM inference")
    # typed parameters, then 2 × A100
    page.fill("#id_name", "chat-endpoint")
    page.fill("#id_p_model", "mistralai/Mistral-7B-Instruct-v0.3")
    page.select_option("#id_gpu_class", "A100")
    page.fill("#id_gpu_count", "2")
    page.fill("#id_max_duration_minutes", "180")
    page.locator("#id_max_duration_minutes").dispatch_event("change")
    # the read-only spec follows the fields: tensor parallelism = GPU count
    spec = page.locator("#spec-preview")
    expect(spec).to_contain_text("--tensor-parallel-size\n  - 2")
    expect(spec).to_contain_text("mistralai/Mistral-7B-Instruct-v0.3")
    # price per hour and for the maximum duration, before launching
    expect(page.locator("#estimate-hourly")).to_contain_text("$")
    expect(page.locator("#cost-estimate")).to_contain_text("for the maximum duration (180 min)")
    hourly = float(re.sub(r"[^0-9.]", "", page.locator("#estimate-hourly").inner_text()))
    total = float(re.sub(r"[^0-9.]", "", page.locator("#estimate-max").inner_text()))
    assert hourly > 0 and abs(total - hourly * 3) < 0.02
    # a GPU count the recipe forbids is refused inline, in the preview, before anything is created
    page.fill("#id_gpu_count", "3")
    page.locator("#id_gpu_count").dispatch_event("change")
    expect(page.locator("#preview-errors")).to_contain_text("not 3")
    page.fill("#id_gpu_count", "2")
    page.locator("#id_gpu_count").dispatch_event("change")
    expect(spec).to_contain_text("--tensor-parallel-size\n  - 2")
    page.screenshot(path=str(tmp_path / "launch-form.png"), full_page=True)
    # launch -> the pod page, live to running, with the endpoint's URL
    page.click("#launch-submit")
    expect(page.locator(".messages")).to_contain_text("Launching chat-endpoint")
    expect(page.locator("#pod-state")).to_have_text("Running", timeout=20_000)
    url = page.locator("a.conn-url").first
    expect(url).to_contain_text("-8000.sandbox.local")
    expect(page.locator("text=OpenAI-compatible API")).to_be_visible()
    expect(page.locator("#pod-live")).to_contain_text("2× A100")
    page.screenshot(path=str(tmp_path / "pod-running.png"), full_page=True)
    # stop it from the workload page (confirm dialog)
    page.click("text=Workload →")
    expect(page.locator("h1")).to_contain_text("chat-endpoint")
    page.once("dialog", lambda d: d.accept())
    page.click("#stop-workload")
    expect(page.locator("#workload-state")).to_have_text("Stopped")
    expect(page.locator("table tbody tr").first).to_contain_text("Terminated")
    expect(page.locator("#workload-events")).to_contain_text("verified at the provider")
