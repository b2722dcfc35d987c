"""The periodic-task registry: every beat entry the product needs, in one place.

``sync_periodic_tasks`` creates or updates these by name and never deletes anything else
(per-workload cron entries live beside them). It runs on every deploy (``migrate`` then
``manage.py setup_periodic_tasks``) and from ``make run``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Periodic:
    name: str
    task: str
    every_seconds: int


SCHEDULE: list[Periodic] = [
    Periodic("Poll provider capacity", "providers.poll_capacity", 60),
    Periodic("Sync pods with providers", "workloads.sync_pods", 30),
    Periodic("Reconcile provider inventories", "workloads.reconcile", 300),
    Periodic("Meter running pods", "billing.meter", 60),
    Periodic("Supervise workloads (max duration, scheduled runs, burst windows)", "workloads.supervise", 15),
    Periodic("Enforce budgets and provider caps", "billing.enforce_budgets", 60),
    Periodic("Roll up daily spend", "billing.rollup", 3600),
    Periodic("Reconcile with the providers' billing figures", "billing.reconcile_provider_billing", 86400),
]


def register(entry: Periodic) -> None:
    """Other apps add entries at import time (keeps each app's tasks next to its code)."""
    if all(e.name != entry.name for e in SCHEDULE):
        SCHEDULE.append(entry)


def sync_periodic_tasks() -> list[str]:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    names = []
    for entry in SCHEDULE:
        interval, _ = IntervalSchedule.objects.get_or_create(every=entry.every_seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.update_or_create(
            name=entry.name,
            defaults={"task": entry.task, "interval": interval, "crontab": None, "enabled": True},
        )
        names.append(entry.name)
    return names
