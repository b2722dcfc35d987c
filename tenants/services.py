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


class LastOwnerError(ValueError):
    """An organization must keep at least one owner."""


@transaction.atomic
def membership_change_role(*, membership: Membership, role: str) -> Membership:
    """Change a member's role (audited). The last owner cannot be demoted."""
    from .audit import audit_record

    if membership.role == Role.OWNER and role != Role.OWNER:
        owners = Membership.objects.select_for_update().filter(tenant=membership.tenant, role=Role.OWNER)
        if owners.count() <= 1:
            raise LastOwnerError("An organization needs at least one owner.")
    old = membership.role
    membership = membership_set(tenant=membership.tenant, user=membership.user, role=role)
    audit_record(tenant=membership.tenant, action="member.role_changed", target=membership,
                 details={"user": membership.user.username, "from": old, "to": role})
    return membership


@transaction.atomic
def membership_remove(*, membership: Membership) -> None:
    from .audit import audit_record

    if membership.role == Role.OWNER and Membership.objects.filter(tenant=membership.tenant, role=Role.OWNER).count() <= 1:
        raise LastOwnerError("An organization needs at least one owner.")
    for project in membership.tenant.projects.all():
        for perm in PROJECT_PERMISSIONS.values():
            remove_perm(perm, membership.user, project)
    audit_record(tenant=membership.tenant, action="member.removed", target=membership,
                 details={"user": membership.user.username, "role": membership.role})
    membership.delete()


@transaction.atomic
def member_invite(*, tenant: Tenant, username: str, email: str, role: str) -> tuple[Membership, str | None]:
    """Add a user to the organization. A new user gets a one-time password, returned once
    (shown to the inviting owner, never stored in clear). Existing users are just added."""
    from django.utils.crypto import get_random_string

    from .audit import audit_record

    user = User.objects.filter(username=username).first()
    password = None
    if user is None:
        password = get_random_string(16)
        user = User.objects.create_user(username=username, email=email, password=password)
    membership = membership_set(tenant=tenant, user=user, role=role)
    audit_record(tenant=tenant, action="member.invited", target=membership, details={"user": username, "role": role})
    return membership, password


@transaction.atomic
def project_grant_set(*, membership: Membership, project: Project, capability: str, granted: bool) -> None:
    """Grant or revoke one per-project capability (guardian object permission)."""
    from .audit import audit_record

    if project.tenant_id != membership.tenant_id:
        raise ValueError("project belongs to another organization")
    perm = PROJECT_PERMISSIONS[capability]
    if granted and not role_has(membership.role, capability):
        raise ValueError(f"the {membership.role} role cannot hold {capability}")
    (assign_perm if granted else remove_perm)(perm, membership.user, project)
    audit_record(tenant=membership.tenant, action="member.project_grant", target=project,
                 details={"user": membership.user.username, "capability": capability, "granted": granted})
