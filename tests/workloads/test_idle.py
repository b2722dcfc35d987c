"""Auto-shutdown with a controllable clock and fake telemetry (issue 8)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from django.core import mail

from providers.adapters.base import GpuSample, TransientError
from providers.adapters.sandbox import SandboxAdapter
from providers.models import SandboxInstance
from provisioner import clock
from workloads.autoshutdown import idle, tasks, telemetry
from workloads.models import Lifecycle, Pod, PodState

from .telemetry_helpers import feed, running_pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _idle_events(pod):
    return list(pod.events.filter(kind="idle").order_by("at", "id"))


@pytest.mark.django_db
def test_pod_idle_for_the_whole_window_is_warned_then_stopped_with_evidence(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 31 * M, util=lambda at, g: 1.5 if g == 0 else 3.0)
        advance(minutes=31)
        out = tasks.reap_idle()
        assert out["warned"] == 1 and out["stopping"] == 0
        pod.refresh_from_db()
        assert pod.state == PodState.RUNNING and pod.idle_warning_at == clock.now()
        (warning,) = _idle_events(pod)
        assert "Stopping in 5 min" in warning.message
        assert warning.data["max_util_pct"] == 3.0 and warning.data["window_minutes"] == 30
        # the owner is told, with the way out
        assert len(mail.outbox) == 1 and mail.outbox[0].to == [owner.email]
        assert "stops in 5 min" in mail.outbox[0].subject and "cancels" in mail.outbox[0].body

        # inside the grace period nothing happens
        feed(pod, start=T0 + 31.5 * M, end=T0 + 34 * M, util=lambda at, g: 0.0)
        advance(minutes=3)
        assert tasks.reap_idle()["stopping"] == 0
        assert Pod.objects.get(pk=pod.pk).state == PodState.RUNNING

        feed(pod, start=T0 + 34.5 * M, end=T0 + 36 * M, util=lambda at, g: 0.0)
        advance(minutes=2)
        assert tasks.reap_idle()["stopping"] == 1  # eager: the stop task runs now
    pod.refresh_from_db()
    assert pod.state == PodState.STOPPED and pod.state_reason == "idle"
    assert pod.get_state_display() == "Stopped"
    # verified at the provider, disk kept (the Sandbox can stop)
    inst = SandboxInstance.objects.get(external_id=pod.external_id)
    assert inst.stopped_at is not None and inst.ended_at is None
    stopping = pod.events.get(kind="state", data__state=PodState.STOPPING)
    assert stopping.data["reason"] == "idle"
    assert stopping.data["max_util_pct"] == 3.0 and stopping.data["samples"] > 100
    assert stopping.data["window_start"] == (T0 + 6 * M).isoformat()
    assert pod.events.filter(kind="state", data__state=PodState.STOPPED, message__contains="verified").exists()
    # no longer billed, token still cannot report (heartbeats need a live pod)
    assert pod.stopped_at == T0 + 36 * M


@pytest.mark.django_db
def test_one_sample_above_threshold_on_any_gpu_keeps_it_running(tenant, project, owner, sandbox):
    spike = T0 + 20 * M

    def util(at, gpu):
        return 60.0 if (gpu == 1 and at == spike) else 0.5

    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 50 * M, util=util)
        for minute in (31, 40, 45, 50):  # every window that still contains the spike
            advance(minutes=minute - (clock.now() - T0).total_seconds() / 60)
            result = idle.idle_reap()
            assert result.warned == [] and result.to_stop == []
        assert Pod.objects.get(pk=pod.pk).idle_warning_at is None
        # the first window without the spike (20:00 -> 50:30) is idle
        feed(pod, start=T0 + 50.5 * M, end=T0 + 51 * M, util=util)
        advance(minutes=1)
        assert idle.idle_reap().warned == [str(pod.pk)]
    assert Pod.objects.get(pk=pod.pk).state == PodState.RUNNING


@pytest.mark.django_db
def test_no_telemetry_is_never_idle_and_raises_a_warning(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        advance(minutes=3)
        assert idle.idle_reap().telemetry_warned == []  # the agent gets a few minutes to start
        advance(minutes=90)
        for _ in range(3):
            result = idle.idle_reap()
            assert result.warned == [] and result.to_stop == []
            advance(minutes=1)
        pod.refresh_from_db()
        assert pod.state == PodState.RUNNING and pod.idle_warning_at is None
        assert pod.telemetry_warned_at is not None
        assert pod.events.filter(kind="telemetry", message__startswith="No GPU telemetry").count() == 1
        # telemetry comes back: the warning is withdrawn, the idle clock starts from there
        feed(pod, start=clock.now() - 2 * M, end=clock.now(), util=lambda at, g: 0.0)
        result = idle.idle_reap()
        assert result.telemetry_restored == [str(pod.pk)] and result.warned == []
    pod.refresh_from_db()
    assert pod.telemetry_warned_at is None
    assert pod.events.filter(kind="telemetry", message="GPU telemetry is back").exists()


@pytest.mark.django_db
def test_service_with_policy_off_is_never_stopped(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
        assert pod.workload.idle_enabled is False  # off by default for services
        feed(pod, start=T0, end=T0 + 180 * M, util=lambda at, g: 0.0)
        for _ in range(6):
            advance(minutes=30)
            tasks.reap_idle()
    pod.refresh_from_db()
    assert pod.state == PodState.RUNNING and pod.idle_warning_at is None
    assert not pod.events.filter(kind__in=("idle", "telemetry")).exists()
    assert mail.outbox == []


@pytest.mark.django_db
def test_gpu_activity_during_grace_cancels_the_shutdown(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 31 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        idle.idle_reap()
        pod = Pod.objects.select_related("workload").get(pk=pod.pk)
        assert pod.idle_warning_at is not None
        advance(minutes=2)
        telemetry.samples_ingest(pod=pod, samples=[GpuSample(0, 0.0), GpuSample(1, 85.0)], source="agent")
        pod.refresh_from_db()
        assert pod.idle_warning_at is None
        assert "cancelled" in _idle_events(pod)[-1].message
        feed(pod, start=T0 + 33.5 * M, end=T0 + 40 * M, util=lambda at, g: 0.0)
        advance(minutes=7)
        assert tasks.reap_idle()["stopping"] == 0
    assert Pod.objects.get(pk=pod.pk).state == PodState.RUNNING


@pytest.mark.django_db
def test_reaper_cancels_when_the_window_is_no_longer_idle(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 31 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        idle.idle_reap()
        # provider samples stored without going through ingest (e.g. a backfill) still count
        feed(pod, start=T0 + 32 * M, end=T0 + 36 * M, util=lambda at, g: 40.0 if g == 0 else 0.0)
        advance(minutes=5)
        result = idle.idle_reap()
        assert result.cancelled == [str(pod.pk)] and result.to_stop == []
    assert Pod.objects.get(pk=pod.pk).idle_warning_at is None


@pytest.mark.django_db
def test_gaps_in_telemetry_and_a_silent_gpu_are_not_idle(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        gappy = running_pod(tenant, project, owner)
        feed(gappy, start=T0, end=T0 + 8 * M, util=lambda at, g: 0.0)
        feed(gappy, start=T0 + 18 * M, end=T0 + 31 * M, util=lambda at, g: 0.0)  # 10 minutes missing
        one_gpu = running_pod(tenant, project, owner)
        feed(one_gpu, start=T0, end=T0 + 31 * M, util=lambda at, g: 0.0, gpus=1)  # GPU 1 never reports
        young = running_pod(tenant, project, owner)
        feed(young, start=T0 + 15 * M, end=T0 + 31 * M, util=lambda at, g: 0.0)  # only 16 of 30 minutes
        advance(minutes=31)
        result = idle.idle_reap()
        assert result.warned == []
        verdicts = {p.pk: idle.pod_verdict(Pod.objects.select_related("workload").get(pk=p.pk)).reason
                    for p in (gappy, one_gpu, young)}
    assert verdicts == {gappy.pk: "gaps", one_gpu.pk: "gaps", young.pk: "collecting"}


@pytest.mark.django_db
def test_provider_that_cannot_stop_gets_terminated(tenant, project, owner, sandbox, monkeypatch):
    monkeypatch.setattr(SandboxAdapter, "info", dataclasses.replace(SandboxAdapter.info, can_stop=False))
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 37 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        tasks.reap_idle()
        advance(minutes=6)
        tasks.reap_idle()
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED and pod.state_reason == "idle"
    assert pod.agent_token_hash == ""
    assert SandboxInstance.objects.get(external_id=pod.external_id).ended_at is not None


@pytest.mark.django_db
def test_provider_error_on_stop_keeps_the_pod_running_and_retries(tenant, project, owner, sandbox, monkeypatch):
    def broken_stop(self, external_id):
        raise TransientError("503 from provider")

    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 40 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        idle.idle_reap()
        advance(minutes=6)
        with monkeypatch.context() as m:
            m.setattr(SandboxAdapter, "stop", broken_stop)
            tasks.reap_idle()
        pod.refresh_from_db()
        assert pod.state == PodState.RUNNING and pod.idle_warning_at is not None
        assert pod.events.filter(message__startswith="Idle stop failed").exists()
        advance(minutes=1)
        tasks.reap_idle()  # next tick retries, now the provider answers
    assert Pod.objects.get(pk=pod.pk).state == PodState.STOPPED


@pytest.mark.django_db
def test_stopped_idle_pod_is_deleted_after_its_timer(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, idle_delete_after_stopped_minutes=120)
        feed(pod, start=T0, end=T0 + 37 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        tasks.reap_idle()
        advance(minutes=6)
        tasks.reap_idle()
        assert Pod.objects.get(pk=pod.pk).state == PodState.STOPPED
        advance(minutes=119)
        assert idle.idle_reap().to_delete == []
        advance(minutes=2)
        assert tasks.reap_idle()["deleting"] == 1
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED and pod.state_reason.startswith("idle")
    assert SandboxInstance.objects.get(external_id=pod.external_id).ended_at is not None


@pytest.mark.django_db
def test_policy_turned_off_during_grace_cancels(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 40 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        idle.idle_reap()
        type(pod.workload).objects.filter(pk=pod.workload_id).update(idle_enabled=False)
        advance(minutes=6)
        result = idle.idle_reap()
        assert result.cancelled == [str(pod.pk)] and result.to_stop == []
    assert Pod.objects.get(pk=pod.pk).idle_warning_at is None


def test_judge_rule_is_every_gpu_every_sample_whole_window():
    now = T0 + 60 * M
    full = dict(first_ts=(now - 30 * M).timestamp(), last_ts=(now).timestamp(), samples=60, max_gap_s=30.0)
    ok = [idle.GpuWindow(0, 4.9, **full), idle.GpuWindow(1, 0.0, **full)]
    v = idle.judge(pod_id="p", gpu_count=2, window_minutes=30, threshold=5, gpus=ok, now=now)
    assert v.idle and v.max_util == 4.9 and v.samples == 120
    at_threshold = [idle.GpuWindow(0, 5.0, **full), idle.GpuWindow(1, 0.0, **full)]
    assert idle.judge(pod_id="p", gpu_count=2, window_minutes=30, threshold=5, gpus=at_threshold, now=now).reason == "busy"
    assert idle.judge(pod_id="p", gpu_count=2, window_minutes=30, threshold=5, gpus=[], now=now).reason == "no_telemetry"
    stale = [idle.GpuWindow(0, 0.0, first_ts=(now - 30 * M).timestamp(), last_ts=(now - 10 * M).timestamp(), samples=40, max_gap_s=30.0)]
    v = idle.judge(pod_id="p", gpu_count=1, window_minutes=30, threshold=5, gpus=stale, now=now)
    assert not v.idle and v.telemetry_missing
    holed = [idle.GpuWindow(0, 0.0, first_ts=(now - 30 * M).timestamp(), last_ts=(now).timestamp(), samples=50, max_gap_s=181.0)]
    assert idle.judge(pod_id="p", gpu_count=1, window_minutes=30, threshold=5, gpus=holed, now=now).reason == "gaps"
    late = [idle.GpuWindow(0, 0.0, first_ts=(now - 26 * M).timestamp(), last_ts=(now).timestamp(), samples=50, max_gap_s=30.0)]
    assert idle.judge(pod_id="p", gpu_count=1, window_minutes=30, threshold=5, gpus=late, now=now).reason == "collecting"
