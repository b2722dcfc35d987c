"""The gateway's answers to the workloads hooks (``workloads.signals``)."""

from __future__ import annotations

from django.dispatch import receiver

from workloads.models import Workload
from workloads.signals import pod_changed, retire_gate, retire_requested

from . import services


@receiver(pod_changed)
def on_pod_changed(sender, *, pod_id, workload_id, state, **kwargs) -> None:
    """Every pod change of a routed workload moves its cut-over along, in the worker."""
    if not services.enabled() or not Workload.objects.filter(
            pk=workload_id, lifecycle__in=services.ROUTED_LIFECYCLES).exists():
        return  # jobs: nothing to route, no task sent
    from .tasks import advance_workload

    advance_workload.delay(str(workload_id))


@receiver(retire_gate)
def hold_retirement(sender, *, new, old, **kwargs) -> bool:
    return services.may_retire(new=new, old=old)


@receiver(retire_requested)
def drain_before_retiring(sender, *, pod_id, reason, **kwargs) -> bool:
    return services.drain_then_terminate(pod_id=pod_id, reason=reason)
