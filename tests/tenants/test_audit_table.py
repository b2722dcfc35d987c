"""The audit log as a table (issue 15 §4): 50 a page, sorting, filters (action, who, target type,
dates) in the URL, the htmx fragment, no query per row, only the member's own organization."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from provisioner import clock
from tenants.audit import audit_record
from tests.factories import make_tenant
from tests.tables_helpers import assert_same_queries_for_1_and_20_rows, row_count


@pytest.mark.django_db
def test_audit_log_pages_sorts_and_filters_in_the_url(owner_client, tenant, owner, developer, project):
    start = clock.now()
    for i in range(55):
        with clock.frozen(start - timedelta(minutes=i)):
            audit_record(tenant=tenant, action="pod.launched" if i % 2 else "budget.changed", actor=owner,
                         target=project if i % 5 == 0 else None, details={"n": i})
    audit_record(tenant=tenant, action="member.role_changed", actor=developer)
    audit_record(tenant=make_tenant("Other"), action="zz.foreign", actor=None)
    url = reverse("audit_log")
    body = owner_client.get(url).content.decode()
    assert row_count(body, "audit") == 50 and "Page 1 of 2 · 56 events" in body and "zz.foreign" not in body
    assert body.index("member.role_changed") < body.index("n=0")  # newest first
    assert row_count(owner_client.get(url + "?page=2").content.decode(), "audit") == 6
    body = owner_client.get(url + "?action=launched").content.decode()
    assert row_count(body, "audit") == 27 and "budget.changed" not in body
    assert row_count(owner_client.get(url + "?actor=developer").content.decode(), "audit") == 1
    body = owner_client.get(url + "?target_type=tenants.Project").content.decode()
    assert row_count(body, "audit") == 11 and '<option value="tenants.Project" selected>' in body
    # oldest first; the sort link keeps the filter
    body = owner_client.get(url + "?action=launched&sort=at").content.decode()
    assert body.index("n=53") < body.index("n=1<") and 'href="?action=launched&amp;sort=-at"' in body
    fragment = owner_client.get(url + "?actor=developer", headers={"HX-Request": "true"}).content.decode()
    assert row_count(fragment, "audit") == 1 and "<h1" not in fragment
    for junk in ("?since=yesterday&until=2026-13-45&sort=ip&page=0", "?target_type=" + "x" * 500):
        assert owner_client.get(url + junk).status_code == 200


@pytest.mark.django_db
def test_audit_table_costs_the_same_queries_for_1_and_20_events(owner_client, tenant, owner):
    assert_same_queries_for_1_and_20_rows(owner_client, reverse("audit_log"), "audit",
                                          lambda i: audit_record(tenant=tenant, action=f"a.{i}", actor=owner))
