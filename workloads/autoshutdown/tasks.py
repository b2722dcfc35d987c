"""Thin Celery tasks for telemetry and auto-shutdown (their beat entries are in
``provisioner/schedule.py``, the one registry).

Imported by ``WorkloadsConfig.ready`` so that workers register the tasks.
"""

from __future__ import annotations

from celery import shared_task

from . import idle, telemetry


@shared_task(name="workloads.reap_idle")
def reap_idle() -> dict:
    """One reaper tick; stops and deletes run as their own tasks (they call the provider)."""
    result = idle.idle_reap()
    if result.warned:
        idle_notify.delay(result.warned)
    for pod_id in result.to_stop:
        idle_stop_pod.delay(pod_id)
    for pod_id in result.to_delete:
        idle_delete_pod.delay(pod_id)
    return {"evaluated": result.evaluated, "warned": len(result.warned), "cancelled": len(result.cancelled),
            "no_telemetry": len(result.telemetry_warned), "stopping": len(result.to_stop), "deleting": len(result.to_delete)}


@shared_task(name="workloads.idle_notify")
def idle_notify(pod_ids: list[str]) -> int:
    return idle.idle_warnings_notify(pod_ids=pod_ids)


@shared_task(name="workloads.idle_stop_pod")
def idle_stop_pod(pod_id: str) -> None:
    idle.idle_stop(pod_id=pod_id)


@shared_task(name="workloads.idle_delete_pod")
def idle_delete_pod(pod_id: str) -> None:
    idle.idle_delete(pod_id=pod_id)


@shared_task(name="workloads.poll_telemetry")
def poll_telemetry() -> int:
    return telemetry.telemetry_poll()


@shared_task(name="workloads.purge_samples")
def purge_samples() -> int:
    return telemetry.samples_purge()
