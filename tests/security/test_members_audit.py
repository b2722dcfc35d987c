from __future__ import annotations

import pytest
from django.urls import reverse
from guardian.shortcuts import get_perms

from tenants.models import AuditEvent, Invitation, Membership, Role
from tenants.services import invitation_accept
from tests.factories import UserFactory


@pytest.mark.django_db
def test_owner_invites_and_changes_roles_with_audit(owner_client, tenant, owner):
    resp = owner_client.post(reverse("members"), {"email": "n@example.com", "role": "developer"}, follow=True)
    assert b"Invitation sent to n@example.com" in resp.content and b"one-time password" not in resp.content
    newbie = UserFactory(username="newbie")
    invitation_accept(invitation=Invitation.objects.get(tenant=tenant, email="n@example.com"), user=newbie)
    m = Membership.objects.get(tenant=tenant, user__username="newbie")
    assert m.role == Role.DEVELOPER
    owner_client.post(reverse("member_role", args=[m.pk]), {"role": "viewer"})
    m.refresh_from_db()
    assert m.role == Role.VIEWER
    project = tenant.projects.first()
    assert "provision_compute" not in get_perms(m.user, project)
    actions = list(AuditEvent.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert "member.invited" in actions and "member.role_changed" in actions
    page = owner_client.get(reverse("audit_log") + "?action=role").content.decode()
    assert "member.role_changed" in page and "member.invited" not in page


@pytest.mark.django_db
def test_last_owner_cannot_be_demoted(owner_client, tenant, owner):
    m = Membership.objects.get(tenant=tenant, user=owner)
    owner_client.post(reverse("member_role", args=[m.pk]), {"role": "viewer"})
    m.refresh_from_db()
    assert m.role == Role.OWNER


@pytest.mark.django_db
def test_per_project_grant_revocation(owner_client, tenant, developer):
    project = tenant.projects.get(name="Default")
    m = Membership.objects.get(tenant=tenant, user=developer)
    assert "provision_compute" in get_perms(developer, project)
    owner_client.post(reverse("member_grant", args=[m.pk, project.pk]), {"capability": "provision_compute", "granted": "0"})
    assert "provision_compute" not in get_perms(developer, project)


@pytest.mark.django_db
def test_members_and_audit_refused_to_developers(client, developer):
    client.force_login(developer)
    assert client.get(reverse("members")).status_code == 403
    assert client.get(reverse("audit_log")).status_code == 403


@pytest.mark.django_db
def test_outsider_cannot_touch_foreign_membership(client, outsider, tenant, developer):
    client.force_login(outsider)
    m = Membership.objects.get(tenant=tenant, user=developer)
    assert client.post(reverse("member_role", args=[m.pk]), {"role": "owner"}).status_code == 404
    m.refresh_from_db()
    assert m.role == Role.DEVELOPER
