"""The wizard's recommendation (best spot availability near the organization) and the bundled
provider table with its refresh command."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.core.management import call_command

from providers.adapters.base import ProviderInfo
from providers.models import Offer
from providers.recommend import load_table, recommend_provider, table_from_offers
from provisioner import clock

from ..factories import OfferFactory, ProviderAccountFactory

SPOTTY = [ProviderInfo(kind=k, label=k.title(), description="", supports_spot=True) for k in ("runpod", "vast", "aws")]
NO_SPOT = ProviderInfo(kind="lambda", label="Lambda", description="", supports_spot=False)
SANDBOX = ProviderInfo(kind="sandbox", label="Sandbox", description="", supports_spot=True)

TABLE = {"generated_at": "2026-11-01T00:00:00+00:00", "providers": {
    "runpod": {"countries": {"US": {"spot_units": 100}, "RO": {"spot_units": 10}}},
    "vast": {"countries": {"DE": {"spot_units": 20}, "FR": {"spot_units": 5}, "US": {"spot_units": 50}}},
    "aws": {"countries": {"IE": {"spot_units": 30}, "DE": {"spot_units": 1}}},
    "lambda": {"countries": {"DE": {"spot_units": 999}}},
    "sandbox": {"countries": {"DE": {"spot_units": 999}}},
}}


def offers_for(tenant, kind, country, spot_units, *, stale=False):
    account = ProviderAccountFactory(tenant=tenant, kind=kind, name=f"{kind}-{country}-{spot_units}")
    OfferFactory(provider_account=account, tenant=tenant, kind=kind, gpu_class="H100", gpu_count=1,
                 region=f"{country.lower()}-1", country=country, spot=True, price_per_hour=Decimal("1"),
                 price_usd_per_hour=Decimal("1"), available=spot_units, fetched_at=clock.now(), stale=stale)
    return account


@pytest.mark.django_db
def test_home_country_counts_double_and_the_area_counts(tenant):
    tenant.home_country = "DE"
    rec = recommend_provider(tenant=tenant, infos=[*SPOTTY, NO_SPOT, SANDBOX], table=TABLE)
    # vast: 2*20 + 5 = 45; aws: 2*1 + 30 (IE) = 32; runpod: RO 10 = 10; lambda/sandbox never
    assert rec.kind == "vast" and rec.source == "table"
    assert "DE" in rec.reason and "about 20 spot GPUs in DE" in rec.reason and "Europe" in rec.reason
    assert "bundled provider table (2026-11-01)" in rec.reason
    tenant.home_country = "US"
    assert recommend_provider(tenant=tenant, infos=SPOTTY, table=TABLE).kind == "runpod"


@pytest.mark.django_db
def test_known_capacity_of_connected_accounts_beats_the_table(tenant):
    tenant.home_country = "DE"
    offers_for(tenant, "runpod", "DE", 60)
    rec = recommend_provider(tenant=tenant, infos=SPOTTY, table=TABLE)
    assert rec.kind == "runpod" and rec.source == "connected"
    assert "connected Runpod account" in rec.reason and "about 60 spot GPUs in DE" in rec.reason


@pytest.mark.django_db
def test_stale_and_other_tenants_offers_are_ignored(tenant, other_tenant):
    tenant.home_country = "DE"
    offers_for(other_tenant, "runpod", "DE", 500)
    offers_for(tenant, "aws", "DE", 500, stale=True)
    rec = recommend_provider(tenant=tenant, infos=SPOTTY, table=TABLE)
    assert rec.kind == "vast" and rec.source == "table"


@pytest.mark.django_db
def test_no_recommendation_without_spot_capacity_nearby(tenant):
    tenant.home_country = "BR"
    assert recommend_provider(tenant=tenant, infos=SPOTTY, table=TABLE) is None
    assert recommend_provider(tenant=tenant, infos=[NO_SPOT, SANDBOX], table=TABLE) is None


@pytest.mark.django_db
def test_the_bundled_table_is_usable(tenant):
    table = load_table()
    assert {"runpod", "vast", "lambda", "hetzner"} <= set(table["providers"])
    assert table["providers"]["lambda"]["supports_spot"] is False
    tenant.home_country = "DE"
    assert recommend_provider(tenant=tenant, infos=SPOTTY) is not None
    assert load_table("/nonexistent/table.json") == {"providers": {}}


@pytest.mark.django_db
def test_wizard_page_shows_the_recommendation_with_its_reason(owner_client, tenant):
    tenant.home_country = "DE"
    tenant.save()
    offers_for(tenant, "runpod", "DE", 42)
    body = owner_client.get("/providers/connect/").content.decode()
    assert 'id="recommendation"' in body and "RunPod has the best spot availability for your country (DE)" in body
    assert "about 42 spot GPUs in DE" in body
    assert 'class="tile provider-tile recommended" data-kind="runpod"' in body


@pytest.mark.django_db
def test_refresh_command_recomputes_connected_kinds_and_keeps_the_rest(tenant, other_tenant, tmp_path):
    path = tmp_path / "table.json"
    path.write_text(json.dumps(TABLE))
    offers_for(tenant, "runpod", "DE", 3)
    offers_for(other_tenant, "runpod", "DE", 4)
    offers_for(tenant, "runpod", "US", 2, stale=True)  # a failed poll's leftovers do not count
    call_command("refresh_provider_table", output=str(path), verbosity=0)
    table = json.loads(path.read_text())
    runpod = table["providers"]["runpod"]
    assert runpod["countries"] == {"DE": {"spot_units": 7, "spot_offers": 2, "on_demand_offers": 0}}
    assert runpod["source"] == "computed from 2 connected account(s)" and runpod["label"] == "RunPod"
    assert table["providers"]["vast"] == TABLE["providers"]["vast"]  # nobody connected: kept
    assert table_from_offers(Offer.objects.filter(stale=False))["runpod"]["DE"]["spot_units"] == 7


@pytest.mark.django_db
def test_the_recommendation_explains_itself_and_sandbox_stays_the_first_step(owner_client, tenant):
    """Issue 15 §2.9: no bare "Recommended" badge; an organization without credentials is pointed
    at the Sandbox first (selected, badged), the spot recommendation says what it is for."""
    tenant.home_country = "DE"
    tenant.save()
    body = owner_client.get("/providers/connect/").content.decode()
    assert ">Recommended<" not in body
    assert 'id="start-here"' in body and "Start with the Sandbox" in body and 'id="badge-start-here"' in body
    assert re.search(r'value="sandbox"\s+checked', body)
    assert 'id="badge-spot"' in body and "Best spot availability for DE" in body  # from the bundled table
    assert "When you connect a real provider:" in body and "has the best spot availability for your country (DE)" in body
    assert body.index('data-kind="sandbox"') < body.index('id="badge-spot"')
    # once a real provider is connected, the Sandbox is no longer pushed first
    offers_for(tenant, "runpod", "DE", 42)
    body = owner_client.get("/providers/connect/").content.decode()
    assert 'id="start-here"' not in body and not re.search(r'value="sandbox"\s+checked', body)
    assert "RunPod has the best spot availability for your country (DE)" in body
