"""Reads for the pages: a workload's stable URL and where each of its pods stands in the route."""

from __future__ import annotations

from dataclasses import dataclass, field

from workloads.models import Workload

from .models import Backend, ServiceEndpoint
from .services import enabled, is_routed, stable_url


@dataclass(frozen=True)
class EndpointView:
    url: str
    private: bool
    readiness: str  # in words
    drain_seconds: int
    pods: dict[str, str] = field(default_factory=dict)  # pod id -> where it stands, in words
    form: object = None  # the cut-over settings form, filled with the current values


def endpoint_view(workload: Workload) -> EndpointView | None:
    """None for a workload the gateway does not route (a job, or the gateway is off)."""
    if not enabled() or not is_routed(workload):
        return None
    endpoint = ServiceEndpoint.objects.filter(workload=workload).first()
    if endpoint is None:
        return None
    readiness = (f"GET {endpoint.ready_path} → {endpoint.ready_status} within {endpoint.ready_timeout_seconds:g} s"
                 if endpoint.ready_path else "TCP connect to the first HTTP port")
    pods = {str(pod_id): Backend.State(state).label
            for pod_id, state in Backend.objects.filter(workload=workload).values_list("pod_id", "state")}
    from .forms import CutoverForm

    return EndpointView(url=stable_url(endpoint), private=not workload.public_ingress, form=CutoverForm(instance=endpoint),
                        readiness=f"{readiness}; a replacement not ready within {endpoint.ready_deadline_seconds} s "
                                  "is rolled back", drain_seconds=endpoint.drain_seconds, pods=pods)
