"""The workload's cut-over settings (readiness check and drain), edited from the workload page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from tenants.access import get_for_tenant_or_404
from tenants.permissions import PROVISION
from workloads.models import Workload

from . import services
from .forms import CutoverForm


@login_required
@require_POST
def cutover_edit(request: HttpRequest, pk) -> HttpResponse:
    workload = get_for_tenant_or_404(request, Workload, PROVISION, pk=pk)
    if not services.is_routed(workload):
        raise Http404("jobs have no gateway route")
    form = CutoverForm(request.POST, instance=services.endpoint_for(workload))
    if form.is_valid():
        services.cutover_settings_save(workload=workload, form=form)
        messages.success(request, "Cut-over settings saved; they apply to the next pod change.")
    else:
        errors = "; ".join(f"{form.fields[k].label or k}: {' '.join(v)}" for k, v in form.errors.items())
        messages.error(request, f"Not saved: {errors}")
    return redirect("workloads:workload_detail", pk=workload.pk)
