"""The Capacity page and a provider's page list offers in a table (issue 15 §4): 25 a page instead
of every offer on one 7,000-px page, ``?gpu_class=`` and the other filters applied and kept in the
URL, sorting by any column, the htmx fragment for sort and page links, no query per row."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.factories import OfferFactory, ProviderAccountFactory, make_tenant
from tests.tables_helpers import assert_same_queries_for_1_and_20_rows, row_count

CAPACITY = "/providers/capacity/"


@pytest.fixture
def account(tenant):
    return ProviderAccountFactory(tenant=tenant, name="Cloud A")


def _offers(account, n, **kw):
    return [OfferFactory(provider_account=account, price_per_hour=Decimal(1 + i), **kw) for i in range(n)]


@pytest.mark.django_db
def test_capacity_pages_filters_and_sorts_in_the_url(owner_client, account, tenant):
    _offers(account, 30, gpu_class="A100")
    _offers(account, 3, gpu_class="H100", spot=True)
    body = owner_client.get(CAPACITY).content.decode()
    assert row_count(body, "offers") == 25 and "Page 1 of 2 · 33 offers" in body
    # ?gpu_class= is applied (it used to be ignored), and the form shows it selected
    body = owner_client.get(CAPACITY + "?gpu_class=H100").content.decode()
    assert row_count(body, "offers") == 3 and '<option value="H100" selected>' in body
    assert "Clear filters" in body
    # a class without offers filters to nothing, never to everything
    body = owner_client.get(CAPACITY + "?gpu_class=B200").content.decode()
    assert row_count(body, "offers") == 0 and "No offers match these filters." in body
    assert row_count(owner_client.get(CAPACITY + "?market=spot").content.decode(), "offers") == 3
    assert row_count(owner_client.get(CAPACITY + "?gpu_class=A100&max_price=5").content.decode(), "offers") == 5
    # sorting: the most expensive first; the sort link keeps the filters and drops the page
    body = owner_client.get(CAPACITY + "?gpu_class=A100&sort=-price_usd_per_hour&page=2").content.decode()
    assert "$30.00" not in body and "$5.00" in body  # page 2 of the descending order
    assert 'href="?gpu_class=A100&amp;sort=price_usd_per_hour"' in body
    assert 'href="?gpu_class=A100&amp;sort=-price_usd_per_hour&amp;page=1"' in body  # the pager keeps both
    # drill-down to the account's own page keeps the filter and the sort
    assert f'href="/providers/{account.pk}/?gpu_class=A100&amp;sort=-price_usd_per_hour"' in body
    body = owner_client.get(f"/providers/{account.pk}/?gpu_class=A100&sort=-price_usd_per_hour").content.decode()
    assert row_count(body, "offers") == 25 and "$30.00" in body and '<option value="A100" selected>' in body
    # htmx (a sort or page link): the table alone, same rows
    fragment = owner_client.get(CAPACITY + "?gpu_class=H100", headers={"HX-Request": "true"}).content.decode()
    assert row_count(fragment, "offers") == 3 and "<nav class=\"top" not in fragment and "<h1" not in fragment
    # junk is ignored, never a 500
    for junk in ("?sort=drop+table&page=-3&gpu_count=x&max_price=abc&provider=nope", "?region=" + "x" * 5000,
                 "?page=abc&per_page=100000"):
        response = owner_client.get(CAPACITY + junk)
        assert response.status_code == 200 and row_count(response.content.decode(), "offers") <= 25


@pytest.mark.django_db
def test_another_organizations_offers_and_accounts_never_show(owner_client, account):
    foreign = ProviderAccountFactory(tenant=make_tenant("Other"), name="Foreign Cloud")
    _offers(foreign, 2, gpu_class="ZZ-FOREIGN")
    _offers(account, 1)
    body = owner_client.get(CAPACITY).content.decode()
    assert "ZZ-FOREIGN" not in body and "Foreign Cloud" not in body and row_count(body, "offers") == 1
    # naming the foreign account in the URL finds nothing of it (the choice is not offered: dropped)
    body = owner_client.get(f"{CAPACITY}?provider={foreign.pk}&gpu_class=ZZ-FOREIGN").content.decode()
    assert "Foreign Cloud" not in body and row_count(body, "offers") == 0


@pytest.mark.django_db
def test_a_providers_page_pages_its_own_offers(owner_client, account, tenant):
    other = ProviderAccountFactory(tenant=tenant, name="Cloud B")
    _offers(account, 28, gpu_class="L4")
    _offers(other, 2, gpu_class="L4")
    url = f"/providers/{account.pk}/"
    body = owner_client.get(url).content.decode()
    assert row_count(body, "offers") == 25 and "28 offers" in body and 'name="provider"' not in body
    body = owner_client.get(url + "?sort=-price_usd_per_hour&page=2").content.decode()
    assert row_count(body, "offers") == 3 and "$3.00" in body
    fragment = owner_client.get(url + "?page=2", headers={"HX-Request": "true"}).content.decode()
    assert row_count(fragment, "offers") == 3 and "Remove this account" not in fragment


@pytest.mark.django_db
@pytest.mark.parametrize("page", ["capacity", "detail"])
def test_offer_tables_cost_the_same_queries_for_1_and_20_rows(owner_client, account, page):
    url = CAPACITY if page == "capacity" else f"/providers/{account.pk}/"
    assert_same_queries_for_1_and_20_rows(owner_client, url, "offers",
                                          lambda i: OfferFactory(provider_account=account, gpu_class=f"G{i % 3}"))
