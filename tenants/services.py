"""Writes for tenants: organizations, members, projects and their guardian grants."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from .models import Membership, Project, Role, Tenant
from .permissions import PROJECT_PERMISSIONS, role_has

User = get_user_model()


@transaction.atomic
def tenant_create(*, name: str, slug: str, owner=None, home_country: str = "US") -> Tenant:
    """Create an organization with a default project; ``owner`` becomes its owner."""
    tenant = Tenant.objects.create(name=name, slug=slug, home_country=home_country)
    project_create(tenant=tenant, name="Default")
    if owner is not None:
        membership_set(tenant=tenant, user=owner, role=Role.OWNER)
    return tenant


@transaction.atomic
def project_create(*, tenant: Tenant, name: str) -> Project:
    project = Project.objects.create(tenant=tenant, name=name)
    for membership in tenant.memberships.select_related("user"):
        _grant_project(membership, project)
    return project


@transaction.atomic
def membership_set(*, tenant: Tenant, user, role: str) -> Membership:
    """Add ``user`` to ``tenant`` with ``role`` (or change the role) and sync grants."""
    membership, _ = Membership.objects.update_or_create(tenant=tenant, user=user, defaults={"role": role})
    for project in tenant.projects.all():
        _grant_project(membership, project)
    return membership


def _grant_project(membership: Membership, project: Project) -> None:
    for capability, perm in PROJECT_PERMISSIONS.items():
        if role_has(membership.role, capability):
            assign_perm(perm, membership.user, project)
        else:
            remove_perm(perm, membership.user, project)
