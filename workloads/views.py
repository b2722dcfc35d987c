from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from providers.selectors import provider_accounts_for_tenant
from provisioner import clock
from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import PROVISION

from . import services
from .forms import LaunchForm
from .models import LIVE_POD_STATES, Pod, PodState, Workload
from .selectors import pod_cost_so_far, pods_for_tenant, workloads_for_tenant


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
    from .tasks import terminate_pod

    if pod.state in LIVE_POD_STATES or pod.state == PodState.STOPPED:
        terminate_pod.delay(str(pod.pk), f"Terminated by {request.user.username}")
        messages.success(request, "Termination requested.")
    return redirect("workloads:pod_detail", pk=pod.pk)


@login_required
def launch(request: HttpRequest) -> HttpResponse:
    membership = require_member(request, PROVISION)
    tenant = membership.tenant
    form = LaunchForm(request.POST or None, tenant=tenant)
    has_providers = provider_accounts_for_tenant(tenant).filter(enabled=True).exists()
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        workload = services.workload_create(
            tenant=tenant, project=d["project"], owner=request.user, name=d["name"], image=d["image"],
            gpu_class=d["gpu_class"], gpu_count=d["gpu_count"], lifecycle=d["lifecycle"],
            interruption_tolerant=d["interruption_tolerant"],
        )
        pods = services.workload_launch(workload=workload)
        messages.success(request, f"Launching {workload.name}…")
        return redirect("workloads:pod_detail", pk=pods[0].pk)
    return render(request, "workloads/launch.html", {"form": form, "has_providers": has_providers})


@login_required
def workload_list(request: HttpRequest) -> HttpResponse:
    membership = require_member(request)
    return render(request, "workloads/workload_list.html", {"workloads": workloads_for_tenant(membership.tenant)[:200]})


@login_required
def workload_detail(request: HttpRequest, pk) -> HttpResponse:
    workload = get_for_tenant_or_404(request, Workload, pk=pk)
    pods = list(workload.pods.select_related("provider_account").all())
    for p in pods:
        p.cost_so_far = pod_cost_so_far(p)
    return render(request, "workloads/workload_detail.html", {"workload": workload, "pods": pods})
