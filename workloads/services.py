"""Writes for workloads: declare, provision (with failover), follow, sync and terminate pods.

Concurrency: state changes are compare-and-set updates (``UPDATE ... WHERE state=old``), so a
task that runs twice, or two workers racing, cannot both act. Network calls to providers are
never made while holding a database lock.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.db import transaction

from billing.gate import may_spend
from providers.adapters.base import (
    REMOTE_EXITED,
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_TERMINATED,
    LaunchRequest,
    NotFound,
    ProviderError,
)
from providers.models import ProviderAccount
from providers.selectors import offers_for_tenant
from providers.services import adapter_for
from provisioner import clock
from tenants.models import Project, Tenant

from .models import LIVE_POD_STATES, LaunchBlock, Lifecycle, Pod, PodEvent, PodState, Workload
from .placement import place, spec_for_workload

logger = logging.getLogger(__name__)

MAX_LAUNCH_ATTEMPTS = 5
BLOCK_MINUTES = 15


# --- events and transitions ---------------------------------------------------------------


def pod_event(pod: Pod, kind: str, message: str, **data: Any) -> PodEvent:
    return PodEvent.objects.create(pod=pod, tenant_id=pod.tenant_id, at=clock.now(), kind=kind, message=message[:500], data=data)


_TIMESTAMP_FOR = {
    PodState.PROVISIONING: "provisioning_at",
    PodState.RUNNING: "started_at",
    PodState.STOPPED: "stopped_at",
    PodState.TERMINATED: "ended_at",
    PodState.FAILED: "ended_at",
    PodState.INTERRUPTED: "ended_at",
}


def pod_transition(pod: Pod, new_state: str, message: str, *, expect: tuple[str, ...] | None = None,
                   fields: dict[str, Any] | None = None, **data: Any) -> bool:
    """Move ``pod`` to ``new_state`` if it is still in one of ``expect`` (compare-and-set).

    Returns False (and changes nothing) when another actor moved it first.
    """
    now = clock.now()
    updates: dict[str, Any] = {"state": new_state, "updated_at": now, **(fields or {})}
    ts = _TIMESTAMP_FOR.get(new_state)
    if ts and not getattr(pod, ts):
        updates.setdefault(ts, now)
    if new_state in (PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED):
        updates["agent_token_hash"] = ""  # the agent's token dies with the pod
    with transaction.atomic():
        qs = Pod.objects.filter(pk=pod.pk)
        if expect is not None:
            qs = qs.filter(state__in=expect)
        if not qs.update(**updates):
            return False
        for k, v in updates.items():
            setattr(pod, k, v)
        pod_event(pod, "state", message, state=new_state, **data)
    return True


# --- declare --------------------------------------------------------------------------------


@transaction.atomic
def workload_create(*, tenant: Tenant, project: Project, owner, name: str, image: str, gpu_class: str,
                    gpu_count: int = 1, interruption_tolerant: bool = False, lifecycle: str = Lifecycle.JOB,
                    **fields: Any) -> Workload:
    """Declare a workload. ``fields`` are further Workload fields (volumes, pins, idle policy...)."""
    if project.tenant_id != tenant.pk:
        raise ValueError("project belongs to another organization")
    if lifecycle == Lifecycle.SERVICE and "idle_enabled" not in fields:
        fields["idle_enabled"] = False  # services: auto-shutdown off by default
    return Workload.objects.create(tenant=tenant, project=project, owner=owner, name=name, image=image,
                                   gpu_class=gpu_class, gpu_count=gpu_count,
                                   interruption_tolerant=interruption_tolerant, lifecycle=lifecycle, **fields)


def pod_request(*, workload: Workload, replica_index: int = 0, enqueue: bool = True) -> Pod:
    """Create a pod in ``requested`` and hand it to the provisioning task after commit."""
    with transaction.atomic():
        pod = Pod.objects.create(tenant_id=workload.tenant_id, workload=workload, project_id=workload.project_id,
                                 gpu_class=workload.gpu_class, gpu_count=workload.gpu_count,
                                 replica_index=replica_index, requested_at=clock.now())
        pod_event(pod, "state", "Requested", state=PodState.REQUESTED)
        if enqueue:
            from .tasks import provision_pod

            pod_id = str(pod.pk)
            transaction.on_commit(lambda: provision_pod.delay(pod_id))
    return pod


def workload_launch(*, workload: Workload, enqueue: bool = True) -> list[Pod]:
    """Request one pod per replica."""
    return [pod_request(workload=workload, replica_index=i, enqueue=enqueue) for i in range(max(1, workload.replicas))]


# --- provision -------------------------------------------------------------------------------


def _launch_request(pod: Pod, offer) -> LaunchRequest:
    w = pod.workload
    spec = w.container_spec or {}
    return LaunchRequest(
        tag=str(pod.pk), name=f"{w.name}-{str(pod.pk)[:8]}", image=w.image, gpu_class=offer.gpu_class,
        gpu_count=offer.gpu_count, region=offer.region, instance_type=offer.instance_type, zone=offer.zone,
        spot=offer.spot, bid_price_per_hour=offer.price_per_hour if offer.spot else None,
        command=list(spec.get("command", [])), args=list(spec.get("args", [])),
        env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
        ports=list(w.ports or spec.get("ports", [])), volumes=list(w.volumes or []),
        public_ingress=w.public_ingress,
    )


def _offer_snapshot(offer) -> dict[str, Any]:
    return {
        "provider": offer.provider_account.name, "kind": offer.kind, "gpu_class": offer.gpu_class,
        "gpu_count": offer.gpu_count, "region": offer.region, "country": offer.country, "zone": offer.zone,
        "spot": offer.spot, "price_per_hour": str(offer.price_per_hour), "currency": offer.currency,
        "price_usd_per_hour": str(offer.price_usd_per_hour), "instance_type": offer.instance_type,
    }


def pod_provision(*, pod_id: str) -> Pod:
    """Place and launch a requested pod, failing over across candidates.

    Claims the pod with a compare-and-set (requested -> provisioning), so running this twice
    launches once.
    """
    pod = Pod.objects.select_related("workload", "workload__project").get(pk=pod_id)
    if not Pod.objects.filter(pk=pod.pk, state=PodState.REQUESTED, provider_account__isnull=True).update(
        state=PodState.PROVISIONING, provisioning_at=clock.now()
    ):
        return pod  # someone else has it
    pod.refresh_from_db()
    workload = pod.workload
    force_on_demand = pod.interruption_count >= workload.max_interruptions_before_on_demand
    spec = spec_for_workload(workload, force_on_demand=force_on_demand)
    blocked = set(LaunchBlock.objects.filter(tenant_id=pod.tenant_id, until__gt=clock.now())
                  .values_list("provider_account_id", "region"))
    result = place(offers_for_tenant(workload.tenant), spec)
    pod_event(pod, "placement", result.chosen.reason if result.chosen else "No offer fits: " + "; ".join(result.excluded))
    attempts = 0
    path: list[str] = []
    for candidate in result.candidates:
        offer = candidate.offer
        where = f"{offer.provider_account.name} {offer.region}"
        if (offer.provider_account_id, offer.region) in blocked:
            continue
        decision = may_spend(tenant_id=pod.tenant_id, project_id=pod.project_id,
                             provider_account_id=offer.provider_account_id, usd_per_hour=offer.price_usd_per_hour)
        if not decision.allowed:
            pod_transition(pod, PodState.FAILED, f"Refused: {decision.reason}", expect=(PodState.PROVISIONING,),
                           fields={"state_reason": decision.reason[:300]})
            return pod
        if attempts >= MAX_LAUNCH_ATTEMPTS:
            break
        attempts += 1
        try:
            remote = adapter_for(offer.provider_account).launch(_launch_request(pod, offer))
        except ProviderError as exc:
            msg = f"{where}: {_short_error(exc)}"
            path.append(msg)
            pod_event(pod, "attempt", msg, attempt=attempts, error=type(exc).__name__)
            if exc.failover:
                LaunchBlock.objects.create(tenant_id=pod.tenant_id, provider_account=offer.provider_account,
                                           region=offer.region, reason=_short_error(exc),
                                           until=clock.now() + timedelta(minutes=BLOCK_MINUTES))
                continue
            break
        path.append(f"{where}: launched")
        Pod.objects.filter(pk=pod.pk).update(
            provider_account=offer.provider_account, external_id=remote.external_id,
            offer_snapshot=_offer_snapshot(offer), gpu_class=offer.gpu_class, gpu_count=offer.gpu_count,
            region=offer.region, country=offer.country, spot=offer.spot, price_per_hour=offer.price_per_hour,
            currency=offer.currency, price_usd_per_hour=offer.price_usd_per_hour,
        )
        pod.refresh_from_db()
        pod_event(pod, "attempt", " → ".join(path), attempt=attempts, path=path)
        pod_apply_remote(pod, remote)
        return pod
    reason = "No capacity: " + ("; ".join(path) if path else "; ".join(result.excluded) or "no offer fits")
    pod_transition(pod, PodState.FAILED, reason, expect=(PodState.PROVISIONING,), fields={"state_reason": reason[:300]}, path=path)
    return pod


def _short_error(exc: ProviderError) -> str:
    name = {"CapacityUnavailable": "no capacity", "QuotaExceeded": "quota exceeded",
            "TransientError": "temporary error", "LaunchTimeout": "timed out"}.get(type(exc).__name__, type(exc).__name__)
    return f"{name} ({exc.message})" if exc.message else name


# --- follow and sync -----------------------------------------------------------------------


def pod_apply_remote(pod: Pod, remote) -> None:
    """Fold the provider's view of the pod into ours."""
    live = tuple(LIVE_POD_STATES)
    if remote.state == REMOTE_RUNNING and pod.state in (PodState.REQUESTED, PodState.PROVISIONING):
        pod_transition(pod, PodState.RUNNING, "Running", expect=(PodState.REQUESTED, PodState.PROVISIONING),
                       fields={"connection": remote.connection or {}})
    elif remote.state == REMOTE_RUNNING and remote.connection and remote.connection != pod.connection:
        Pod.objects.filter(pk=pod.pk).update(connection=remote.connection)
    elif remote.state == REMOTE_INTERRUPTED and pod.state in live:
        pod_transition(pod, PodState.INTERRUPTED, "Interrupted by the provider (spot capacity reclaimed)",
                       expect=live, fields={"interruption_count": pod.interruption_count + 1,
                                            "state_reason": "spot interruption"})
    elif remote.state == REMOTE_EXITED and pod.state in live:
        code = remote.exit_code
        pod_event(pod, "exit", f"Container exited with status {code}", exit_code=code)
        Pod.objects.filter(pk=pod.pk).update(exit_code=code)
        pod_terminate(pod_id=str(pod.pk), reason=f"Job finished (exit {code})")
    elif remote.state == REMOTE_STOPPED and pod.state in live:
        pod_transition(pod, PodState.STOPPED, "Stopped", expect=live)
    elif remote.state in (REMOTE_TERMINATED, REMOTE_FAILED) and pod.state in live:
        new = PodState.TERMINATED if remote.state == REMOTE_TERMINATED else PodState.FAILED
        pod_transition(pod, new, f"The provider reports the pod {remote.state}", expect=live,
                       fields={"state_reason": remote.message[:300]})
    elif remote.state == REMOTE_PROVISIONING:
        pass
    Pod.objects.filter(pk=pod.pk).update(last_synced_at=clock.now())


