"""Issue 16 §6: a worker killed right after claiming a pod (state provisioning, nothing launched)
no longer loses the launch: the claim's lease lapses and the next pod sync re-queues the pod,
which then launches once, with its own tag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from providers.models import SandboxInstance
from provisioner import clock
from workloads.lifecycle import claims, services
from workloads.models import Pod, PodState

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def _claimed_by_a_dead_worker(tenant, project, owner) -> Pod:
    """A requested pod claimed exactly as pod_provision claims it, by a worker that then died
    (no lease left in the cache, nothing at the provider)."""
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="job", image="img",
                                 gpu_class="L4", gpu_count=1)
    pod = services.pod_request(workload=w, enqueue=False)
    assert Pod.objects.filter(pk=pod.pk, state=PodState.REQUESTED).update(state=PodState.PROVISIONING,
                                                                          provisioning_at=clock.now())
    return Pod.objects.get(pk=pod.pk)


@pytest.mark.django_db
def test_lost_claim_is_requeued_within_a_minute_and_launched_once(tenant, project, owner, sandbox,
                                                                  django_capture_on_commit_callbacks):
    with clock.frozen(T0) as advance:
        pod = _claimed_by_a_dead_worker(tenant, project, owner)
        advance(seconds=claims.CLAIM_LEASE_SECONDS - 5)
        with django_capture_on_commit_callbacks(execute=True):
            services.pods_sync()  # a tick inside the lease: nothing yet
        assert Pod.objects.get(pk=pod.pk).state == PodState.PROVISIONING
        advance(seconds=30)  # the next sync tick (every 30 s): at most lease + one tick after the claim
        assert clock.now() - T0 <= timedelta(seconds=60)
        with django_capture_on_commit_callbacks(execute=True):
            services.pods_sync()
        with django_capture_on_commit_callbacks(execute=True):
            services.pods_sync()  # a second sync changes nothing (idempotent)
    pod.refresh_from_db()
    assert pod.state == PodState.RUNNING, pod.state_reason
    assert SandboxInstance.objects.filter(tag=str(pod.pk)).count() == 1  # one resource, with the pod's tag
    assert pod.events.filter(kind="requeue").count() == 1
    assert not pod.events.filter(data__state=PodState.FAILED).exists()


@pytest.mark.django_db
def test_a_live_lease_is_left_alone(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    with clock.frozen(T0) as advance:
        pod = _claimed_by_a_dead_worker(tenant, project, owner)
        with claims.claim_lease(pod.pk):  # a slow placement still working
            advance(seconds=claims.CLAIM_LEASE_SECONDS * 3)
            with django_capture_on_commit_callbacks(execute=True):
                services.pods_sync()
            assert Pod.objects.get(pk=pod.pk).state == PodState.PROVISIONING


@pytest.mark.django_db
def test_the_old_worker_cannot_launch_beside_the_new_claim(tenant, project, owner, sandbox):
    """Fencing: a worker that only seemed lost (its lease vanished in a cache flush) finds its claim
    changed and launches nothing."""
    from workloads.lifecycle.failover import launch_with_failover
    from workloads.placement.engine import placement_for, spec_for_workload

    with clock.frozen(T0) as advance:
        pod = _claimed_by_a_dead_worker(tenant, project, owner)
        stale = Pod.objects.select_related("workload").get(pk=pod.pk)  # what the old worker holds
        advance(seconds=claims.CLAIM_LEASE_SECONDS + 1)
        assert claims.claims_requeue_lost() == [str(pod.pk)]
        advance(seconds=1)
        Pod.objects.filter(pk=pod.pk).update(state=PodState.PROVISIONING, provisioning_at=clock.now())  # new claim
        result = placement_for(tenant_id=pod.tenant_id, project_id=pod.project_id,
                               spec=spec_for_workload(stale.workload), now=clock.now(), limit=3)
        outcome = launch_with_failover(stale, result.candidates)
    assert outcome.remote is None and "cancelled" in outcome.reason
    assert not SandboxInstance.objects.exists()


@pytest.mark.django_db
def test_a_launch_that_keeps_killing_its_worker_fails_after_three_requeues(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = _claimed_by_a_dead_worker(tenant, project, owner)
        for _ in range(claims.MAX_REQUEUES):
            advance(seconds=claims.CLAIM_LEASE_SECONDS + 1)
            assert claims.claims_requeue_lost() == [str(pod.pk)]
            Pod.objects.filter(pk=pod.pk).update(state=PodState.PROVISIONING, provisioning_at=clock.now())
        advance(seconds=claims.CLAIM_LEASE_SECONDS + 1)
        assert claims.claims_requeue_lost() == []
    pod.refresh_from_db()
    assert pod.state == PodState.FAILED and "lost its worker" in pod.state_reason


def test_redis_broker_gets_a_chosen_visibility_timeout():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/8", "DJANGO_SETTINGS_MODULE": "provisioner.settings"}
    code = ("import django; django.setup(); from django.conf import settings; "
            "from provisioner.celery import app; "
            "print(settings.CELERY_BROKER_TRANSPORT_OPTIONS['visibility_timeout'], "
            "app.conf.broker_transport_options['visibility_timeout'])")
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=Path(__file__).resolve().parents[2],
                         capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["3600", "3600"], out.stderr
