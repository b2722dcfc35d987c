"""Saved dashboard views: a name for a set of Spend filters, shared with the organization."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import SavedSpendView
from billing.reports import normalized_query, saved_view_save
from tests.factories import make_tenant

from .helpers import account


@pytest.mark.django_db
def test_finance_saves_a_view_and_anyone_with_spend_access_opens_it(client, finance, developer, tenant, project):
    a = account(tenant, name="RunPod main")
    client.force_login(finance)
    filters = {"range": "30d", "group": "project", "grain": "week", "provider": str(a.pk)}
    shown = client.get(reverse("billing:spend"), filters).context["f"].query()
    resp = client.post(reverse("billing:saved_view_save"), {"name": "  Research   weekly ", "query": shown})
    view = SavedSpendView.objects.get(tenant=tenant)
    assert view.name == "Research weekly" and view.query == shown and view.created_by == finance
    assert resp.status_code == 302 and resp.url == f"{reverse('billing:spend')}?{shown}"
    client.force_login(developer)  # developers see spend too: the saved view is on their page, linked
    page = client.get(reverse("billing:spend")).content.decode()
    assert f'hx-get="{reverse("billing:saved_views")}?' in page  # the bar loads after the page
    bar = client.get(reverse("billing:saved_views"), {"range": "90d"}).content.decode()
    assert "Research weekly" in bar and f"?{shown.replace('&', '&amp;')}" in bar
    assert 'name="query" value="range=90d&amp;' in bar  # the save form carries the page's filters
    # saving under the same name replaces the filters instead of adding a twin
    client.force_login(finance)
    client.post(reverse("billing:saved_view_save"), {"name": "Research weekly", "query": "range=90d"})
    assert SavedSpendView.objects.get(tenant=tenant).query.startswith("range=90d")


@pytest.mark.django_db
def test_saved_filters_are_normalized_and_foreign_ids_dropped(tenant):
    other = make_tenant("Globex", "globex")
    theirs = account(other, name="Their cloud")
    ours = account(tenant, name="Our cloud")
    q = normalized_query(tenant, f"range=bogus&group=project&provider={theirs.pk}&provider={ours.pk}&evil=<script>")
    assert q == f"range=7d&group=project&grain=day&mode=period&provider={ours.pk}"


@pytest.mark.django_db
def test_bad_names_are_refused_and_nothing_saved(client, finance, tenant):
    client.force_login(finance)
    for name in ("", "   ", "x" * 81):
        resp = client.post(reverse("billing:saved_view_save"), {"name": name, "query": "range=30d"}, follow=True)
        assert resp.status_code == 200 and ("Give the view a name" in resp.content.decode()
                                            or "under 80 characters" in resp.content.decode())
    assert not SavedSpendView.objects.exists()


@pytest.mark.django_db
def test_only_the_author_or_a_budget_manager_deletes(client, tenant, finance, developer, owner):
    mine = saved_view_save(tenant=tenant, user=developer, name="Dev view", query="range=30d")
    theirs = saved_view_save(tenant=tenant, user=finance, name="Finance view", query="range=90d")
    client.force_login(developer)
    assert client.post(reverse("billing:saved_view_delete", args=[theirs.pk])).status_code == 403
    assert client.post(reverse("billing:saved_view_delete", args=[mine.pk])).status_code == 302
    client.force_login(owner)  # owners manage budgets: may tidy anyone's views
    assert client.post(reverse("billing:saved_view_delete", args=[theirs.pk])).status_code == 302
    assert not SavedSpendView.objects.exists()
    assert client.get(reverse("billing:saved_view_save")).status_code == 405
    bar = client.get(reverse("billing:saved_views")).content.decode()
    assert "Delete" not in bar and "none yet" in bar
