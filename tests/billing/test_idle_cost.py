"""Idle GPU spend (billing.idle): dollars booked while every GPU of a pod was below its
workload's idle threshold, from the stored utilization samples — in the rollups, on the
dashboard (KPI, column, stacked series, CSV) — and the drill-down groupings and filters."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.idle import idle_intervals, idle_usd_by_key
from billing.metering import meter_all
from billing.models import SpendRollup, SpendRollupMonth
from billing.rollups import rollup_dirty
from provisioner import clock
from tenants.services import project_create
from tests.chart_helpers import figures
from workloads.models import Pod, PodState, UtilizationSample

from .helpers import account, make_pod, run_timeline, to

H = timedelta(hours=1)
NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 3, 16, 6, 0, tzinfo=UTC)


def _samples(pod, start: datetime, minutes: int, utils: tuple[float, ...]) -> None:
    """One sample a minute for each GPU (index = position in ``utils``)."""
    UtilizationSample.objects.bulk_create([
        UtilizationSample(pod=pod, at=start + timedelta(minutes=m), gpu_index=g, util_pct=u)
        for m in range(minutes) for g, u in enumerate(utils)])


def _idle_pod(tenant, project, owner, acct, *, name="trainer", price="2.00", start=T0, gpus=2):
    """3 h at $price/h from ``start``: hour 1 every GPU idle, hour 2 GPU 1 busy, hour 3 no telemetry."""
    with clock.frozen(start):
        pod = make_pod(tenant, project, owner, acct, price=price, name=name)
    Pod.objects.filter(pk=pod.pk).update(gpu_count=gpus)
    _samples(pod, start, 60, (1.0,) * gpus)
    _samples(pod, start + H, 60, (1.0, 90.0) + (1.0,) * (gpus - 2))
    run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (3 * H, PodState.TERMINATED)], meter_every=H)
    return pod


def test_idle_intervals_need_every_gpu_below_threshold_and_fresh_samples():
    # GPU 0 and 1 sampled each minute; GPU 1 busy from t=120 s; then silence
    samples = sorted([(float(t), 0, 1.0) for t in range(0, 300, 60)]
                     + [(float(t), 1, 1.0 if t < 120 else 50.0) for t in range(0, 300, 60)])
    assert idle_intervals(samples, gpu_count=2, threshold=5, hold_s=180) == [(0.0, 120.0)]
    # the threshold is "below": a GPU exactly at it is busy (as in the reaper)
    assert idle_intervals([(0.0, 0, 5.0)], gpu_count=1, threshold=5, hold_s=180) == []
    # a sample speaks for its GPU for hold_s only: after that the pod is unseen, not idle
    assert idle_intervals([(0.0, 0, 0.0), (600.0, 0, 0.0)], gpu_count=1, threshold=5, hold_s=180) == [
        (0.0, 180.0), (600.0, 780.0)]
    # a GPU that never reported (gpu_count 2, only GPU 0 seen) keeps the pod from counting idle
    assert idle_intervals([(0.0, 0, 0.0)], gpu_count=2, threshold=5, hold_s=180) == []


@pytest.mark.django_db
def test_idle_share_of_the_ledger_lands_in_daily_and_monthly_rollups(tenant, project, owner):
    with clock.frozen(NOW):
        pod = _idle_pod(tenant, project, owner, account(tenant))
        rollup_dirty()
    day = SpendRollup.objects.get(tenant=tenant, day=T0.date(), workload=pod.workload)
    assert day.amount_usd == Decimal("6.00")  # 3 h at $2/h
    assert day.idle_usd == Decimal("2.00")  # hour 1 only: hour 2 had a busy GPU, hour 3 no samples
    month = SpendRollupMonth.objects.get(tenant=tenant, month=T0.date().replace(day=1), workload=pod.workload)
    assert month.idle_usd == Decimal("2.00")


@pytest.mark.django_db
def test_idle_cost_reads_ledger_and_samples_in_two_queries_whatever_the_pods(tenant, project, owner,
                                                                           django_assert_num_queries):
    acct = account(tenant)
    with clock.frozen(NOW):
        _idle_pod(tenant, project, owner, acct, name="one")
        start = datetime(2026, 3, 16, tzinfo=UTC)
        with django_assert_num_queries(2):
            one = idle_usd_by_key(tenant_id=tenant.pk, start=start, end=start + timedelta(days=1))
        for i in range(4):
            _idle_pod(tenant, project, owner, acct, name=f"more{i}", start=T0 + timedelta(minutes=i))
        with django_assert_num_queries(2):
            five = idle_usd_by_key(tenant_id=tenant.pk, start=start, end=start + timedelta(days=1))
    assert sum(one.values()) == Decimal("2.00") and sum(five.values()) == Decimal("10.00")


@pytest.mark.django_db
def test_dashboard_shows_idle_kpi_column_series_and_csv(client, finance, tenant, project, owner):
    acct = account(tenant)
    with clock.frozen(NOW):
        _idle_pod(tenant, project, owner, acct)
        # today: a pod idle since 10:00 on both GPUs, metered at 11:30 -> $1.50 booked, all idle
        with clock.frozen(NOW - 2 * H):
            live = make_pod(tenant, project, owner, acct, price="1.00", name="idle-now")
            to(live, PodState.RUNNING)
        _samples(live, NOW - 2 * H, 100, (0.0,))
        with clock.frozen(NOW - H / 2):
            meter_all()
        rollup_dirty()
        client.force_login(finance)
        r = client.get(reverse("billing:spend"), {"range": "7d", "group": "workload"})
        v = r.context["v"]
        html = r.content.decode()
        assert v.idle_month == Decimal("3.50")  # $2.00 on the 16th + $1.50 of today
        assert 'data-testid="idle-month">$3.50<' in html
        assert "every GPU of a pod stayed below its workload" in html  # the one-sentence explanation
        assert v.idle_series["trainer"] == {T0.date(): Decimal("2.00")}
        top = {t["name"]: t["idle"] for t in v.top}
        assert top == {"trainer": Decimal("2.00"), "idle-now": Decimal("1.50")}
        assert "chart-idle" in figures(html)
        # the idle chart's bars drill into their period: a week's bar opens its days, filters kept
        weekly = client.get(reverse("billing:spend"), {"range": "30d", "grain": "week", "group": "workload"})
        fig = figures(weekly.content.decode())["chart-idle"]
        week = fig["data"][0]["x"].index("2026-03-16")
        assert fig["data"][0]["customdata"][week] == ("?range=custom&group=workload&grain=day&mode=period"
                                                      "&from=2026-03-16&to=2026-03-18")
        export = client.get(reverse("billing:export"), {"range": "7d", "group": "workload"})
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    assert rows[0][-1] == "idle_usd"
    assert ["spend", "2026-03-16", "trainer", "", "", "6.00", "2.00"] in rows
    assert next(r for r in rows if r[0] == "total")[-1] == "3.50"


@pytest.mark.django_db
def test_group_by_workload_gpu_user_provider_and_drill_down_keeps_other_filters(client, finance, tenant, project,
                                                                                owner, developer):
    research = project_create(tenant=tenant, name="Research")
    runpod, lam = account(tenant, kind="runpod", name="RunPod main"), account(tenant, kind="lambda", name="Lambda")
    with clock.frozen(NOW):
        a = _idle_pod(tenant, project, owner, runpod, name="alpha")
        b = _idle_pod(tenant, research, developer, lam, name="beta", price="3.00")
        rollup_dirty()
        client.force_login(finance)
        base = {"range": "7d"}
        labels = {}
        for group in ("workload", "gpu", "user", "kind", "provider", "project"):
            v = client.get(reverse("billing:spend"), {**base, "group": group}).context["v"]
            labels[group] = sorted(v.series)
            assert v.total == Decimal("15.00")
        assert labels == {"workload": ["alpha", "beta"], "gpu": ["A100-80"],
                          "user": sorted([owner.username, developer.username]), "kind": ["Lambda Labs", "RunPod"]
                          if "Lambda Labs" in labels["kind"] else labels["kind"],
                          "provider": ["Lambda", "RunPod main"], "project": sorted([project.name, "Research"])}
        assert len(labels["kind"]) == 2 and "RunPod" in labels["kind"]
        # drill-down from the "user" bar of the developer: filtered to their workloads, finer grouping,
        # the date range kept
        v = client.get(reverse("billing:spend"), {**base, "range": "30d", "group": "user"}).context["v"]
        drill = v.drill[developer.username]
        assert f"user={developer.pk}" in drill and "group=workload" in drill and "range=30d" in drill
        r = client.get(reverse("billing:spend") + "?" + drill)
        v = r.context["v"]
        assert v.total == Decimal("9.00") and sorted(v.series) == ["beta"]
        assert v.idle_total == Decimal("3.00")
        assert f"User: {developer.username}" in r.content.decode()  # the active filter, removable
        # the filter form carries it (selected in the User list), so Apply keeps the drill-down
        assert f'<option value="{developer.pk}" selected>{developer.username}</option>' in r.content.decode()
        r = client.get(reverse("billing:spend") + "?" + v.drill["beta"])  # a workload: hidden, not a list
        assert f'<input type="hidden" name="workload" value="{b.workload_id}">' in r.content.decode()
        # workload filter: the other filters stay (a provider filter that excludes it gives nothing)
        only_a = client.get(reverse("billing:spend"), {**base, "workload": str(a.workload_id)}).context["v"]
        assert only_a.total == Decimal("6.00")
        none = client.get(reverse("billing:spend"), {**base, "workload": str(a.workload_id),
                                                      "provider": str(lam.pk)}).context["v"]
        assert none.total == 0
        # kind and GPU filters; junk values are ignored, never a 500
        assert client.get(reverse("billing:spend"), {**base, "kind": "lambda"}).context["v"].total == Decimal("9.00")
        assert client.get(reverse("billing:spend"), {**base, "gpu": "H100"}).context["v"].total == 0
        r = client.get(reverse("billing:spend"), {**base, "workload": "not-a-uuid", "user": "<x>", "group": "nope"})
        assert r.status_code == 200
    assert b.workload.owner_id == developer.pk


@pytest.mark.django_db
def test_filter_lists_and_drill_downs_stay_inside_the_members_projects(client, finance, tenant, project, owner,
                                                                      developer):
    from tenants.models import Membership
    from tenants.permissions import VIEW_SPEND
    from tenants.services import project_grant_set
    from workloads.lifecycle.services import workload_create

    secret = project_create(tenant=tenant, name="Secret")
    acct = account(tenant)
    with clock.frozen(NOW):
        _idle_pod(tenant, project, owner, acct, name="visible")
        _idle_pod(tenant, secret, developer, acct, name="hidden")
        workload_create(tenant=tenant, project=secret, owner=developer, name="h100-job", image="img", gpu_class="H100-80")
        rollup_dirty()
        project_grant_set(membership=Membership.objects.get(tenant=tenant, user=finance), project=secret,
                          capability=VIEW_SPEND, granted=False)
        client.force_login(finance)
        r = client.get(reverse("billing:spend"), {"range": "7d", "group": "user"})
        html = r.content.decode()
        assert r.context["v"].total == Decimal("6.00") and sorted(r.context["v"].series) == [owner.username]
        assert developer.username not in html and "H100-80" not in html  # not even in the filter lists
        # a drill-down URL naming the hidden user finds nothing
        r = client.get(reverse("billing:spend"), {"range": "7d", "user": str(developer.pk)})
        assert r.status_code == 200 and r.context["v"].total == 0
