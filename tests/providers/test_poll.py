"""Capacity polling: all accounts at once, each within its own timeout, last good offers kept
(stale), health on the providers page (HTMX refresh, Poll now)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from decimal import Decimal

import pytest
from django.urls import reverse

from providers.adapters import registry
from providers.adapters.base import OfferData, ProviderInfo, TransientError
from providers.adapters.sandbox import SandboxAdapter
from providers.models import Health, ProviderAccount
from providers.services import POLL_TIMEOUT_SECONDS, capacity_poll, poll_timeout_for

RELEASE = threading.Event()  # lets abandoned slow polls finish when a test ends
# ``settings["meet"]``: the polls of that many accounts wait here for each other (a barrier only
# all of them together can pass), so they can only all answer if they were polled at once
MEETINGS: dict[int, threading.Barrier] = {}
ANSWERED: set[str] = set()  # accounts whose list_offers returned (an abandoned one never does)


class ScriptedAdapter(SandboxAdapter):
    """A provider whose answer time and failure come from the account's settings."""

    info = ProviderInfo(kind="test_scripted", label="Scripted", description="tests", supports_spot=True)

    def list_offers(self) -> list[OfferData]:
        meet = self.settings.get("meet")
        if meet:
            MEETINGS[meet].wait()  # BrokenBarrierError (a failed poll) if the others never come
        delay = float(self.settings.get("delay", 0))
        if delay:
            RELEASE.wait(delay)
        ANSWERED.add(self.account_id)
        if self.settings.get("fail") == "transient":
            raise TransientError("503 Service Unavailable", status=503)
        if self.settings.get("fail") == "crash":
            raise RuntimeError("adapter bug")
        return [OfferData(gpu_class="H100", gpu_count=1, region="sbx-us-east", country="US",
                          price_per_hour=Decimal("2.50"), spot=True, available=4)]


@dataclass(frozen=True)
class TimedInfo(ProviderInfo):
    """ProviderInfo of an adapter that declares its own poll timeout."""

    poll_timeout_seconds: float = 12.0


@pytest.fixture(autouse=True)
def scripted_kind(monkeypatch):
    RELEASE.clear()
    ANSWERED.clear()
    monkeypatch.setitem(registry.ADAPTERS, "test_scripted", f"{__name__}:ScriptedAdapter")
    yield
    RELEASE.set()


def account(tenant, name, **settings):
    return ProviderAccount.objects.create(tenant=tenant, kind="test_scripted", name=name, settings=settings)


@pytest.mark.django_db
def test_accounts_are_polled_concurrently(tenant):
    """No wall clock: the six polls meet at a barrier, which polls one after another never pass
    (each would wait for the others until its timeout). The speed figure is bench/poll.py's."""
    MEETINGS[6] = threading.Barrier(6, timeout=10)
    accounts = [account(tenant, f"a{i}", meet=6) for i in range(6)]
    results = capacity_poll(accounts=accounts)
    assert [r.error for r in results if not r.offers] == [] and len(results) == 6
    assert all(a.offer_count == 1 and a.health == Health.OK for a in ProviderAccount.objects.all())


@pytest.mark.django_db
def test_a_slow_provider_delays_nobody_beyond_its_own_timeout(tenant):
    fast = account(tenant, "fast")
    slow = account(tenant, "slow", delay=30, poll_timeout_seconds=0.4)
    results = {r.account_id: r for r in capacity_poll(accounts=[slow, fast])}
    # the cycle returned while the slow provider is still answering (it answers only when the
    # test ends): it was abandoned at its own timeout, not waited for
    assert str(slow.pk) not in ANSWERED and str(fast.pk) in ANSWERED
    assert results[str(fast.pk)].offers and "no answer within 0.4s" in results[str(slow.pk)].error
    fast.refresh_from_db()
    slow.refresh_from_db()
    assert fast.health == Health.OK and fast.offer_count == 1
    assert slow.health == Health.ERROR and "poll timeout" in slow.last_error and slow.last_polled_at


