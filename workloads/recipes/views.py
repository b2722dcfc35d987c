"""Pages of the developer journey: recipe catalog, launch form (with live spec and cost
preview), custom recipe authoring, secrets, workload list/detail, clone, relaunch, stop.

Views are thin: access helper first, then a form or a service. One view serves both the full
page and its HTMX fragment (``request.htmx``).
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from providers.selectors import provider_accounts_for_tenant
from provisioner import clock
from provisioner.tables import list_to_return_to, table_response
from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import PROVISION, USE_CREDENTIALS, role_has
from tenants.selectors import projects_for
from workloads.lifecycle.supervision import workload_relaunch, workload_stop
from workloads.models import LIVE_POD_STATES, Lifecycle, RegistryCredential, ScheduledRun, TenantSecret, Workload
from workloads.pods.selectors import pod_cost_so_far

from . import schema
from .catalog import CATEGORIES, ICONS
from .forms import RecipeAuthorForm, SecretForm, WorkloadForm
from .selectors import (
    launch_estimate,
    pinned_recipe_ids,
    recipe_by_slug,
    recipe_search,
    registry_login_preview,
    workload_events,
    workloads_for,
    workloads_with_counts,
)
from .services import (
    declaration_from_workload,
    recipe_author_save,
    recipe_pin_toggle,
    registry_credential_create,
    secret_labels,
    tenant_secret_create,
    workload_declare_and_start,
)
from .tables import WorkloadFilter, WorkloadTable

# --- catalog -------------------------------------------------------------------------------------


@login_required
def recipe_catalog(request: HttpRequest) -> HttpResponse:
    """Cards with search and filters (kept in the URL); ``?recipe=<slug>`` opens its launch form."""
    membership = require_member(request)
    slug = request.GET.get("recipe", "").strip()
    if slug:
        if recipe_by_slug(membership.tenant, slug) is None:
            raise Http404("No such recipe")
        return redirect("workloads:recipe_launch", slug=slug)
    q, category, source = (request.GET.get(k, "").strip() for k in ("q", "category", "source"))
    items = recipe_search(membership.tenant, q=q, category=category, source=source,
                          pinned=pinned_recipe_ids(membership.tenant, request.user))
    for r in items:
        r.icon = ICONS.get(r.category, "</>")
        r.category_label = CATEGORIES.get(r.category, r.category.title())
    ctx = {"recipes": items, "q": q, "category": category, "source": source, "categories": CATEGORIES,
           "here": request.get_full_path()}
    template = "workloads/recipes/partials/cards.html" if request.htmx else "workloads/recipes/catalog.html"
    return render(request, template, ctx)


@login_required
@require_POST
def recipe_pin(request: HttpRequest, slug: str) -> HttpResponse:
    """Pin or unpin a recipe for the member; back to the catalog as it was (its filters kept)."""
    membership = require_member(request)
    recipe = recipe_by_slug(membership.tenant, slug)
    if recipe is None:
        raise Http404("No such recipe")
    pinned = recipe_pin_toggle(tenant=membership.tenant, user=request.user, recipe=recipe)
    messages.success(request, f"{'Pinned' if pinned else 'Unpinned'} {recipe.name}.")
    back = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}) or not back.startswith("/"):
        back = reverse("workloads:recipe_catalog")
    return redirect(back)


# --- launch --------------------------------------------------------------------------------------


def _placement_preview_url() -> str | None:
    """The placement engine's own preview fragment, once it exists (issue 3)."""
    try:
        return reverse("workloads:placement_preview")
    except NoReverseMatch:
        return None


