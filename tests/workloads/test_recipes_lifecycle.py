"""Lifecycles declared through a recipe or image: a job ends when its container exits, a service
comes back when its pod fails, and auto-shutdown defaults follow the lifecycle."""

from __future__ import annotations

import pytest

from providers.models import SandboxInstance
from provisioner import clock
from workloads.lifecycle.services import pods_sync
from workloads.models import LIVE_POD_STATES, Pod, PodState, Workload
from workloads.recipes.services import Declaration, workload_declare, workload_start


def _declare(tenant, project, owner, **kw) -> Workload:
    decl = Declaration(project=project, image="pytorch", gpu_class="A10", **kw)
    return workload_declare(tenant=tenant, owner=owner, declaration=decl)


@pytest.mark.django_db
def test_job_ends_when_its_container_exits(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    w = _declare(tenant, project, owner, name="one-shot", lifecycle="job", env={"SANDBOX_JOB_SECONDS": "600"})
    assert w.idle_enabled  # jobs: idle shutdown on by default
    with clock.frozen() as advance:
        with django_capture_on_commit_callbacks(execute=True):
            (pod,) = workload_start(workload=w)
        pod.refresh_from_db()
        assert pod.state == PodState.RUNNING
        advance(minutes=11)
        pods_sync()
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED and pod.exit_code == 0
    assert not sandbox.sandbox_instances.filter(ended_at__isnull=True).exists()  # the pod was terminated
    w.refresh_from_db()
    assert w.state == Workload.State.COMPLETED and "exit 0" in w.state_reason


@pytest.mark.django_db
def test_service_restarts_when_its_pod_fails(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    w = _declare(tenant, project, owner, name="api", lifecycle="service", replicas=2,
                 ports=[{"port": 8000, "protocol": "http"}])
    assert not w.idle_enabled  # services: auto-shutdown off by default
    with django_capture_on_commit_callbacks(execute=True):
        pods = workload_start(workload=w)
    assert sorted(p.replica_index for p in pods) == [0, 1]
    victim = Pod.objects.get(pk=pods[0].pk)
    SandboxInstance.objects.filter(external_id=victim.external_id).delete()  # the resource vanishes
    with django_capture_on_commit_callbacks(execute=True):
        pods_sync()
    victim.refresh_from_db()
    assert victim.state == PodState.FAILED
    live = Pod.objects.filter(workload=w, state__in=LIVE_POD_STATES)
    assert sorted(live.values_list("replica_index", flat=True)) == [0, 1]
    replacement = live.get(replica_index=0)
    assert replacement.replaces == victim and replacement.state == PodState.RUNNING
    w.refresh_from_db()
    assert w.state == Workload.State.ACTIVE
