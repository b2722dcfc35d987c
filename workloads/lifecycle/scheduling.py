"""Scheduled workloads: one django-celery-beat entry (a CrontabSchedule) per workload, the
overlap policy (skip / queue / allow) and burst windows (N replicas at the start, all torn
down at the end).

Beat fires ``workloads.scheduled_workload_fire`` at each cron time; that task calls
:func:`scheduled_workload_fire`, which is safe to run twice for the same minute.

A burst window counts from the run's due (cron) time, not from when beat or the worker got to
it, and ends at due + window *exactly*: starting a run sends ``workloads.scheduled_window_end``
with that instant as its eta. A firing first ends this workload's windows that are over, so a
window as long as the cron interval never makes overlap "skip" skip the next run, whichever of
the two tasks the broker delivers first. The periodic supervisor (:func:`scheduled_runs_tick`)
starts queued runs and is the safety net for window ends whose task was lost.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from celery.schedules import crontab
from django.db import transaction
from django.db.models import Q

from provisioner import clock
from tenants.access import may_on_project
from tenants.models import Membership
from tenants.permissions import PROVISION
from workloads.models import FINAL_POD_STATES, LIVE_POD_STATES, Lifecycle, OverlapPolicy, Pod, PodState, ScheduledRun, Workload
from workloads.signals import retire_pod

from . import services

FIRE_TASK = "workloads.scheduled_workload_fire"


def beat_entry_name(workload: Workload) -> str:
    return f"workload {workload.pk}"


def cron_parts(expr: str) -> dict[str, str]:
    minute, hour, dom, month, dow = expr.split()
    return {"minute": minute, "hour": hour, "day_of_month": dom, "month_of_year": month, "day_of_week": dow}


def cron_schedule(expr: str) -> crontab:
    """The celery crontab for ``expr``, reading the product clock (tests freeze it)."""
    return crontab(**cron_parts(expr), nowfun=clock.now)


def cron_is_due(expr: str, last_fired_at: datetime) -> tuple[bool, float]:
    """Beat's own question, asked of the product clock: is a run due since ``last_fired_at``?
    Returns (due, seconds until the next check), exactly as celery's scheduler evaluates it."""
    return cron_schedule(expr).is_due(last_fired_at)


# How far back a firing looks for the cron time it is for (a worker busy for minutes); further
# back than that it is not beat's firing (a manual one) and counts from its own minute.
DUE_LOOKBACK_MINUTES = 10


def cron_due_at(expr: str, at: datetime) -> datetime:
    """The cron time a firing run at ``at`` is for: the latest one at or before ``at``, so a
    firing that a busy worker delivers late still counts its window from its cron time.
    Matches the way celery's crontab reads the fields (day of month AND day of week)."""
    sched = cron_schedule(expr)
    t = at.replace(second=0, microsecond=0)
    for _ in range(DUE_LOOKBACK_MINUTES + 1):
        if (t.minute in sched.minute and t.hour in sched.hour and t.day in sched.day_of_month
                and t.month in sched.month_of_year and t.isoweekday() % 7 in sched.day_of_week):
            return t
        t -= timedelta(minutes=1)
    return at.replace(second=0, microsecond=0)


def next_fire_after(expr: str, after: datetime) -> datetime:
    """The next cron time strictly after ``after`` (minute resolution)."""
    sched = crontab(**cron_parts(expr), nowfun=lambda: after)
    return after + sched.remaining_estimate(after)


def workload_schedule_sync(*, workload: Workload) -> str | None:
    """Create or update the workload's beat entry; disable it when the workload is not an
    active scheduled workload. Returns the entry name, or None when there is none."""
    from django_celery_beat.models import CrontabSchedule, PeriodicTask

    name = beat_entry_name(workload)
    if workload.lifecycle != Lifecycle.SCHEDULED or not workload.schedule_cron or workload.state != Workload.State.ACTIVE:
        # .save() per row, not a queryset .update(): beat re-reads its entries only when the
        # model's signals move PeriodicTasks.last_update (django-celery-beat, "Database
        # Scheduler"); an .update() left beat firing a stopped workload for minutes
        for entry in PeriodicTask.objects.filter(name=name, enabled=True):
            entry.enabled = False
            entry.save(update_fields=["enabled"])
        return None
    schedule, _ = CrontabSchedule.objects.get_or_create(**cron_parts(workload.schedule_cron), timezone="UTC")
    PeriodicTask.objects.update_or_create(
        name=name,
        defaults={"task": FIRE_TASK, "crontab": schedule, "interval": None, "args": json.dumps([str(workload.pk)]),
                  "enabled": True, "description": f"Scheduled workload {workload.name} ({workload.schedule_cron})"},
    )
    return name


