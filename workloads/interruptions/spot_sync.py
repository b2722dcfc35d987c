"""Spot pods are checked more often than on-demand ones, so an interruption without a notice
(RunPod, Vast.ai, Lambda, the Sandbox) is seen within seconds, and a provider-side notice (the
Sandbox's) as soon as it is published.

One ``list_pods`` call per account per tick (``workloads.sync_spot_pods``, every
``SPOT_SYNC_SECONDS`` = 3 s, i.e. 20 calls a minute per account with live spot pods: within the
providers' published limits); a pod missing from the list is asked for by itself (its ``get``
tells a vanished resource from an ended one). On-demand pods stay on the 30 s sync.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from providers.adapters.base import ProviderError
from providers.models import ProviderAccount
from workloads.lifecycle import calls
from workloads.lifecycle.services import pod_apply_remote, pod_refresh
from workloads.models import Pod, PodState

logger = logging.getLogger(__name__)

SPOT_SYNC_SECONDS = 3
_SYNCED = (PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPING)


def spot_pods_sync() -> int:
    """Sync every live spot pod with one list call per account. Returns the pods looked at."""
    by_account: dict = defaultdict(list)
    for pod in Pod.objects.filter(spot=True, state__in=_SYNCED).exclude(external_id="").select_related("provider_account"):
        by_account[pod.provider_account_id].append(pod)
    accounts = {a.pk: a for a in ProviderAccount.objects.filter(pk__in=list(by_account))}
    n = 0
    for account_id, pods in by_account.items():
        adapter = calls.adapter(accounts[account_id])
        try:
            listed = calls.call_with_timeout(adapter.list_pods, timeout=calls.attempt_timeout(), what="spot sync")
        except ProviderError as exc:
            logger.warning("spot sync of account %s failed: %s", account_id, exc)
            continue
        remotes = {r.external_id: r for r in listed}
        for pod in pods:
            remote = remotes.get(pod.external_id)
            if remote is None:
                pod_refresh(pod_id=str(pod.pk), adapter=adapter)
            else:
                pod_apply_remote(pod, remote)
            n += 1
    return n