@pytest.mark.django_db
def test_failing_provider_keeps_last_good_offers_marked_stale(tenant):
    flaky = account(tenant, "flaky")
    other = account(tenant, "other")
    capacity_poll(accounts=[flaky, other])
    assert flaky.offers.count() == 1
    flaky.settings = {"fail": "transient"}
    flaky.save()
    capacity_poll(accounts=[flaky, other])
    flaky.refresh_from_db()
    other.refresh_from_db()
    assert flaky.health == Health.STALE and flaky.consecutive_failures == 1 and "503" in flaky.last_error
    assert flaky.offers.count() == 1 and flaky.offers.get().stale
    assert other.health == Health.OK and not other.offers.filter(stale=True).exists()
    flaky.settings = {"fail": "crash"}
    flaky.save()
    capacity_poll(accounts=[flaky])
    flaky.refresh_from_db()
    assert flaky.consecutive_failures == 2 and "RuntimeError: adapter bug" in flaky.last_error
    flaky.settings = {}
    flaky.save()
    capacity_poll(accounts=[flaky])
    flaky.refresh_from_db()
    assert flaky.health == Health.OK and flaky.consecutive_failures == 0 and flaky.last_error == ""
    assert not flaky.offers.filter(stale=True).exists()


@pytest.mark.django_db
def test_poll_timeout_precedence(tenant, settings, monkeypatch):
    a = account(tenant, "t")
    assert poll_timeout_for(a) == POLL_TIMEOUT_SECONDS
    monkeypatch.setattr(ScriptedAdapter, "info", TimedInfo(kind="test_scripted", label="S", description="",
                                                            supports_spot=True))
    assert poll_timeout_for(a) == 12.0
    settings.PROVIDER_POLL_TIMEOUTS = {"test_scripted": 7}
    assert poll_timeout_for(a) == 7.0
    a.settings = {"poll_timeout_seconds": "3.5"}
    assert poll_timeout_for(a) == 3.5
    a.settings = {"poll_timeout_seconds": "nonsense"}
    assert poll_timeout_for(a) == 7.0


# --- the providers page ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_providers_page_shows_health_and_refreshes_itself(owner_client, tenant):
    ok = account(tenant, "Healthy one")
    bad = account(tenant, "Broken one", fail="transient")
    capacity_poll(accounts=[ok, bad])
    body = owner_client.get(reverse("providers:list")).content.decode()
    assert "Healthy one" in body and "Broken one" in body
    assert "TransientError: 503 Service Unavailable" in body  # the last error
    assert 'hx-trigger="every 10s"' in body and "Poll now" in body
    fragment = owner_client.get(reverse("providers:list"), HTTP_HX_REQUEST="true").content.decode()
    assert "<html" not in fragment and fragment.lstrip().startswith('<div id="accounts"')
    assert "Failing" in fragment and "ago" in fragment


@pytest.mark.django_db
def test_poll_now(owner_client, client, developer, outsider, tenant):
    a = account(tenant, "p")
    assert a.last_polled_at is None
    response = owner_client.post(reverse("providers:poll", args=[a.pk]), {"from": "list"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'id="accounts"' in response.content.decode()
    a.refresh_from_db()
    assert a.last_polled_at is not None and a.offer_count == 1
    client.force_login(developer)
    assert client.post(reverse("providers:poll", args=[a.pk])).status_code == 403
    client.force_login(outsider)
    assert client.post(reverse("providers:poll", args=[a.pk])).status_code == 404


@pytest.mark.django_db
def test_providers_page_query_count_does_not_grow_with_accounts(owner_client, tenant, django_assert_max_num_queries):
    capacity_poll(accounts=[account(tenant, f"acct {i}") for i in range(2)])
    with django_assert_max_num_queries(12) as few:
        owner_client.get(reverse("providers:list"), HTTP_HX_REQUEST="true")
    capacity_poll(accounts=[account(tenant, f"more {i}") for i in range(8)])
    with django_assert_max_num_queries(len(few.captured_queries)):
        body = owner_client.get(reverse("providers:list"), HTTP_HX_REQUEST="true").content.decode()
    assert body.count('id="account-') == 10
