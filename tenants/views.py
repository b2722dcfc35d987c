from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from .middleware import SESSION_KEY
from .selectors import memberships_for_user


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Landing page: send each role where it works."""
    membership = request.membership
    if membership is None:
        return render(request, "tenants/no_tenant.html")
    from providers.selectors import provider_accounts_for_tenant

    if not provider_accounts_for_tenant(request.tenant).exists() and membership.role in ("owner", "admin"):
        return redirect("providers:connect")
    if membership.role == "finance":
        return redirect("billing:spend")
    return redirect("workloads:pod_list")


@login_required
@require_POST
def switch_tenant(request: HttpRequest) -> HttpResponse:
    tenant_id = request.POST.get("tenant", "")
    if not any(str(m.tenant_id) == tenant_id for m in memberships_for_user(request.user)):
        raise Http404("No such organization")
    request.session[SESSION_KEY] = tenant_id
    return redirect(reverse("home"))
