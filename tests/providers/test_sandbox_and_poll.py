from __future__ import annotations

import pytest

from providers.adapters.sandbox import SANDBOX_REGIONS
from providers.models import Health
from providers.services import PollResult, capacity_poll, capacity_store


@pytest.mark.django_db
def test_sandbox_offers_span_regions_countries_and_markets(sandbox):
    offers = sandbox.offers.all()
    assert len({o.region for o in offers}) >= 5
    countries = {o.country for o in offers}
    assert len(countries) >= 3 and countries & {"DE", "NL", "FI"}
    assert {o.spot for o in offers} == {True, False}
    classes = {o.gpu_class for o in offers}
    assert {"T4", "H100"} <= classes
    assert len(SANDBOX_REGIONS) >= 5


@pytest.mark.django_db
def test_sandbox_is_deterministic_under_a_seed(sandbox):
    from providers.services import adapter_for

    a = adapter_for(sandbox).list_offers()
    b = adapter_for(sandbox).list_offers()
    assert a == b


@pytest.mark.django_db
def test_failed_poll_keeps_last_good_offers_marked_stale(sandbox):
    n = sandbox.offers.count()
    capacity_store(account=sandbox, result=PollResult(str(sandbox.pk), None, "TransientError: 503"))
    sandbox.refresh_from_db()
    assert sandbox.health == Health.STALE
    assert sandbox.offers.count() == n
    assert not sandbox.offers.filter(stale=False).exists()
    assert "503" in sandbox.last_error
    capacity_poll(accounts=[sandbox])
    sandbox.refresh_from_db()
    assert sandbox.health == Health.OK and not sandbox.offers.filter(stale=True).exists()
