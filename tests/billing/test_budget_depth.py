"""Budget thresholds in dollars beside percentages, and the spend anomaly alert (today's booked
spend above SPEND_ANOMALY_FACTOR x the trailing 7-day daily mean, once per organization and day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.core import mail
from django.urls import reverse

from billing.budgets import budget_check, budget_create, budgets_enforce, spend_anomalies_check
from billing.metering import ledger_correct
from billing.models import Budget, BudgetAlert
from billing.rollups import rollup_dirty
from billing.webhooks import webhook_payload
from provisioner import clock

from .helpers import account

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _spend(tenant, project, acct, usd: str, at: datetime) -> None:
    ledger_correct(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk, at=at,
                   amount=Decimal(usd), note="test spend")


@pytest.mark.django_db
def test_dollar_thresholds_alert_once_each_beside_percentages(tenant, project, finance, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    acct = account(tenant)
    budget = budget_create(tenant=tenant, name="GPU", amount_usd=Decimal("1000"), soft_thresholds=[80],
                           soft_thresholds_usd=[50, 500], hard_limit=False, forecast_alert=False)
    _spend(tenant, project, acct, "60.00", NOON)
    with clock.frozen(NOON):
        sent = budget_check(budget)
        assert [(a.kind, a.threshold) for a in sent] == [(BudgetAlert.Kind.AMOUNT, 50)]
        assert budget_check(budget) == []  # once per period
    assert "reached $50.00 spent" in sent[0].message and finance.email in mail.outbox[0].to
    body, _headers = webhook_payload(budget, sent[0])
    assert b'"threshold_usd": 50' in body and b"threshold_pct" not in body
    _spend(tenant, project, acct, "800.00", NOON + H)
    with clock.frozen(NOON + H):
        assert sorted((a.kind, a.threshold) for a in budget_check(budget)) == [
            (BudgetAlert.Kind.AMOUNT, 500), (BudgetAlert.Kind.SPENT, 80)]


@pytest.mark.django_db
def test_budget_form_takes_dollar_thresholds_and_refuses_junk(client, finance, tenant):
    client.force_login(finance)
    form = {"name": "Team", "period": "month", "amount_usd": "2000", "soft_thresholds": "80",
            "soft_thresholds_usd": "$500, 1500", "email_alerts": "on"}
    r = client.post(reverse("billing:budgets"), form)
    assert r.status_code == 302
    assert Budget.objects.get(tenant=tenant, name="Team").soft_thresholds_usd == [500, 1500]
    page = client.get(reverse("billing:budgets")).content.decode()
    assert "80%, $500.00, $1,500.00" in page or "80%, $500.00, $1500.00" in page
    r = client.post(reverse("billing:budgets"), {**form, "name": "Bad", "soft_thresholds_usd": "lots"})
    assert r.status_code == 200 and "Use whole dollars" in r.content.decode()
    assert not Budget.objects.filter(name="Bad").exists()


@pytest.mark.django_db
def test_anomaly_alert_when_today_exceeds_factor_times_trailing_mean_once_a_day(tenant, project, finance, owner,
                                                                                  settings, django_assert_max_num_queries):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.SPEND_ANOMALY_FACTOR = Decimal("3")
    acct = account(tenant)
    for d in range(1, 8):  # $10 a day for the 7 days before
        with clock.frozen(NOON - timedelta(days=d)):
            _spend(tenant, project, acct, "10.00", NOON - timedelta(days=d))
    rollup_dirty()
    _spend(tenant, project, acct, "30.00", NOON - H)  # exactly 3x: not above
    with clock.frozen(NOON):
        with django_assert_max_num_queries(2):
            assert spend_anomalies_check() == []
    _spend(tenant, project, acct, "0.01", NOON)
    with clock.frozen(NOON + H):
        sent = spend_anomalies_check()
        assert len(sent) == 1 and sent[0].kind == BudgetAlert.Kind.ANOMALY and sent[0].budget is None
        assert "3.0x the daily mean of the last 7 days ($10.00" in sent[0].message
        assert {finance.email, owner.email} <= set(mail.outbox[-1].to)
        _spend(tenant, project, acct, "50.00", NOON + H)
        assert spend_anomalies_check() == [] and budgets_enforce() == 0  # once per day
    # the next day starts over, and a factor of 0 turns the alert off
    tomorrow = NOON + timedelta(days=1)
    _spend(tenant, project, acct, "500.00", tomorrow)
    rollup_dirty()
    settings.SPEND_ANOMALY_FACTOR = Decimal("0")
    with clock.frozen(tomorrow):
        assert spend_anomalies_check() == []
    settings.SPEND_ANOMALY_FACTOR = Decimal("3")
    with clock.frozen(tomorrow):
        assert len(spend_anomalies_check()) == 1
    assert BudgetAlert.objects.filter(tenant=tenant, kind=BudgetAlert.Kind.ANOMALY).count() == 2


@pytest.mark.django_db
def test_anomaly_alert_goes_to_the_organization_budget_webhook(tenant, project, monkeypatch, settings,
                                                               django_capture_on_commit_callbacks):
    seen = []
    monkeypatch.setattr(httpx, "post", lambda url, content, headers, **kw: seen.append((url, content)) or httpx.Response(204))
    settings.OUTBOUND_RESOLVER = lambda host: ["93.184.216.34"]  # a public address (resolver stub)
    settings.SPEND_ANOMALY_FACTOR = Decimal("2")
    budget_create(tenant=tenant, name="Team", project=project, amount_usd=Decimal("999"),
                  webhook_url="https://hooks.example.com/team")  # a project budget: not the organization's
    budget_create(tenant=tenant, name="Org", amount_usd=Decimal("999"), webhook_url="https://hooks.example.com/org")
    acct = account(tenant)
    for d in range(1, 8):
        _spend(tenant, project, acct, "10.00", NOON - timedelta(days=d))
    rollup_dirty()
    _spend(tenant, project, acct, "25.00", NOON)
    with clock.frozen(NOON), django_capture_on_commit_callbacks(execute=True):
        (alert,) = spend_anomalies_check()
    assert [url.rsplit("/", 1)[1] for url, _ in seen] == ["org"]  # pinned to the resolved address, path kept
    assert b'"event": "spend.anomaly"' in seen[0][1]
    alert.refresh_from_db()
    assert alert.webhook_status == "HTTP 204"
