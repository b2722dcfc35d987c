"""The Members page: the grants matrix costs a constant number of queries (it was one guardian
``get_perms`` query per member × project), and it shows what is granted."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tenants.models import Membership, Role
from tenants.services import project_create, project_grant_set
from tests.factories import make_member


def _queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(reverse("members")).status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.django_db
def test_members_page_query_count_does_not_grow_with_members_or_projects(owner_client, tenant):
    make_member(tenant, Role.DEVELOPER, "dev-1")
    project_create(tenant=tenant, name="P1")
    _queries(owner_client)  # warm: session, content types
    small = _queries(owner_client)  # 2 members x 2 projects
    for i in range(2, 7):
        make_member(tenant, Role.FINANCE if i % 2 else Role.DEVELOPER, f"dev-{i}")
    for i in range(2, 6):
        project_create(tenant=tenant, name=f"P{i}")
    big = _queries(owner_client)  # 7 members x 6 projects
    assert big == small, f"members page: {small} queries for 2x2, {big} for 7x6"


@pytest.mark.django_db
def test_members_page_shows_each_grant_and_only_what_the_role_can_hold(owner_client, tenant, developer):
    project = tenant.projects.get(name="Default")
    dev = Membership.objects.get(tenant=tenant, user=developer)
    page = owner_client.get(reverse("members")).content.decode()
    assert page.count('title="Revoke provision_compute on Default"') == 2  # owner and developer
    assert page.count('title="Revoke manage_budgets on Default"') == 1  # a developer cannot hold it: no toggle
    assert 'title="Grant manage_budgets on Default"' not in page
    project_grant_set(membership=dev, project=project, capability="provision_compute", granted=False)
    page = owner_client.get(reverse("members")).content.decode()
    assert page.count('title="Revoke provision_compute on Default"') == 1
    assert page.count('title="Grant provision_compute on Default"') == 1
