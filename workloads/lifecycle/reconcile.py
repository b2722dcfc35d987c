"""Reconciliation: each provider's inventory (resources carrying our tag) against the database.

Per account, the provider is listed FIRST and the database read AFTER: a launch writes its
intent (account + region on the pod row) before calling the provider, so any resource the
listing shows already has its intent visible when we read. Then:

* a tagged resource whose pod is not live there (no such pod, pod ended, or the pod's launch
  moved on to another provider) is an orphan: terminated, termination verified, recorded;
* a pod stuck in requested/provisioning whose tagged resource exists is adopted (external id
  set, state applied), never launched again;
* a pod whose resource vanished is confirmed with ``get`` and marked (failed, or terminated if
  it was stopping);
* a pod whose launch never completed (worker died, nothing at the provider) is failed with
  that reason once it is older than the launch time budget.

Every step is a compare-and-set or an idempotent provider call, and each action is recorded
once (unique per resource and action), so two reconciliations may run at the same time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q

from providers.adapters.base import REMOTE_TERMINATED, NotFound, ProviderError, RemotePod
from providers.models import ProviderAccount
from provisioner import clock
from provisioner.logfilter import redact
from workloads.models import LIVE_POD_STATES, Pod, PodState, ReconcileAction

from . import calls
from .failover import short_error, total_seconds
from .services import pod_after_end, pod_apply_remote, pod_vanished
from .transitions import pod_event, pod_transition

logger = logging.getLogger(__name__)

Action = ReconcileAction.Action
HELD_STATES = (*LIVE_POD_STATES, PodState.STOPPED)  # a resource in these states belongs to its pod


def stuck_after() -> timedelta:
    """A launch older than this with nothing at the provider is dead (budget + margin)."""
    return timedelta(seconds=total_seconds() * 2 + 60)


@dataclass
class ReconcileReport:
    account_id: str
    listed: int = 0
    terminated: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    vanished: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    error: str = ""


def _record(account: ProviderAccount, external_id: str, tag: str, action: str, message: str, verified: bool) -> bool:
    """Record once per resource and action; False when another run already recorded it."""
    try:
        with transaction.atomic():
            ReconcileAction.objects.create(tenant_id=account.tenant_id, provider_account=account,
                                           external_id=external_id, tag=tag, action=action,
                                           message=redact(message)[:300], verified=verified, at=clock.now())
        return True
    except IntegrityError:
        return False


def _terminate_verified(adapter, external_id: str) -> bool:
    timeout = calls.attempt_timeout()
    calls.call_with_timeout(adapter.terminate, external_id, timeout=timeout, what="terminate")
    try:
        remote = calls.call_with_timeout(adapter.get, external_id, timeout=timeout, what="verify")
    except NotFound:
        return True
    return remote.state == REMOTE_TERMINATED


def reconcile_account(*, account_id: str) -> ReconcileReport:
    """Reconcile one provider account. Never marks anything when the listing fails."""
    account = ProviderAccount.objects.get(pk=account_id)
    report = ReconcileReport(str(account.pk))
    adapter = calls.adapter(account)
    try:
        remote_pods: list[RemotePod] = calls.call_with_timeout(adapter.list_pods, timeout=calls.attempt_timeout(),
                                                               what="listing pods")
    except ProviderError as exc:
        report.error = short_error(exc)
        logger.warning("reconcile of %s: listing failed: %s", account.pk, report.error)
        return report
    remote_pods = [r for r in remote_pods if r.state != REMOTE_TERMINATED]
    report.listed = len(remote_pods)
    tags = {r.tag for r in remote_pods if r.tag}
    valid_tags = {t for t in tags if _is_uuid(t)}
    by_tag = {str(p.pk): p for p in Pod.objects.filter(pk__in=valid_tags)}
    seen_external: set[str] = set()
    for remote in remote_pods:
        if not remote.tag:
            continue  # not ours: adapters list only tagged resources, but be strict
        seen_external.add(remote.external_id)
        pod = by_tag.get(remote.tag)
        if pod is not None and pod.provider_account_id == account.pk and pod.state in HELD_STATES:
            if pod.external_id == remote.external_id:
                continue  # in sync
            if not pod.external_id and pod.state in (PodState.REQUESTED, PodState.PROVISIONING):
                if _adopt(account, pod, remote):
                    report.adopted.append(str(pod.pk))
                continue
        _reap(account, adapter, remote, pod, report)
    _check_missing(account, adapter, seen_external, report)
    _abandon_stuck(account, adapter, report)
    return report


def _is_uuid(value: str) -> bool:
    import uuid

    try:
        uuid.UUID(value)
        return True
    except (ValueError, AttributeError):
        return False


def _adopt(account: ProviderAccount, pod: Pod, remote: RemotePod) -> bool:
    """A launch that timed out client-side (or whose worker died) did succeed: take it."""
    if not Pod.objects.filter(pk=pod.pk, provider_account=account, external_id="",
                              state__in=(PodState.REQUESTED, PodState.PROVISIONING)).update(
            external_id=remote.external_id, state=PodState.PROVISIONING,
            provisioning_at=pod.provisioning_at or clock.now()):
        return False
    pod.refresh_from_db()
    path = list(pod.launch_path or []) + [f"{account.name} {pod.region}: found launched by reconciliation"]
    Pod.objects.filter(pk=pod.pk).update(launch_path=path)
    pod_event(pod, "reconcile", f"Adopted {remote.external_id} at {account.name}: the launch had succeeded "
                                "although its answer never arrived", external_id=remote.external_id)
    _record(account, remote.external_id, remote.tag, Action.ADOPTED, f"adopted into pod {pod.pk}", True)
    pod_apply_remote(pod, remote)
    return True


def _reap(account: ProviderAccount, adapter, remote: RemotePod, pod: Pod | None, report: ReconcileReport) -> None:
    """Terminate a tagged resource that no live pod owns, verify, record."""
    if pod is None:
        why = "no pod with this tag exists"
    elif pod.state not in HELD_STATES:
        why = f"its pod is {pod.state}"
    elif pod.provider_account_id != account.pk:
        why = "its pod was launched elsewhere after this attempt timed out"
    else:
        why = f"its pod runs as {pod.external_id}, this is a duplicate"
    try:
        verified = _terminate_verified(adapter, remote.external_id)
    except ProviderError as exc:
        logger.warning("reconcile: terminate of orphan %s failed: %s", remote.external_id, exc)
        return  # next run retries
    message = f"Orphan {remote.external_id} at {account.name} terminated ({why})" + ("; verified" if verified else "")
    if _record(account, remote.external_id, remote.tag, Action.TERMINATED, message, verified):
        report.terminated.append(remote.external_id)
        if pod is not None:
            pod_event(pod, "reconcile", message, external_id=remote.external_id, verified=verified)


def _check_missing(account: ProviderAccount, adapter, seen: set[str], report: ReconcileReport) -> None:
    """Pods that hold a resource here the listing did not show: confirm with get, then mark."""
    missing = (Pod.objects.filter(provider_account=account, state__in=HELD_STATES).exclude(external_id="")
               .exclude(external_id__in=seen))
    for pod in missing:
        try:
            remote = calls.call_with_timeout(adapter.get, pod.external_id, timeout=calls.attempt_timeout(), what="get")
        except NotFound:
            remote = None
        except ProviderError:
            continue  # unsure: never mark on a failed call
        if remote is not None and remote.state != REMOTE_TERMINATED:
            pod_apply_remote(pod, remote)  # listing lagged; the provider still has it
            continue
        before = pod.state
        pod_vanished(pod)
        if before != PodState.STOPPING:
            _record(account, pod.external_id, str(pod.pk), Action.VANISHED,
                    f"pod {pod.pk} marked failed: its resource vanished", True)
            report.vanished.append(str(pod.pk))


def _abandon_stuck(account: ProviderAccount, adapter, report: ReconcileReport) -> None:
    """Launches whose worker died with nothing at the provider: fail them with that reason."""
    cutoff = clock.now() - stuck_after()
    stuck = Pod.objects.filter(provider_account=account, external_id="",
                               state__in=(PodState.REQUESTED, PodState.PROVISIONING)).filter(
        Q(provisioning_at__lt=cutoff) | Q(provisioning_at__isnull=True, requested_at__lt=cutoff))
    for pod in stuck:
        reason = f"launch at {account.name} {pod.region} never completed (worker lost); nothing was found there"
        if pod_transition(pod, PodState.FAILED, reason, expect=(PodState.REQUESTED, PodState.PROVISIONING),
                          fields={"state_reason": reason[:300]}):
            _record(account, f"pod:{pod.pk}", str(pod.pk), Action.ABANDONED, reason, True)
            report.abandoned.append(str(pod.pk))
            pod_after_end(pod)


def reconcile_all() -> list[ReconcileReport]:
    """Every enabled account, plus disabled ones that still hold pods."""
    ids = set(ProviderAccount.objects.filter(enabled=True).values_list("pk", flat=True))
    ids |= set(Pod.objects.filter(state__in=HELD_STATES, provider_account__isnull=False)
               .values_list("provider_account_id", flat=True))
    reports = [reconcile_account(account_id=str(pk)) for pk in sorted(ids, key=str)]
    _abandon_unplaced()
    return reports


def _abandon_unplaced() -> None:
    """A worker that died between claiming a pod and naming a provider left nothing anywhere."""
    cutoff = clock.now() - stuck_after()
    for pod in Pod.objects.filter(state=PodState.PROVISIONING, provider_account__isnull=True, provisioning_at__lt=cutoff):
        reason = "placement never completed (worker lost); nothing was launched"
        if pod_transition(pod, PodState.FAILED, reason, expect=(PodState.PROVISIONING,), fields={"state_reason": reason}):
            pod_after_end(pod)
