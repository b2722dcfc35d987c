"""Reconciliation: orphans terminated (verified, recorded), stuck launches adopted, vanished
resources marked, dead launches failed; idempotent."""

from __future__ import annotations

import uuid

import pytest

from providers.models import SandboxInstance
from provisioner import clock
from provisioner.schedule import SCHEDULE
from workloads.lifecycle import services
from workloads.lifecycle.reconcile import reconcile_account, reconcile_all, stuck_after
from workloads.models import Pod, PodState, ReconcileAction, Workload

from .lifecycle_helpers import FaultInjector, WorkerKilled, launch, sandbox_account, workload

pytestmark = pytest.mark.django_db


def live_instances(account=None):
    qs = SandboxInstance.objects.filter(ended_at__isnull=True)
    return qs.filter(account=account) if account is not None else qs


def test_reconcile_is_registered_every_five_minutes():
    assert ("workloads.lifecycle.reconcile", 300) in [(e.task, e.every_seconds) for e in SCHEDULE]


def test_timed_out_launch_that_succeeded_later_is_terminated_not_leaked(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2)
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = "hide"  # created at A, but neither the answer nor the listing shows it yet
    pod = launch(workload(tenant, project, owner))
    assert pod.provider_account == b and pod.state == PodState.RUNNING
    assert live_instances(a).count() == 1  # the leak-to-be
    faults.reveal()  # A's listing catches up
    report = reconcile_account(account_id=str(a.pk))
    assert len(report.terminated) == 1
    assert live_instances(a).count() == 0
    action = ReconcileAction.objects.get(provider_account=a)
    assert action.action == "terminated" and action.verified and action.tag == str(pod.pk)
    assert pod.events.filter(kind="reconcile", message__contains="launched elsewhere").exists()
    # the live pod at B is untouched
    assert Pod.objects.get(pk=pod.pk).state == PodState.RUNNING and live_instances(b).count() == 1


def test_worker_killed_mid_launch_is_adopted(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A")
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = "kill_after_create"
    w = workload(tenant, project, owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    with pytest.raises(WorkerKilled):
        services.pod_provision(pod_id=str(pod.pk))
    pod.refresh_from_db()
    assert pod.state == PodState.PROVISIONING and pod.provider_account == a and pod.external_id == ""
    faults.faults.clear()
    report = reconcile_account(account_id=str(a.pk))
    assert report.adopted == [str(pod.pk)]
    pod.refresh_from_db()
    assert pod.state == PodState.RUNNING and pod.external_id == live_instances(a).get().external_id
    assert pod.price_usd_per_hour is not None  # the offer was recorded as intent before the call
    # a second run changes nothing
    again = reconcile_account(account_id=str(a.pk))
    assert not (again.adopted or again.terminated or again.vanished)


def test_worker_killed_before_the_call_is_failed_with_reason(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A")
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = "kill_before_call"
    w = workload(tenant, project, owner)
    with clock.frozen() as advance:
        (pod,) = services.workload_launch(workload=w, enqueue=False)
        with pytest.raises(WorkerKilled):
            services.pod_provision(pod_id=str(pod.pk))
        reconcile_all()
        assert Pod.objects.get(pk=pod.pk).state == PodState.PROVISIONING  # too early to call it dead
        advance(seconds=stuck_after().total_seconds() + 1)
        reconcile_all()
    pod.refresh_from_db()
    assert pod.state == PodState.FAILED and "never completed" in pod.state_reason
    w.refresh_from_db()
    assert w.state == Workload.State.FAILED and "never completed" in w.state_reason


def test_vanished_resource_marks_pod_and_replaces_a_service(tenant, project, owner, django_capture_on_commit_callbacks):
    a = sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, lifecycle="service")
    pod = launch(w)
    SandboxInstance.objects.filter(external_id=pod.external_id).delete()  # gone behind our back
    with django_capture_on_commit_callbacks(execute=True):
        report = reconcile_account(account_id=str(a.pk))
    assert report.vanished == [str(pod.pk)]
    pod.refresh_from_db()
    assert pod.state == PodState.FAILED and "vanished" in pod.state_reason
    replacement = w.pods.exclude(pk=pod.pk).get()
    assert replacement.replaces_id == pod.pk and replacement.state == PodState.RUNNING


def test_vanished_job_fails_workload_with_reason(tenant, project, owner):
    a = sandbox_account(tenant, "A")
    w = workload(tenant, project, owner)
    pod = launch(w)
    SandboxInstance.objects.filter(external_id=pod.external_id).delete()
    reconcile_account(account_id=str(a.pk))
    w.refresh_from_db()
    assert w.state == Workload.State.FAILED and "vanished" in w.state_reason


def test_untracked_tagged_resource_and_ended_pod_resource_are_terminated(tenant, project, owner):
    a = sandbox_account(tenant, "A")
    pod = launch(workload(tenant, project, owner))
    # the DB says terminated, but the provider still runs it (a terminate that never landed)
    Pod.objects.filter(pk=pod.pk).update(state=PodState.TERMINATED, ended_at=clock.now())
    now = clock.now()
    SandboxInstance.objects.create(account=a, external_id="sbx-stray", tag=str(uuid.uuid4()), spec={},
                                   created_at=now, boot_at=now)
    report = reconcile_account(account_id=str(a.pk))
    assert sorted(report.terminated) == sorted([pod.external_id, "sbx-stray"])
    assert live_instances(a).count() == 0
    assert ReconcileAction.objects.filter(action="terminated", verified=True).count() == 2
    assert reconcile_account(account_id=str(a.pk)).terminated == []  # idempotent


def test_failed_listing_marks_nothing(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A")
    pod = launch(workload(tenant, project, owner))
    from providers.adapters.base import TransientError
    from workloads.lifecycle import calls

    class Down:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def list_pods(self):
            raise TransientError("502 Bad Gateway", status=502)

    real = calls.adapter
    monkeypatch.setattr(calls, "adapter", lambda acc: Down(real(acc)))
    report = reconcile_account(account_id=str(a.pk))
    assert report.error and Pod.objects.get(pk=pod.pk).state == PodState.RUNNING
