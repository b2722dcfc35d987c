"""Reconciliation with the providers' own figures: RunPod and Vast.ai through their stand-ins
served on 127.0.0.1, AWS Cost Explorer through moto's server; our side is real metering."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.core import mail
from django.core.exceptions import ImproperlyConfigured

from billing import reconcile
from billing.budgets import budget_create
from billing.models import BudgetAlert, ProviderBillingDay, ProviderBillingFetch
from providers.models import ProviderAccount
from provisioner import clock
from provisioner.env import env_decimal
from provisioner.schedule import SCHEDULE
from tests.standins import fixtures as _fx
from tests.standins import moto_server as _moto
from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings
from workloads.models import PodState

from .helpers import make_pod, run_timeline

moto_server = _moto.moto_server
moto_url = _moto.moto_url
served_runpod = _fx.served_runpod
served_vast = _fx.served_vast

H = timedelta(hours=1)
DAY = date(2026, 3, 16)  # a Monday; the run happens on the 18th, so the 15th..17th are fetched
RUN_AT = datetime(2026, 3, 18, 2, 0, tzinfo=UTC)


def _account(tenant, kind: str, served=None, name: str = "", **settings) -> ProviderAccount:
    creds = STANDIN_CREDENTIALS.get(kind) or {"access_key_id": "testing", "secret_access_key": "testing"}
    base = account_settings(served) if served is not None else {}
    return ProviderAccount.objects.create(tenant=tenant, kind=kind, name=name or f"{kind} main", credentials=creds,
                                          settings={**base, **settings})


def _ran(tenant, project, owner, acct, *, price: str, hours: int, external_id: str, day: date = DAY):
    """A pod of ours that ran ``hours`` from 06:00 UTC on ``day`` at ``price``/h, metered."""
    start = datetime.combine(day, datetime.min.time(), tzinfo=UTC).replace(hour=6)
    with clock.frozen(start):
        pod = make_pod(tenant, project, owner, acct, price=price, name=f"job-{external_id}")
    pod.external_id = external_id
    pod.save(update_fields=["external_id"])
    run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (hours * H, PodState.TERMINATED)], meter_every=H)
    return pod


def test_the_daily_task_is_in_the_one_registry():
    assert ("billing.reconcile_provider_billing", 86400) in [(e.task, e.every_seconds) for e in SCHEDULE]


def test_drift_threshold_setting_is_read_loudly(monkeypatch):
    monkeypatch.setenv("BILLING_DRIFT_THRESHOLD_PCT", "2.5")
    assert env_decimal("BILLING_DRIFT_THRESHOLD_PCT", "2", minimum="0") == Decimal("2.5")
    for bad in ("two", "-1", "nan"):
        monkeypatch.setenv("BILLING_DRIFT_THRESHOLD_PCT", bad)
        with pytest.raises(ImproperlyConfigured):
            env_decimal("BILLING_DRIFT_THRESHOLD_PCT", "2", minimum="0")


@pytest.mark.parametrize(("ours", "theirs", "flag"), [
    ("10.00", "10.00", False),
    ("10.20", "10.00", False),   # exactly 2 %: not above the threshold
    ("10.21", "10.00", True),
    ("9.79", "10.00", True),     # under-booking drifts too
    ("0.004", "0.00", False),    # both are $0.00 in cents
    ("0.01", "0.00", True),      # the provider charged nothing, we booked a cent
    ("0.00", "3.00", True),
])
def test_drift_is_judged_in_cents_against_the_providers_figure(ours, theirs, flag):
    assert reconcile.drifts(Decimal(ours), Decimal(theirs), Decimal(2)) is flag


@pytest.mark.django_db
def test_runpod_figures_match_ours_per_pod_and_foreign_pods_are_other_spend(tenant, project, owner, served_runpod):
    acct = _account(tenant, "runpod", served_runpod)
    _ran(tenant, project, owner, acct, price="2.00", hours=5, external_id="podaaaaaaaaaa1")   # $10.00
    _ran(tenant, project, owner, acct, price="1.50", hours=2, external_id="podbbbbbbbbbb2")   # $3.00
    standin = served_runpod.standin
    standin.bill("podaaaaaaaaaa1", DAY.isoformat(), gpu=9.8, disk=0.2)
    standin.bill("podbbbbbbbbbb2", DAY.isoformat(), gpu=3.0)
    standin.bill("someoneelses01", DAY.isoformat(), gpu=7.25)  # launched by hand in the console
    with clock.frozen(RUN_AT - timedelta(days=1)):
        first_run = reconcile.reconcile_account(account=acct)  # the account's first: 35 days back
    assert (first_run[0].day, first_run[-1].day, len(first_run)) == (date(2026, 2, 10), DAY, 35)
    with clock.frozen(RUN_AT):
        rows = reconcile.reconcile_account(account=acct)
    assert [r.day for r in rows] == [date(2026, 3, 15), DAY, date(2026, 3, 17)]
    row = ProviderBillingDay.objects.get(provider_account=acct, day=DAY)
    assert (row.ours_amount, row.provider_amount, row.other_amount) == (Decimal("13"), Decimal("13"), Decimal("7.25"))
    assert row.currency == "USD" and not row.drift_flagged
    assert not BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT).exists()
    backfill, req = standin.requests("billing")  # one request for each whole window, in UTC days
    assert backfill.url.params["startTime"] == "2026-02-10T00:00:00Z"
    assert dict(req.url.params) == {"startTime": "2026-03-15T00:00:00Z", "endTime": "2026-03-18T00:00:00Z",
                                    "bucketSize": "day"}


@pytest.mark.django_db
def test_drift_alerts_once_per_account_and_day_by_app_email_and_webhook(tenant, project, owner, finance,
                                                                        served_runpod, monkeypatch, settings):
    posted = []
    settings.OUTBOUND_RESOLVER = lambda host: ["93.184.216.34"]  # hooks.example is public (resolver stub)
    monkeypatch.setattr(httpx, "post", lambda url, content, headers, **kw: posted.append((url, content)) or
                        httpx.Response(204))
    budget_create(tenant=tenant, name="Org", amount_usd=Decimal("1000"), webhook_url="https://hooks.example/fin")
    acct = _account(tenant, "runpod", served_runpod)
    _ran(tenant, project, owner, acct, price="2.00", hours=5, external_id="podaaaaaaaaaa1")  # $10.00
    served_runpod.standin.bill("podaaaaaaaaaa1", DAY.isoformat(), gpu=11.0)  # RunPod says $11: -9.1 %
    with clock.frozen(RUN_AT):
        reconcile.reconcile_all()
    (alert,) = BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT)
    assert alert.provider_account_id == acct.pk and alert.period_start == datetime(2026, 3, 16, tzinfo=UTC)
    assert "we booked $10.00, RunPod charged $11.00 (-9.1%" in alert.message and "2026-03-16" in alert.message
    assert finance.email in alert.emailed_to and owner.email in alert.emailed_to
    assert len(mail.outbox) == 1 and "Billing drift" in mail.outbox[0].subject
    assert alert.webhook_status == "HTTP 204"
    body = json.loads(posted[0][1])
    assert body["event"] == "billing.drift" and body["ours"] == "10.00" and body["provider_amount"] == "11.00"
    # the next day's run re-fetches the 16th (late figures) and finds the same drift: no second alert
    with clock.frozen(RUN_AT + timedelta(days=1)):
        reconcile.reconcile_all()
    assert BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT).count() == 1 and len(mail.outbox) == 1


@pytest.mark.django_db
def test_late_figures_are_refetched_and_replace_the_earlier_ones(tenant, project, owner, served_runpod):
    acct = _account(tenant, "runpod", served_runpod)
    _ran(tenant, project, owner, acct, price="2.00", hours=5, external_id="podaaaaaaaaaa1")
    with clock.frozen(datetime(2026, 3, 17, 2, 0, tzinfo=UTC)):
        reconcile.reconcile_account(account=acct)  # RunPod has not booked the 16th yet
    first = ProviderBillingDay.objects.get(provider_account=acct, day=DAY)
    assert first.provider_amount == 0 and first.drift_flagged
    assert not BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT).exists()  # yesterday: not settled, no alarm
    served_runpod.standin.bill("podaaaaaaaaaa1", DAY.isoformat(), gpu=10.0)
    with clock.frozen(RUN_AT):
        reconcile.reconcile_account(account=acct)
    row = ProviderBillingDay.objects.get(provider_account=acct, day=DAY)
    assert row.provider_amount == Decimal("10") and not row.drift_flagged
    assert row.first_fetched_at == first.first_fetched_at and row.fetched_at == RUN_AT
    assert not BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT).exists() and not mail.outbox


@pytest.mark.django_db
def test_vast_charges_per_instance_over_pages(tenant, project, owner, served_vast, monkeypatch, settings):
    from providers.adapters import vast_billing

    monkeypatch.setattr(vast_billing, "PAGE_LIMIT", 1)  # every contract on its own page
    settings.BILLING_RECONCILE_DAYS = settings.BILLING_RECONCILE_BACKFILL_DAYS = 1
    acct = _account(tenant, "vast", served_vast)
    _ran(tenant, project, owner, acct, price="0.40", hours=10, external_id="27000001", day=date(2026, 3, 17))  # $4
    standin = served_vast.standin
    standin.charge("instance-27000001", "2026-03-17", gpu=3.9, disk=0.1)
    standin.charge("instance-27000001", "2026-03-16", gpu=5.0)  # another day: not in this window
    standin.charge("volume-5501", "2026-03-17", disk=0.25)
    standin.charge("instance-99999999", "2026-03-17", gpu=1.0)
    with clock.frozen(RUN_AT):
        (row,) = reconcile.reconcile_account(account=acct)
    assert (row.day, row.ours_amount, row.provider_amount, row.other_amount) == \
        (date(2026, 3, 17), Decimal("4"), Decimal("4"), Decimal("1.25"))
    reqs = standin.requests("billing")
    assert len(reqs) == 3  # three contracts, one per page
    assert json.loads(reqs[0].url.params["select_filters"]) == {"day": {"gte": 1773705600, "lte": 1773791999}}


def _ce_results(moto: str, results: list[dict]) -> None:
    resp = httpx.post(f"{moto}/moto-api/static/ce/cost-and-usage-results", json={"results": results}, timeout=10)
    assert resp.status_code == 201


@pytest.mark.django_db
def test_aws_cost_explorer_by_pod_tag(tenant, project, owner, moto_url, settings):
    settings.BILLING_RECONCILE_DAYS = settings.BILLING_RECONCILE_BACKFILL_DAYS = 2
    acct = _account(tenant, "aws", base_url=moto_url)
    pod = _ran(tenant, project, owner, acct, price="3.00", hours=4, external_id="us-east-1/i-0abc",
               day=date(2026, 3, 17))  # $12
    usd = lambda amount: {"UnblendedCost": {"Amount": amount, "Unit": "USD"}}  # noqa: E731
    the_17th = {"TimePeriod": {"Start": "2026-03-17", "End": "2026-03-18"}, "Total": {}, "Estimated": True, "Groups": [
        {"Keys": [f"provisioner:pod${pod.pk}"], "Metrics": usd("12.9")},
        {"Keys": ["provisioner:pod$"], "Metrics": usd("40.123")}]}
    _ce_results(moto_url, [  # moto answers queued results in order, one per distinct request
        {"ResultsByTime": [{"TimePeriod": {"Start": "2026-03-16", "End": "2026-03-17"}, "Total": {}, "Groups": [],
                            "Estimated": False}, the_17th], "DimensionValueAttributes": []},
        {"ResultsByTime": [the_17th, {"TimePeriod": {"Start": "2026-03-18", "End": "2026-03-19"}, "Total": {},
                                      "Groups": [], "Estimated": True}], "DimensionValueAttributes": []},
    ])
    with clock.frozen(RUN_AT):
        rows = reconcile.reconcile_account(account=acct)
    empty, day = rows
    assert (empty.day, empty.provider_amount, empty.ours_amount, empty.drift_flagged) == \
        (date(2026, 3, 16), 0, 0, False)
    assert (day.provider_amount, day.other_amount, day.ours_amount) == (Decimal("12.9"), Decimal("40.123"), Decimal("12"))
    assert day.estimated and day.drift_flagged  # 12.00 vs 12.90: -7 %
    assert not BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT).exists()  # the 17th is not settled on the 18th
    with clock.frozen(RUN_AT + timedelta(days=1)):
        reconcile.reconcile_account(account=acct)  # re-fetched on the 19th: still drifting, now it alerts
    (alert,) = BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT, provider_account=acct)
    assert alert.period_start == datetime(2026, 3, 17, tzinfo=UTC) and "AWS EC2 charged $12.90" in alert.message


@pytest.mark.django_db
def test_one_failing_account_does_not_stop_the_others(tenant, project, owner, served_runpod, served_vast, settings):
    settings.BILLING_RECONCILE_BACKFILL_DAYS = 0  # the three recent days only
    bad = _account(tenant, "runpod", served_runpod)
    served_runpod.standin.valid_keys = {"another-key"}
    good = _account(tenant, "vast", served_vast)
    good.enabled = False  # out of placement, but its pods may still bill: still reconciled
    good.save(update_fields=["enabled"])
    gone = _account(tenant, "vast", served_vast, name="vast old", removed_at="2026-03-01T00:00:00+00:00")  # removed: skipped
    lam = ProviderAccount.objects.create(tenant=tenant, kind="lambda", name="lambda main")
    with clock.frozen(RUN_AT):
        assert reconcile.reconcile_all() == 3  # the three Vast.ai days; RunPod refused, Lambda has no API
    assert not ProviderBillingDay.objects.filter(provider_account__in=[bad, lam, gone]).exists()
    assert ProviderBillingDay.objects.filter(provider_account=good).count() == 3
    failed, worked = ProviderBillingFetch.objects.get(provider_account=bad), ProviderBillingFetch.objects.get(provider_account=good)
    assert failed.error.startswith("InvalidCredentials") and failed.succeeded_at is None
    assert worked.error == "" and worked.succeeded_at == RUN_AT
    served_runpod.standin.valid_keys = {"test-key"}  # the key is fixed: the next run clears the error
    with clock.frozen(RUN_AT + timedelta(days=1)):
        reconcile.reconcile_all()
    failed.refresh_from_db()
    assert failed.error == "" and failed.succeeded_at == RUN_AT + timedelta(days=1)


@pytest.mark.django_db
def test_aws_cost_without_our_tag_says_to_activate_the_cost_allocation_tag(tenant, project, owner, moto_url, settings):
    settings.BILLING_RECONCILE_DAYS = settings.BILLING_RECONCILE_BACKFILL_DAYS = 2
    acct = _account(tenant, "aws", base_url=moto_url)
    _ran(tenant, project, owner, acct, price="3.00", hours=4, external_id="us-east-1/i-0abc", day=date(2026, 3, 16))
    untagged = {"TimePeriod": {"Start": "2026-03-16", "End": "2026-03-17"}, "Total": {}, "Estimated": False,
                "Groups": [{"Keys": ["provisioner:pod$"], "Metrics": {"UnblendedCost": {"Amount": "52.5", "Unit": "USD"}}}]}
    _ce_results(moto_url, [{"ResultsByTime": [untagged], "DimensionValueAttributes": []}])
    with clock.frozen(RUN_AT):
        reconcile.reconcile_account(account=acct)
    (alert,) = BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT, provider_account=acct)
    assert "we booked $12.00, AWS EC2 charged $0.00" in alert.message
    assert "provisioner:pod tag: is it activated as a cost allocation tag?" in alert.message


@pytest.mark.django_db
def test_a_backfill_with_several_drifting_days_sends_one_email_and_one_webhook_event_per_day(
        tenant, project, owner, finance, served_runpod, monkeypatch, settings):
    posted = []
    settings.OUTBOUND_RESOLVER = lambda host: ["93.184.216.34"]  # hooks.example is public (resolver stub)
    monkeypatch.setattr(httpx, "post", lambda url, content, headers, **kw: posted.append(json.loads(content)) or
                        httpx.Response(200))
    budget_create(tenant=tenant, name="Org", amount_usd=Decimal("1000"), webhook_url="https://hooks.example/fin")
    acct = _account(tenant, "runpod", served_runpod)
    for i, day in enumerate((date(2026, 3, 10), date(2026, 3, 12), DAY)):
        _ran(tenant, project, owner, acct, price="2.00", hours=5, external_id=f"pod{i}", day=day)  # $10 each
        served_runpod.standin.bill(f"pod{i}", day.isoformat(), gpu=12.0)
    with clock.frozen(RUN_AT):
        reconcile.reconcile_all()  # the first run: 35 days back
    alerts = BudgetAlert.objects.filter(kind=BudgetAlert.Kind.DRIFT).order_by("period_start")
    assert [a.period_start.date() for a in alerts] == [date(2026, 3, 10), date(2026, 3, 12), DAY]
    assert all(finance.email in a.emailed_to and a.webhook_status == "HTTP 200" for a in alerts)
    (email,) = mail.outbox
    assert email.subject == '[Provisioner] Billing drift on "runpod main" on 3 days'
    assert all(d in email.body for d in ("2026-03-10", "2026-03-12", "2026-03-16"))
    assert [p["day"] for p in posted] == ["2026-03-10", "2026-03-12", "2026-03-16"]


@pytest.mark.django_db
def test_an_unreadable_billing_answer_is_recorded_and_does_not_stop_the_run(tenant, served_runpod, served_vast,
                                                                           monkeypatch, settings):
    from providers.adapters import runpod_billing

    settings.BILLING_RECONCILE_BACKFILL_DAYS = 0
    bad = _account(tenant, "runpod", served_runpod)
    good = _account(tenant, "vast", served_vast)
    served_runpod.standin.bill("pod0", "2026-03-16", gpu=1.0)
    real = runpod_billing.money
    monkeypatch.setattr(runpod_billing, "money", lambda v: real("not a number"))  # an amount we cannot read
    with clock.frozen(RUN_AT):
        assert reconcile.reconcile_all() == 3
    assert ProviderBillingFetch.objects.get(provider_account=bad).error.startswith("unexpected billing answer")
    assert ProviderBillingDay.objects.filter(provider_account=good).count() == 3


@pytest.mark.django_db
def test_a_fetch_error_echoing_the_key_is_stored_without_it(tenant, served_runpod, monkeypatch):
    from providers.adapters import runpod_billing
    from providers.adapters.base import InvalidCredentials

    acct = _account(tenant, "runpod", served_runpod)
    key = STANDIN_CREDENTIALS["runpod"]["api_key"]

    def refuse(adapter, first, last):
        raise InvalidCredentials(f"API key {adapter.api_key} has no billing access")

    monkeypatch.setattr(runpod_billing, "fetch_days", refuse)
    with clock.frozen(RUN_AT):
        assert reconcile.reconcile_all() == 0
    error = ProviderBillingFetch.objects.get(provider_account=acct).error
    assert error.startswith("InvalidCredentials: API key ") and "has no billing access" in error and key not in error
