"""Pods on providers that only install an OS (Hetzner Robot): start the workload over SSH.

When such a provider reports the server running, the pod is *not* running yet: it stays
``provisioning`` while the ``bootstrap_pod`` task (its own Celery queue, so a driver install
that takes minutes never delays other pods' tasks) logs in and brings the container up. Each
step is a pod event. Success: the pod runs, billed from the server's delivery (Robot bills the
server from then, whatever we did with it). Failure: the pod fails with the reason, the order
is cancelled at the provider, and the pod is not re-placed (another order would fail the same
way, with another setup fee). "Not ready yet" (SSH not up, rebooting for the driver) is retried
by the periodic sync until ``BOOTSTRAP_DEADLINE`` after delivery.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

from django.core.cache import cache
from django.db import transaction

from providers.adapters.base import LaunchRequest, ProviderError
from providers.adapters.hetzner_bootstrap import BootstrapFailed, BootstrapRetry
from providers.adapters.registry import provider_info
from provisioner import clock
from workloads.autoshutdown.telemetry import AGENT_BOOTSTRAP
from workloads.models import Pod, PodState

from . import calls
from .failover import launch_request, short_error
from .transitions import pod_event, pod_transition

logger = logging.getLogger(__name__)

BOOTSTRAP_DEADLINE = timedelta(hours=2)  # from delivery: SSH must answer and the driver load by then
LOCK_SECONDS = 3 * 3600  # longer than any bootstrap run; released at its end
QUEUED_SECONDS = 60


def needs_bootstrap(pod: Pod) -> bool:
    account = pod.provider_account
    return account is not None and provider_info(account.kind).bootstrap_over_ssh


def bootstrap_begin(pod: Pod, remote) -> None:
    """The provider delivered the server: remember where it is (once) and hand the pod to the
    bootstrap task after commit. Called by every sync while the pod waits: the task's lock
    makes repeats no-ops."""
    connection = dict(pod.connection or {})
    if not connection.get("delivered_at"):
        connection = {**(remote.connection or {}), "delivered_at": clock.now().isoformat()}
        if not Pod.objects.filter(pk=pod.pk, state=PodState.PROVISIONING).update(connection=connection):
            return
        pod.connection = connection
        pod_event(pod, "bootstrap", f"Server delivered ({connection.get('host') or 'no IPv4 yet'}); starting the "
                                    "workload over SSH: NVIDIA driver, container runtime, then the container")
    from .tasks import bootstrap_pod

    pod_id = str(pod.pk)
    # at most one queued run a minute per pod, however often the pod is synced meanwhile
    if cache.add(f"pod-bootstrap-queued:{pod_id}", "1", QUEUED_SECONDS):
        transaction.on_commit(lambda: bootstrap_pod.delay(pod_id))


def _offer_of(pod: Pod) -> Any:
    """What ``launch_request`` reads of an offer, from the pod's launch snapshot (the offer row
    itself is replaced by every capacity poll)."""
    snap = pod.offer_snapshot or {}
    return SimpleNamespace(kind=snap.get("kind", ""), gpu_class=pod.gpu_class, gpu_count=pod.gpu_count, region=pod.region,
                           instance_type=snap.get("instance_type", ""), zone=snap.get("zone", ""), spot=pod.spot,
                           price_per_hour=pod.price_per_hour)


def _host_agent(request: LaunchRequest) -> tuple[LaunchRequest, dict[str, str]]:
    """On a server of our own the GPU agent runs on the host (driver and python3 are there
    whatever the image holds): the container gets its command exactly as the workload gave it
    (without the agent wrapper) and no agent token; the AGENT_* variables go to the host agent."""
    command = list(request.command)
    if command[:3] == ["sh", "-c", AGENT_BOOTSTRAP] and len(command) > 3:
        command = command[4:]  # the wrapper's "$0" placeholder, then the workload's command and args
    agent = {k: v for k, v in request.env.items() if k.startswith("AGENT_")}
    env = {k: v for k, v in request.env.items() if not k.startswith("AGENT_")}
    return replace(request, command=command, env=env), agent


def pod_bootstrap(*, pod_id: str) -> Pod:
    """Run the bootstrap of one delivered pod (the task's body). Safe to call twice at once:
    the second call returns at once."""
    key = f"pod-bootstrap:{pod_id}"
    if not cache.add(key, "1", LOCK_SECONDS):
        return Pod.objects.get(pk=pod_id)
    try:
        return _run(pod_id)
    finally:
        cache.delete(key)


def _run(pod_id: str) -> Pod:
    pod = Pod.objects.select_related("provider_account", "workload").get(pk=pod_id)
    connection = dict(pod.connection or {})
    if pod.state != PodState.PROVISIONING or not connection.get("delivered_at"):
        return pod
    delivered = datetime.fromisoformat(connection["delivered_at"])
    adapter = calls.adapter(pod.provider_account)
    request, agent_env = _host_agent(launch_request(pod, _offer_of(pod)))
    try:
        facts = adapter.bootstrap(connection=connection, request=request, agent_env=agent_env,
                                  progress=lambda message: pod_event(pod, "bootstrap", message))
    except BootstrapRetry as exc:
        if clock.now() - delivered > BOOTSTRAP_DEADLINE:
            return _give_up(pod, delivered, f"bootstrap: {exc} for more than {BOOTSTRAP_DEADLINE}")
        message = f"Not ready yet: {exc}; trying again at the next sync"
        last = pod.events.filter(kind="bootstrap").order_by("-at", "-id").values_list("message", flat=True).first()
        if last != message[:500]:  # one event per distinct wait, not one per sync
            pod_event(pod, "bootstrap", message)
        return pod
    except BootstrapFailed as exc:
        return _give_up(pod, delivered, f"bootstrap failed at {exc.step}: {exc.message}")
    except Exception as exc:  # noqa: BLE001 - an unexpected error is retried, and logged
        logger.exception("bootstrap of pod %s", pod_id)
        pod_event(pod, "bootstrap", f"Bootstrap interrupted ({type(exc).__name__}); trying again at the next sync")
        return pod
    connection.update({k: v for k, v in facts.items() if k in ("host_key", "container", "driver", "urls")})
    # billed from delivery: the provider charges the server from then, bootstrap time included
    pod_transition(pod, PodState.RUNNING, "Running: the container was started over SSH", expect=(PodState.PROVISIONING,),
                   fields={"connection": connection, "started_at": delivered})
    pod.refresh_from_db()
    from .services import _on_running

    _on_running(pod)
    return pod


def _give_up(pod: Pod, delivered: datetime, reason: str) -> Pod:
    """Fail the pod (billed from delivery to now, as the provider bills it) and cancel the order."""
    from .services import pod_after_end

    if not pod_transition(pod, PodState.FAILED, f"Failed: {reason}", expect=(PodState.PROVISIONING,),
                          fields={"state_reason": reason[:300], "started_at": delivered}):
        return pod
    try:
        adapter = calls.adapter(pod.provider_account)
        calls.call_with_timeout(adapter.terminate, pod.external_id, timeout=calls.attempt_timeout(), what="cancel")
        pod_event(pod, "bootstrap", "Order cancelled at the provider (the server is released now)")
    except ProviderError as exc:
        # reconciliation terminates resources whose pod has ended: it finishes this
        pod_event(pod, "error", f"Cancelling the order failed, reconciliation will retry: {short_error(exc)}")
    pod_after_end(pod, replace=False)
    return pod
