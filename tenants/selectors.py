"""Reads for tenants."""

from __future__ import annotations

from .models import Membership, Project, Tenant


def memberships_for_user(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name"))


def projects_for_tenant(tenant: Tenant):
    return Project.objects.filter(tenant=tenant).order_by("name")
