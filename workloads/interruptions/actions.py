"""Acting on an interruption notice: the replacement is placed before the provider takes the pod.

The replacement is an ordinary re-placement (``services.pod_request`` → the provisioning task →
placement and ``failover.launch_with_failover``): the same placement rules, spot first unless the
workload's escalation rule (``max_interruptions_before_on_demand``, counting this interruption)
says on-demand. The old pod is left alone: a service keeps serving on it until the provider ends
it (as during a move, two pods serve for a while), a job gets its on-notice command through the
agent. When the provider does end it, ``pod_replace`` finds the live replacement and places
nothing more; billing stops at that end, as for any interruption.
"""

from __future__ import annotations

from django.db import transaction

from workloads.lifecycle.services import pod_request, workload_interruptions
from workloads.lifecycle.transitions import pod_event
from workloads.models import LIVE_POD_STATES, Lifecycle, Pod, PodState, Workload

from .notices import INTERRUPTING_KINDS

NOTICE = "notice"


def notice_act(*, pod_id: str, enqueue: bool = True) -> Pod | None:
    """Place the replacement of a pod under notice. Idempotent: returns the replacement placed
    now, or None (already placed, the pod ended, or the workload does not want one)."""
    with transaction.atomic():
        pod = Pod.objects.select_related("workload").filter(pk=pod_id).first()
        if pod is None or pod.state not in LIVE_POD_STATES:
            return None
        if (pod.interruption_notice or {}).get("kind") not in INTERRUPTING_KINDS:
            return None
        workload = pod.workload
        wanted = workload.lifecycle == Lifecycle.SERVICE or workload.restart_on_interruption
        if workload.state != Workload.State.ACTIVE or not wanted:
            return None
        Workload.objects.select_for_update().filter(pk=workload.pk).first()  # serialize re-placements
        if Pod.objects.filter(replaces=pod, state__in=LIVE_POD_STATES).exists():
            return None
        override = {k: v for k, v in (pod.placement_override or {}).items() if k not in ("avoid", "purpose")}
        override["purpose"] = NOTICE
        # this interruption counts already: the escalation to on-demand sees it coming
        interruptions = workload_interruptions(workload) + 1
        new = pod_request(workload=workload, replica_index=pod.replica_index, enqueue=enqueue, replaces=pod,
                          placement_override=override, interruption_count=interruptions)
        on_demand = workload.interruption_tolerant and interruptions >= workload.max_interruptions_before_on_demand
        keeps = ("this pod keeps serving until the provider ends it" if workload.lifecycle == Lifecycle.SERVICE
                 else "this job runs on until the provider ends it")
        pod_event(pod, "replace", f"Interruption notice: replacement {str(new.pk)[:8]} placed at once; {keeps}"
                                  f"{' (on-demand from now on)' if on_demand else ''}", replacement=str(new.pk))
    return new


def replacement_of(pod: Pod) -> Pod | None:
    """The pod placed because of ``pod``'s notice (or its re-placement), newest first."""
    return Pod.objects.filter(replaces=pod).order_by("-requested_at").first()


def survived_without_downtime(workload: Workload) -> int:
    """Interruptions of ``workload`` with a notice whose replacement ran before the old pod ended."""
    n = 0
    for old in workload.pods.filter(state=PodState.INTERRUPTED).exclude(interruption_notice={}):
        new = replacement_of(old)
        if new is not None and new.started_at is not None and old.ended_at and new.started_at <= old.ended_at:
            n += 1
    return n
