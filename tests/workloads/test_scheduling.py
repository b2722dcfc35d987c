"""Scheduled workloads: one beat entry per workload, cron evaluated on the product clock, the
overlap policy, burst windows and the max-duration hard stop."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django_celery_beat.models import PeriodicTask

from provisioner import clock
from workloads.lifecycle import tasks
from workloads.lifecycle.scheduling import beat_entry_name, cron_is_due, next_fire_after, scheduled_workload_fire
from workloads.lifecycle.supervision import supervise, workload_stop
from workloads.models import LIVE_POD_STATES, Pod, PodState, ScheduledRun, Workload
from workloads.recipes.services import Declaration, workload_declare, workload_start

T0 = datetime(2026, 3, 2, 8, 59, 30, tzinfo=UTC)  # a Monday


def _scheduled(tenant, project, owner, *, cron="0 * * * *", overlap="skip", lifecycle="scheduled", **kw) -> Workload:
    decl = Declaration(name=kw.pop("name", "nightly"), project=project, image="nvcr.io/nvidia/pytorch:24.08-py3",
                       command=["python", "train.py"], gpu_class="A10", gpu_count=1, lifecycle=lifecycle,
                       schedule_cron=cron, overlap_policy=overlap, **kw)
    w = workload_declare(tenant=tenant, owner=owner, declaration=decl)
    workload_start(workload=w)
    return w


def _live(w) -> list[Pod]:
    return list(Pod.objects.filter(workload=w, state__in=LIVE_POD_STATES))


def _beat(w, last: datetime, until: datetime, advance) -> list[datetime]:
    """What celery-beat does, minute by minute on the frozen clock: ask the crontab whether a
    run is due since the last one and, if so, send the task. Returns the firing times."""
    fired = []
    while clock.now() < until:
        advance(minutes=1)
        due, _ = cron_is_due(w.schedule_cron, last)
        if due:
            last = clock.now()
            fired.append(last)
            tasks.scheduled_workload_fire.delay(str(w.pk))
    return fired


@pytest.mark.django_db
def test_one_beat_entry_per_scheduled_workload(tenant, project, owner, sandbox):
    w = _scheduled(tenant, project, owner, cron="30 9 * * 1-5")
    entry = PeriodicTask.objects.get(name=beat_entry_name(w))
    assert entry.task == "workloads.scheduled_workload_fire" and entry.enabled
    assert json.loads(entry.args) == [str(w.pk)]
    cron = entry.crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == ("30", "9", "*", "*", "1-5")
    assert not w.pods.exists()  # nothing runs until the cron fires
    workload_stop(workload=w, reason="user stopped it")
    assert not PeriodicTask.objects.get(name=beat_entry_name(w)).enabled


@pytest.mark.django_db
def test_cron_fires_on_the_controllable_clock_and_creates_a_pod(tenant, project, owner, sandbox,
                                                                django_capture_on_commit_callbacks):
    w = _scheduled(tenant, project, owner, cron="*/20 * * * *", overlap="allow")
    with clock.frozen(T0) as advance:
        assert not cron_is_due(w.schedule_cron, T0.replace(minute=40, second=0))[0]  # 08:59:30, last at 08:40
        with django_capture_on_commit_callbacks(execute=True):
            fired = _beat(w, T0.replace(minute=40, second=0), T0.replace(hour=10, minute=0, second=0), advance)
    assert [f.strftime("%H:%M") for f in fired] == ["09:00", "09:20", "09:40", "10:00"]
    runs = list(w.scheduled_runs.order_by("due_at"))
    assert [r.due_at.strftime("%H:%M") for r in runs] == ["09:00", "09:20", "09:40", "10:00"]
    assert all(r.state == ScheduledRun.State.STARTED for r in runs)
    pods = list(Pod.objects.filter(workload=w).order_by("requested_at"))
    assert len(pods) == 4 and all(p.state == PodState.RUNNING for p in pods)
    assert pods[0].scheduled_run == runs[0]
    assert next_fire_after("*/20 * * * *", T0) == T0.replace(hour=9, minute=0, second=0)


@pytest.mark.django_db
def test_fire_is_idempotent_within_a_minute(tenant, project, owner, sandbox):
    w = _scheduled(tenant, project, owner, overlap="allow")
    with clock.frozen(T0.replace(minute=0, second=2, hour=9)):
        a = scheduled_workload_fire(str(w.pk))
        b = scheduled_workload_fire(str(w.pk))
    assert a.pk == b.pk
    assert w.pods.count() == 1


@pytest.mark.django_db
def test_overlap_skip(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    w = _scheduled(tenant, project, owner, overlap="skip")
    with clock.frozen(T0) as advance, django_capture_on_commit_callbacks(execute=True):
        _beat(w, T0.replace(minute=0, second=0), T0.replace(hour=11, minute=0, second=10), advance)
    states = list(w.scheduled_runs.order_by("due_at").values_list("state", flat=True))
    assert states == ["started", "skipped", "skipped"]  # 09:00 runs on; 10:00 and 11:00 are skipped
    assert "still going" in w.scheduled_runs.filter(state="skipped").first().note
    assert len(_live(w)) == 1 and w.pods.count() == 1


@pytest.mark.django_db
def test_overlap_queue_starts_when_the_previous_run_ends(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    w = _scheduled(tenant, project, owner, overlap="queue")
    with clock.frozen(T0) as advance, django_capture_on_commit_callbacks(execute=True):
        _beat(w, T0.replace(minute=0, second=0), T0.replace(hour=10, minute=0, second=10), advance)
        runs = list(w.scheduled_runs.order_by("due_at"))
        assert [r.state for r in runs] == ["started", "queued"]
        assert w.pods.count() == 1
        supervise()
        assert w.pods.count() == 1  # still queued: the first run is going
        (first,) = _live(w)
        advance(minutes=5)
        from workloads.lifecycle.services import pod_terminate

        pod_terminate(pod_id=str(first.pk), reason="done")
        supervise()
    runs = list(w.scheduled_runs.order_by("due_at"))
    assert [r.state for r in runs] == ["ended", "started"]
    (second,) = _live(w)
    assert second.scheduled_run == runs[1] and second.state == PodState.RUNNING


@pytest.mark.django_db
def test_overlap_allow_runs_side_by_side(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    w = _scheduled(tenant, project, owner, overlap="allow")
    with clock.frozen(T0) as advance, django_capture_on_commit_callbacks(execute=True):
        _beat(w, T0.replace(minute=0, second=0), T0.replace(hour=10, minute=0, second=10), advance)
    assert len(_live(w)) == 2


@pytest.mark.django_db
def test_burst_window_brings_n_replicas_up_and_tears_them_all_down(tenant, project, owner, sandbox,
                                                                 django_capture_on_commit_callbacks):
    w = _scheduled(tenant, project, owner, cron="0 18 * * *", name="launch-event", replicas=3, window_minutes=90,
                   ports=[{"port": 8000, "protocol": "http"}])
    start = datetime(2026, 3, 2, 17, 59, 0, tzinfo=UTC)
    with clock.frozen(start) as advance:
        with django_capture_on_commit_callbacks(execute=True):
            _beat(w, start.replace(hour=0, minute=0), start.replace(hour=18, minute=0), advance)
        pods = _live(w)
        assert len(pods) == 3
        assert sorted(p.replica_index for p in pods) == [0, 1, 2]
        assert all(p.state == PodState.RUNNING for p in pods)
        run = w.scheduled_runs.get()
        assert run.window_ends_at == start.replace(hour=19, minute=30)
        advance(minutes=89)
        supervise()
        assert len(_live(w)) == 3  # inside the window: untouched
        advance(minutes=1, seconds=5)
        report = supervise()
    assert report["windows_ended"] == 1
    assert _live(w) == []
    assert all(p.state == PodState.TERMINATED and p.state_reason == "Burst window ended" for p in w.pods.all())
    run.refresh_from_db()
    assert run.state == ScheduledRun.State.ENDED
    w.refresh_from_db()
    assert w.state == Workload.State.ACTIVE  # the next window will come
    assert sandbox.sandbox_instances.filter(ended_at__isnull=True).count() == 0


@pytest.mark.django_db
def test_max_duration_is_a_hard_stop(tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    decl = Declaration(name="capped", project=project, image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class="A10",
                       lifecycle="job", max_duration_minutes=30)
    w = workload_declare(tenant=tenant, owner=owner, declaration=decl)
    with clock.frozen() as advance:
        with django_capture_on_commit_callbacks(execute=True):
            (pod,) = workload_start(workload=w)
        pod.refresh_from_db()
        assert pod.state == PodState.RUNNING
        advance(minutes=29)
        assert supervise()["max_duration_stopped"] == 0
        advance(minutes=1, seconds=1)
        assert supervise()["max_duration_stopped"] == 1
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED
    assert "Maximum duration of 30 min" in pod.state_reason
    w.refresh_from_db()
    assert w.state == Workload.State.STOPPED


@pytest.mark.django_db
def test_revoked_launch_grant_stops_the_owners_scheduled_runs(tenant, project, owner, sandbox):
    """A scheduled run launches on its owner's behalf: revoking the owner's provision grant on the
    project (or removing the member) makes the next firing a skip, not a launch (issue 16 §1)."""
    from tenants.models import Membership
    from tenants.services import project_grant_set

    w = _scheduled(tenant, project, owner, overlap="allow")
    project_grant_set(membership=Membership.objects.get(tenant=tenant, user=owner), project=project,
                      capability="provision_compute", granted=False)
    with clock.frozen(T0.replace(minute=0, second=2, hour=9)):
        run = scheduled_workload_fire(str(w.pk))
    assert run.state == "skipped" and "no longer launch" in run.note
    assert w.pods.count() == 0
    project_grant_set(membership=Membership.objects.get(tenant=tenant, user=owner), project=project,
                      capability="provision_compute", granted=True)
    with clock.frozen(T0.replace(minute=0, second=2, hour=10)):
        assert scheduled_workload_fire(str(w.pk)).state == "started"
    assert w.pods.count() == 1
