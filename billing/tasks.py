"""Thin periodic tasks for billing. Each is safe to run twice or concurrently."""

from celery import shared_task

from provisioner import clock

from . import services


@shared_task(name="billing.meter")
def meter() -> int:
    """Book running/stopped pods into the ledger, then rebuild finished days that changed
    (a day that just ended, or a late correction), so history is fresh within a minute."""
    n = services.meter_all()
    services.rollup_dirty(before=clock.now().date())
    return n


@shared_task(name="billing.rollup")
def rollup() -> int:
    """Hourly: rebuild every dirty daily rollup, today included."""
    return services.rollup_dirty()


@shared_task(name="billing.send_budget_webhook")
def send_budget_webhook(alert_id: str, attempt: int = 1, budget_id: str | None = None) -> None:
    """Deliver one alert's webhook; on a retryable failure, try again later with backoff."""
    from .webhooks import BACKOFF_SECONDS, webhook_deliver

    if webhook_deliver(alert_id=alert_id, attempt=attempt, budget_id=budget_id):
        send_budget_webhook.apply_async((alert_id, attempt + 1, budget_id), countdown=BACKOFF_SECONDS[attempt - 1])


@shared_task(name="billing.enforce_budgets")
def enforce_budgets() -> int:
    return services.budgets_enforce()


@shared_task(name="billing.reconcile_provider_billing")
def reconcile_provider_billing() -> int:
    """Daily: the providers' own figures for the last few UTC days next to ours; drift alerts."""
    from .reconcile import reconcile_all

    return reconcile_all()


@shared_task(name="billing.send_spend_digests")
def send_spend_digests() -> int:
    """Hourly: send the daily and weekly spend digests that are due (billing/digest.py)."""
    from .digest import send_due_digests

    return send_due_digests()
