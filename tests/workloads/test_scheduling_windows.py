"""Exact burst windows and cron control (issue 20 §3).

A burst window ends at its cron (due) time + the window, by a task scheduled for that instant;
with overlap "skip", a window as long as the cron interval does not skip the next run; stopping
a scheduled workload reaches beat at once; the workload page follows live runs.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from provisioner import clock
from workloads.lifecycle import tasks
from workloads.lifecycle.scheduling import beat_entry_name, cron_is_due, scheduled_workload_fire
from workloads.lifecycle.supervision import supervise, workload_stop
from workloads.models import LIVE_POD_STATES, Pod, PodState, ScheduledRun
from workloads.recipes.services import Declaration, workload_declare, workload_start

from .timers import Timers

WINDOW_END = "workloads.scheduled_window_end"


def _scheduled(tenant, project, owner, *, cron: str, overlap: str = "skip", **kw):
    decl = Declaration(name=kw.pop("name", "burst"), project=project, image="nvcr.io/nvidia/pytorch:24.08-py3",
                       command=["python", "serve.py"], gpu_class="A10", gpu_count=1, lifecycle="scheduled",
                       schedule_cron=cron, overlap_policy=overlap, **kw)
    w = workload_declare(tenant=tenant, owner=owner, declaration=decl)
    workload_start(workload=w)
    return w


def _live(w) -> list[Pod]:
    return list(Pod.objects.filter(workload=w, state__in=LIVE_POD_STATES))


@pytest.mark.django_db
def test_window_ends_at_due_time_plus_window_by_a_task_for_that_instant(
        tenant, project, owner, sandbox, monkeypatch, django_capture_on_commit_callbacks):
    """Beat fires 7 s after the cron time: the window still ends at 18:00 + 90 min exactly, by a
    task sent with that eta, not on a later supervise tick."""
    timers = Timers(monkeypatch)
    w = _scheduled(tenant, project, owner, cron="0 18 * * *", replicas=2, window_minutes=90)
    due = datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
    with clock.frozen(due + timedelta(seconds=7)) as advance:
        with django_capture_on_commit_callbacks(execute=True):
            run = scheduled_workload_fire(str(w.pk))
        assert run.state == ScheduledRun.State.STARTED and len(_live(w)) == 2
        assert run.due_at == due and run.started_at == due + timedelta(seconds=7)
        end = due + timedelta(minutes=90)
        assert run.window_ends_at == end  # from the due time, not from the (late) start
        (timer,) = timers.named(WINDOW_END)
        assert timer.when == end and timer.args == (str(run.pk),)

        advance(minutes=90, seconds=-8)  # 19:29:59
        timers.run_due()
        assert len(_live(w)) == 2
        advance(seconds=1)  # 19:30:00 exactly
        assert timers.run_due() == 1
    run.refresh_from_db()
    assert run.state == ScheduledRun.State.ENDED and run.ended_at == end
    assert _live(w) == []
    assert all(p.state == PodState.TERMINATED and p.ended_at == end for p in w.pods.all())


@pytest.mark.django_db
def test_window_task_that_arrives_early_ends_nothing(tenant, project, owner, sandbox, monkeypatch,
                                                     django_capture_on_commit_callbacks):
    """A redelivered or early task is harmless: the window ends only once its time has come."""
    timers = Timers(monkeypatch)
    w = _scheduled(tenant, project, owner, cron="0 18 * * *", window_minutes=30)
    with clock.frozen(datetime(2026, 3, 2, 18, 0, 1, tzinfo=UTC)) as advance:
        with django_capture_on_commit_callbacks(execute=True):
            run = scheduled_workload_fire(str(w.pk))
        advance(minutes=10)
        tasks.scheduled_window_end(str(run.pk))
        assert len(_live(w)) == 1
        run.refresh_from_db()
        assert run.state == ScheduledRun.State.STARTED
        # and it put itself back on the timer for the window's end
        assert [t.when for t in timers.named(WINDOW_END)][-1] == run.window_ends_at


def _simulate(w, timers, start: datetime, minutes: int, advance, on_commit, *, beat_late_seconds: int = 0) -> None:
    """Beat (on the cron, ``beat_late_seconds`` late), the held timers and the 15-s supervise
    tick, second by second. When beat and a window's end fall on the same instant, beat goes
    first: the order a real broker does not promise."""
    last = start - timedelta(minutes=1)
    for _ in range(minutes * 60):
        now = clock.now()
        with on_commit(execute=True):  # each step commits: provisioning tasks run as they would
            if now.second == beat_late_seconds:
                due, _ = cron_is_due(w.schedule_cron, last)
                if due:
                    last = now
                    tasks.scheduled_workload_fire.delay(str(w.pk))
            timers.run_due()
            if now.second % 15 == 7:
                supervise()
        advance(seconds=1)


@pytest.mark.django_db
@pytest.mark.parametrize("beat_late_seconds", [0, 3])
def test_window_as_long_as_the_interval_does_not_skip_the_next_run(
        tenant, project, owner, sandbox, monkeypatch, django_capture_on_commit_callbacks, beat_late_seconds):
    """``*/2 * * * *`` with a 2-minute window and overlap "skip", over 10 simulated minutes: 5
    runs, none skipped, each torn down at its due time + 2 min (measured before: every 4 min)."""
    timers = Timers(monkeypatch)
    w = _scheduled(tenant, project, owner, cron="*/2 * * * *", window_minutes=2)
    start = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
    with clock.frozen(start) as advance:
        _simulate(w, timers, start, 10, advance, django_capture_on_commit_callbacks,
                  beat_late_seconds=beat_late_seconds)
    runs = list(w.scheduled_runs.order_by("due_at"))
    assert [(r.due_at.strftime("%H:%M"), r.state) for r in runs] == [
        ("09:00", "ended"), ("09:02", "ended"), ("09:04", "ended"), ("09:06", "ended"), ("09:08", "started")]
    for r in runs[:-1]:
        assert r.ended_at == r.due_at + timedelta(minutes=2)
        assert r.started_at == r.due_at + timedelta(seconds=beat_late_seconds)
    assert [p.state for p in _live(w)] == [PodState.RUNNING] and w.pods.count() == 5


@pytest.mark.django_db
def test_a_firing_delivered_late_counts_from_its_cron_time(tenant, project, owner, sandbox, monkeypatch,
                                                          django_capture_on_commit_callbacks):
    """A busy worker runs the 09:00 firing at 09:01:10: its window still ends at 09:02, and the
    09:02 firing starts the next run rather than skipping it."""
    Timers(monkeypatch)
    w = _scheduled(tenant, project, owner, cron="*/2 * * * *", window_minutes=2)
    with clock.frozen(datetime(2026, 3, 2, 9, 1, 10, tzinfo=UTC)) as advance:
        with django_capture_on_commit_callbacks(execute=True):
            late = scheduled_workload_fire(str(w.pk))
        assert late.due_at == datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
        assert late.window_ends_at == datetime(2026, 3, 2, 9, 2, tzinfo=UTC)
        advance(seconds=50)  # 09:02:00
        with django_capture_on_commit_callbacks(execute=True):
            nxt = scheduled_workload_fire(str(w.pk))
    assert nxt.due_at == datetime(2026, 3, 2, 9, 2, tzinfo=UTC) and nxt.state == ScheduledRun.State.STARTED
    late.refresh_from_db()
    assert late.state == ScheduledRun.State.ENDED


@pytest.mark.django_db
def test_pods_draining_after_their_window_do_not_skip_the_next_run(tenant, project, owner, sandbox, monkeypatch,
                                                                  django_capture_on_commit_callbacks):
    """Behind the gateway a window's pods leave the route and drain before they are terminated:
    still running, but no longer "the previous run" for overlap "skip"."""
    from workloads.signals import retire_requested

    Timers(monkeypatch)
    held: list[str] = []

    def drain(sender, *, pod_id, reason, **kwargs) -> bool:
        held.append(pod_id)
        return True  # taken over: terminated after the drain period, not now

    retire_requested.connect(drain)
    try:
        w = _scheduled(tenant, project, owner, cron="*/2 * * * *", window_minutes=2)
        with clock.frozen(datetime(2026, 3, 2, 9, 0, tzinfo=UTC)) as advance:
            with django_capture_on_commit_callbacks(execute=True):
                first = scheduled_workload_fire(str(w.pk))
            advance(minutes=2)
            with django_capture_on_commit_callbacks(execute=True):
                second = scheduled_workload_fire(str(w.pk))
    finally:
        retire_requested.disconnect(drain)
    (old,) = first.pods.all()
    assert held == [str(old.pk)] and Pod.objects.get(pk=old.pk).state == PodState.RUNNING  # draining
    assert second.state == ScheduledRun.State.STARTED and second.pods.count() == 1


@pytest.mark.django_db
def test_a_queued_run_whose_window_is_over_is_skipped_not_started(tenant, project, owner, sandbox, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    """The window counts from the due time: a queued run that could only start after its own
    window ended is skipped and says why, rather than starting pods to tear down at once."""
    Timers(monkeypatch)
    w = _scheduled(tenant, project, owner, cron="*/5 * * * *", overlap="queue", window_minutes=2)
    with clock.frozen(datetime(2026, 3, 2, 9, 5, 2, tzinfo=UTC)) as advance:
        with django_capture_on_commit_callbacks(execute=True):
            from workloads.lifecycle.services import pod_request

            blocker = pod_request(workload=w, enqueue=False)  # something of the workload still runs
            run = scheduled_workload_fire(str(w.pk))
            assert run.state == ScheduledRun.State.QUEUED
            advance(minutes=3)  # 09:08:02: past 09:05 + 2 min
            from workloads.lifecycle.services import pod_terminate

            pod_terminate(pod_id=str(blocker.pk), reason="done")
            supervise()
    run.refresh_from_db()
    assert run.state == ScheduledRun.State.SKIPPED and "window" in run.note
    assert _live(w) == []


@pytest.mark.django_db
def test_stopping_a_scheduled_workload_reaches_beat_at_once(tenant, project, owner, sandbox):
    """Beat re-reads its entries only when PeriodicTasks.last_update moves; a queryset
    ``update(enabled=False)`` did not move it, so beat kept firing for up to 5 minutes."""
    w = _scheduled(tenant, project, owner, cron="*/2 * * * *")
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": long_ago})
    workload_stop(workload=w, reason="user stopped it")
    assert not PeriodicTask.objects.get(name=beat_entry_name(w)).enabled
    assert PeriodicTasks.last_change() > long_ago


@pytest.mark.django_db
def test_workload_page_follows_live_runs_and_shows_start_next_to_due(
        tenant, project, owner, sandbox, client, monkeypatch, django_capture_on_commit_callbacks):
    Timers(monkeypatch)
    w = _scheduled(tenant, project, owner, cron="0 18 * * *", window_minutes=30)
    client.force_login(owner)
    url = reverse("workloads:workload_detail", args=[w.pk])
    quiet = client.get(url).content.decode()
    assert 'id="workload-live"' in quiet and 'hx-trigger="every 3s"' not in quiet  # nothing live: no polling
    with clock.frozen(datetime(2026, 3, 2, 18, 0, 4, tzinfo=UTC)):
        with django_capture_on_commit_callbacks(execute=True):
            scheduled_workload_fire(str(w.pk))
        page = client.get(url).content.decode()
        fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 3s"' in page
    assert "<html" not in fragment and 'hx-trigger="every 3s"' in fragment
    assert "{#" not in page and "comment %}" not in page
    row = fragment.split('class="scheduled-run"')[1].split("</tr>")[0]
    assert "2026-03-02 18:00" in row and "18:00:04" in row  # due, then the actual start
