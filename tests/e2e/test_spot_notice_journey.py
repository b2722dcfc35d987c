"""In real Chromium: a spot service on the Sandbox gets a 30 s interruption notice; the pod page
shows the notice, the deadline counting down and the replacement; the replacement runs before
the provider takes the old pod, so the service never has a moment without a running pod."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from providers.services import capacity_poll
from tests.e2e.helpers import every, log_in
from tests.factories import SandboxAccountFactory
from workloads.lifecycle import services
from workloads.models import Lifecycle, Pod, PodState

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]

BOOT_S, NOTICE_S, TAKEN_AFTER_S = 3, 30, 36  # the notice comes ~6 s after the pod runs


@pytest.fixture
def spot_beat(transactional_db):
    """celery-beat's spot sync, at its scheduled cadence (every 3 s)."""
    from workloads.interruptions.spot_sync import spot_pods_sync

    with every(3, spot_pods_sync):
        yield


@pytest.mark.django_db(transaction=True)
def test_a_spot_service_survives_a_30s_notice_with_no_gap(live_server, page, tenant, project, owner, spot_beat):
    account = SandboxAccountFactory(tenant=tenant, name="Spot sandbox", settings={
        "seed": "e2e", "boot_seconds": BOOT_S, "notice_seconds": NOTICE_S, "interrupt_after_seconds": TAKEN_AFTER_S})
    capacity_poll(accounts=[account])
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="chat-api", image="vllm/vllm-openai",
                                 gpu_class="A100-80", gpu_count=1, lifecycle=Lifecycle.SERVICE, interruption_tolerant=True)
    (old,) = services.workload_launch(workload=w)
    old.refresh_from_db()
    assert old.spot

    log_in(page, live_server.url, "owner", "pw-test-123")
    page.goto(f"{live_server.url}/pods/{old.pk}/")
    expect(page.locator("#pod-state")).to_have_text("Running", timeout=20_000)

    # from the moment it runs, sample every 0.5 s: at least one running pod, always
    samples: list[int] = []
    deadline = time.monotonic() + TAKEN_AFTER_S + 15
    saw_countdown = False
    while time.monotonic() < deadline:
        samples.append(Pod.objects.filter(workload=w, state=PodState.RUNNING).count())
        if not saw_countdown and page.locator("#notice-countdown").count():
            saw_countdown = True
            expect(page.locator("#interruption-notice")).to_contain_text("Interruption notice from Sandbox")
            expect(page.locator("#notice-replacement")).to_be_visible()
        old.refresh_from_db()
        if old.state == PodState.INTERRUPTED and Pod.objects.filter(replaces=old, state=PodState.RUNNING).exists():
            break
        page.wait_for_timeout(500)
    assert saw_countdown, "the pod page never showed the notice's countdown"
    assert old.state == PodState.INTERRUPTED
    assert samples and min(samples) >= 1, f"a moment without a running pod: {samples}"
    new = Pod.objects.get(replaces=old)
    assert new.started_at < old.ended_at == old.interruption_deadline

    # the old pod's page says what happened and links to the replacement, which runs
    expect(page.locator("#pod-state")).to_have_text("Interrupted", timeout=10_000)
    expect(page.locator("#interruption-notice")).to_contain_text("the provider takes this pod at")
    page.click("#notice-replacement")
    expect(page.locator("#pod-state")).to_have_text("Running")
    page.screenshot(path="/tmp/notice_replacement.png", full_page=True)
    page.goto(f"{live_server.url}/workloads/{w.pk}/")
    expect(page.locator("#interruptions-survived")).to_have_text("1 interruption survived with 0 s downtime")
