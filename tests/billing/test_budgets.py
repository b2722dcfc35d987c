"""Budgets: alerts once per threshold per period, hard limits, reservations, provider caps,
rollups and late corrections."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest
from django.core import mail

from billing import gate
from billing.budgets import budget_check, budget_create, budgets_enforce, reserve_launch
from billing.metering import ledger_correct
from billing.models import BudgetAlert, BudgetReservation, SpendRollup
from billing.rollups import rollup_dirty
from billing.selectors import reserved_outstanding, spend_since
from provisioner import clock
from workloads.lifecycle import services as wl
from workloads.models import PodState

from .helpers import account, make_pod, run_timeline

NOON = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _spend(tenant, project, owner, acct, usd: str, at: datetime):
    """A pod that cost exactly ``usd`` (1 h at that price), ending at ``at``."""
    pod = make_pod(tenant, project, owner, acct, price=usd)
    run_timeline(pod, at - H, [(timedelta(0), PodState.RUNNING), (H, PodState.TERMINATED)], meter_every=H)
    return pod


def _book(tenant, project, acct, usd: str):
    """Spend booked right now (a ledger line in the current hour), whatever the time of day."""
    ledger_correct(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk, at=clock.now(),
                   amount=Decimal(usd), note="test spend")


@pytest.mark.django_db
def test_crossing_80_percent_alerts_once_per_period(tenant, project, owner, finance, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    acct = account(tenant, "sandbox")
    budget = budget_create(tenant=tenant, name="March GPUs", amount_usd=Decimal("100"), period="month",
                           soft_thresholds=[50, 80, 100], hard_limit=False, forecast_alert=False)  # spent only
    _spend(tenant, project, owner, acct, "79.00", NOON)
    with clock.frozen(NOON):
        assert [a.threshold for a in budget_check(budget)] == [50]
    mail.outbox.clear()
    _spend(tenant, project, owner, acct, "2.00", NOON + H)
    with clock.frozen(NOON + H):
        sent = budget_check(budget)
    assert [a.threshold for a in sent] == [80]
    assert len(mail.outbox) == 1 and "March GPUs" in mail.outbox[0].subject and "80%" in mail.outbox[0].subject
    assert finance.email in mail.outbox[0].to
    # a correction brings spend back under 80 %, then it crosses again: same period, no new alert
    with clock.frozen(NOON + 2 * H):
        ledger_correct(tenant_id=tenant.pk, project_id=project.pk, at=NOON, amount=Decimal("-5"), note="credit")
        assert budget_check(budget) == []
    _spend(tenant, project, owner, acct, "6.00", NOON + 3 * H)
    with clock.frozen(NOON + 3 * H):
        assert budget_check(budget) == []
        assert budgets_enforce() == 0
    assert BudgetAlert.objects.filter(budget=budget, threshold=80).count() == 1
    assert len(mail.outbox) == 1
    # next month is a new period: alerts again
    _spend(tenant, project, owner, acct, "85.00", datetime(2026, 4, 2, 12, tzinfo=UTC))
    with clock.frozen(datetime(2026, 4, 2, 12, tzinfo=UTC)):
        assert [a.threshold for a in budget_check(budget)] == [50, 80]


@pytest.mark.django_db
def test_webhook_is_signed_with_hmac_sha256(tenant, project, owner, monkeypatch, settings,
                                           django_capture_on_commit_callbacks):
    seen = {}

    def fake_post(url, content, headers, **kw):
        seen.update(url=url, body=content, headers=headers)
        return httpx.Response(204)

    monkeypatch.setattr(httpx, "post", fake_post)
    settings.OUTBOUND_RESOLVER = lambda host: ["93.184.216.34"]  # a public address (resolver stub)
    budget = budget_create(tenant=tenant, name="Hooked", amount_usd=Decimal("10"), soft_thresholds=[50],
                           webhook_url="https://hooks.example.com/hook", webhook_secret="s3cret", forecast_alert=False)
    _spend(tenant, project, owner, account(tenant), "6.00", NOON)
    with clock.frozen(NOON), django_capture_on_commit_callbacks(execute=True):  # sent by its task after commit
        (alert,) = budget_check(budget)
    expected = "sha256=" + hmac.new(b"s3cret", seen["body"], hashlib.sha256).hexdigest()
    assert seen["headers"]["X-Provisioner-Signature"] == expected
    assert json.loads(seen["body"])["threshold_pct"] == 50
    alert.refresh_from_db()
    assert alert.webhook_status == "HTTP 204"


@pytest.mark.django_db
def test_forecast_alert_warns_before_the_budget_is_spent(tenant, project, owner, finance, settings, monkeypatch,
                                                         django_capture_on_commit_callbacks):
    """$40 spent by March 10 noon (30 % of the month) runs at $133 by March 31: one forecast
    alert, while nothing has crossed a spent threshold; not in the first fifth of a period."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    posted = []
    monkeypatch.setattr(httpx, "post", lambda url, content, headers, **kw: posted.append(json.loads(content))
                        or httpx.Response(204))
    settings.OUTBOUND_RESOLVER = lambda host: ["93.184.216.34"]  # a public address (resolver stub)
    budget = budget_create(tenant=tenant, name="March GPUs", amount_usd=Decimal("100"), period="month",
                           soft_thresholds=[80], hard_limit=False, webhook_url="https://hooks.example.com/hook")
    acct = account(tenant, "sandbox")
    early = datetime(2026, 3, 4, 12, tzinfo=UTC)  # 11 % of March: too early to extrapolate
    _spend(tenant, project, owner, acct, "40.00", early)
    with clock.frozen(early):
        assert budget_check(budget) == []
    rollup_dirty()  # March 4 is history on March 10: read from its rollup
    with clock.frozen(NOON), django_capture_on_commit_callbacks(execute=True):
        (alert,) = budget_check(budget)
        assert budget_check(budget) == []  # once per period
    assert alert.kind == BudgetAlert.Kind.FORECAST and alert.spent_usd == Decimal("40.00")
    assert "forecast to reach $130.53 (131% of $100.00)" in alert.message and "end of the month" in alert.message
    assert len(mail.outbox) == 1 and finance.email in mail.outbox[0].to
    assert posted[0]["event"] == "budget.forecast"
    # spent thresholds still alert on their own
    _spend(tenant, project, owner, acct, "45.00", NOON + H)
    with clock.frozen(NOON + H):
        assert [(a.kind, a.threshold) for a in budget_check(budget)] == [(BudgetAlert.Kind.SPENT, 80)]
    # a budget without forecast alerts, or a rate that stays under the amount, stays quiet
    quiet = budget_create(tenant=tenant, name="No forecast", amount_usd=Decimal("1000"), soft_thresholds=[],
                          forecast_alert=False)
    roomy = budget_create(tenant=tenant, name="Roomy", amount_usd=Decimal("1000"), soft_thresholds=[])
    with clock.frozen(NOON + H):
        assert budget_check(quiet) == [] and budget_check(roomy) == []


