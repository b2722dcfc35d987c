"""Writes for workloads: declare, provision (with failover), follow, sync, re-place and
terminate pods.

Concurrency: state changes are compare-and-set updates (``UPDATE ... WHERE state=old``, see
``transitions``), so a task that runs twice, or two workers racing, cannot both act. Network
calls to providers are never made while holding a database lock, and each has a timeout.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction

from providers.adapters.base import (
    REMOTE_EXITED,
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_TERMINATED,
    NotFound,
    ProviderError,
)
from providers.models import ProviderAccount
from provisioner import clock
from tenants.audit import audit_record
from tenants.models import Project, Tenant
from workloads.models import LIVE_POD_STATES, Lifecycle, Pod, PodState, Workload
from workloads.placement.engine import placement_for, spec_for_workload

from . import calls
from .bootstrap import bootstrap_begin, needs_bootstrap
from .claims import claim_lease, claims_requeue_lost
from .failover import launch_with_failover, max_attempts, short_error
from .transitions import pod_event, pod_transition, workload_settle

logger = logging.getLogger(__name__)

__all__ = [
    "workload_create", "pod_request", "workload_launch", "pod_provision", "pod_apply_remote", "pod_refresh",
    "pods_sync", "pod_terminate", "pod_transition", "pod_event", "workload_settle", "pod_replace",
]

REQUEUE_AFTER = timedelta(minutes=2)  # a requested pod nobody picked up (lost task) is re-enqueued


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


def pod_request(*, workload: Workload, replica_index: int = 0, enqueue: bool = True, replaces: Pod | None = None,
                placement_override: dict[str, Any] | None = None, interruption_count: int = 0,
                **fields: Any) -> Pod:
    """Create a pod in ``requested`` and hand it to the provisioning task after commit.

    ``replaces``/``placement_override`` are set for re-placements and moves; ``fields`` are
    further Pod fields (e.g. ``scheduled_run``).
    """
    with transaction.atomic():
        pod = Pod.objects.create(tenant_id=workload.tenant_id, workload=workload, project_id=workload.project_id,
                                 gpu_class=workload.gpu_class, gpu_count=workload.gpu_count,
                                 replica_index=replica_index, requested_at=clock.now(), replaces=replaces,
                                 placement_override=placement_override or {},
                                 interruption_count=interruption_count, **fields)
        why = f" (replaces {str(replaces.pk)[:8]})" if replaces is not None else ""
        pod_event(pod, "state", f"Requested{why}", state=PodState.REQUESTED)
        if enqueue:
            from .tasks import provision_pod

            pod_id = str(pod.pk)
            transaction.on_commit(lambda: provision_pod.delay(pod_id))
    return pod


@transaction.atomic
def workload_launch(*, workload: Workload, enqueue: bool = True) -> list[Pod]:
    """Request one pod per replica (audited as a launch). One transaction: the pods exist only
    with their audit event, and their provisioning tasks are sent on commit."""
    pods = [pod_request(workload=workload, replica_index=i, enqueue=enqueue) for i in range(max(1, workload.replicas))]
    audit_record(tenant=workload.tenant_id, action="pod.launched", target=workload,
                 details={"pods": [str(p.pk) for p in pods], "gpu": f"{workload.gpu_count}x{workload.gpu_class}",
                          "image": workload.image})
    return pods


def pod_terminate_request(*, pod: Pod, user) -> bool:
    """A user asks to terminate ``pod``: audited, then handed to the terminate task after commit
    (a web request never waits on a provider). False when the pod has already ended."""
    if pod.state not in LIVE_POD_STATES and pod.state != PodState.STOPPED:
        return False
    from .tasks import terminate_pod

    audit_record(tenant=pod.tenant_id, action="pod.terminated", target=pod, actor=user,
                 details={"workload": pod.workload.name, "state": pod.state})
    pod_id, reason = str(pod.pk), f"Terminated by {user.username}"
    transaction.on_commit(lambda: terminate_pod.delay(pod_id, reason))
    return True


# --- provision -------------------------------------------------------------------------------


def workload_interruptions(workload: Workload) -> int:
    """Interruptions across all of the workload's pods (drives escalation to on-demand)."""
    return workload.pods.filter(state=PodState.INTERRUPTED).count()


def pod_provision(*, pod_id: str) -> Pod:
    """Place and launch a requested pod, failing over across candidates.

    Claims the pod with a compare-and-set (requested -> provisioning), so running this twice
    (or concurrently) launches once.
    """
    if not Pod.objects.filter(pk=pod_id, state=PodState.REQUESTED, provider_account__isnull=True).update(
        state=PodState.PROVISIONING, provisioning_at=clock.now()
    ):
        return Pod.objects.get(pk=pod_id)  # someone else has it
    with claim_lease(pod_id):  # if this worker dies now, the next sync re-queues the pod (claims.py)
        return _provision_claimed(pod_id)