def _launch(request: HttpRequest, version, recipe=None, initial=None) -> HttpResponse:
    membership = require_member(request)
    tenant = membership.tenant
    can_launch = role_has(membership.role, PROVISION)
    projects = projects_for(membership, PROVISION) if can_launch else None  # only projects granted for launching
    if request.method == "POST":
        if not can_launch:
            raise PermissionDenied("Your role cannot launch workloads.")
        form = WorkloadForm(request.POST, tenant=tenant, version=version, projects=projects)
        if form.is_valid():
            workload, pods = workload_declare_and_start(tenant=tenant, owner=request.user, declaration=form.declaration)
            if workload.lifecycle == Lifecycle.SCHEDULED:
                messages.success(request, f"Scheduled {workload.name} ({workload.schedule_cron} UTC).")
                return redirect("workloads:workload_detail", pk=workload.pk)
            messages.success(request, f"Launching {workload.name}…")
            if len(pods) == 1:
                return redirect("workloads:pod_detail", pk=pods[0].pk)
            return redirect("workloads:workload_detail", pk=workload.pk)
    else:
        form = WorkloadForm(tenant=tenant, version=version, initial=initial, projects=projects)
    has_providers = provider_accounts_for_tenant(tenant).filter(enabled=True).exists()
    preview_url = (reverse("workloads:recipe_preview", kwargs={"slug": recipe.slug}) if recipe
                   else reverse("workloads:launch_preview"))
    placement_url = _placement_preview_url()
    login = registry_login_preview(tenant, version)
    if placement_url and login:  # the placement preview leaves out providers that cannot log in there
        placement_url += "?" + urlencode({"registry_host": login.host})
    return render(request, "workloads/recipes/launch.html", {
        "form": form, "recipe": recipe, "version": version, "can_launch": can_launch, "has_providers": has_providers,
        "preview_url": preview_url, "placement_preview_url": placement_url,
        "icon": ICONS.get(recipe.category, "</>") if recipe else "IMG",
    })


@login_required
def recipe_launch(request: HttpRequest, slug: str) -> HttpResponse:
    """A recipe's page: what it is, its typed parameter form and the live preview."""
    membership = require_member(request)
    recipe = recipe_by_slug(membership.tenant, slug)
    if recipe is None or recipe.latest_version is None:
        raise Http404("No such recipe")
    if recipe.slug == "custom" and recipe.builtin and request.GET.get("run") != "1":
        return redirect("workloads:recipe_author")
    return _launch(request, recipe.latest_version, recipe=recipe, initial=_clone_initial(request))


@login_required
def launch(request: HttpRequest) -> HttpResponse:
    """Raw image launch (no recipe): the same declaration form without parameters."""
    return _launch(request, None, initial=_clone_initial(request))


def _clone_initial(request: HttpRequest) -> dict | None:
    clone = request.GET.get("clone")
    if not clone:
        return None
    workload = get_for_tenant_or_404(request, Workload, PROVISION, pk=clone)
    return declaration_from_workload(workload)


def _preview(request: HttpRequest, version) -> HttpResponse:
    """HTMX fragment: the rendered container spec (read-only), errors, and the cost estimate."""
    membership = require_member(request)
    tenant = membership.tenant
    form = WorkloadForm(request.GET, tenant=tenant, version=version,
                        projects=projects_for(membership, PROVISION) if role_has(membership.role, PROVISION) else None)
    ctx: dict = {"form": form, "spec_text": None, "estimate": None, "placement_preview_url": _placement_preview_url()}
    if form.is_valid():
        ctx["spec_text"] = schema.spec_as_text(schema.spec_preview(form.spec, secret_labels(tenant)))
    # a private image: say where the login goes, and placement leaves out providers that cannot log in
    login = registry_login_preview(tenant, version, (form.spec or {}).get("image", ""))
    ctx["registry_login"] = login
    d = form.cleaned_data if hasattr(form, "cleaned_data") else {}
    if d.get("gpu_class") and d.get("gpu_count") and d.get("gpu_class") != "custom":
        volumes = form.declaration.volumes if form.declaration else []
        ctx["estimate"] = launch_estimate(
            tenant, project_id=getattr(d.get("project"), "pk", None), gpu_class=d["gpu_class"], gpu_count=d["gpu_count"],
            acceptable=d.get("acceptable_gpu_classes") or [], interruption_tolerant=d.get("interruption_tolerant", False),
            countries=d.get("countries") or [], regions=d.get("regions") or [], max_price_per_hour=d.get("max_price_per_hour"),
            volume_kinds=[v["kind"] for v in volumes or []], lifecycle=d.get("lifecycle") or "job",
            max_duration_minutes=d.get("max_duration_minutes"), replicas=d.get("replicas") or 1,
            registry_host=login.host if login else "", spot_bid_margin_pct=d.get("spot_bid_margin_pct"))
    ctx["custom_type"] = d.get("gpu_class") == "custom"
    return render(request, "workloads/recipes/partials/preview.html", ctx)


