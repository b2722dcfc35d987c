"""Provider-side notices on Kubernetes (and CoreWeave): what the cluster says before a pod goes.

Two signals, read by the sync with the pod:

* the pod's ``DisruptionTarget`` condition while it still runs out its grace period (handled in
  ``kubernetes.KubernetesAdapter._remote``: the deadline is ``metadata.deletionTimestamp``);
* a termination taint on the pod's node, put there before the node is drained. Only taints
  documented as "this node is going away" count; a plain cordon
  (``node.kubernetes.io/unschedulable``, ``spec.unschedulable``) says only that nothing new is
  scheduled there, and ``node.kubernetes.io/out-of-service`` is set after the node is already
  down (Kubernetes docs, "Well-Known Labels, Annotations and Taints"), so neither is a notice.
  A taint carries no deadline (``timeAdded`` is written for NoExecute taints only: Kubernetes API
  reference, Taint), so these notices have none; the pod's own DisruptionTarget, once the drain
  reaches it, brings the deadline.
"""

from __future__ import annotations

from typing import Any

from .base import ProviderNotice

# taint key -> (notice kind, whose documentation defines it)
TERMINATION_TAINTS: dict[str, tuple[str, str]] = {
    # GKE, "Manage GKE node disruption for GPUs and TPUs" (graceful termination): the maintenance
    # handler GKE runs on GPU and Spot nodes taints a node it is about to terminate
    # cloud.google.com/impending-node-termination:NoSchedule, then drains it (kubernetes-mixin's
    # KubeNodeUnreachable alert excludes the same key as a node going away on purpose)
    "cloud.google.com/impending-node-termination": ("terminate", "GKE"),
    # Karpenter docs, "Disruption" ("Control Flow"): the node is tainted karpenter.sh/disrupted:NoSchedule
    # before it is drained and its NodeClaim deleted (spot interruption, consolidation, drift, expiry);
    # releases before v1 (Karpenter v0.36 docs, same section) used karpenter.sh/disruption:NoSchedule
    "karpenter.sh/disrupted": ("terminate", "Karpenter"),
    "karpenter.sh/disruption": ("terminate", "Karpenter (before v1)"),
    # AWS Node Termination Handler README, configuration ``TAINT_NODE``: the taints it sets when an
    # interruption event occurs, then it cordons and drains the node
    "aws-node-termination-handler/spot-itn": ("preempt", "AWS Node Termination Handler"),
    "aws-node-termination-handler/scheduled-maintenance": ("stop", "AWS Node Termination Handler"),
    "aws-node-termination-handler/asg-lifecycle-termination": ("terminate", "AWS Node Termination Handler"),
    # a rebalance recommendation: elevated risk, nothing is drained for it
    "aws-node-termination-handler/rebalance-recommendation": ("rebalance", "AWS Node Termination Handler"),
}


def node_notice(node: dict[str, Any] | None) -> ProviderNotice | None:
    """The notice a node's taints give its pods, or None. A terminating taint wins over a
    rebalance recommendation."""
    found = []
    for taint in ((node or {}).get("spec") or {}).get("taints") or []:
        known = TERMINATION_TAINTS.get(str(taint.get("key") or ""))
        if known is None:
            continue
        kind, who = known
        name = ((node or {}).get("metadata") or {}).get("name", "")
        found.append(ProviderNotice(kind, None, source=f"node taint {taint['key']}",
                                    detail=f"{who} tainted node {name} {taint['key']}:{taint.get('effect', '')}"[:200]))
    return min(found, key=lambda n: not n.interrupting, default=None)