def _provision_claimed(pod_id: str) -> Pod:
    pod = Pod.objects.select_related("workload").get(pk=pod_id)
    workload = pod.workload
    # a replacement placed on an interruption notice carries the interruption still to come
    interruptions = max(workload_interruptions(workload), pod.interruption_count)
    force_on_demand = workload.interruption_tolerant and interruptions >= workload.max_interruptions_before_on_demand
    spec = spec_for_workload(workload, force_on_demand=force_on_demand, override=pod.placement_override)
    result = placement_for(tenant_id=pod.tenant_id, project_id=pod.project_id, spec=spec, now=clock.now(),
                           limit=max_attempts() + 3, explain=False)
    if force_on_demand:
        pod_event(pod, "placement", f"On-demand only: {interruptions} interruptions so far "
                                    f"(limit {workload.max_interruptions_before_on_demand})")
    if result.chosen is None:
        _fail(pod, result.refusal, exclusions=result.excluded[:10])
        return pod
    pod_event(pod, "placement", f"Placed: {result.chosen.reason}",
              alternatives=[c.reason for c in result.candidates[1:4]], excluded=result.excluded[:10])
    claimed_at = pod.provisioning_at
    outcome = launch_with_failover(pod, result.candidates)
    pod.refresh_from_db()
    if outcome.remote is None:
        if pod.state == PodState.PROVISIONING and pod.provisioning_at == claimed_at:  # still our claim
            _fail(pod, outcome.reason, path=outcome.path or [])
        return pod
    pod_event(pod, "attempt", " → ".join(outcome.path or []), path=outcome.path)
    pod_apply_remote(pod, outcome.remote)
    pod.refresh_from_db()
    return pod


def _fail(pod: Pod, reason: str, **data: Any) -> None:
    if pod_transition(pod, PodState.FAILED, reason, expect=(PodState.REQUESTED, PodState.PROVISIONING),
                      fields={"state_reason": reason[:300], "launch_path": data.get("path", [])}, **data):
        pod_after_end(pod)


# --- follow and sync -----------------------------------------------------------------------


def pod_apply_remote(pod: Pod, remote) -> None:
    """Fold the provider's view of the pod into ours."""
    live = tuple(LIVE_POD_STATES)
    bootstrapped = remote.state == REMOTE_RUNNING and needs_bootstrap(pod)
    if bootstrapped and pod.state == PodState.PROVISIONING:
        bootstrap_begin(pod, remote)  # the server is up, the workload not yet: start it over SSH
    elif bootstrapped and pod.state == PodState.RUNNING:
        merged = {**(pod.connection or {}), **(remote.connection or {})}  # keep what the bootstrap added
        if merged != pod.connection:
            Pod.objects.filter(pk=pod.pk).update(connection=merged)
    elif remote.state == REMOTE_RUNNING and pod.state in (PodState.REQUESTED, PodState.PROVISIONING):
        if pod_transition(pod, PodState.RUNNING, "Running", expect=(PodState.REQUESTED, PodState.PROVISIONING),
                          fields={"connection": remote.connection or {}}):
            _on_running(pod)
    elif remote.state == REMOTE_RUNNING and remote.connection and remote.connection != pod.connection:
        Pod.objects.filter(pk=pod.pk).update(connection=remote.connection)
    elif remote.state == REMOTE_INTERRUPTED and pod.state in live:
        # charged only up to now: billing meters a pod up to its ended_at
        if pod_transition(pod, PodState.INTERRUPTED, "Interrupted by the provider (spot capacity reclaimed)",
                          expect=live, fields={"interruption_count": pod.interruption_count + 1,
                                               "state_reason": "spot interruption", **_notice_end(pod)}):
            pod_after_end(pod)
    elif remote.state == REMOTE_EXITED and pod.state in live:
        code = remote.exit_code
        pod_event(pod, "exit", f"Container exited with status {code}", exit_code=code)
        Pod.objects.filter(pk=pod.pk).update(exit_code=code)
        pod.exit_code = code
        pod_terminate(pod_id=str(pod.pk), reason=f"Job finished (exit {code})")
    elif remote.state == REMOTE_STOPPED and pod.state in live:
        pod_transition(pod, PodState.STOPPED, "Stopped", expect=live)
    elif remote.state in (REMOTE_TERMINATED, REMOTE_FAILED) and pod.state in live:
        new = PodState.TERMINATED if remote.state == REMOTE_TERMINATED else PodState.FAILED
        reason = remote.message or f"the provider reports the pod {remote.state}"
        message = f"The provider reports the pod {remote.state}"
        if pod.state == PodState.STOPPING and new == PodState.TERMINATED:
            # we asked for the termination and the provider confirms it: the same verification
            # pod_terminate makes itself (a sync can observe it first)
            message = "Terminated; verified at the provider (it reports the pod terminated)"
        if pod_transition(pod, new, message, expect=live, fields={"state_reason": reason[:300]}):
            pod_after_end(pod)
    elif remote.state == REMOTE_PROVISIONING:
        if remote.expected_ready_at and remote.expected_ready_at != pod.ready_expected_at:
            Pod.objects.filter(pk=pod.pk).update(ready_expected_at=remote.expected_ready_at)  # a new estimate
            pod.ready_expected_at = remote.expected_ready_at
    if remote.state == REMOTE_RUNNING and pod.state in live and (remote.notice or pod.interruption_notice):
        # notices act through services, not the reverse
        from workloads.interruptions.notices import notice_from_provider, notice_withdrawn

        if remote.notice is not None:
            notice_from_provider(pod=pod, notice=remote.notice)
        else:
            notice_withdrawn(pod=pod)
    Pod.objects.filter(pk=pod.pk).update(last_synced_at=clock.now())


