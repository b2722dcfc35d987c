from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from provisioner import clock
from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import PROVISION

from . import services
from .models import LIVE_POD_STATES, Pod
from .selectors import pod_cost_so_far, pods_for_tenant


@login_required
def pod_list(request: HttpRequest) -> HttpResponse:
    membership = require_member(request)
    pods = list(pods_for_tenant(membership.tenant)[:200])
    for p in pods:
        p.cost_so_far = pod_cost_so_far(p)
    template = "workloads/partials/pod_rows.html" if request.htmx else "workloads/pod_list.html"
    return render(request, template, {"pods": pods, "now": clock.now()})


@login_required
def pod_detail(request: HttpRequest, pk) -> HttpResponse:
    """Full page, or (for htmx polls) just the live panel. Reads our DB, never the provider."""
    pod = get_for_tenant_or_404(request, pods_for_tenant(request.tenant), pk=pk)
    ctx = {"pod": pod, "cost_so_far": pod_cost_so_far(pod), "events": pod.events.all()[:200],
           "live": pod.state in LIVE_POD_STATES, "now": clock.now()}
    template = "workloads/partials/pod_live.html" if request.htmx else "workloads/pod_detail.html"
    return render(request, template, ctx)


@login_required
@require_POST
def pod_terminate(request: HttpRequest, pk) -> HttpResponse:
    pod = get_for_tenant_or_404(request, Pod, PROVISION, pk=pk)
    if services.pod_terminate_request(pod=pod, user=request.user):
        messages.success(request, "Termination requested.")
    return redirect("workloads:pod_detail", pk=pod.pk)
