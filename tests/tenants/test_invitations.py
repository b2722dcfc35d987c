"""Membership across organizations (issue 16 §2): an owner invites an e-mail address, the invitee
accepts through a signed, expiring link sent through the configured e-mail backend; the owner's
answer never reveals whether an account exists; a member of several organizations chooses the
active one explicitly."""

from __future__ import annotations

import re
import time
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.urls import reverse

from tenants.models import AuditEvent, Membership, Role
from tests.factories import make_member, make_tenant


@pytest.fixture
def two_orgs(db):
    a = make_tenant("Alpha", "alpha")
    b = make_tenant("Beta", "beta")
    alice = make_member(a, Role.DEVELOPER, "alice")
    alice.email = "alice@alpha.example"
    alice.save()
    owner_b = make_member(b, Role.OWNER, "owner-b")
    return {"a": a, "b": b, "alice": alice, "owner_b": owner_b}


def _link(message) -> str:
    (url,) = re.findall(r"https?://\S+", message.body)
    return urlsplit(url).path


@pytest.mark.django_db
def test_an_owner_cannot_add_another_organizations_user_by_name(client, two_orgs):
    client.force_login(two_orgs["owner_b"])
    resp = client.post(reverse("members"), {"username": "alice", "email": "someone@beta.example", "role": "developer"},
                       follow=True)
    assert resp.status_code == 200
    assert not Membership.objects.filter(tenant=two_orgs["b"], user=two_orgs["alice"]).exists()
    assert "alice@alpha.example" not in resp.content.decode()  # Alpha's user's e-mail is not shown to Beta


@pytest.mark.django_db
def test_the_answer_is_the_same_for_an_existing_and_an_unknown_account(client, two_orgs):
    client.force_login(two_orgs["owner_b"])

    def answer(username: str, email: str) -> str:
        resp = client.post(reverse("members"), {"username": username, "email": email, "role": "developer"}, follow=True)
        assert resp.status_code == 200
        (msg,) = [str(m) for m in resp.context["messages"]]
        return msg.replace(email, "<email>")

    assert answer("alice", "alice@alpha.example") == answer("nobody-here", "nobody@nowhere.example")
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username="nobody-here").exists()  # no account made for anyone


@pytest.mark.django_db
def test_invitee_accepts_with_a_new_account_through_the_emailed_link(client, two_orgs, django_capture_on_commit_callbacks):
    client.force_login(two_orgs["owner_b"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("members"), {"email": "new@person.example", "role": "finance"})
    (message,) = mail.outbox
    assert message.to == ["new@person.example"] and "Beta" in message.subject
    link = _link(message)
    client.logout()
    page = client.get(link)
    assert page.status_code == 200 and "Join Beta" in page.content.decode() and "Finance" in page.content.decode()
    resp = client.post(link, {"username": "newbie", "password1": "a-long enough pass 123", "password2": "a-long enough pass 123"})
    assert resp.status_code == 302
    m = Membership.objects.get(tenant=two_orgs["b"], user__username="newbie")
    assert m.role == Role.FINANCE and m.user.email == "new@person.example"
    assert AuditEvent.objects.filter(tenant=two_orgs["b"], action="member.joined").exists()
    client.logout()
    assert client.get(link).status_code == 404  # a link works once


@pytest.mark.django_db
def test_existing_user_joins_a_second_organization_only_by_accepting(client, two_orgs, django_capture_on_commit_callbacks):
    client.force_login(two_orgs["owner_b"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("members"), {"email": "alice@alpha.example", "role": "viewer"})
    assert not Membership.objects.filter(tenant=two_orgs["b"], user=two_orgs["alice"]).exists()  # not before consent
    link = _link(mail.outbox[0])
    client.force_login(two_orgs["alice"])
    assert "Accept as alice" in client.get(link).content.decode()
    assert client.post(link).status_code == 302
    assert Membership.objects.get(tenant=two_orgs["b"], user=two_orgs["alice"]).role == Role.VIEWER
    assert client.session["current_tenant_id"] == str(two_orgs["b"].pk)  # the joined organization is active


@pytest.mark.django_db
def test_expired_forged_and_revoked_links_are_refused(client, two_orgs, django_capture_on_commit_callbacks, settings):
    client.force_login(two_orgs["owner_b"])
    with django_capture_on_commit_callbacks(execute=True):
        client.post(reverse("members"), {"email": "x@y.example", "role": "developer"})
    link = _link(mail.outbox[0])
    assert client.get(link).status_code == 200
    with mock.patch("django.core.signing.time.time", return_value=time.time() + settings.INVITATION_MAX_AGE + 60):
        assert client.get(link).status_code == 404
    assert client.get(link[:-3] + "abc/").status_code == 404  # tampered signature
    from tenants.models import Invitation  # imported here: the other tests run against any model

    inv = Invitation.objects.get(email="x@y.example")
    assert client.post(reverse("invitation_revoke", args=[inv.pk])).status_code == 302
    assert client.get(link).status_code == 404


@pytest.mark.django_db
def test_a_member_of_several_organizations_chooses_the_active_one(client, two_orgs):
    alice = two_orgs["alice"]
    Membership.objects.create(tenant=two_orgs["b"], user=alice, role=Role.VIEWER)  # Alpha sorts first by name
    client.force_login(alice)
    resp = client.get(reverse("workloads:pod_list"))
    assert resp.status_code == 302 and resp.url.startswith(reverse("switch_tenant")), "an organization was picked for her"
    chooser = client.get(resp.url).content.decode()
    assert "Alpha" in chooser and "Beta" in chooser
    resp = client.post(reverse("switch_tenant"), {"tenant": str(two_orgs["b"].pk), "next": reverse("workloads:pod_list")})
    assert resp.status_code == 302 and resp.url == reverse("workloads:pod_list")
    page = client.get(reverse("workloads:pod_list"))
    assert page.status_code == 200 and page.context["request"].tenant == two_orgs["b"]
    # an off-site "next" is not followed
    resp = client.post(reverse("switch_tenant"), {"tenant": str(two_orgs["a"].pk), "next": "https://evil.example/"})
    assert resp.url == reverse("home")
