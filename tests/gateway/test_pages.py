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