@pytest.mark.django_db
def test_hard_limit_refuses_with_budget_named(tenant, project, owner, sandbox):
    budget_create(tenant=tenant, name="Team cap", amount_usd=Decimal("5"), period="day")
    _book(tenant, project, sandbox, "5.00")
    w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="t", image="i", gpu_class="A100-80")
    (pod,) = wl.workload_launch(workload=w, enqueue=False)
    pod = wl.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.FAILED
    assert 'Budget "Team cap"' in pod.state_reason and "exhausted" in pod.state_reason
    assert not BudgetReservation.objects.filter(pod=pod, released_at__isnull=True).exists()


@pytest.mark.django_db
def test_hard_limit_can_stop_running_pods(tenant, project, owner, sandbox):
    w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="t", image="i", gpu_class="A100-80")
    (pod,) = wl.workload_launch(workload=w, enqueue=False)
    pod = wl.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING
    budget = budget_create(tenant=tenant, name="Stopper", amount_usd=Decimal("1"), period="day", stop_running_pods=True)
    _book(tenant, project, sandbox, "1.00")
    budget_check(budget)
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED and "Stopper" in pod.state_reason


@pytest.mark.django_db
def test_reservation_holds_headroom_and_shrinks_as_cost_lands(tenant, project, owner):
    acct = account(tenant, increment_seconds=1)
    budget_create(tenant=tenant, name="Proj", project=project, amount_usd=Decimal("10"), period="day")
    with clock.frozen(NOON):
        pods = [make_pod(tenant, project, owner, acct, price="4.00") for _ in range(3)]
        ok = [reserve_launch(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk,
                             usd_per_hour=Decimal("4"), pod_id=p.pk) for p in pods]
    assert [v.allowed for v in ok] == [True, True, False]  # 4 + 4 + 4 > 10
    assert 'Budget "Proj"' in ok[2].reason and ok[2].scope == "budget"
    assert reserved_outstanding(tenant_id=tenant.pk, project_id=project.pk) == Decimal("8")
    # the first pod runs half an hour: $2 booked, its reservation now holds only the other $2
    run_timeline(pods[0], NOON, [(timedelta(0), PodState.RUNNING), (H / 2, PodState.TERMINATED)], meter_every=H)
    assert reserved_outstanding(tenant_id=tenant.pk, project_id=project.pk) == Decimal("6")
    with clock.frozen(NOON + H):
        from billing.metering import meter_all

        meter_all()  # releases the ended pod's reservation
        assert reserved_outstanding(tenant_id=tenant.pk, project_id=project.pk) == Decimal("4")
        assert gate.may_spend(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk,
                              usd_per_hour=Decimal("4")).allowed


