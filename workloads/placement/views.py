"""Placement preview (the launch forms' live "where will this go, and why") and the move page.

The preview is a GET endpoint any launch form can point ``hx-get`` at with ``hx-include`` of
its fields; it reads only our database (offers, blocks, launch history, the spend gate).
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from providers.adapters.image_registry import normalize_host
from providers.catalog import country_codes
from providers.selectors import provider_accounts_for_tenant
from provisioner import clock
from provisioner.inputs import finite_decimal, split_list
from tenants.access import get_for_tenant_or_404, project_ids_for, require_member, require_project
from tenants.permissions import PROVISION
from tenants.selectors import projects_for_tenant
from workloads.models import PodState, Workload
from workloads.recipes.schema import RecipeError, parse_volumes

from .bids import bid_for_offer
from .engine import PlacementSpec, placement_for, placement_spec
from .move import MoveError, MoveNeedsConfirmation, move_preview, target_from_params, volume_warning, workload_move


def _int(value: str | None, default: int | None) -> int | None:
    try:
        return int(value) if value not in (None, "") else default
    except ValueError:
        return default


def spec_from_params(params) -> PlacementSpec:
    """A placement spec from a launch form's GET parameters, read by the same parsers as the
    launch form (lenient: what the form would refuse is ignored here)."""
    many = params.getlist("acceptable_gpu_classes") if hasattr(params, "getlist") else [params.get("acceptable_gpu_classes", "")]
    tolerant = (params.get("interruption_tolerant") or "").lower() in ("on", "true", "1", "yes")
    # finite only: Decimal() itself takes NaN, sNaN, Infinity and 1e999999
    max_price = finite_decimal(params.get("max_price_per_hour")) if params.get("max_price_per_hour") else None
    try:
        volume_kinds = [v["kind"] for v in parse_volumes(params.get("volumes") or "")]
    except RecipeError:
        volume_kinds = []
    return placement_spec(
        gpu_class=params.get("gpu_class") or "A100-80", acceptable=[c for v in many for c in split_list(v)],
        gpu_count=max(1, _int(params.get("gpu_count"), 1) or 1), interruption_tolerant=tolerant,
        countries=country_codes(params.get("countries")), regions=split_list(params.get("regions")),
        max_price_per_hour=max_price, volume_kinds=volume_kinds, lifecycle=params.get("lifecycle") or "job",
        max_duration_minutes=_int(params.get("max_duration_minutes"), None),
        registry_host=normalize_host(params.get("registry_host") or "")[:253],
        bid_margin_pct=_margin(params.get("spot_bid_margin_pct")),
    )


def _margin(value: str | None) -> int | None:
    margin = _int(value, None)
    return None if margin is None else max(0, min(margin, 300))  # the form's bounds


@login_required
def placement_preview(request: HttpRequest) -> HttpResponse:
    """The chosen offer, its price, why it won, the next alternatives and the exclusions."""
    membership = require_member(request, PROVISION)
    tenant = membership.tenant
    if not project_ids_for(membership, PROVISION):
        raise PermissionDenied("You may not launch in any project of this organization.")
    project = None
    if request.GET.get("project"):
        try:  # restricted to the tenant: another organization's project id matches nothing
            project = projects_for_tenant(tenant).filter(pk=request.GET["project"]).first()
        except (ValueError, ValidationError):
            project = None
        if project is not None:  # one of ours: the member must hold the launch grant on it
            require_project(membership, PROVISION, project.pk)
    spec = spec_from_params(request.GET)
    result = placement_for(tenant_id=tenant.pk, project_id=project.pk if project else None, spec=spec,
                           now=clock.now(), limit=4)
    bid = (bid_for_offer(result.chosen.offer, margin_pct=spec.bid_margin_pct, ceiling_usd=spec.max_price_per_hour)
           if result.chosen else None)
    ctx = {"result": result, "spec": spec, "chosen": result.chosen, "alternatives": result.candidates[1:4],
           "exclusions": result.exclusions[:8], "bid": bid}
    template = "workloads/partials/placement_preview.html" if request.htmx else "workloads/placement_preview.html"
    return render(request, template, ctx)


@login_required
def workload_move_view(request: HttpRequest, pk) -> HttpResponse:
    """Move a running workload elsewhere: GET previews where it would land, POST moves."""
    workload = get_for_tenant_or_404(request, Workload, PROVISION, pk=pk)
    params = request.POST if request.method == "POST" else request.GET
    target = target_from_params(params)
    accounts = provider_accounts_for_tenant(request.tenant).filter(enabled=True)
    allowed_ids = {str(a.pk) for a in accounts}
    target.provider_account_ids = [a for a in target.provider_account_ids if a in allowed_ids]  # restricted
    warning = volume_warning(workload)
    error = ""
    if request.method == "POST":
        try:
            pods = workload_move(workload=workload, target=target, user=request.user,
                                 confirm_data_loss=params.get("confirm_data_loss") == "on")
        except MoveNeedsConfirmation as exc:
            error = f"{exc} Tick the box to confirm."
        except MoveError as exc:
            error = str(exc)
        else:
            if workload.lifecycle != "service":  # the worker stops it (verified) and starts it there
                messages.success(request, "Move started: the job stops (once the provider confirms it) and starts "
                                          "again at the new place; this page follows it.")
                return redirect("workloads:workload_detail", pk=workload.pk)
            messages.success(request, "Move started: the new pod comes up before the old one goes down.")
            return redirect("workloads:pod_detail", pk=pods[0].pk)
    preview = None if target.empty else move_preview(workload=workload, target=target)
    running = workload.pods.filter(state=PodState.RUNNING).select_related("provider_account")
    return render(request, "workloads/workload_move.html", {
        "workload": workload, "target": target, "accounts": accounts, "warning": warning, "error": error,
        "preview": preview, "running": running, "countries": ", ".join(target.countries),
        "regions": ", ".join(target.regions),
    })
