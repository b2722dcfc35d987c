"""Leases on claimed launches: a launch whose worker died is re-queued, not lost (issue 16 §6).

``pod_provision`` claims a pod with a compare-and-set (requested -> provisioning). A worker
killed right after that claim used to leave the pod in ``provisioning`` with nothing launched
until the reconciler failed it ~11 minutes later. Now the claiming worker holds a lease in the
shared cache, refreshed by a daemon thread while it works; the thread dies with the worker, the
lease expires after ``CLAIM_LEASE_SECONDS``, and the next pod sync (every 30 s) puts the pod
back to ``requested`` and enqueues it again: within lease + one tick (<= 60 s by default).

Fencing: the claim's ``provisioning_at`` is its generation. The re-queue and the new claim change
it, and the intent write before any provider call requires it unchanged, so a worker that only
*seemed* lost (a cache flush) cannot launch beside the new claim. The pod's UUID stays its
idempotency tag across claims.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from provisioner import clock
from workloads.models import Pod, PodEvent, PodState

from .transitions import pod_event, pod_transition

logger = logging.getLogger(__name__)

CLAIM_LEASE_SECONDS = settings.LAUNCH_CLAIM_LEASE_SECONDS
MAX_REQUEUES = 3


def _key(pod_id) -> str:
    return f"pod-claim:{pod_id}"


@contextmanager
def claim_lease(pod_id) -> Iterator[None]:
    """Hold the claim's lease while the body runs (refreshed every third of its lifetime)."""
    key = _key(pod_id)
    cache.set(key, 1, CLAIM_LEASE_SECONDS)
    stop = threading.Event()

    def refresh() -> None:
        try:
            while not stop.wait(CLAIM_LEASE_SECONDS / 3):
                try:
                    cache.set(key, 1, CLAIM_LEASE_SECONDS)
                except Exception:  # noqa: BLE001 - a cache hiccup must not kill the launch
                    logger.warning("could not refresh the claim lease of pod %s", pod_id)
        finally:
            from django.db import connection

            connection.close()  # the database cache backend opens a connection in this thread

    thread = threading.Thread(target=refresh, name=f"claim-lease-{pod_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        cache.delete(key)


def lease_alive(pod_id) -> bool:
    return cache.get(_key(pod_id)) is not None


def claims_requeue_lost(*, now: datetime | None = None) -> list[str]:
    """Put claimed-but-not-launched pods whose worker is gone back to ``requested`` and enqueue
    them (idempotent: the compare-and-set lets one caller win; the pod keeps its tag)."""
    now = now or clock.now()
    cutoff = now - timedelta(seconds=CLAIM_LEASE_SECONDS)
    candidates = Pod.objects.filter(state=PodState.PROVISIONING, provider_account__isnull=True, external_id="",
                                    provisioning_at__lt=cutoff).only("pk", "tenant_id", "provisioning_at")
    requeued: list[str] = []
    for pod in candidates:
        if lease_alive(pod.pk):
            continue  # still placing (a slow placement keeps its lease fresh)
        if PodEvent.objects.filter(pod_id=pod.pk, kind="requeue").count() >= MAX_REQUEUES:
            # a launch that kills its worker every time is a bug, not bad luck: stop the loop
            reason = f"launch lost its worker {MAX_REQUEUES + 1} times; not re-queued again"
            if pod_transition(pod, PodState.FAILED, reason, expect=(PodState.PROVISIONING,),
                              fields={"state_reason": reason}):
                from .services import pod_after_end

                pod_after_end(pod)
            continue
        with transaction.atomic():
            if not Pod.objects.filter(pk=pod.pk, state=PodState.PROVISIONING, provider_account__isnull=True,
                                      provisioning_at=pod.provisioning_at).update(state=PodState.REQUESTED,
                                                                                  provisioning_at=None):
                continue
            pod_event(pod, "requeue", "Re-queued: the worker that claimed this launch was lost before anything "
                                      "was launched", state=PodState.REQUESTED)
            from .tasks import provision_pod

            pod_id = str(pod.pk)
            transaction.on_commit(lambda pod_id=pod_id: provision_pod.delay(pod_id))
        requeued.append(str(pod.pk))
    return requeued