@pytest.mark.django_db
def test_reservation_horizon_is_capped_at_period_end(tenant, project, owner):
    acct = account(tenant)
    budget_create(tenant=tenant, name="Daily", amount_usd=Decimal("10"), period="day")
    late = datetime(2026, 3, 10, 23, 30, tzinfo=UTC)
    with clock.frozen(late):
        # 8 h max duration at $15/h would be $120, but only 30 min of the day are left: $7.50
        v = gate.may_spend(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=acct.pk,
                           usd_per_hour=Decimal("15"), hours=Decimal(8))
    assert v.allowed


@pytest.mark.django_db
def test_provider_cap_drops_account_and_failover_continues(tenant, project, owner, sandbox, settings):
    from providers.services import capacity_poll
    from tests.factories import SandboxAccountFactory

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    backup = SandboxAccountFactory(tenant=tenant, preference_rank=200)
    capacity_poll(accounts=[backup])
    sandbox.spending_cap_usd = Decimal("3")
    sandbox.spending_cap_period = "day"
    sandbox.save()
    _book(tenant, project, sandbox, "3.00")
    d = gate.may_spend(tenant_id=tenant.pk, project_id=project.pk, provider_account_id=sandbox.pk, usd_per_hour=Decimal("1"))
    assert not d.allowed and d.scope == "provider_cap" and "over provider cap" in d.reason
    w = wl.workload_create(tenant=tenant, project=project, owner=owner, name="t", image="i", gpu_class="A100-80")
    (pod,) = wl.workload_launch(workload=w, enqueue=False)
    pod = wl.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.provider_account_id == backup.pk
    assert budgets_enforce() >= 1
    alert = BudgetAlert.objects.get(provider_account=sandbox, threshold=100)
    assert "spending cap" in alert.message and alert.emailed_to
    assert budgets_enforce() == 0  # once per period