def workload_schedule_remove(*, workload: Workload) -> None:
    from django_celery_beat.models import PeriodicTask

    PeriodicTask.objects.filter(name=beat_entry_name(workload)).delete()


# A pod on its way down is not "a run still going" for the overlap policy: one stopping
# (termination sent, not yet confirmed) or one of a run whose window ended (draining behind the
# gateway before its termination). The teardown of an ended window must not skip the next run.
_BUSY_POD_STATES = (PodState.REQUESTED, PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPED)


def _busy_pods(workload: Workload):
    return (Pod.objects.filter(workload=workload, state__in=_BUSY_POD_STATES)
            .exclude(scheduled_run__state=ScheduledRun.State.ENDED, scheduled_run__window_ends_at__isnull=False))


def scheduled_workload_fire(workload_id: str, *, due_at: datetime | None = None) -> ScheduledRun | None:
    """One cron firing: start a run, or skip / queue it when a run is still going.

    Windows of this workload that are over end first (their teardown may have been delivered
    after this firing). Idempotent per minute: beat firing twice (or two workers) records and
    launches one run.
    """
    for run_id in ScheduledRun.objects.filter(workload_id=workload_id, state=ScheduledRun.State.STARTED,
                                              window_ends_at__lte=clock.now()).values_list("pk", flat=True):
        window_end(run_id=str(run_id))
    with transaction.atomic():
        return _fire(workload_id, due_at)


def _fire(workload_id: str, due_at: datetime | None) -> ScheduledRun | None:
    workload = Workload.objects.select_for_update().filter(pk=workload_id).first()
    if (workload is None or workload.lifecycle != Lifecycle.SCHEDULED or workload.state != Workload.State.ACTIVE
            or not workload.schedule_cron):
        return None
    due = due_at.replace(second=0, microsecond=0) if due_at else cron_due_at(workload.schedule_cron, clock.now())
    existing = ScheduledRun.objects.filter(workload=workload, due_at=due).first()
    if existing is not None:
        return existing
    busy = _busy_pods(workload).exists() or workload.scheduled_runs.filter(state=ScheduledRun.State.QUEUED).exists()
    if busy and workload.overlap_policy == OverlapPolicy.SKIP:
        return ScheduledRun.objects.create(tenant_id=workload.tenant_id, workload=workload, due_at=due,
                                           state=ScheduledRun.State.SKIPPED, note="Skipped: the previous run is still going")
    if busy and workload.overlap_policy == OverlapPolicy.QUEUE:
        if workload.scheduled_runs.filter(state=ScheduledRun.State.QUEUED).exists():
            return ScheduledRun.objects.create(tenant_id=workload.tenant_id, workload=workload, due_at=due,
                                               state=ScheduledRun.State.SKIPPED, note="Skipped: a run is already queued")
        return ScheduledRun.objects.create(tenant_id=workload.tenant_id, workload=workload, due_at=due,
                                           state=ScheduledRun.State.QUEUED, note="Queued until the previous run ends")
    if refusal := _owner_refusal(workload):
        return ScheduledRun.objects.create(tenant_id=workload.tenant_id, workload=workload, due_at=due,
                                           state=ScheduledRun.State.SKIPPED, note=refusal)
    run = ScheduledRun.objects.create(tenant_id=workload.tenant_id, workload=workload, due_at=due,
                                      state=ScheduledRun.State.QUEUED)
    _start_run(run, workload)
    return run


def _owner_refusal(workload: Workload) -> str:
    """Why the workload's owner may no longer launch it ('' when they may): a scheduled run
    launches on its owner's behalf, so it obeys the owner's role and per-project grant at fire
    time (``tenants.access``) - a revoked grant or a removed member stops the next run."""
    membership = (Membership.objects.filter(tenant_id=workload.tenant_id, user_id=workload.owner_id).first()
                  if workload.owner_id else None)
    if may_on_project(membership, PROVISION, workload.project_id):
        return ""
    return "Skipped: its owner may no longer launch in this project"


