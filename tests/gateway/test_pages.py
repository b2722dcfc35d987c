"""The stable URL on the workload page and the pod page, with each pod's place in the route."""

from __future__ import annotations

import pytest
from django.urls import reverse

from gateway import services as gateway
from tests.workloads.lifecycle_helpers import launch, sandbox_account, workload

from .test_cutover import PORTS, until_ready

pytestmark = pytest.mark.django_db


def test_workload_and_pod_pages_show_the_stable_url(gateway_on, tenant, project, owner, owner_client):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="chat api", lifecycle="service", ports=PORTS, public_ingress=False)
    pod = launch(w)
    until_ready(w, pod)
    url = f"{gateway_on.public_url}/s/{gateway.endpoint_for(w).slug}/"
    page = owner_client.get(reverse("workloads:workload_detail", args=[w.pk])).content.decode()
    assert f'id="stable-url" href="{url}"' in page
    assert "Serving" in page  # the pod's place in the route
    assert "Authorization: Bearer" in page  # private
    pod_page = owner_client.get(reverse("workloads:pod_detail", args=[pod.pk])).content.decode()
    assert f'id="pod-stable-url" href="{url}"' in pod_page
    assert "this pod: serving" in pod_page
    assert "Access token (Jupyter and the gateway)" in pod_page


def test_no_stable_url_for_a_job_or_without_gateway(tenant, project, owner, owner_client, settings):
    settings.GATEWAY_ADMIN_URL = ""
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, lifecycle="service", ports=PORTS)
    launch(w)
    page = owner_client.get(reverse("workloads:workload_detail", args=[w.pk])).content.decode()
    assert "stable-url" not in page


def test_cutover_settings_are_edited_on_the_workload_page(gateway_on, tenant, project, owner, owner_client):
    from gateway.models import ServiceEndpoint
    from tenants.models import AuditEvent

    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="api", lifecycle="service", ports=PORTS)
    until_ready(w, launch(w))
    url = reverse("gateway:cutover_edit", args=[w.pk])
    page = owner_client.get(reverse("workloads:workload_detail", args=[w.pk])).content.decode()
    assert 'id="cutover-save"' in page
    ok = {"ready_path": "/health", "ready_status": "204", "ready_timeout_seconds": "1.5",
          "ready_deadline_seconds": "120", "drain_seconds": "30"}
    assert owner_client.post(url, ok).status_code == 302
    endpoint = ServiceEndpoint.objects.get(workload=w)
    assert (endpoint.ready_path, endpoint.ready_status, endpoint.drain_seconds) == ("/health", 204, 30)
    assert AuditEvent.objects.filter(action="workload.cutover_changed").exists()
    page = owner_client.get(reverse("workloads:workload_detail", args=[w.pk])).content.decode()
    assert "GET /health → 204 within 1.5 s" in page and "drain 30 s" in page
    # bad input: a clear message, nothing saved, never a 500
    bad = {**ok, "ready_path": "health check", "drain_seconds": "-1"}
    response = owner_client.post(url, bad, follow=True)
    assert response.status_code == 200 and "Not saved" in response.content.decode()
    endpoint.refresh_from_db()
    assert (endpoint.ready_path, endpoint.drain_seconds) == ("/health", 30)


def test_cutover_settings_need_launch_rights_and_the_same_organization(gateway_on, tenant, project, owner, client):
    from tenants.models import Role
    from tests.factories import make_member, make_tenant

    w = workload(tenant, project, owner, name="api", lifecycle="service", ports=PORTS)
    url = reverse("gateway:cutover_edit", args=[w.pk])
    data = {"ready_path": "", "ready_status": "200", "ready_timeout_seconds": "2", "ready_deadline_seconds": "300",
            "drain_seconds": "0"}
    client.force_login(make_member(tenant, Role.FINANCE, "fin"))
    assert client.post(url, data).status_code == 403
    other = make_tenant("Other", "other")
    client.force_login(make_member(other, Role.OWNER, "intruder"))
    assert client.post(url, data).status_code == 404
