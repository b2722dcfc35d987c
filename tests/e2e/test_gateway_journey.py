"""In real Chromium, through a real Caddy: a service's stable URL keeps answering while the
service moves to another country (issue 20, "Done when")."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from gateway.models import Backend
from providers.services import capacity_poll
from tests.e2e.helpers import every, log_in
from tests.factories import SandboxAccountFactory
from tests.gateway.conftest import caddy, gateway_on  # noqa: F401  (a real Caddy per test)
from workloads.lifecycle import services
from workloads.models import Lifecycle, Pod, PodState

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]


@pytest.fixture
def worker_and_beat(transactional_db, gateway_on):  # noqa: F811
    """What worker and beat do between requests: the pod sync and the gateway's reconcile
    (readiness probes, drains, routes), every 0.3 s."""
    from gateway import services as gateway

    with every(0.3, services.pods_sync, gateway.reconcile):
        yield


@pytest.mark.django_db(transaction=True)
def test_stable_url_answers_throughout_a_move_to_another_country(live_server, page, tenant, project, owner,
                                                                  worker_and_beat):
    account = SandboxAccountFactory(tenant=tenant, name="Sandbox", settings={"seed": "e2e", "boot_seconds": 2})
    capacity_poll(accounts=[account])
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="chat-api", image="vllm/vllm-openai",
                                 gpu_class="A100-80", gpu_count=1, lifecycle=Lifecycle.SERVICE,
                                 ports=[{"port": 8000, "protocol": "http"}], container_spec={"drain_seconds": 3})
    (old,) = services.workload_launch(workload=w)

    log_in(page, live_server.url, "owner", "pw-test-123")
    deadline = time.monotonic() + 30
    while not Backend.objects.filter(pod=old, state=Backend.State.READY).exists():
        assert time.monotonic() < deadline, "the service never became ready"
        time.sleep(0.2)
    page.goto(f"{live_server.url}/workloads/{w.pk}/")
    stable = page.locator("#stable-url").get_attribute("href")
    assert stable and "/s/chat-api-" in stable

    client = page.context.new_page()  # a second tab: the service's client
    client.goto(stable)
    expect(client.locator("body")).to_contain_text(str(old.pk))

    old.refresh_from_db()
    target = (account.offers.filter(gpu_class="A100-80", gpu_count=1, spot=False, available__gt=0)
              .exclude(country=old.country).values_list("country", flat=True).first())
    page.goto(f"{live_server.url}/workloads/{w.pk}/move/?countries={target}")
    page.click("#move-submit")

    answers: list[tuple[int, str]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        response = client.goto(stable)
        answers.append((response.status if response else 0, client.locator("body").inner_text()))
        old.refresh_from_db()
        if old.state == PodState.TERMINATED:
            break
        client.wait_for_timeout(150)
    new = Pod.objects.get(replaces=old)
    assert old.state == PodState.TERMINATED, "the move did not finish"
    failed = [a for a in answers if a[0] != 200]
    assert not failed, f"{len(failed)} of {len(answers)} requests failed: {failed[:3]}"
    served_by = {pod for pod in (str(old.pk), str(new.pk)) if any(pod in body for _, body in answers)}
    assert served_by == {str(old.pk), str(new.pk)}, "the answers did not move from the old pod to the new one"
    new.refresh_from_db()
    assert new.country == target
    response = client.goto(stable)
    assert response.status == 200 and str(new.pk) in client.locator("body").inner_text()
    page.goto(f"{live_server.url}/pods/{new.pk}/")
    expect(page.locator("#pod-stable-url")).to_have_attribute("href", stable)
