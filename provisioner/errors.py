"""Error pages in the app's layout, each saying what the user can do next.

403 and 404 render with the request (menu, organization, role); 500 renders without it, since
whatever failed may be what the context needs (a database gone away), so its template stands alone.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.template import loader

# What a refused request was trying to do, by the URL it asked for ("namespace:name" or "name").
_ACTIONS = {
    "providers": "connect or change providers",
    "workloads:launch": "launch pods", "workloads:recipe_launch": "launch pods", "workloads:pod_terminate": "stop pods",
    "workloads:workload_stop": "stop workloads", "workloads:workload_relaunch": "launch pods",
    "workloads:workload_move": "move workloads", "workloads:recipe_author": "author recipes",
    "workloads:recipe_edit": "author recipes", "workloads:secrets": "manage secrets",
    "billing": "see or manage spend", "billing:budgets": "manage budgets", "billing:budget_edit": "manage budgets",
    "billing:rates": "set invoice rates", "billing:rate_clear": "set invoice rates",
    "members": "manage members", "member_role": "manage members", "member_remove": "manage members",
    "member_grant": "manage members", "audit_log": "read the audit log",
}


def _action(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return ""
    return _ACTIONS.get(match.view_name) or _ACTIONS.get(match.namespace, "")


def _owners(request: HttpRequest) -> list[str]:
    membership = getattr(request, "membership", None)
    if membership is None:
        return []
    from tenants.models import Membership, Role

    return list(Membership.objects.filter(tenant_id=membership.tenant_id, role=Role.OWNER)
                .values_list("user__username", flat=True).order_by("user__username")[:5])


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    membership = getattr(request, "membership", None)
    context = {
        "role": membership.get_role_display() if membership else "",
        "action": _action(request),
        "reason": str(exception or ""),
        "owners": _owners(request),
    }
    return HttpResponse(loader.render_to_string("403.html", context, request), status=403)


def page_not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return HttpResponse(loader.render_to_string("404.html", {"path": request.path}, request), status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return HttpResponse(loader.render_to_string("500.html"), status=500)
