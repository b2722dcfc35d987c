"""Writes for tenants: organizations, members, projects and their guardian grants."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import transaction
from guardian.shortcuts import assign_perm, remove_perm

from provisioner import clock

from .models import Invitation, Membership, Project, Role, Tenant
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


# --- invitations (issue 16 §2) ----------------------------------------------------------------------
# An owner never adds an existing account by name: they invite an e-mail address; the invitee
# accepts through a signed link that expires (django.core.signing: HMAC with SECRET_KEY, salted
# per use, timestamped). The owner's answer is the same whoever the address belongs to.
INVITATION_SALT = "tenants.invitation"


class InvitationInvalid(ValueError):
    """The link is forged, expired, already used or revoked."""


def invitation_token(invitation: Invitation) -> str:
    return signing.dumps(str(invitation.pk), salt=INVITATION_SALT)


def invitation_from_token(token: str) -> Invitation:
    """The pending invitation a link stands for, or ``InvitationInvalid``."""
    try:
        pk = signing.loads(token, salt=INVITATION_SALT, max_age=settings.INVITATION_MAX_AGE)
        invitation = Invitation.objects.select_related("tenant").get(pk=pk)
    except (signing.BadSignature, Invitation.DoesNotExist, ValueError, ValidationError):
        raise InvitationInvalid("This invitation link is invalid or has expired.") from None
    if invitation.accepted_at is not None:
        raise InvitationInvalid("This invitation has already been used.")
    return invitation


@transaction.atomic
def invitation_create(*, tenant: Tenant, email: str, role: str, invited_by, accept_url: Callable[[str], str]) -> Invitation:
    """Record an invitation and e-mail its link (through the configured backend, once the
    transaction commits). Looks up no account: nothing here depends on who owns the address."""
    from .audit import audit_record

    invitation = Invitation.objects.create(tenant=tenant, email=email, role=role, invited_by=invited_by,
                                           created_at=clock.now())
    link = accept_url(invitation_token(invitation))
    days = settings.INVITATION_MAX_AGE // 86400
    inviter = getattr(invited_by, "username", "") or "An owner"
    body = (f"{inviter} invites you to join {tenant.name} on AI Cloud Provisioner as {invitation.get_role_display()}.\n\n"
            f"Accept (with your account, or create one): {link}\n\n"
            f"The link works once and expires in {days} days. If you did not expect it, ignore this e-mail.")
    transaction.on_commit(lambda: send_mail(f"Invitation to {tenant.name}", body, None, [email]))
    audit_record(tenant=tenant, action="member.invited", target=invitation, details={"email": email, "role": role})
    return invitation


@transaction.atomic
def invitation_accept(*, invitation: Invitation, user) -> Membership:
    """The invitee joins. Already a member: their role is kept (an invitation never demotes)."""
    from .audit import audit_record

    locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
    if locked.accepted_at is not None:
        raise InvitationInvalid("This invitation has already been used.")
    membership = Membership.objects.filter(tenant=locked.tenant, user=user).first()
    if membership is None:
        membership = membership_set(tenant=locked.tenant, user=user, role=locked.role)
    locked.accepted_at, locked.accepted_by = clock.now(), user
    locked.save(update_fields=["accepted_at", "accepted_by"])
    audit_record(tenant=locked.tenant, action="member.joined", target=membership, actor=user,
                 details={"user": user.username, "role": membership.role, "invitation": str(locked.pk)})
    return membership


@transaction.atomic
def invitation_revoke(*, invitation: Invitation) -> None:
    from .audit import audit_record

    audit_record(tenant=invitation.tenant, action="member.invitation_revoked", target=invitation,
                 details={"email": invitation.email})
    invitation.delete()


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
