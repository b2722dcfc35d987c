"""The Spend page's reconciliation card: per account and period, our figure, the provider's,
the drift, flagged days; providers without a billing API say so."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing.models import ProviderBillingDay
from provisioner import clock

from ..factories import ProviderAccountFactory

NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)


def _day(acct, day: date, ours: str, theirs: str, *, flagged=False, other="0", estimated=False):
    return ProviderBillingDay.objects.create(
        tenant=acct.tenant, provider_account=acct, day=day, ours_amount=Decimal(ours), provider_amount=Decimal(theirs),
        other_amount=Decimal(other), drift_flagged=flagged, estimated=estimated, fetched_at=NOW, first_fetched_at=NOW)


@pytest.fixture
def figures(tenant, other_tenant):
    runpod = ProviderAccountFactory(tenant=tenant, kind="runpod", name="RunPod prod")
    aws = ProviderAccountFactory(tenant=tenant, kind="aws", name="AWS research")
    ProviderAccountFactory(tenant=tenant, kind="lambda", name="Lambda main")
    _day(runpod, date(2026, 3, 13), "0", "0")
    _day(runpod, date(2026, 3, 16), "10.00", "11.00", flagged=True)
    _day(runpod, date(2026, 3, 17), "5.004", "5.00", other="7.25")
    _day(runpod, date(2026, 3, 1), "99.00", "1.00", flagged=True)  # outside the last 7 days
    _day(aws, date(2026, 3, 17), "12.00", "12.00", estimated=True)
    foreign = ProviderAccountFactory(tenant=other_tenant, kind="runpod", name="Foreign RunPod")
    _day(foreign, date(2026, 3, 17), "1.00", "50.00", flagged=True)
    return runpod, aws


def _rows(html: str) -> dict[str, str]:
    import re

    out = {}
    for m in re.finditer(r'data-account="([^"]+)">(.*?)</tr>', html, re.S):
        out[m.group(1)] = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", m.group(2))).strip()
    return out


@pytest.mark.django_db
def test_finance_sees_ours_theirs_and_drift_per_account_for_the_period(client, finance, figures,
                                                                       django_assert_max_num_queries):
    client.force_login(finance)
    with clock.frozen(NOW), django_assert_max_num_queries(8):
        resp = client.get("/spend/reconciliation/?range=7d")
    assert resp.status_code == 200
    html = resp.content.decode()
    rows = _rows(html)
    assert set(rows) == {"RunPod prod", "AWS research", "Lambda main"}  # not the other organization's
    assert "$15.00 $16.00 -1.00 (-6.3%) Drift flagged 2026-03-16: $10.00 booked vs $11.00 charged" in rows["RunPod prod"]
    assert "Also charged on this account for resources not launched here: $7.25" in rows["RunPod prod"]
    assert "2 days without the provider's figure yet" in rows["RunPod prod"]  # the 14th and 15th
    assert "$12.00 $12.00 0.00 (0.0%) Matches" in rows["AWS research"] and "estimated" in rows["AWS research"]
    assert "has no billing API: its figures cannot be reconciled here" in rows["Lambda main"]
    assert "Foreign" not in html and "2026-03-01" not in html


@pytest.mark.django_db
def test_the_card_follows_the_dashboards_provider_filter(client, finance, figures):
    runpod, _ = figures
    client.force_login(finance)
    with clock.frozen(NOW):
        html = client.get(f"/spend/reconciliation/?range=30d&provider={runpod.pk}").content.decode()
    rows = _rows(html)
    assert list(rows) == ["RunPod prod"] and "$114.00 $17.00" in rows["RunPod prod"]


@pytest.mark.django_db
def test_spend_page_loads_the_card_after_the_page(client, finance, figures):
    client.force_login(finance)
    with clock.frozen(NOW):
        html = client.get("/spend/?range=7d").content.decode()
    assert 'hx-get="/spend/reconciliation/?range=7d' in html


@pytest.mark.django_db
def test_yesterdays_drift_shows_as_provisional_until_it_settles(client, finance, tenant):
    vast = ProviderAccountFactory(tenant=tenant, kind="vast", name="Vast spot")
    _day(vast, date(2026, 3, 16), "4.00", "5.00", flagged=True)
    _day(vast, date(2026, 3, 17), "4.00", "2.00", flagged=True)
    client.force_login(finance)
    with clock.frozen(NOW):
        row = _rows(client.get("/spend/reconciliation/?range=7d").content.decode())["Vast spot"]
    assert "2026-03-16: $4.00 booked vs $5.00 charged;" in row  # settled: alerted
    assert "2026-03-17: $4.00 booked vs $2.00 charged (provisional" in row


@pytest.mark.django_db
def test_a_failed_fetch_is_said_on_the_page(client, finance, tenant):
    from billing.models import ProviderBillingFetch

    aws = ProviderAccountFactory(tenant=tenant, kind="aws", name="AWS prod")
    ProviderBillingFetch.objects.create(provider_account=aws, tenant=tenant, attempted_at=NOW,
                                        error="InvalidCredentials: not authorized to perform ce:GetCostAndUsage")
    client.force_login(finance)
    with clock.frozen(NOW):
        row = _rows(client.get("/spend/reconciliation/?range=7d").content.decode())["AWS prod"]
    assert "Not fetched yet" in row
    assert "The last fetch (Mar 18, 12:00 UTC) failed: InvalidCredentials: not authorized to perform ce:GetCostAndUsage" in row


@pytest.mark.django_db
def test_aws_cost_all_untagged_points_at_the_cost_allocation_tag(client, finance, tenant):
    aws = ProviderAccountFactory(tenant=tenant, kind="aws", name="AWS untagged")
    _day(aws, date(2026, 3, 16), "12.00", "0", other="52.50", flagged=True)
    client.force_login(finance)
    with clock.frozen(NOW):
        row = _rows(client.get("/spend/reconciliation/?range=7d").content.decode())["AWS untagged"]
    assert "activate it as a cost allocation tag in the AWS Billing console" in row
