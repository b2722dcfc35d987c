from celery import shared_task

from . import services


@shared_task(name="billing.meter")
def meter() -> int:
    return services.meter_all()
