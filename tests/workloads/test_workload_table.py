"""The workload list as a table (issue 15 §4): state, lifecycle, project, owner and name filters and
sorting in the URL, pages, an owner column, Stop and Relaunch row actions that ask first and return
to the same filtered list, no query per row, and nothing of another organization."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tenants.models import Membership, Project, Role
from tenants.permissions import PROVISION
from tenants.services import project_grant_set
from tests.factories import WorkloadFactory, make_member
from tests.tables_helpers import assert_same_queries_for_1_and_20_rows, row_count
from workloads.models import Lifecycle, Workload

LIST = "/workloads/"


def _names(body: str) -> list[str]:
    return re.findall(r'<a class="clip" title="([^"]+)" href="/workloads/', body)


@pytest.mark.django_db
def test_workloads_filter_sort_and_page_in_the_url(owner_client, tenant, project, owner, developer):
    research = Project.objects.create(tenant=tenant, name="Research")
    WorkloadFactory(tenant=tenant, project=project, owner=owner, name="alpha", lifecycle=Lifecycle.SERVICE)
    WorkloadFactory(tenant=tenant, project=research, owner=developer, name="bravo")
    charlie = WorkloadFactory(tenant=tenant, project=project, owner=developer, name="charlie")
    Workload.objects.filter(pk=charlie.pk).update(state=Workload.State.STOPPED)
    assert reverse("workloads:workload_list") == LIST
    body = owner_client.get(LIST).content.decode()
    assert _names(body) == ["charlie", "bravo", "alpha"]  # newest first
    assert '<a href="?owner=developer"' in body  # the owner column filters by its user
    assert _names(owner_client.get(LIST + "?state=stopped").content.decode()) == ["charlie"]
    assert _names(owner_client.get(LIST + "?lifecycle=service").content.decode()) == ["alpha"]
    assert _names(owner_client.get(f"{LIST}?project={research.pk}").content.decode()) == ["bravo"]
    assert _names(owner_client.get(LIST + "?owner=developer&sort=name").content.decode()) == ["bravo", "charlie"]
    assert _names(owner_client.get(LIST + "?q=RAV").content.decode()) == ["bravo"]
    body = owner_client.get(LIST + "?state=active&sort=-name").content.decode()
    assert _names(body) == ["bravo", "alpha"] and '<option value="active" selected>' in body
    assert 'href="?state=active&amp;sort=name"' in body  # the sort link keeps the filter
    fragment = owner_client.get(LIST + "?state=active", headers={"HX-Request": "true"}).content.decode()
    assert _names(fragment) == ["bravo", "alpha"] and "<h1" not in fragment
    for junk in ("?state=nope&sort=owner__password&page=x", "?owner=" + "x" * 400):
        assert owner_client.get(LIST + junk).status_code == 200
    for i in range(30):
        WorkloadFactory(tenant=tenant, project=project, owner=owner, name=f"job-{i:02d}")
    body = owner_client.get(LIST + "?owner=owner").content.decode()
    assert row_count(body, "workloads") == 25 and "Page 1 of 2 · 31 workloads" in body


@pytest.mark.django_db
def test_stop_and_relaunch_from_a_row_ask_first_and_return_to_the_list(owner_client, tenant, project, owner,
                                                                         developer, client):
    active = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="alpha")
    stopped = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="bravo")
    Workload.objects.filter(pk=stopped.pk).update(state=Workload.State.STOPPED)
    body = owner_client.get(LIST + "?owner=owner").content.decode()
    assert 'data-confirm="Stop alpha and terminate its pods?"' in body
    assert 'data-confirm="Relaunch bravo? It starts new pods, billed from their start."' in body
    assert 'name="next" value="/workloads/?owner=owner"' in body
    response = owner_client.post(reverse("workloads:workload_stop", args=[active.pk]), {"next": "/workloads/?owner=owner"})
    assert response.status_code == 302 and response["Location"] == "/workloads/?owner=owner"
    active.refresh_from_db()
    assert active.state == Workload.State.STOPPED
    # anything that is not the workload list goes to the workload page
    for evil in ("https://evil.example/workloads/", "//evil.example/workloads/", "/admin/"):
        response = owner_client.post(reverse("workloads:workload_stop", args=[active.pk]), {"next": evil})
        assert response["Location"] == f"/workloads/{active.pk}/"
    # a developer whose grant on the project was revoked sees no row action
    membership = Membership.objects.get(tenant=tenant, user=developer)
    project_grant_set(membership=membership, project=project, capability=PROVISION, granted=False)
    client.force_login(developer)
    body = client.get(LIST).content.decode()
    assert 'data-action="stop"' not in body and 'data-action="relaunch"' not in body
    client.force_login(make_member(tenant, Role.FINANCE, "fin"))
    assert 'data-action=' not in client.get(LIST).content.decode()


@pytest.mark.django_db
def test_workload_table_costs_the_same_queries_for_1_and_20_workloads(owner_client, tenant, project, owner, developer):
    owners = [owner, developer]
    assert_same_queries_for_1_and_20_rows(
        owner_client, LIST, "workloads",
        lambda i: WorkloadFactory(tenant=tenant, project=project, owner=owners[i % 2], name=f"w{i}"))


@pytest.mark.django_db
def test_another_organizations_workloads_never_show(owner_client, tenant, project, owner, outsider, other_tenant):
    WorkloadFactory(tenant=tenant, project=project, owner=owner, name="ours")
    WorkloadFactory(tenant=other_tenant, project=other_tenant.projects.get(name="Default"), owner=outsider,
                    name="zz-foreign-workload")
    assert _names(owner_client.get(LIST).content.decode()) == ["ours"]
    for probe in ("?owner=outsider", f"?project={other_tenant.projects.get(name='Default').pk}"):
        body = owner_client.get(LIST + probe).content.decode()
        assert _names(body) == [] and "zz-foreign-workload" not in body and 'id="workloads-refused"' in body