@login_required
def recipe_preview(request: HttpRequest, slug: str) -> HttpResponse:
    recipe = recipe_by_slug(require_member(request).tenant, slug)
    if recipe is None or recipe.latest_version is None:
        raise Http404("No such recipe")
    return _preview(request, recipe.latest_version)


@login_required
def launch_preview(request: HttpRequest) -> HttpResponse:
    return _preview(request, None)


# --- authoring and secrets -------------------------------------------------------------------------


@login_required
def recipe_author(request: HttpRequest, slug: str | None = None) -> HttpResponse:
    """Create a custom recipe, or edit one (each saved change is a new version)."""
    membership = require_member(request, PROVISION)
    tenant = membership.tenant
    recipe = None
    if slug is not None:
        recipe = get_for_tenant_or_404(request, tenant.recipes.all(), PROVISION, slug=slug)
    initial = _author_initial(recipe) if recipe else None
    form = RecipeAuthorForm(request.POST or None, tenant=tenant, editing=recipe is not None, initial=initial)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        content = form.content
        try:
            editing = recipe is not None
            recipe, number = recipe_author_save(
                tenant=tenant, user=request.user, recipe=recipe, slug=d.get("slug") or (recipe.slug if recipe else ""),
                name=d["name"], description=d.get("description", ""), category=d.get("category", "custom"),
                content=content, ngc_api_key=d.get("ngc_api_key") or "")
            verb = "saved" if editing else "created"
            messages.success(request, f"Recipe {d['name']} {verb} (version {number}).")
            return redirect("workloads:recipe_launch", slug=recipe.slug)
        except schema.RecipeError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, str(exc))
    return render(request, "workloads/recipes/author.html", {"form": form, "recipe": recipe})


def _author_initial(recipe) -> dict:
    v = recipe.latest_version
    tpl, d = v.template or {}, v.defaults or {}
    import json
    import shlex

    return {"name": recipe.name, "slug": recipe.slug, "description": recipe.description, "category": recipe.category,
            "image": v.image, "command": shlex.join(tpl.get("command") or []),
            "args": shlex.join([a for a in tpl.get("args") or [] if isinstance(a, str)]),
            "env": "\n".join(f"{k}={val}" for k, val in (tpl.get("env") or {}).items()),
            "ports": schema.format_ports(tpl.get("ports") or []), "volumes": schema.format_volumes(tpl.get("volumes") or []),
            "parameters": json.dumps(v.parameters or [], indent=1), "gpu_class": d.get("gpu_class"),
            "gpu_count": d.get("gpu_count"), "min_gpu_count": d.get("min_gpu_count"), "max_gpu_count": d.get("max_gpu_count"),
            "lifecycle": d.get("lifecycle"), "max_duration_minutes": d.get("max_duration_minutes"),
            "registry_credential": d.get("registry_credential_id")}


@login_required
def secrets_page(request: HttpRequest) -> HttpResponse:
    """Names of the organization's secrets and registry logins; values are write-only."""
    membership = require_member(request, USE_CREDENTIALS)
    tenant = membership.tenant
    form = SecretForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        if d["kind"] == "registry":
            registry_credential_create(tenant=tenant, name=d["name"], secret=d["value"], registry=d.get("registry") or "nvcr.io",
                                       username=d.get("username") or "$oauthtoken")
        else:
            tenant_secret_create(tenant=tenant, user=request.user, name=d["name"], value=d["value"])
        messages.success(request, f"Stored {d['name']}. Its value will not be shown again.")
        return redirect("workloads:secrets")
    return render(request, "workloads/recipes/secrets.html", {
        "form": form, "secrets": TenantSecret.objects.for_tenant(tenant).only("name", "created_at"),
        "registry_logins": RegistryCredential.objects.for_tenant(tenant).only("name", "registry", "username", "created_at"),
    })


# --- workloads -------------------------------------------------------------------------------------


