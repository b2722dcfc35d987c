"""Thin Celery tasks: take ids, call a service. Safe to run twice."""

from celery import shared_task
from django.conf import settings

from . import services
from .models import LIVE_POD_STATES, Pod, PodState

FOLLOW_DELAYS = [1, 1, 2, 2, 3, 5, 5, 8, 10, 15, 20, 30, 30, 60, 60]


@shared_task(name="workloads.provision_pod")
def provision_pod(pod_id: str) -> None:
    pod = services.pod_provision(pod_id=pod_id)
    if pod.state == PodState.PROVISIONING:
        follow_pod.apply_async((pod_id, 0), countdown=FOLLOW_DELAYS[0])


@shared_task(name="workloads.follow_pod")
def follow_pod(pod_id: str, step: int) -> None:
    """After a launch, check the pod with short, backing-off delays until it runs or fails."""
    pod = services.pod_refresh(pod_id=pod_id)
    if pod.state != PodState.PROVISIONING or step + 1 >= len(FOLLOW_DELAYS):
        return
    if settings.CELERY_TASK_ALWAYS_EAGER:
        return  # eager (tests): countdowns are ignored; the periodic sync is the safety net
    follow_pod.apply_async((pod_id, step + 1), countdown=FOLLOW_DELAYS[step + 1])


@shared_task(name="workloads.sync_pods")
def sync_pods() -> int:
    return services.pods_sync()


@shared_task(name="workloads.terminate_pod")
def terminate_pod(pod_id: str, reason: str = "Terminated by user") -> None:
    if Pod.objects.filter(pk=pod_id, state__in=LIVE_POD_STATES + (PodState.STOPPED,)).exists():
        services.pod_terminate(pod_id=pod_id, reason=reason)
