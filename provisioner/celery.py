"""The Celery app. Configuration comes from Django settings (CELERY_*)."""

import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")

# The embedded default's broker URL is provisioner-sqla+sqlite:///... (provisioner/broker.py,
# imported by kombu only when that URL is used).
TRANSPORT_ALIASES["provisioner-sqla"] = "provisioner.broker:Transport"

app = Celery("provisioner")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.task(name="provisioner.prune_broker")
def prune_broker() -> int:
    """Housekeeping of the embedded broker's file (a no-op on Redis)."""
    from .broker import prune_delivered_messages

    return prune_delivered_messages()
