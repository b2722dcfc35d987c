"""The periodic-task registry: every beat entry the product needs, in one place.

``sync_periodic_tasks`` creates or updates these by name. Entries it created earlier and that
are no longer listed here are disabled (never deleted: beat's history stays readable); every
other entry (per-workload cron entries live beside them) is left alone. It runs on every deploy
(``manage.py deploy``), which ``make run`` calls too.
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
    # spot pods: one list call per account every 3 s, so an interruption is seen within 5 s
    # (workloads/interruptions/spot_sync.py)
    Periodic("Sync spot pods with providers", "workloads.sync_spot_pods", 3),
    Periodic("Reconcile provider inventories", "workloads.lifecycle.reconcile", 300),
    Periodic("Meter running pods", "billing.meter", 60),
    Periodic("Supervise workloads (max duration, scheduled runs, burst windows)", "workloads.supervise", 15),
    Periodic("Enforce budgets and provider caps", "billing.enforce_budgets", 60),
    Periodic("Roll up daily spend", "billing.rollup", 3600),
    Periodic("Reconcile with the providers' billing figures", "billing.reconcile_provider_billing", 86400),
    # hourly, so a digest goes out with the first tick after 07:00 UTC (billing/digest.py)
    Periodic("Send spend digests", "billing.send_spend_digests", 3600),
    Periodic("Reap idle pods", "workloads.reap_idle", 60),
    Periodic("Poll provider GPU telemetry", "workloads.poll_telemetry", 60),
    Periodic("Purge old utilization samples", "workloads.purge_samples", 3600),
    # the service gateway: readiness probes and drains that are due, and every route rewritten, so
    # a restarted gateway (Caddy keeps no state we rely on) serves again within 10 s (gateway/)
    Periodic("Reconcile the service gateway", "gateway.reconcile", 10),
    Periodic("Prune delivered messages of the embedded broker", "provisioner.prune_broker", 3600),
]

# Marks the beat entries this registry owns, so one removed from SCHEDULE can be told apart
# from the per-workload cron entries and disabled on the next deploy.
MANAGED_MARK = "managed by provisioner.schedule"


def sync_periodic_tasks() -> list[str]:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    names = []
    for entry in SCHEDULE:
        interval, _ = IntervalSchedule.objects.get_or_create(every=entry.every_seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.update_or_create(
            name=entry.name,
            defaults={"task": entry.task, "interval": interval, "crontab": None, "enabled": True,
                      "description": MANAGED_MARK},
        )
        names.append(entry.name)
    # .save() per row, not .update(): beat only notices changes made through the model's signals
    for stale in PeriodicTask.objects.filter(description=MANAGED_MARK, enabled=True).exclude(name__in=names):
        stale.enabled = False
        stale.save(update_fields=["enabled"])
    return names
