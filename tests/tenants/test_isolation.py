"""Foundation isolation: another organization's objects are 404, never visible."""

from __future__ import annotations

import pytest
from django.urls import reverse

from workloads.lifecycle import services


@pytest.fixture
def foreign_pod(other_tenant, outsider):
    from tests.factories import SandboxAccountFactory

    account = SandboxAccountFactory(tenant=other_tenant)
    from providers.services import capacity_poll

    capacity_poll(accounts=[account])
    project = other_tenant.projects.get(name="Default")
    w = services.workload_create(tenant=other_tenant, project=project, owner=outsider, name="secret-job",
                                 image="busybox", gpu_class="T4")
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    return services.pod_provision(pod_id=str(pod.pk))


@pytest.mark.django_db
@pytest.mark.parametrize("name,attr", [
    ("workloads:pod_detail", "pod"), ("workloads:workload_detail", "workload"), ("providers:detail", "account"),
])
def test_outsider_gets_404(owner_client, foreign_pod, name, attr):
    obj = {"pod": foreign_pod, "workload": foreign_pod.workload, "account": foreign_pod.provider_account}[attr]
    resp = owner_client.get(reverse(name, args=[obj.pk]))
    assert resp.status_code == 404


@pytest.mark.django_db
def test_outsider_cannot_terminate(owner_client, foreign_pod):
    resp = owner_client.post(reverse("workloads:pod_terminate", args=[foreign_pod.pk]))
    assert resp.status_code == 404
    foreign_pod.refresh_from_db()
    assert foreign_pod.state == "running"


@pytest.mark.django_db
def test_lists_do_not_leak(owner_client, foreign_pod):
    for name in ("workloads:pod_list", "workloads:workload_list", "providers:list", "providers:capacity", "billing:spend"):
        body = owner_client.get(reverse(name)).content.decode()
        assert "secret-job" not in body
        assert foreign_pod.provider_account.name not in body or name == "providers:capacity"


@pytest.mark.django_db
def test_viewer_cannot_launch_or_terminate(client, viewer, sandbox, tenant, project, owner):
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="j", image="busybox", gpu_class="T4")
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    services.pod_provision(pod_id=str(pod.pk))
    client.force_login(viewer)
    # the launch page is readable (what could be launched) but the launch itself is refused
    assert client.post(reverse("workloads:launch"), {"name": "x"}).status_code == 403
    assert client.post(reverse("workloads:pod_terminate", args=[pod.pk])).status_code == 403
    assert client.get(reverse("workloads:pod_detail", args=[pod.pk])).status_code == 200


@pytest.mark.django_db
def test_finance_sees_spend_but_cannot_launch(client, finance):
    client.force_login(finance)
    assert client.get(reverse("billing:spend")).status_code == 200
    assert client.post(reverse("workloads:launch"), {"name": "x"}).status_code == 403
