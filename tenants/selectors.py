"""Reads for tenants."""

from __future__ import annotations

import uuid

from .models import Membership, Project, Tenant
from .permissions import PROJECT_PERMISSIONS


def memberships_for_user(user) -> list[Membership]:
    return list(Membership.objects.filter(user=user).select_related("tenant").order_by("tenant__name"))


def projects_for_tenant(tenant: Tenant):
    return Project.objects.filter(tenant=tenant).order_by("name")


def member_users(membership: Membership | None):
    """The users of the member's organization, by username (a list's user filter offers them)."""
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.order_by("username")
    return users.filter(memberships__tenant_id=membership.tenant_id) if membership is not None else users.none()


def organization_projects(membership: Membership | None):
    """Every project of the member's organization (a list's project filter offers them: seeing is
    organization-wide, ``permissions.VIEW``)."""
    return Project.objects.filter(tenant_id=membership.tenant_id).order_by("name") if membership else Project.objects.none()


def projects_for(membership: Membership | None, capability: str):
    """The projects of the member's organization on which they may use ``capability`` (role ×
    per-project grant, ``tenants.access.project_scope``): what a project dropdown offers."""
    from .access import project_ids_for

    if membership is None:
        return Project.objects.none()
    return Project.objects.filter(tenant_id=membership.tenant_id, pk__in=project_ids_for(membership, capability)).order_by("name")


def grant_matrix(tenant: Tenant, memberships: list[Membership], projects: list[Project]) -> dict[tuple[int, uuid.UUID], set[str]]:
    """(user id, project id) -> the per-project capabilities granted, for the Members page: one
    query for the whole matrix (guardian's ``get_perms`` per cell was members × projects queries).
    Access decisions do not read this; they go through ``tenants.access.project_scope``."""
    from django.contrib.contenttypes.models import ContentType
    from guardian.models import UserObjectPermission

    codename_to_cap = {perm.split(".")[1]: cap for cap, perm in PROJECT_PERMISSIONS.items()}
    rows = UserObjectPermission.objects.filter(
        content_type=ContentType.objects.get_for_model(Project), object_pk__in=[str(p.pk) for p in projects],
        user_id__in=[m.user_id for m in memberships], permission__codename__in=list(codename_to_cap),
    ).values_list("user_id", "object_pk", "permission__codename")
    matrix: dict[tuple[int, uuid.UUID], set[str]] = {}
    for user_id, object_pk, codename in rows:
        matrix.setdefault((user_id, uuid.UUID(object_pk)), set()).add(codename_to_cap[codename])
    return matrix