def _start_run(run: ScheduledRun, workload: Workload) -> list[Pod]:
    """Start the run's pods; with a burst window, schedule its end for due + window exactly.
    A (queued) run whose window is already over is skipped instead."""
    now = clock.now()
    ends = run.due_at + timedelta(minutes=workload.window_minutes) if workload.window_minutes else None
    if ends is not None and ends <= now:
        run.state, run.ended_at = ScheduledRun.State.SKIPPED, now
        run.note = f"Skipped: its window ended at {ends:%H:%M} UTC before the previous run did"
        run.save(update_fields=["state", "ended_at", "note"])
        return []
    run.state, run.started_at, run.window_ends_at = ScheduledRun.State.STARTED, now, ends
    n = max(1, workload.replicas)
    run.note = f"Started {n} pod{'s' if n > 1 else ''}" + (f" until {ends:%H:%M} UTC" if ends else "")
    run.save(update_fields=["state", "started_at", "window_ends_at", "note"])
    pods = [services.pod_request(workload=workload, replica_index=i, scheduled_run=run) for i in range(n)]
    for p in pods:
        services.pod_event(p, "schedule", f"Scheduled run of {run.due_at:%Y-%m-%d %H:%M} UTC"
                           + (f"; window ends {ends:%H:%M} UTC" if ends else ""))
    if ends is not None:
        from .tasks import scheduled_window_end

        run_id = str(run.pk)
        transaction.on_commit(lambda: scheduled_window_end.apply_async((run_id,), eta=ends))
    return pods


def window_end(*, run_id: str) -> bool:
    """End the run's burst window if its time has come, tearing every pod of the run down.
    True when this call ended it. Compare-and-set: safe beside the supervise tick and a
    redelivered task."""
    now = clock.now()
    if not ScheduledRun.objects.filter(pk=run_id, state=ScheduledRun.State.STARTED, window_ends_at__lte=now).update(
            state=ScheduledRun.State.ENDED, ended_at=now):
        return False  # not over yet, already ended, or another worker took it
    run = ScheduledRun.objects.get(pk=run_id)
    for pod_id in _run_pods(run).filter(state__in=LIVE_POD_STATES + (PodState.STOPPED,)).values_list("pk", flat=True):
        retire_pod(pod_id=str(pod_id), reason="Burst window ended")  # drained first behind a gateway
    return True


def window_still_open_until(*, run_id: str) -> datetime | None:
    """The end of the run's window when it is still open (an early delivery of its end task)."""
    run = ScheduledRun.objects.filter(pk=run_id, state=ScheduledRun.State.STARTED).first()
    return run.window_ends_at if run is not None and run.window_ends_at and run.window_ends_at > clock.now() else None


def _run_pods(run: ScheduledRun):
    """The run's pods, including re-placements of them (which do not carry the run)."""
    return Pod.objects.filter(workload_id=run.workload_id).filter(
        Q(scheduled_run=run) | Q(scheduled_run__isnull=True, requested_at__gte=run.started_at))


def scheduled_runs_tick() -> dict[str, int]:
    """Close finished runs and start queued runs whose predecessor has ended; end burst windows
    that are over but whose ``scheduled_window_end`` task was lost (the safety net: it runs at
    the window's end). Safe to run concurrently."""
    now = clock.now()
    ended = 0
    for run_id in ScheduledRun.objects.filter(state=ScheduledRun.State.STARTED,
                                              window_ends_at__lte=now).values_list("pk", flat=True):
        ended += window_end(run_id=str(run_id))
    closed = 0
    for run in ScheduledRun.objects.filter(state=ScheduledRun.State.STARTED, window_ends_at__isnull=True):
        pods = _run_pods(run)
        if pods.exists() and not pods.exclude(state__in=FINAL_POD_STATES).exists():
            closed += ScheduledRun.objects.filter(pk=run.pk, state=ScheduledRun.State.STARTED).update(
                state=ScheduledRun.State.ENDED, ended_at=now)
    started = 0
    for run_id in ScheduledRun.objects.filter(state=ScheduledRun.State.QUEUED).order_by("due_at").values_list("pk", flat=True):
        with transaction.atomic():
            run = ScheduledRun.objects.select_for_update().select_related("workload").filter(
                pk=run_id, state=ScheduledRun.State.QUEUED).first()
            if run is None:
                continue
            workload = run.workload
            if workload.state != Workload.State.ACTIVE:
                run.state, run.note, run.ended_at = ScheduledRun.State.SKIPPED, "Skipped: the workload was stopped", now
                run.save(update_fields=["state", "note", "ended_at"])
                continue
            if _busy_pods(workload).exists():
                continue
            if refusal := _owner_refusal(workload):
                run.state, run.note, run.ended_at = ScheduledRun.State.SKIPPED, refusal, now
                run.save(update_fields=["state", "note", "ended_at"])
                continue
            _start_run(run, workload)
            started += 1
    return {"windows_ended": ended, "runs_closed": closed, "queued_started": started}