def pod_refresh(*, pod_id: str) -> Pod:
    """Ask the provider for the pod's state and apply it."""
    pod = Pod.objects.select_related("provider_account", "workload").get(pk=pod_id)
    if pod.provider_account is None or not pod.external_id or pod.state not in LIVE_POD_STATES:
        return pod
    try:
        remote = adapter_for(pod.provider_account).get(pod.external_id)
    except NotFound:
        if pod.state == PodState.STOPPING:
            pod_transition(pod, PodState.TERMINATED, "Terminated", expect=(PodState.STOPPING,))
        else:
            pod_transition(pod, PodState.FAILED, "The pod vanished at the provider", expect=tuple(LIVE_POD_STATES),
                           fields={"state_reason": "resource vanished"})
        return pod
    except ProviderError as exc:
        logger.warning("sync of pod %s failed: %s", pod.pk, exc)
        return pod
    pod_apply_remote(pod, remote)
    pod.refresh_from_db()
    return pod


def pods_sync() -> int:
    """Refresh every live pod (the periodic safety net)."""
    ids = list(Pod.objects.filter(state__in=[PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPING])
               .exclude(external_id="").values_list("pk", flat=True))
    for pod_id in ids:
        pod_refresh(pod_id=str(pod_id))
    return len(ids)


