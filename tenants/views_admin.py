"""Organization administration: members, roles, per-project grants, and the audit log."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from provisioner.tables import table_response

from .access import get_for_tenant_or_404, require_member, restricted
from .forms import InviteForm, RoleForm
from .models import AuditEvent, Invitation, Membership, Project
from .permissions import MANAGE_MEMBERS, PROJECT_PERMISSIONS, VIEW_AUDIT, role_has
from .selectors import grant_matrix
from .services import (
    LastOwnerError,
    invitation_create,
    invitation_revoke,
    membership_change_role,
    membership_remove,
    project_grant_set,
)
from .tables import AuditFilter, AuditTable


@login_required
def members(request: HttpRequest) -> HttpResponse:
    membership = require_member(request, MANAGE_MEMBERS)
    tenant = membership.tenant
    form = InviteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        invitation_create(tenant=tenant, email=d["email"], role=d["role"], invited_by=request.user,
                          accept_url=lambda token: request.build_absolute_uri(reverse("invitation_accept", args=[token])))
        # the same answer whoever owns the address: it reveals no account
        messages.success(request, f"Invitation sent to {d['email']}. They join when they accept it "
                                  f"(the link expires in {settings.INVITATION_MAX_AGE // 86400} days).")
        return redirect("members")
    projects = list(tenant.projects.all())
    memberships = list(tenant.memberships.select_related("user").order_by("user__username"))
    matrix = grant_matrix(tenant, memberships, projects)
    rows = [{"m": m, "cells": [{"project": p, "caps": [
        {"cap": cap, "on": cap in matrix.get((m.user_id, p.pk), ()), "allowed": role_has(m.role, cap)}
        for cap in PROJECT_PERMISSIONS]} for p in projects]} for m in memberships]
    pending = tenant.invitations.filter(accepted_at__isnull=True, created_at__gte=timezone.now() - timedelta(
        seconds=settings.INVITATION_MAX_AGE))
    return render(request, "tenants/members.html", {"rows": rows, "form": form, "projects": projects,
                                                    "role_form": RoleForm(), "pending": pending})


@login_required
@require_POST
def invitation_revoke_view(request: HttpRequest, pk) -> HttpResponse:
    invitation = get_for_tenant_or_404(request, Invitation, MANAGE_MEMBERS, pk=pk, accepted_at__isnull=True)
    invitation_revoke(invitation=invitation)
    messages.success(request, f"Invitation to {invitation.email} revoked.")
    return redirect("members")


@login_required
@require_POST
def member_role(request: HttpRequest, pk: int) -> HttpResponse:
    require_member(request, MANAGE_MEMBERS)
    target = get_for_tenant_or_404(request, Membership, MANAGE_MEMBERS, pk=pk)
    form = RoleForm(request.POST)
    if form.is_valid():
        try:
            membership_change_role(membership=target, role=form.cleaned_data["role"])
            messages.success(request, f"{target.user.username} is now {form.cleaned_data['role']}.")
        except LastOwnerError as exc:
            messages.error(request, str(exc))
    else:
        messages.error(request, "Unknown role.")
    return redirect("members")


@login_required
@require_POST
def member_remove(request: HttpRequest, pk: int) -> HttpResponse:
    require_member(request, MANAGE_MEMBERS)
    target = get_for_tenant_or_404(request, Membership, MANAGE_MEMBERS, pk=pk)
    try:
        membership_remove(membership=target)
        messages.success(request, f"Removed {target.user.username}.")
    except LastOwnerError as exc:
        messages.error(request, str(exc))
    return redirect("members")


@login_required
@require_POST
def member_grant(request: HttpRequest, pk: int, project_pk) -> HttpResponse:
    require_member(request, MANAGE_MEMBERS)
    target = get_for_tenant_or_404(request, Membership, MANAGE_MEMBERS, pk=pk)
    project = get_for_tenant_or_404(request, Project, MANAGE_MEMBERS, pk=project_pk)
    capability = request.POST.get("capability", "")
    if capability not in PROJECT_PERMISSIONS:
        messages.error(request, "Unknown capability.")
        return redirect("members")
    try:
        project_grant_set(membership=target, project=project, capability=capability, granted=request.POST.get("granted") == "1")
    except ValueError as exc:
        messages.error(request, str(exc))
    return redirect("members")


@login_required
def audit_log(request: HttpRequest) -> HttpResponse:
    """Who did what, newest first: filters, sorting and pages in the URL."""
    membership = require_member(request, VIEW_AUDIT)
    events = AuditFilter(request.GET, queryset=restricted(AuditEvent.objects.all(), membership, VIEW_AUDIT),
                         request=request)
    return table_response(request, "tenants/audit.html", AuditTable(events.qs), events, per_page=50)


