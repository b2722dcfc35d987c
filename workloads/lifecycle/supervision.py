"""Keeps each workload's declared lifecycle true, on a short periodic tick:

* the **maximum duration** is a hard stop: pods that ran that long are terminated;
* scheduled runs: burst windows end and queued runs start (``scheduling.scheduled_runs_tick``).

(Job completion and service restarts happen inline when a pod ends: ``services.pod_after_end``.)
Termination is a compare-and-set, so two ticks running at once cannot double-stop.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction

from provisioner import clock
from tenants.audit import audit_record
from workloads.models import LIVE_POD_STATES, Lifecycle, Pod, PodState, Workload

from . import services


def max_duration_enforce() -> int:
    """Terminate pods that have run for their workload's maximum duration (a hard stop)."""
    now = clock.now()
    stopped = 0
    pods = (Pod.objects.filter(state__in=LIVE_POD_STATES + (PodState.STOPPED,), started_at__isnull=False,
                               workload__max_duration_minutes__isnull=False)
            .select_related("workload").only("pk", "started_at", "workload__max_duration_minutes"))
    for pod in pods:
        limit = pod.workload.max_duration_minutes
        if pod.started_at + timedelta(minutes=limit) <= now:
            services.pod_terminate(pod_id=str(pod.pk), reason=f"Maximum duration of {limit} min reached")
            stopped += 1
    return stopped


def supervise() -> dict[str, int]:
    """The periodic tick: the max-duration hard stop, then scheduled runs."""
    from .scheduling import scheduled_runs_tick

    return {"max_duration_stopped": max_duration_enforce(), **scheduled_runs_tick()}


# --- user actions ---------------------------------------------------------------------------------


def workload_stop(*, workload: Workload, reason: str, enqueue: bool = False) -> int:
    """Stop everything: no more cron runs, queued runs dropped, every live pod terminated
    (through the terminate task after commit when ``enqueue``, so a web request never waits on
    a provider)."""
    from workloads.models import ScheduledRun

    from .scheduling import workload_schedule_sync

    Workload.objects.filter(pk=workload.pk).update(state=Workload.State.STOPPED, state_reason=reason[:300],
                                                   updated_at=clock.now())
    workload.state = Workload.State.STOPPED
    audit_record(tenant=workload.tenant_id, action="workload.stopped", target=workload, details={"reason": reason})
    workload_schedule_sync(workload=workload)
    workload.scheduled_runs.filter(state=ScheduledRun.State.QUEUED).update(
        state=ScheduledRun.State.SKIPPED, note="Skipped: the workload was stopped", ended_at=clock.now())
    live = list(workload.pods.filter(state__in=LIVE_POD_STATES + (PodState.STOPPED,)).values_list("pk", flat=True))
    for pod_id in live:
        if enqueue:
            from .tasks import terminate_pod

            transaction.on_commit(lambda pid=str(pod_id): terminate_pod.delay(pid, reason))
        else:
            services.pod_terminate(pod_id=str(pod_id), reason=reason)
    return len(live)


def workload_relaunch(*, workload: Workload) -> list[Pod]:
    """Run the same declaration again (same recipe version and parameters). A running service
    relaunches pod by pod (``workload_roll``): each pod is retired once its replacement runs."""
    from workloads.placement.move import MoveError, workload_roll
    from workloads.recipes.services import workload_start

    if workload.lifecycle == Lifecycle.SERVICE and workload.state == Workload.State.ACTIVE and \
            workload.pods.filter(state=PodState.RUNNING).exists():
        try:
            return workload_roll(workload=workload)
        except MoveError as exc:
            raise ValueError(str(exc)) from exc

    if workload.pods.filter(state__in=LIVE_POD_STATES).exists() and workload.lifecycle != Lifecycle.SCHEDULED:
        raise ValueError("This workload still has live pods; stop them first or clone it")
    Workload.objects.filter(pk=workload.pk).update(state=Workload.State.ACTIVE, state_reason="", updated_at=clock.now())
    workload.state = Workload.State.ACTIVE
    return workload_start(workload=workload)