@login_required
def workload_list(request: HttpRequest) -> HttpResponse:
    """Workloads with their pod counts: filters, sorting and pages in the URL; Stop and Relaunch
    from a row, each after a confirmation, back to the same list."""
    membership = require_member(request)
    workloads = WorkloadFilter(request.GET, queryset=workloads_for(membership), request=request)
    return table_response(request, "workloads/recipes/workload_list.html", WorkloadTable(workloads.qs), workloads)


@login_required
def workload_detail(request: HttpRequest, pk) -> HttpResponse:
    """The declaration, its rendered spec, every pod it had, its scheduled runs and a timeline."""
    workload = get_for_tenant_or_404(request, workloads_with_counts(request.tenant), pk=pk)
    pods = list(workload.pods.select_related("provider_account").order_by("-requested_at"))
    for p in pods:
        p.cost_so_far = pod_cost_so_far(p)
    spec_text = schema.spec_as_text(schema.spec_preview(workload.container_spec or {"image": workload.image, "command": [],
                                                                                      "args": [], "env": {}},
                                                          secret_labels(workload.tenant)))
    next_fire = None
    if workload.lifecycle == Lifecycle.SCHEDULED and workload.schedule_cron and workload.state == Workload.State.ACTIVE:
        from workloads.lifecycle.scheduling import next_fire_after

        next_fire = next_fire_after(workload.schedule_cron, clock.now())
    runs = list(workload.scheduled_runs.all()[:50])
    has_live = any(p.state in LIVE_POD_STATES for p in pods)
    ctx = {"workload": workload, "pods": pods, "events": workload_events(workload), "spec_text": spec_text,
           "runs": runs, "next_fire": next_fire, "has_live": has_live, "now": clock.now(),
           # the pods/runs/events part polls itself while anything of it can still change
           "live": has_live or any(r.state in (ScheduledRun.State.STARTED, ScheduledRun.State.QUEUED) for r in runs),
           "total_cost": sum((p.cost_so_far for p in pods), start=0)}
    template = "workloads/recipes/partials/workload_live.html" if request.htmx else "workloads/recipes/workload_detail.html"
    return render(request, template, ctx)


@login_required
def workload_clone(request: HttpRequest, pk) -> HttpResponse:
    """Open the launch form pre-filled from this workload (same recipe, its latest version)."""
    workload = get_for_tenant_or_404(request, Workload, PROVISION, pk=pk)
    if workload.recipe_version_id:
        url = reverse("workloads:recipe_launch", kwargs={"slug": workload.recipe_version.recipe.slug})
        if workload.recipe_version.recipe.slug == "custom":
            url += "?run=1&"
        else:
            url += "?"
    else:
        url = reverse("workloads:launch") + "?"
    return redirect(f"{url}clone={workload.pk}")


@login_required
@require_POST
def workload_relaunch_view(request: HttpRequest, pk) -> HttpResponse:
    workload = get_for_tenant_or_404(request, Workload, PROVISION, pk=pk)
    try:
        pods = workload_relaunch(workload=workload)
    except ValueError as exc:
        messages.error(request, str(exc))
        return redirect(list_to_return_to(request, reverse("workloads:workload_list"))
                        or reverse("workloads:workload_detail", args=[workload.pk]))
    messages.success(request, f"Relaunched {workload.name}.")
    if back := list_to_return_to(request, reverse("workloads:workload_list")):
        return redirect(back)
    if len(pods) == 1:
        return redirect("workloads:pod_detail", pk=pods[0].pk)
    return redirect("workloads:workload_detail", pk=workload.pk)


@login_required
@require_POST
def workload_stop_view(request: HttpRequest, pk) -> HttpResponse:
    workload = get_for_tenant_or_404(request, Workload, PROVISION, pk=pk)
    n = workload_stop(workload=workload, reason=f"Stopped by {request.user.username}", enqueue=True)
    messages.success(request, f"Stopped {workload.name}" + (f"; terminating {n} pod{'s' if n != 1 else ''}." if n else "."))
    return redirect(list_to_return_to(request, reverse("workloads:workload_list"))
                    or reverse("workloads:workload_detail", args=[workload.pk]))
