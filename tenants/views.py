from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme

from .forms import InviteeSignupForm
from .middleware import SESSION_KEY
from .selectors import memberships_for_user
from .services import InvitationInvalid, invitation_accept, invitation_from_token


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


def _safe_next(request: HttpRequest, fallback: str) -> str:
    nxt = request.POST.get("next") or request.GET.get("next") or ""
    ok = url_has_allowed_host_and_scheme(nxt, allowed_hosts={request.get_host()}, require_https=request.is_secure())
    return nxt if nxt and ok else fallback


@login_required
def switch_tenant(request: HttpRequest) -> HttpResponse:
    """GET: the organization chooser (a member of several organizations picks one explicitly).
    POST: make ``tenant`` the active organization of this session."""
    memberships = memberships_for_user(request.user)
    if request.method != "POST":
        return render(request, "tenants/choose.html", {"choices": memberships, "next": _safe_next(request, "")})
    tenant_id = request.POST.get("tenant", "")
    if not any(str(m.tenant_id) == tenant_id for m in memberships):
        raise Http404("No such organization")
    request.session[SESSION_KEY] = tenant_id
    return redirect(_safe_next(request, reverse("home")))


def invitation(request: HttpRequest, token: str) -> HttpResponse:
    """The link in an invitation e-mail: see the organization and role, then accept with the
    signed-in account, or create an account and accept. Invalid, expired or used: a 404 page
    saying so (the same for each, so links cannot be probed)."""
    try:
        inv = invitation_from_token(token)
    except InvitationInvalid as exc:
        return render(request, "tenants/invitation.html", {"error": str(exc)}, status=404)
    signup = InviteeSignupForm()
    if request.method == "POST":
        user = request.user if request.user.is_authenticated else None
        if user is None:
            signup = InviteeSignupForm(request.POST)
            if not signup.is_valid():
                return render(request, "tenants/invitation.html", {"inv": inv, "signup": signup})
            signup.instance.email = inv.email
            user = signup.save()
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        try:
            membership = invitation_accept(invitation=inv, user=user)
        except InvitationInvalid as exc:
            return render(request, "tenants/invitation.html", {"error": str(exc)}, status=404)
        request.session[SESSION_KEY] = str(membership.tenant_id)  # the organization just joined is the active one
        messages.success(request, f"You joined {membership.tenant.name} as {membership.get_role_display()}.")
        return redirect("home")
    return render(request, "tenants/invitation.html", {"inv": inv, "signup": signup})