# --- terminate -----------------------------------------------------------------------------


def pod_terminate(*, pod_id: str, reason: str = "Terminated by user", user=None) -> Pod:
    """Terminate at the provider, verify, then mark terminated. Safe to call twice."""
    pod = Pod.objects.select_related("provider_account").get(pk=pod_id)
    if pod.state in (PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED):
        return pod
    if pod.provider_account is None or not pod.external_id:
        pod_transition(pod, PodState.TERMINATED, f"{reason} before launch", expect=tuple(LIVE_POD_STATES))
        return pod
    pod_transition(pod, PodState.STOPPING, f"Stopping: {reason}", expect=(PodState.REQUESTED, PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPED))
    adapter = adapter_for(pod.provider_account)
    try:
        adapter.terminate(pod.external_id)
        try:
            gone = adapter.get(pod.external_id).state in (REMOTE_TERMINATED,)
        except NotFound:
            gone = True
    except ProviderError as exc:
        pod_event(pod, "error", f"Terminate failed, will retry: {exc}")
        return pod
    if gone:
        pod_transition(pod, PodState.TERMINATED, f"Terminated ({reason}); verified at the provider",
                       expect=(PodState.STOPPING,), fields={"state_reason": reason[:300]})
    else:
        pod_event(pod, "state", "Termination requested; waiting for the provider to confirm")
    pod.refresh_from_db()
    return pod


def pod_price_usd(pod: Pod) -> Decimal:
    return pod.price_usd_per_hour or Decimal("0")


def accounts_in_use(tenant: Tenant) -> list[ProviderAccount]:
    return list(ProviderAccount.objects.filter(tenant=tenant, pods__state__in=LIVE_POD_STATES).distinct())
