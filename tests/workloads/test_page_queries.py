"""Query-count baselines of the pages a team keeps open (issue 17 §4): the pod list (page and its
3 s refresh), the workload page and the Members page (its grants matrix) cost a fixed number of
queries, the same for 1 row as for 10. A change that adds a query per row fails here; one that adds
a fixed query moves the baseline, on purpose and visibly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from provisioner import clock
from tenants.models import Role
from tenants.services import project_create
from tests.factories import PodFactory, WorkloadFactory, make_member
from workloads.lifecycle.transitions import pod_event
from workloads.models import PodState

# session + membership, the page's own reads; measured on SQLite and PostgreSQL alike. The pod list
# (a django-tables2 table, issue 15 §4): count, rows, the per-project grant behind each row's
# Terminate; the full page also the filter lists (projects, accounts, members)
POD_LIST, POD_LIST_REFRESH, WORKLOAD_PAGE, MEMBERS_PAGE = 9, 6, 11, 7


def _pod(workload, account, i: int):
    pod = PodFactory(workload=workload, provider_account=account, state=PodState.RUNNING, spot=bool(i % 2),
                     external_id=f"sbx-{workload.pk.hex[:6]}-{i}", region="sbx-us-east", country="US",
                     price_usd_per_hour=Decimal("2.50"), started_at=clock.now() - timedelta(minutes=30 + i))
    pod_event(pod, "state", f"Running ({i})")
    return pod


def _get(client, url, n_queries, *, htmx=False, django_assert_num_queries) -> str:
    with django_assert_num_queries(n_queries):
        response = client.get(url, headers={"HX-Request": "true"} if htmx else {})
    assert response.status_code == 200
    return response.content.decode()


@pytest.mark.django_db
def test_pod_list_costs_the_same_queries_for_1_and_10_pods(owner_client, tenant, project, owner, sandbox,
                                                           django_assert_num_queries):
    url = reverse("workloads:pod_list")
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    pods = [_pod(w, sandbox, 0)]
    owner_client.get(url)  # warm per-process caches (content types) out of the count
    for n in (1, 10):
        while len(pods) < n:  # other owners and workloads too: the user and workload columns
            i = len(pods)
            other = WorkloadFactory(tenant=tenant, project=project, name=f"w{i}",
                                    owner=make_member(tenant, Role.DEVELOPER, f"d{i}")) if i % 3 == 0 else w
            pods.append(_pod(other, sandbox, i))
        page = _get(owner_client, url, POD_LIST, django_assert_num_queries=django_assert_num_queries)
        rows = _get(owner_client, url, POD_LIST_REFRESH, htmx=True, django_assert_num_queries=django_assert_num_queries)
        assert all(f"/pods/{p.pk}/" in page and f"/pods/{p.pk}/" in rows for p in pods)


@pytest.mark.django_db
def test_workload_page_costs_the_same_queries_for_1_and_10_pods(owner_client, tenant, project, owner, sandbox,
                                                                django_assert_num_queries):
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    url = reverse("workloads:workload_detail", kwargs={"pk": w.pk})
    pods = [_pod(w, sandbox, 0)]
    owner_client.get(url)
    for n in (1, 10):
        pods += [_pod(w, sandbox, i) for i in range(len(pods), n)]
        page = _get(owner_client, url, WORKLOAD_PAGE, django_assert_num_queries=django_assert_num_queries)
        assert all(f"/pods/{p.pk}/" in page for p in pods)


@pytest.mark.django_db
def test_members_page_costs_the_same_queries_for_1_and_10_members_times_projects(client, tenant, owner,
                                                                                  django_assert_num_queries):
    client.force_login(owner)
    url = reverse("members")
    client.get(url)
    page = _get(client, url, MEMBERS_PAGE, django_assert_num_queries=django_assert_num_queries)
    assert page.count('title="Revoke provision_compute on ') == 1  # 1 member x 1 project
    for i in range(1, 10):
        make_member(tenant, Role.DEVELOPER if i % 2 else Role.OWNER, f"m{i}")
        project_create(tenant=tenant, name=f"P{i}")
    page = _get(client, url, MEMBERS_PAGE, django_assert_num_queries=django_assert_num_queries)
    # 10 members x 10 projects: the project creator holds its grants, each member the Default's
    assert page.count("<tr><td>") == 10 and page.count('title="Revoke provision_compute on P9"') >= 1
