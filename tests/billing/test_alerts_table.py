"""The alerts page as a table (issue 15 §4): filters (kind, read/unread, text) and sorting in the
URL, pages, the budget or account each alert is about, no query per row, per-project grants hold."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import BudgetAlert
from provisioner import clock
from tenants.models import Membership, Project
from tenants.permissions import VIEW_SPEND
from tenants.services import project_grant_set
from tests.factories import BudgetFactory, ProviderAccountFactory
from tests.tables_helpers import assert_same_queries_for_1_and_20_rows, row_count

URL = "/spend/alerts/"


def _alert(tenant, i, *, budget=None, account=None, kind=BudgetAlert.Kind.SPENT, read=False, message=None):
    at = clock.now() - timedelta(hours=i)
    return BudgetAlert.objects.create(tenant=tenant, budget=budget, provider_account=account, period_start=at,
                                      threshold=i + 1, kind=kind, spent_usd=Decimal(1), limit_usd=Decimal(2),
                                      message=message or f"alert number {i}", created_at=at,
                                      read_at=at if read else None)


@pytest.mark.django_db
def test_alerts_filter_sort_and_page_in_the_url(owner_client, tenant):
    assert reverse("billing:alerts") == URL
    budget = BudgetFactory(tenant=tenant, name="Monthly org budget")
    account = ProviderAccountFactory(tenant=tenant, name="Cloud A")
    for i in range(27):
        _alert(tenant, i, budget=budget, read=i >= 20)
    _alert(tenant, 30, account=account, kind=BudgetAlert.Kind.DRIFT, message="drift on Cloud A")
    body = owner_client.get(URL).content.decode()
    assert row_count(body, "alerts") == 25 and "Page 1 of 2 · 28 alerts" in body
    assert "Monthly org budget" in body and len(re.findall(r'<tr class="[^"]*\bunread\b', body)) == 20
    assert row_count(owner_client.get(URL + "?status=unread").content.decode(), "alerts") == 21  # and the drift alert
    body = owner_client.get(URL + "?kind=drift").content.decode()
    assert row_count(body, "alerts") == 1 and f'href="/providers/{account.pk}/"' in body
    assert row_count(owner_client.get(URL + "?q=number+2").content.decode(), "alerts") == 8  # 2, 20..26
    body = owner_client.get(URL + "?status=read&sort=created_at").content.decode()
    assert body.index("alert number 26") < body.index("alert number 20")  # oldest first
    fragment = owner_client.get(URL + "?kind=drift", headers={"HX-Request": "true"}).content.decode()
    assert row_count(fragment, "alerts") == 1 and "Mark all read" not in fragment
    assert owner_client.get(URL + "?kind=nope&status=x&sort=emailed_to&page=9").status_code == 200


@pytest.mark.django_db
def test_a_revoked_project_grant_hides_its_budgets_alerts(client, tenant, developer):
    research = Project.objects.create(tenant=tenant, name="Research")
    membership = Membership.objects.get(tenant=tenant, user=developer)
    project_grant_set(membership=membership, project=research, capability=VIEW_SPEND, granted=True)
    _alert(tenant, 0, budget=BudgetFactory(tenant=tenant, name="Research budget", project=research),
           message="research is at 80 %")
    _alert(tenant, 1, budget=BudgetFactory(tenant=tenant, name="Default budget", project=tenant.projects.get(name="Default")),
           message="default is at 80 %")
    client.force_login(developer)
    assert "research is at 80 %" in client.get(URL).content.decode()
    project_grant_set(membership=membership, project=research, capability=VIEW_SPEND, granted=False)
    body = client.get(URL + "?q=research").content.decode()
    assert "research is at 80 %" not in body and row_count(body, "alerts") == 0
    assert row_count(client.get(URL).content.decode(), "alerts") == 1


@pytest.mark.django_db
def test_alerts_table_costs_the_same_queries_for_1_and_20_alerts(owner_client, tenant):
    budget = BudgetFactory(tenant=tenant)
    account = ProviderAccountFactory(tenant=tenant)
    assert_same_queries_for_1_and_20_rows(
        owner_client, URL, "alerts",
        lambda i: _alert(tenant, i, budget=budget if i % 2 else None, account=None if i % 2 else account))