@pytest.mark.django_db
def test_rollups_incremental_and_late_correction(tenant, project, owner):
    acct = account(tenant, increment_seconds=1)
    pod = make_pod(tenant, project, owner, acct, price="2.00")
    start = datetime(2026, 3, 9, 22, 0, tzinfo=UTC)
    run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (4 * H, PodState.TERMINATED)], meter_every=H)
    assert rollup_dirty() == 2  # 9 and 10 March
    days = dict(SpendRollup.objects.values_list("day", "amount_usd"))
    assert days == {datetime(2026, 3, 9).date(): Decimal("4"), datetime(2026, 3, 10).date(): Decimal("4")}
    assert rollup_dirty() == 0  # nothing changed, nothing rebuilt
    # a provider credit for 9 March arrives on 20 March: only that day is rebuilt
    with clock.frozen(datetime(2026, 3, 20, tzinfo=UTC)):
        ledger_correct(pod=pod, at=datetime(2026, 3, 9, 23, 0, tzinfo=UTC), amount=Decimal("-1.5"), note="SLA credit")
        assert rollup_dirty(before=clock.now().date()) == 1
        assert spend_since(tenant_id=tenant.pk, since=datetime(2026, 3, 1, tzinfo=UTC)) == Decimal("6.5")
    assert SpendRollup.objects.get(day="2026-03-09").amount_usd == Decimal("2.5")
    assert SpendRollup.objects.get(day="2026-03-10").amount_usd == Decimal("4")


@pytest.mark.django_db
def test_monthly_rollups_follow_daily_and_dashboard_matches_ledger(tenant, project, owner):
    from billing import dashboard
    from billing.models import SpendRollupMonth

    acct = account(tenant, increment_seconds=1)
    for i, start in enumerate([datetime(2026, 1, 30, 20, tzinfo=UTC), datetime(2026, 2, 14, 8, tzinfo=UTC),
                               datetime(2026, 3, 31, 22, tzinfo=UTC), datetime(2026, 5, 2, 1, tzinfo=UTC)]):
        pod = make_pod(tenant, project, owner, acct, price=f"{i + 1}.50", name=f"w{i}")
        run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (30 * H, PodState.TERMINATED)], meter_every=6 * H)
    rollup_dirty()
    monthly = list(SpendRollupMonth.objects.all())
    assert {r.month.isoformat() for r in monthly} == {"2026-01-01", "2026-02-01", "2026-03-01", "2026-04-01", "2026-05-01"}
    for r in monthly:
        assert r.amount_usd == sum(d.amount_usd for d in SpendRollup.objects.filter(workload=r.workload)
                                   if d.day.replace(day=1) == r.month)
    projects, providers = dashboard.name_maps(tenant)
    with clock.frozen(datetime(2026, 5, 20, 9, tzinfo=UTC)):
        for grain in ("day", "week", "month"):
            for rng in ("365d", "90d", "ytd", "mtd"):
                f = dashboard.parse_filters({"range": rng, "grain": grain, "group": "project"}, projects=projects,
                                            providers=providers, today=clock.now().date())
                fast = dashboard.build(tenant, f, projects=projects, providers=providers)
                slow = dashboard.build(tenant, f, projects=projects, providers=providers, source="ledger")
                assert (fast.rows(), fast.total, fast.top, fast.mtd_daily) == \
                       (slow.rows(), slow.total, slow.top, slow.mtd_daily), (grain, rng)
        f = dashboard.parse_filters({"range": "365d", "grain": "month"}, projects=projects, providers=providers,
                                    today=clock.now().date())
        assert dashboard.build(tenant, f, projects=projects, providers=providers).total == Decimal(30 * (1.5 + 2.5 + 3.5 + 4.5))


@pytest.mark.django_db
def test_budgets_page_shows_the_forecast(client, finance, tenant, project, owner):
    budget_create(tenant=tenant, name="March GPUs", amount_usd=Decimal("100"), period="month", soft_thresholds=[80])
    _spend(tenant, project, owner, account(tenant, "sandbox"), "40.00", datetime(2026, 3, 4, 12, tzinfo=UTC))
    rollup_dirty()
    client.force_login(finance)
    with clock.frozen(NOON):
        page = client.get("/spend/budgets/")
    (gauge,) = page.context["gauges"]
    assert gauge["forecast"].quantize(Decimal("0.01")) == Decimal("130.53")
    html = page.content.decode()
    assert "$130.53" in html and "80%, forecast" in html
