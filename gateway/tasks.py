"""Thin Celery tasks of the gateway: take ids, call a service. Safe to run twice."""

from celery import shared_task

from workloads.models import Workload

from . import services


@shared_task(name="gateway.advance")
def advance_workload(workload_id: str) -> None:
    workload = Workload.objects.filter(pk=workload_id).first()
    if workload is not None and services.enabled():
        services.schedule_advance(workload, services.advance(workload))


@shared_task(name="gateway.reconcile")
def reconcile() -> dict:
    return services.reconcile()
