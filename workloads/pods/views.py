from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from provisioner import clock
from provisioner.tables import list_to_return_to, table_response
from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import PROVISION
from workloads.lifecycle import services
from workloads.models import LIVE_POD_STATES, Pod, PodState

from .logs import TAIL_LINES, pod_logs, provider_has_logs
from .phases import phase_widths, pod_phases
from .selectors import pod_cost_so_far, pods_for, pods_for_tenant
from .tables import PodFilter, PodTable


@login_required
def pod_list(request: HttpRequest) -> HttpResponse:
    """Sortable, filterable, paginated pods; every filter is in the URL (kept on reload and by the
    3 s refresh, which asks for the same URL and gets the table alone)."""
    membership = require_member(request)
    pods = PodFilter(request.GET, queryset=pods_for(membership), request=request)
    return table_response(request, "workloads/pod_list.html", PodTable(pods.qs), pods)


# A state change is due while a pod boots or stops: the page asks twice a second then, so it shows
# the change within a second of our database (issue 18 §2); a steady pod every 2 s.
TRANSITION_POLL, STEADY_POLL = "500ms", "2s"


def live_poll_interval(pod) -> str:
    """How often the pod page's live panel asks again (an htmx ``every`` interval)."""
    in_transition = pod.state in (PodState.REQUESTED, PodState.PROVISIONING, PodState.STOPPING)
    return TRANSITION_POLL if in_transition else STEADY_POLL


@login_required
def pod_detail(request: HttpRequest, pk) -> HttpResponse:
    """Full page, or (for htmx polls) just the live panel. Reads our DB, never the provider."""
    pod = get_for_tenant_or_404(request, pods_for_tenant(request.tenant), pk=pk)
    now = clock.now()
    phases = pod_phases(pod, now=now)
    ctx = {"pod": pod, "cost_so_far": pod_cost_so_far(pod), "events": pod.events.all()[:200],
           "live": pod.state in LIVE_POD_STATES, "now": now, "phases": list(zip(phases, phase_widths(phases), strict=True)),
           "poll": live_poll_interval(pod), "has_logs": provider_has_logs(pod), "tail_lines": TAIL_LINES}
    template = "workloads/partials/pod_live.html" if request.htmx else "workloads/pod_detail.html"
    return render(request, template, ctx)


@login_required
@require_POST
def pod_terminate(request: HttpRequest, pk) -> HttpResponse:
    pod = get_for_tenant_or_404(request, Pod, PROVISION, pk=pk)
    if services.pod_terminate_request(pod=pod, user=request.user):
        messages.success(request, f"Termination of {pod.workload.name} requested.")
    # the pod list's row action returns to the list with its filters; nothing off-site
    return redirect(list_to_return_to(request, reverse("workloads:pod_list"))
                    or reverse("workloads:pod_detail", args=[pod.pk]))


@login_required
def pod_logs_view(request: HttpRequest, pk) -> HttpResponse:
    """The last lines of the pod's output, read from its provider now (htmx fragment of the Logs
    card). Only members who may see the pod's project: another organization's pod or a revoked
    project grant is a 404."""
    membership = require_member(request, "view")
    pod = get_for_tenant_or_404(request, pods_for(membership), pk=pk)
    return render(request, "workloads/partials/pod_logs.html",
                  {"pod": pod, "logs": pod_logs(pod, tail_lines=TAIL_LINES), "tail_lines": TAIL_LINES, "now": clock.now(),
                   "loaded": True, "has_logs": True})
