"""Recurring spend digests (billing/digest.py): subscribe from the Alerts page, one e-mail per day
or per week from 07:00 UTC, limited to the projects the member may see, never twice a day."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.urls import reverse

from billing.budgets import budget_create
from billing.digest import compose, digest_set, send_due_digests
from billing.metering import ledger_correct
from billing.models import SpendDigest
from billing.rollups import rollup_dirty
from provisioner import clock
from tenants.models import Membership
from tenants.permissions import VIEW_SPEND
from tenants.services import project_create, project_grant_set

from .helpers import account

MONDAY_8 = datetime(2026, 3, 16, 8, 0, tzinfo=UTC)  # a Monday, after the 07:00 UTC send hour


@pytest.fixture(autouse=True)
def _locmem(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def _spend(tenant, project, acct, usd: str, at: datetime) -> None:
    ledger_correct(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk, at=at,
                   amount=Decimal(usd), note="test spend")


def _membership(tenant, user) -> Membership:
    return Membership.objects.select_related("tenant", "user").get(tenant=tenant, user=user)


@pytest.mark.django_db
def test_alerts_page_subscribes_changes_and_stops_the_digest(client, finance, tenant):
    client.force_login(finance)
    page = client.get(reverse("billing:alerts")).content.decode()
    assert 'id="spend-digest"' in page and re.search(r'value="off"[^>]*checked', page)
    r = client.post(reverse("billing:digest"), {"frequency": "weekly"}, follow=True)
    assert r.status_code == 200 and "Weekly (Mondays) spend digest on" in r.content.decode()
    assert SpendDigest.objects.get(tenant=tenant, user=finance).frequency == "weekly"
    client.post(reverse("billing:digest"), {"frequency": "daily"})
    assert SpendDigest.objects.get(tenant=tenant, user=finance).frequency == "daily"
    r = client.post(reverse("billing:digest"), {"frequency": "hourly"}, follow=True)  # junk: refused, nothing changed
    assert r.status_code == 200 and "Choose Off, Daily or Weekly" in r.content.decode()
    assert SpendDigest.objects.get(tenant=tenant, user=finance).frequency == "daily"
    client.post(reverse("billing:digest"), {"frequency": "off"})
    assert not SpendDigest.objects.filter(tenant=tenant, user=finance).exists()


@pytest.mark.django_db
def test_a_member_without_spend_access_cannot_subscribe(client, viewer, tenant):
    client.force_login(viewer)
    r = client.post(reverse("billing:digest"), {"frequency": "daily"})
    assert r.status_code == 403 and not SpendDigest.objects.exists()


@pytest.mark.django_db
def test_daily_digest_sends_yesterdays_figures_once_a_day_from_seven(tenant, project, finance):
    acct = account(tenant)
    _spend(tenant, project, acct, "12.50", MONDAY_8 - timedelta(days=1))  # yesterday
    _spend(tenant, project, acct, "99.00", MONDAY_8 - timedelta(days=3))  # not in a daily digest
    budget_create(tenant=tenant, name="Team budget", amount_usd=Decimal("1000"), soft_thresholds=[80], hard_limit=False)
    with clock.frozen(MONDAY_8):
        rollup_dirty()
    digest_set(membership=_membership(tenant, finance), frequency="daily")
    assert send_due_digests(MONDAY_8.replace(hour=6, minute=59)) == 0  # before the send hour
    assert send_due_digests(MONDAY_8) == 1
    assert send_due_digests(MONDAY_8 + timedelta(minutes=60)) == 0  # once a day
    (sent,) = mail.outbox
    assert sent.to == [finance.email]
    assert sent.subject == f"[Provisioner] {tenant.name}: $12.50 spent yesterday (Sun 15 Mar)"
    assert f"  {project.name}: $12.50" in sent.body
    assert "Team budget: $" in sent.body and "of $1,000.00" in sent.body
    assert "range=custom" in sent.body and "from=2026-03-15&to=2026-03-15" in sent.body
    assert "Top workloads" not in sent.body  # corrections of no workload are no workload
    assert send_due_digests(MONDAY_8 + timedelta(days=1)) == 1  # the next day again


@pytest.mark.django_db
def test_weekly_digest_covers_the_seven_days_before_monday_and_catches_up_when_missed(tenant, project, finance):
    acct = account(tenant)
    for days_ago, usd in ((1, "1.00"), (7, "2.00"), (8, "40.00")):  # 8 days ago lies outside last week
        _spend(tenant, project, acct, usd, MONDAY_8 - timedelta(days=days_ago))
    with clock.frozen(MONDAY_8):
        rollup_dirty()
    digest_set(membership=_membership(tenant, finance), frequency="weekly")
    assert send_due_digests(MONDAY_8 - timedelta(days=2)) == 0  # a new subscription waits for Monday
    assert send_due_digests(MONDAY_8) == 1
    assert "$3.00 spent last week (09 Mar – 15 Mar)" in mail.outbox[0].subject
    assert send_due_digests(MONDAY_8 + timedelta(days=3)) == 0  # sent this week already
    # the worker was down all of the next Monday: Tuesday's tick sends it
    assert send_due_digests(MONDAY_8 + timedelta(days=8)) == 1


@pytest.mark.django_db
def test_digest_shows_only_the_projects_the_member_may_see(tenant, project, finance):
    secret = project_create(tenant=tenant, name="Secret lab")
    acct = account(tenant)
    _spend(tenant, project, acct, "5.00", MONDAY_8 - timedelta(days=1))
    _spend(tenant, secret, acct, "700.00", MONDAY_8 - timedelta(days=1))
    with clock.frozen(MONDAY_8):
        rollup_dirty()
    membership = _membership(tenant, finance)
    project_grant_set(membership=membership, project=secret, capability=VIEW_SPEND, granted=False)
    digest_set(membership=_membership(tenant, finance), frequency="daily")
    assert send_due_digests(MONDAY_8) == 1
    body = mail.outbox[0].body
    assert "$5.00 spent yesterday" in mail.outbox[0].subject
    assert "Secret lab" not in body and "700" not in body


@pytest.mark.django_db
def test_no_digest_for_a_member_who_left_or_may_see_nothing(tenant, project, finance):
    digest_set(membership=_membership(tenant, finance), frequency="daily")
    membership = _membership(tenant, finance)
    project_grant_set(membership=membership, project=project, capability=VIEW_SPEND, granted=False)
    assert compose(_membership(tenant, finance), "daily", MONDAY_8.date()) is None
    assert send_due_digests(MONDAY_8) == 0 and not mail.outbox
    Membership.objects.filter(tenant=tenant, user=finance).delete()
    assert send_due_digests(MONDAY_8 + timedelta(days=1)) == 0
    assert not SpendDigest.objects.exists()  # a digest of someone who left is removed


@pytest.mark.django_db
def test_a_mail_outage_retries_at_the_next_tick(tenant, project, finance, monkeypatch):
    digest_set(membership=_membership(tenant, finance), frequency="daily")

    def down(*_a, **_k):
        raise ConnectionRefusedError("smtp down")

    monkeypatch.setattr("billing.digest.send_mail", down)
    assert send_due_digests(MONDAY_8) == 0
    assert SpendDigest.objects.get().last_sent_on is None
    monkeypatch.undo()
    assert send_due_digests(MONDAY_8 + timedelta(hours=1)) == 1