def _notice_end(pod: Pod) -> dict[str, Any]:
    """The provider announced when it would take the pod: that is when it ended (and billing
    with it), not when our sync noticed."""
    deadline = pod.interruption_deadline
    if deadline is not None and deadline <= clock.now() and (pod.started_at is None or deadline >= pod.started_at):
        return {"ended_at": deadline}
    return {}


def _on_running(pod: Pod) -> None:
    """A pod that replaces another as part of a move or a rolling relaunch: now that it runs,
    retire the old one (behind the gateway, ``move_finish`` waits for readiness and the drain)."""
    from workloads.placement.move import RETIRING, move_finish

    if pod.replaces_id and (pod.placement_override or {}).get("purpose") in RETIRING:
        move_finish(new_pod_id=str(pod.pk))


def pod_refresh(*, pod_id: str, adapter=None) -> Pod:
    """Ask the provider for the pod's state and apply it. ``adapter`` may be passed in by a
    caller syncing many pods of one account (credentials are decrypted once, not per pod)."""
    pod = Pod.objects.get(pk=pod_id)
    if pod.provider_account_id is None or not pod.external_id or pod.state not in LIVE_POD_STATES:
        return pod
    try:
        adapter = adapter or calls.adapter(pod.provider_account)
        remote = calls.call_with_timeout(adapter.get, pod.external_id, timeout=calls.attempt_timeout(), what="sync")
    except NotFound:
        pod_vanished(pod)
        return pod
    except ProviderError as exc:
        logger.warning("sync of pod %s failed: %s", pod.pk, exc)
        return pod
    pod_apply_remote(pod, remote)
    pod.refresh_from_db()
    return pod


def pod_vanished(pod: Pod) -> None:
    """The provider no longer knows the resource: a stopping pod is done, any other failed."""
    if pod.state == PodState.STOPPING:
        if pod_transition(pod, PodState.TERMINATED, "Terminated; verified at the provider (resource gone)",
                          expect=(PodState.STOPPING,)):
            pod_after_end(pod)
    elif pod_transition(pod, PodState.FAILED, "The pod vanished at the provider",
                        expect=(*LIVE_POD_STATES, PodState.STOPPED),
                        fields={"state_reason": "resource vanished at the provider"}):
        pod_after_end(pod)


def pods_sync() -> int:
    """Refresh every live pod (the periodic safety net) and re-enqueue requested pods whose
    provisioning task was lost."""
    rows = list(Pod.objects.filter(state__in=[PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPING])
                .exclude(external_id="").values_list("pk", "provider_account_id"))
    ids = [pk for pk, _ in rows]
    accounts = {a.pk: a for a in ProviderAccount.objects.filter(pk__in={acc for _, acc in rows})}
    adapters: dict = {}
    for pod_id, account_id in rows:
        if account_id not in adapters:
            adapters[account_id] = calls.adapter(accounts[account_id])
        pod_refresh(pod_id=str(pod_id), adapter=adapters[account_id])
    claims_requeue_lost()  # claimed launches whose worker died (lease expired): back to requested
    stale = list(Pod.objects.filter(state=PodState.REQUESTED, provider_account__isnull=True,
                                    requested_at__lt=clock.now() - REQUEUE_AFTER).values_list("pk", flat=True))
    if stale:
        from .tasks import provision_pod

        for pod_id in stale:
            provision_pod.delay(str(pod_id))  # claims with compare-and-set: safe beside the lost task
    return len(ids)


