"""Failover across candidates, bounded in count and time, with a per-attempt timeout; and
spot interruption with re-placement and escalation to on-demand."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from billing.services import meter_all
from providers.adapters.base import CapacityUnavailable, PermanentError, TransientError
from providers.models import SandboxInstance
from provisioner import clock
from workloads.lifecycle import services
from workloads.models import LaunchAttempt, LaunchBlock, Pod, PodState, Workload

from .lifecycle_helpers import FaultInjector, launch, sandbox_account, workload

pytestmark = pytest.mark.django_db


def test_capacity_error_fails_over_to_next_provider_and_shows_the_path(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "RunPod EU", rank=1)
    b = sandbox_account(tenant, "Lambda US", rank=2)
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = CapacityUnavailable("no 1xA100-80 capacity")
    pod = launch(workload(tenant, project, owner))
    assert pod.state == PodState.RUNNING and pod.provider_account == b
    failed, last = pod.launch_path[:-1], pod.launch_path[-1]
    assert failed and all(p.startswith("RunPod EU ") and "no capacity" in p for p in failed)
    assert last.startswith("Lambda US ") and last.endswith(": launched")
    attempts = pod.events.filter(kind="attempt")
    assert attempts.count() == len(failed) + 1  # one per failed attempt, then the whole path
    assert " → " in attempts.last().message
    # the failed region is blocklisted for a while, and the attempts feed the success record
    assert LaunchBlock.objects.filter(provider_account=a, until__gt=clock.now()).exists()
    assert set(LaunchAttempt.objects.values_list("outcome", flat=True)) == {"no_capacity", "launched"}
    assert LaunchAttempt.objects.filter(outcome="no_capacity").count() == len(failed)
    assert SandboxInstance.objects.filter(account=a).count() == 0


def test_a_hung_provider_times_out_per_attempt(tenant, project, owner, monkeypatch, settings):
    settings.PROVIDER_ATTEMPT_TIMEOUT_SECONDS = 0.3
    a = sandbox_account(tenant, "Hung", rank=1)
    b = sandbox_account(tenant, "Healthy", rank=2)
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = "hang"
    started = time.monotonic()
    try:
        pod = launch(workload(tenant, project, owner))
    finally:
        faults.release.set()
    assert time.monotonic() - started < 5
    assert pod.state == PodState.RUNNING and pod.provider_account == b
    assert "timed out" in pod.launch_path[0]


def test_attempts_are_bounded_in_count_and_time(tenant, project, owner, monkeypatch, settings):
    settings.LAUNCH_MAX_ATTEMPTS = 3
    # the Sandbox's capacity changes with the hour: pin one with more than 3 candidate regions, so
    # that the attempt bound (not running out of candidates) is what stops the launch
    with clock.frozen(datetime(2026, 11, 27, 6, 30, tzinfo=UTC)):
        a = sandbox_account(tenant, "Flaky")
        faults = FaultInjector(monkeypatch)
        faults.faults[str(a.pk)] = TransientError("503 Service Unavailable", status=503)
        pod = launch(workload(tenant, project, owner))
    assert pod.state == PodState.FAILED
    assert LaunchAttempt.objects.filter(pod=pod).count() == 3
    assert "stopped after 3 attempts" in pod.state_reason
    assert Workload.objects.get(pk=pod.workload_id).state == Workload.State.FAILED

    settings.LAUNCH_MAX_ATTEMPTS = 50
    settings.LAUNCH_TOTAL_SECONDS = 0.5
    settings.PROVIDER_ATTEMPT_TIMEOUT_SECONDS = 0.2
    LaunchBlock.objects.all().delete()
    faults.faults[str(a.pk)] = "hang"
    started = time.monotonic()
    try:
        pod = launch(workload(tenant, project, owner, name="t2"))
    finally:
        faults.release.set()
    assert time.monotonic() - started < 3
    assert pod.state == PodState.FAILED and "gave up after" in pod.state_reason
    assert LaunchAttempt.objects.filter(pod=pod).count() <= 4


def test_permanent_error_stops_failover(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A", rank=1)
    sandbox_account(tenant, "B", rank=2)
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = PermanentError("image not allowed")
    pod = launch(workload(tenant, project, owner))
    assert pod.state == PodState.FAILED and "image not allowed" in pod.state_reason


def test_timeout_after_create_is_adopted_not_launched_twice(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2)
    faults = FaultInjector(monkeypatch)
    faults.faults[str(a.pk)] = "timeout_after_create"
    pod = launch(workload(tenant, project, owner))
    assert pod.state == PodState.RUNNING and pod.provider_account == a
    assert SandboxInstance.objects.filter(ended_at__isnull=True).count() == 1
    assert not SandboxInstance.objects.filter(account=b).exists()
    assert "found the pod launched" in " ".join(pod.launch_path)


def test_cancel_during_launch_discards_the_resource(tenant, project, owner, monkeypatch):
    a = sandbox_account(tenant, "A")
    w = workload(tenant, project, owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    real_launch = None

    class CancelMidway:
        def __init__(self, inner):
            self.inner = inner

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def launch(self, request):
            services.pod_terminate(pod_id=request.tag, reason="user cancelled")
            return self.inner.launch(request)

    from workloads.lifecycle import calls

    real_launch = calls.adapter
    monkeypatch.setattr(calls, "adapter", lambda acc: CancelMidway(real_launch(acc)))
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED
    assert SandboxInstance.objects.filter(account=a, ended_at__isnull=True).count() == 0


def _spot_job(tenant, project, owner, **kw):
    return workload(tenant, project, owner, interruption_tolerant=True, gpu_class="A10", **kw)


def test_spot_interruption_charges_to_that_moment_and_replaces_then_escalates(
        tenant, project, owner, django_capture_on_commit_callbacks):
    sandbox_account(tenant, "Spot", interrupt_rate_per_hour=50)
    w = _spot_job(tenant, project, owner, max_interruptions_before_on_demand=2)
    with clock.frozen() as advance:
        first = launch(w)
        assert first.state == PodState.RUNNING and first.spot
        pods = [first]
        for _ in range(2):
            advance(hours=3)  # every spot pod is interrupted within minutes at this rate
            with django_capture_on_commit_callbacks(execute=True):
                services.pods_sync()
            pods = list(w.pods.order_by("requested_at", "id"))
        interrupted = [p for p in pods if p.state == PodState.INTERRUPTED]
        assert len(interrupted) == 2
        latest = pods[-1]
        assert latest.state == PodState.RUNNING and latest.replaces_id == interrupted[-1].pk
        assert not latest.spot  # escalated to on-demand after 2 interruptions
        assert latest.events.filter(message__contains="On-demand only").exists()
        # charged only up to the interruption
        meter_all()
        p = Pod.objects.get(pk=interrupted[0].pk)
        expected = (p.price_usd_per_hour * Decimal((p.ended_at - p.started_at).total_seconds()) / 3600)
        assert abs(p.cost_usd - expected) < Decimal("0.00001")
        advance(hours=1)
        meter_all()
        assert Pod.objects.get(pk=p.pk).cost_usd == p.cost_usd


def test_job_without_restart_fails_with_reason_on_interruption(tenant, project, owner):
    sandbox_account(tenant, "Spot", interrupt_rate_per_hour=50)
    w = _spot_job(tenant, project, owner, restart_on_interruption=False)
    with clock.frozen() as advance:
        launch(w)
        advance(hours=3)
        services.pods_sync()
    w.refresh_from_db()
    assert w.pods.count() == 1
    assert w.state == Workload.State.FAILED and "interrupt" in w.state_reason


def test_interrupted_service_is_replaced_at_once(tenant, project, owner, django_capture_on_commit_callbacks):
    sandbox_account(tenant, "Spot", interrupt_rate_per_hour=50)
    w = _spot_job(tenant, project, owner, lifecycle="service", restart_on_interruption=False)
    with clock.frozen() as advance:
        launch(w)
        advance(hours=3)
        with django_capture_on_commit_callbacks(execute=True):
            services.pods_sync()
    states = list(w.pods.order_by("requested_at", "id").values_list("state", flat=True))
    assert states[0] == PodState.INTERRUPTED and states[-1] == PodState.RUNNING


def test_provision_twice_or_after_timeout_never_double_launches(tenant, project, owner):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    services.pod_provision(pod_id=str(pod.pk))
    services.pod_provision(pod_id=str(pod.pk))
    with clock.frozen() as advance:
        advance(minutes=10)
        services.pods_sync()  # the stale-request safety net must not touch a launched pod
    assert SandboxInstance.objects.count() == 1
    assert timedelta(0) <= clock.now() - Pod.objects.get(pk=pod.pk).requested_at
