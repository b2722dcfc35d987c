"""Moving a running workload: a service never goes dark; a job stops then starts; data on
persistent volumes needs the user's confirmation."""

from __future__ import annotations

import pytest

from providers.models import SandboxInstance
from provisioner import clock
from workloads.lifecycle import services
from workloads.models import Pod, PodState, Workload
from workloads.placement.move import MoveError, MoveNeedsConfirmation, MoveTarget, workload_move

from .lifecycle_helpers import launch, sandbox_account, workload

pytestmark = pytest.mark.django_db


def running_count(w) -> int:
    return Pod.objects.filter(workload=w, state=PodState.RUNNING).count()


def test_service_moves_between_providers_without_a_gap(tenant, project, owner):
    a = sandbox_account(tenant, "Provider A", rank=1)
    b = sandbox_account(tenant, "Provider B", rank=2, boot_seconds=45)
    w = workload(tenant, project, owner, lifecycle="service", ports=[{"port": 8000, "protocol": "http"}])
    observed: list[int] = []
    with clock.frozen() as advance:
        old = launch(w)
        assert old.state == PodState.RUNNING and old.provider_account == a
        observed.append(running_count(w))
        (new,) = workload_move(workload=w, target=MoveTarget(provider_account_ids=[str(b.pk)]), user=owner,
                               enqueue=False)
        observed.append(running_count(w))
        new = services.pod_provision(pod_id=str(new.pk))
        assert new.provider_account == b and new.state == PodState.PROVISIONING  # B boots in 45 s
        observed.append(running_count(w))
        for _ in range(6):  # the periodic sync, every 10 s of simulated time
            advance(seconds=10)
            services.pods_sync()
            observed.append(running_count(w))
    assert min(observed) >= 1, f"a moment without a running pod: {observed}"
    old.refresh_from_db()
    new.refresh_from_db()
    assert new.state == PodState.RUNNING and new.replaces_id == old.pk
    assert old.state == PodState.TERMINATED
    assert old.events.filter(message__contains="verified at the provider").exists()
    inst = SandboxInstance.objects.get(external_id=old.external_id)
    assert inst.ended_at is not None  # really gone at the provider
    assert old.ended_at >= new.started_at  # the old pod ended only after the new one ran
    w.refresh_from_db()
    assert w.state == Workload.State.ACTIVE


def test_move_to_a_country_updates_the_pin(tenant, project, owner):
    a = sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, lifecycle="service")
    old = launch(w)
    target_country = (a.offers.filter(gpu_class="A100-80", gpu_count=1, spot=False, available__gt=0)
                      .exclude(country=old.country).values_list("country", flat=True).first())
    (new,) = workload_move(workload=w, target=MoveTarget(countries=[target_country]), enqueue=False)
    new = services.pod_provision(pod_id=str(new.pk))
    assert new.country == target_country and new.state == PodState.RUNNING
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED
    w.refresh_from_db()
    assert w.countries == [target_country]


def test_job_is_stopped_then_started(tenant, project, owner):
    a = sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2)
    w = workload(tenant, project, owner)
    old = launch(w)
    (new,) = workload_move(workload=w, target=MoveTarget(provider_account_ids=[str(b.pk)]), enqueue=False)
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED  # stopped (verified) before the new one is requested
    assert new.state == PodState.REQUESTED
    new = services.pod_provision(pod_id=str(new.pk))
    assert new.provider_account == b and new.state == PodState.RUNNING
    assert old.provider_account == a
    w.refresh_from_db()
    assert w.state == Workload.State.ACTIVE


def test_persistent_volume_needs_confirmation(tenant, project, owner):
    b_name = "B"
    sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, b_name, rank=2)
    w = workload(tenant, project, owner, lifecycle="service",
                 volumes=[{"kind": "persistent", "size_gb": 100, "mount_path": "/data"}])
    launch(w)
    target = MoveTarget(provider_account_ids=[str(b.pk)])
    with pytest.raises(MoveNeedsConfirmation) as exc:
        workload_move(workload=w, target=target, enqueue=False)
    assert "/data" in str(exc.value) and "does not follow" in str(exc.value)
    assert w.pods.count() == 1  # nothing happened
    (new,) = workload_move(workload=w, target=target, confirm_data_loss=True, enqueue=False)
    assert new.state == PodState.REQUESTED


def test_move_refused_when_nothing_fits_keeps_the_old_pod(tenant, project, owner):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, lifecycle="service")
    old = launch(w)
    with pytest.raises(MoveError) as exc:
        workload_move(workload=w, target=MoveTarget(countries=["BR"]), enqueue=False)
    assert "BR" in str(exc.value)
    old.refresh_from_db()
    assert old.state == PodState.RUNNING and w.pods.count() == 1


def test_move_page_needs_provision_permission(client, tenant, project, owner, viewer, outsider):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, lifecycle="service")
    launch(w)
    url = f"/workloads/{w.pk}/move/"
    from django.urls import reverse

    url = reverse("workloads:workload_move", args=[w.pk])
    client.force_login(outsider)
    assert client.get(url).status_code == 404
    client.force_login(viewer)
    assert client.get(url).status_code == 403
    client.force_login(owner)
    b = sandbox_account(tenant, "B")
    page = client.get(url, {"provider_account": str(b.pk)})
    assert page.status_code == 200 and b"Move" in page.content and b"placement-chosen" in page.content
    resp = client.post(url, {"provider_account": str(b.pk)})
    assert resp.status_code == 302
    assert w.pods.count() == 2