# --- after a pod ends: re-place or settle -----------------------------------------------------


def pod_after_end(pod: Pod, *, replace: bool = True) -> Pod | None:
    """Decide what follows a pod's end: a re-placement (interrupted spot job with restart on,
    any service; never with ``replace=False``) or the workload's final state. Returns the
    replacement pod, if any."""
    pod.refresh_from_db()
    if pod.replaces_id and (pod.placement_override or {}).get("purpose") == "move" and pod.state == PodState.FAILED:
        from workloads.placement.move import move_failed

        move_failed(new_pod=pod)
    ended = pod.state in (PodState.INTERRUPTED, PodState.FAILED)
    replacement = pod_replace(pod=pod) if replace and ended else None
    if replacement is None:
        workload_settle(workload_id=pod.workload_id)
    return replacement


def pod_replace(*, pod: Pod, enqueue: bool = True) -> Pod | None:
    """Re-place an ended pod as a new Pod when the workload wants it back.

    Interrupted: a job with restart on interruption, or a service, at once. Failed after
    running (the resource vanished): a service only. A pod that never ran (no capacity) is not
    re-placed: placement already tried every candidate. Idempotent: at most one live
    replacement per replica.
    """
    workload = pod.workload
    if workload.state != Workload.State.ACTIVE:
        return None
    if pod.state == PodState.INTERRUPTED:
        wanted = workload.lifecycle == Lifecycle.SERVICE or workload.restart_on_interruption
    else:
        wanted = workload.lifecycle == Lifecycle.SERVICE and pod.started_at is not None
    if not wanted:
        return None
    with transaction.atomic():
        Workload.objects.select_for_update().filter(pk=workload.pk).first()  # serialize re-placements
        if workload.pods.filter(replica_index=pod.replica_index, state__in=LIVE_POD_STATES).exists():
            return None  # a replacement (or a move's new pod) already exists
        override = {k: v for k, v in (pod.placement_override or {}).items() if k not in ("avoid", "purpose")}
        interruptions = workload_interruptions(workload)
        new = pod_request(workload=workload, replica_index=pod.replica_index, enqueue=enqueue, replaces=pod,
                          placement_override=override, interruption_count=interruptions)
    on_demand = (workload.interruption_tolerant and interruptions >= workload.max_interruptions_before_on_demand)
    why = "interrupted" if pod.state == PodState.INTERRUPTED else "lost"
    pod_event(pod, "replace", f"Re-placing as pod {str(new.pk)[:8]} ({why}; {interruptions} interruptions so far"
                              f"{', on-demand from now on' if on_demand else ''})", replacement=str(new.pk))
    return new


# --- terminate -----------------------------------------------------------------------------


def pod_terminate(*, pod_id: str, reason: str = "Terminated by user", user=None) -> Pod:
    """Terminate at the provider, verify, then mark terminated. Safe to call twice."""
    pod = Pod.objects.select_related("provider_account").get(pk=pod_id)
    if pod.state in (PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED):
        return pod
    if pod.provider_account is None or not pod.external_id:
        # not launched yet (or mid-launch: the launcher sees the cancel and discards its resource)
        if pod_transition(pod, PodState.TERMINATED, f"{reason} before launch", expect=tuple(LIVE_POD_STATES),
                          fields={"state_reason": reason[:300]}):
            workload_settle(workload_id=pod.workload_id)
        return pod
    pod_transition(pod, PodState.STOPPING, f"Stopping: {reason}",
                   expect=(PodState.REQUESTED, PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPED),
                   fields={"state_reason": reason[:300]})
    adapter = calls.adapter(pod.provider_account)
    timeout = calls.attempt_timeout()
    try:
        calls.call_with_timeout(adapter.terminate, pod.external_id, timeout=timeout, what="terminate")
        try:
            remote = calls.call_with_timeout(adapter.get, pod.external_id, timeout=timeout, what="verify")
            gone = remote.state == REMOTE_TERMINATED
        except NotFound:
            gone = True
    except ProviderError as exc:
        pod_event(pod, "error", f"Terminate failed, will retry: {short_error(exc)}")
        return pod
    if gone:
        if pod_transition(pod, PodState.TERMINATED, f"Terminated ({reason}); verified at the provider",
                          expect=(PodState.STOPPING,), fields={"state_reason": reason[:300]}):
            workload_settle(workload_id=pod.workload_id)
    else:
        pod_event(pod, "state", "Termination requested; waiting for the provider to confirm")
    pod.refresh_from_db()
    return pod
