from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from providers.models import ProviderAccount
from provisioner import clock
from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import PROVISION
from tenants.selectors import projects_for_tenant
from workloads.lifecycle import services
from workloads.models import LIVE_POD_STATES, Pod, PodState

from .listing import STATUS_FILTERS, PodListQuery, phase_widths, pod_page, pod_phases
from .selectors import pod_cost_so_far, pods_for_tenant


@login_required
def pod_list(request: HttpRequest) -> HttpResponse:
    """Sortable, filterable, paginated pods; every filter is in the URL (kept on reload and by the
    3 s refresh, which asks for the same URL)."""
    membership = require_member(request)
    tenant = membership.tenant
    query = PodListQuery.from_get(request.GET)
    page = pod_page(pods_for_tenant(tenant), query, request.GET.get("page"))
    for p in page.object_list:
        p.cost_so_far = pod_cost_so_far(p)
    params = request.GET.copy()
    params.pop("page", None)
    ctx = {"pods": page.object_list, "page": page, "query": query, "now": clock.now(),
           "filter_qs": params.urlencode(), "list_url": request.get_full_path(),
           "sort_links": _sort_links(params, query.sort), "status_choices": list(STATUS_FILTERS),
           "projects": projects_for_tenant(tenant).values_list("pk", "name"),
           "providers": ProviderAccount.objects.for_tenant(tenant).order_by("name").values_list("pk", "name")}
    template = "workloads/partials/pod_rows.html" if request.htmx else "workloads/pod_list.html"
    return render(request, template, ctx)


def _sort_links(params, current: str) -> dict[str, str]:
    """Column -> the query string that sorts by it (a second click reverses the order)."""
    links = {}
    for column in ("name", "state", "project", "price", "requested"):
        q = params.copy()
        q["sort"] = f"-{column}" if current == column else column
        links[column] = q.urlencode()
    return links


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
           "poll": live_poll_interval(pod)}
    template = "workloads/partials/pod_live.html" if request.htmx else "workloads/pod_detail.html"
    return render(request, template, ctx)


@login_required
@require_POST
def pod_terminate(request: HttpRequest, pk) -> HttpResponse:
    pod = get_for_tenant_or_404(request, Pod, PROVISION, pk=pk)
    if services.pod_terminate_request(pod=pod, user=request.user):
        messages.success(request, f"Termination of {pod.workload.name} requested.")
    back = request.POST.get("next", "")
    # the pod list's row action returns to the list with its filters; nothing off-site
    if back.startswith("/pods/") and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("workloads:pod_detail", pk=pod.pk)
