"""Thin Celery tasks: take ids, call a service. Safe to run twice."""

from celery import shared_task
from django.conf import settings

from provisioner import clock
from workloads.models import LIVE_POD_STATES, Pod, PodState

from . import follow, services


@shared_task(name="workloads.provision_pod")
def provision_pod(pod_id: str) -> None:
    pod = services.pod_provision(pod_id=pod_id)
    if pod.state != PodState.PROVISIONING:
        return
    now = clock.now()
    if follow.watching(now=now, expected=pod.ready_expected_at):
        # due already (a short boot, or a launch that took its time): check here, not a broker trip later
        follow_pod(pod_id, 0)
        return
    follow_pod.apply_async((pod_id, 0), countdown=follow.first_check_in(now=now, expected=pod.ready_expected_at))


@shared_task(name="workloads.follow_pod")
def follow_pod(pod_id: str, step: int) -> None:
    """After a launch, check the pod when the provider expects it to run (then every 0.1 s for a
    few seconds), else on short, backing-off delays, until it runs or fails
    (workloads.lifecycle.follow)."""
    pod = services.pod_refresh(pod_id=pod_id)
    if pod.state != PodState.PROVISIONING:
        return
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return  # eager (tests): countdowns are ignored; the periodic sync is the safety net
    if follow.watching(now=clock.now(), expected=pod.ready_expected_at):
        pod = follow.watch(lambda: services.pod_refresh(pod_id=pod_id), now=clock.now)
        if pod.state != PodState.PROVISIONING:
            return
    plan = follow.next_check(now=clock.now(), expected=pod.ready_expected_at, step=step)
    if plan is not None:
        follow_pod.apply_async((pod_id, plan[1]), countdown=plan[0])


@shared_task(name="workloads.bootstrap_pod", queue="bootstrap")
def bootstrap_pod(pod_id: str) -> None:
    """Start the workload over SSH on a delivered server (Hetzner). Its own queue: a driver
    install takes minutes and must not hold up other pods' provisioning and syncs."""
    from .bootstrap import pod_bootstrap

    pod_bootstrap(pod_id=pod_id)


@shared_task(name="workloads.sync_pods")
def sync_pods() -> int:
    from workloads.placement.move import moves_pending

    n = services.pods_sync()
    moves_pending()
    return n


@shared_task(name="workloads.sync_spot_pods")
def sync_spot_pods() -> int:
    """Live spot pods, every few seconds: interruptions and provider notices seen at once. A tick
    still running (slow provider) makes the next one skip rather than pile up behind it."""
    from django.core.cache import cache

    from workloads.interruptions.spot_sync import spot_pods_sync

    if not cache.add("spot-sync-running", "1", timeout=60):
        return 0
    try:
        return spot_pods_sync()
    finally:
        cache.delete("spot-sync-running")


@shared_task(name="workloads.lifecycle.reconcile")
def reconcile() -> int:
    """Provider inventories vs the database, every account (periodic, every 5 min)."""
    from .reconcile import reconcile_all

    return sum(len(r.terminated) + len(r.adopted) + len(r.vanished) for r in reconcile_all())


@shared_task(name="workloads.reconcile_account")
def reconcile_account(account_id: str) -> None:
    from .reconcile import reconcile_account as run

    run(account_id=account_id)


@shared_task(name="workloads.terminate_pod")
def terminate_pod(pod_id: str, reason: str = "Terminated by user") -> None:
    if Pod.objects.filter(pk=pod_id, state__in=LIVE_POD_STATES + (PodState.STOPPED,)).exists():
        services.pod_terminate(pod_id=pod_id, reason=reason)


@shared_task(name="workloads.scheduled_workload_fire")
def scheduled_workload_fire(workload_id: str) -> None:
    """Fired by the workload's own django-celery-beat crontab entry."""
    from .scheduling import scheduled_workload_fire as fire

    fire(workload_id)


@shared_task(name="workloads.move_job")
def move_job(old_pod_id: str, override: dict, where: str, attempt: int = 0) -> None:
    """A job move, in the worker: one step, then another after a countdown while the provider has
    not confirmed the old pod's termination (never a sleep here)."""
    from workloads.placement.move import job_move_step

    step = job_move_step(old_pod_id=old_pod_id, override=override, where=where, attempt=attempt)
    if step.look_again_in is not None:
        move_job.apply_async((old_pod_id, override, where, attempt + 1), countdown=step.look_again_in)


@shared_task(name="workloads.scheduled_window_end", bind=True)
def scheduled_window_end(self, run_id: str) -> None:
    """Sent with the window's end as its eta when a burst run starts: ends it at that instant.
    Delivered early (clock skew between hosts), it puts itself back on the timer; run eagerly
    (tests without a broker) it does not, and the supervise tick is the safety net."""
    from .scheduling import window_end, window_still_open_until

    if not window_end(run_id=run_id) and (until := window_still_open_until(run_id=run_id)) and not self.request.is_eager:
        self.apply_async((run_id,), eta=until)


@shared_task(name="workloads.supervise")
def supervise() -> dict:
    from .supervision import supervise as tick

    return tick()
