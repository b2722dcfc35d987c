from celery import shared_task

from . import services
from .models import ProviderAccount


@shared_task(name="providers.poll_capacity")
def poll_capacity() -> int:
    return len(services.capacity_poll_all())


@shared_task(name="providers.poll_account")
def poll_account(account_id: str) -> None:
    services.capacity_poll(accounts=list(ProviderAccount.objects.filter(pk=account_id)))
