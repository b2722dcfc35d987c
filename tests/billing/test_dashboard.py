"""The spend dashboard, CSV export, budgets and alerts pages: access, figures, query counts."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import money
from billing.budgets import budget_create
from billing.metering import meter_all
from billing.models import Budget, BudgetAlert
from billing.rollups import rollup_dirty
from provisioner import clock
from tenants.services import project_create
from workloads.models import PodState

from .helpers import account, make_pod, run_timeline

H = timedelta(hours=1)


@pytest.fixture
def history(tenant, project, owner):
    """Two providers, two projects, eight days of finished pods plus one running now."""
    now = clock.now()
    research = project_create(tenant=tenant, name="Research")
    a, b = account(tenant, name="RunPod main"), account(tenant, name="Lambda backup")
    day0 = (now - timedelta(days=8)).replace(hour=6, minute=0, second=0, microsecond=0)
    for i in range(8):
        p = make_pod(tenant, project if i % 2 else research, owner, a if i % 3 else b, price=f"{i + 1}.00", name=f"job{i}")
        run_timeline(p, day0 + timedelta(days=i), [(timedelta(0), PodState.RUNNING), (2 * H, PodState.TERMINATED)],
                     meter_every=H)
    live = make_pod(tenant, project, owner, a, price="3.60", name="serve")
    with clock.frozen(now - timedelta(minutes=10)):
        from workloads.lifecycle import services as wl

        wl.pod_transition(live, PodState.RUNNING, "running")
        meter_all()
    rollup_dirty()
    return {"research": research, "a": a, "b": b, "live": live, "now": now}


def _get(client, user, url, **params):
    client.force_login(user)
    return client.get(url, params)


@pytest.mark.django_db
def test_finance_sees_dashboard_but_cannot_launch(client, finance, history, django_assert_max_num_queries):
    client.force_login(finance)
    with django_assert_max_num_queries(22):
        r = client.get(reverse("billing:spend"))
    assert r.status_code == 200
    html = r.content.decode()
    assert "Running cost" in html and "$3.60" in html  # live run rate of the running pod
    assert "chart-spend" in html and "chart-forecast" in html and "vendor/plotly.min.js" in html
    assert "RunPod main" in html and "Lambda backup" in html
    from workloads.models import Workload

    before = Workload.objects.count()
    r = client.post(reverse("workloads:launch"), {"name": "x", "image": "img", "gpu_class": "A100-80", "gpu_count": 1})
    assert r.status_code == 403 and Workload.objects.count() == before  # finance cannot launch
    assert ">Launch<" not in html


@pytest.mark.django_db
def test_viewer_forbidden_outsider_sees_only_own_org(client, viewer, outsider, tenant, history):
    assert _get(client, viewer, reverse("billing:spend")).status_code == 403
    budget = budget_create(tenant=tenant, name="Acme only", amount_usd=Decimal("10"))
    r = _get(client, outsider, reverse("billing:spend"), range="365d")
    assert r.status_code == 200 and "RunPod main" not in r.content.decode()
    assert _get(client, outsider, reverse("billing:budget_edit", args=[budget.pk])).status_code == 404


@pytest.mark.django_db
def test_htmx_poll_returns_live_fragment(client, finance, history, django_assert_max_num_queries):
    client.force_login(finance)
    # 16 + the budgets for "budget left" + today's idle GPU share (ledger lines, their samples)
    with django_assert_max_num_queries(19):
        r = client.get(reverse("billing:spend"), HTTP_HX_REQUEST="true")
    html = r.content.decode()
    assert r.status_code == 200 and "<html" not in html and "Spend today" in html and "chart-spend" not in html


@pytest.mark.django_db
def test_filters_in_url_and_csv_matches_what_is_shown(client, finance, history, project):
    client.force_login(finance)
    params = {"range": "30d", "group": "project", "grain": "week", "provider": str(history["a"].pk)}
    # one instant for both requests: a running pod's live accrual grows between them otherwise
    with clock.frozen(clock.now()):
        page = client.get(reverse("billing:spend"), params)
        export = client.get(reverse("billing:export"), params)
    assert page.status_code == 200
    v = page.context["v"]
    assert v.filters.group == "project" and v.filters.provider_ids == (str(history["a"].pk),)
    assert f'provider={history["a"].pk}' in page.context["f"].query()
    assert export["Content-Type"] == "text/csv"
    rows = list(csv.reader(io.StringIO(export.content.decode())))
    spend_rows = [(r[1], r[2], r[5]) for r in rows if r[0] == "spend"]
    assert spend_rows == page.context["rows"] == v.table()
    for period, label, usd in spend_rows:
        # the group cell links to its drill-down (this project, the other filters kept)
        assert re.search(rf'<td>{period}</td><td><a href="/spend/\?[^"]*">{re.escape(label)}</a></td><td class="num">\${usd}</td>',
                         page.content.decode()), (period, label)
    total = next(r for r in rows if r[0] == "total")
    assert total[5] == money.usd(v.total)  # half-up to the cent, the one rounding rule (billing/money.py)
    top = [(r[3], r[5]) for r in rows if r[0] == "top_workload"]
    assert top == [(t["name"], money.usd(t["usd"])) for t in v.top]
    # only provider "a" is included: Lambda backup's pods (i % 3 == 0) are not
    assert {r[3] for r in rows if r[0] == "top_workload"}.isdisjoint({"job0", "job3", "job6"})
    assert sum(Decimal(r[2]) for r in spend_rows) == Decimal(total[5])


@pytest.mark.django_db
def test_dashboard_history_comes_from_rollups_and_matches_ledger(tenant, history):
    from billing import dashboard

    projects, providers = dashboard.name_maps(tenant)
    with clock.frozen(history["now"]):
        f = dashboard.parse_filters({"range": "30d"}, projects=projects, providers=providers, today=clock.now().date())
        fast = dashboard.build(tenant, f, projects=projects, providers=providers)
        slow = dashboard.build(tenant, f, projects=projects, providers=providers, source="ledger")
    assert fast.rows() == slow.rows() and fast.total == slow.total and fast.top == slow.top
    # 8 finished pods of 2 h at $1..$8/h, plus the running pod's 10 minutes at $3.60/h
    assert fast.total == Decimal("72.60")
    assert fast.run_rate == Decimal("3.60")


@pytest.mark.django_db
def test_budgets_page_finance_creates_and_edits(client, finance, developer, tenant, project, history):
    client.force_login(finance)
    r = client.post(reverse("billing:budgets"), {"name": "Research monthly", "project": str(history["research"].pk),
                                                 "period": "month", "amount_usd": "500", "soft_thresholds": "50, 80,100",
                                                 "hard_limit": "on", "email_alerts": "on"})
    assert r.status_code == 302
    b = Budget.objects.get(name="Research monthly")
    assert b.project == history["research"] and b.soft_thresholds == [50, 80, 100] and b.hard_limit
    page = client.get(reverse("billing:budgets"))
    assert "Research monthly" in page.content.decode() and "Invoice rates" in page.content.decode()
    from billing.selectors import period_start, spend_since

    (g,) = page.context["gauges"]
    assert g["spent"] == spend_since(tenant_id=tenant.pk, since=period_start("month"), project_id=history["research"].pk)
    assert g["left"] == Decimal("500") - g["spent"]
    r = client.post(reverse("billing:budget_edit", args=[b.pk]), {"name": "Research monthly", "period": "week",
                                                                  "amount_usd": "120", "soft_thresholds": "90"})
    assert r.status_code == 302
    b.refresh_from_db()
    assert b.period == "week" and b.amount_usd == Decimal("120") and b.project is None and not b.hard_limit
    bad = client.post(reverse("billing:budgets"), {"name": "x", "period": "month", "amount_usd": "5",
                                                   "soft_thresholds": "eighty"})
    assert bad.status_code == 200 and "whole percentages" in bad.content.decode()
    client.force_login(developer)
    assert client.post(reverse("billing:budgets"), {"name": "dev", "period": "day", "amount_usd": "1"}).status_code == 403
    assert client.get(reverse("billing:budget_edit", args=[b.pk])).status_code == 403
    assert client.post(reverse("billing:budget_edit", args=[b.pk]), {"delete": "1"}).status_code == 403
    client.force_login(finance)
    assert client.post(reverse("billing:budget_edit", args=[b.pk]), {"delete": "1"}).status_code == 302
    assert not Budget.objects.filter(pk=b.pk).exists()


@pytest.mark.django_db
def test_alerts_list_badge_and_banner(client, finance, tenant, history, django_assert_max_num_queries):
    b = budget_create(tenant=tenant, name="Tiny", amount_usd=Decimal("1"), soft_thresholds=[80])
    BudgetAlert.objects.create(tenant=tenant, budget=b, period_start=clock.now(), threshold=80, spent_usd=1,
                               limit_usd=1, message='Budget "Tiny" reached 80%', created_at=clock.now())
    client.force_login(finance)
    assert "Budget &quot;Tiny&quot; reached 80%" in client.get(reverse("billing:spend")).content.decode()
    assert "1 alert" in client.get(reverse("billing:alerts_badge")).content.decode()
    with django_assert_max_num_queries(10):
        assert client.get(reverse("billing:alerts")).status_code == 200
    client.post(reverse("billing:alerts"))
    assert client.get(reverse("billing:alerts_badge")).content.decode().strip() == ""


@pytest.mark.django_db
def test_multi_value_filters_and_cumulative_mode(client, finance, history, project):
    client.force_login(finance)
    both = [str(history["a"].pk), str(history["b"].pk)]
    r = client.get(reverse("billing:spend"), {"range": "30d", "provider": both, "project": [str(project.pk)],
                                              "mode": "cumulative"})
    f = r.context["f"]
    assert f.provider_ids == tuple(sorted(both)) and f.project_ids == (str(project.pk),) and f.mode == "cumulative"
    html = r.content.decode()
    assert "Cumulative spend by provider" in html and "left</strong>" not in html  # no budgets yet
    # only the Default project's pods (odd i) and the running one
    assert r.context["v"].total >= Decimal(2 * (2 + 4 + 6 + 8))
    assert "provider=" in f.query() and f.query().count("provider=") == 2


@pytest.mark.django_db
def test_history_cache_follows_the_rollups(tenant, history):
    """The rollup-derived history is cached under the tenant's rollup generation: a late
    correction shows once its day's rollup is rebuilt (the rebuild bumps the generation),
    and the cached figures always equal the raw ledger's."""
    from billing import dashboard
    from billing.metering import ledger_correct
    from billing.rollups import generation

    projects, providers = dashboard.name_maps(tenant)
    with clock.frozen(history["now"]):
        f = dashboard.parse_filters({"range": "30d"}, projects=projects, providers=providers, today=clock.now().date())
        first = dashboard.build(tenant, f, projects=projects, providers=providers)
        again = dashboard.build(tenant, f, projects=projects, providers=providers)  # from the cache
        assert again.generation == first.generation == generation(tenant.pk) > 0
        assert (again.rows(), again.total, again.top) == (first.rows(), first.total, first.top)
        three_days_ago = history["now"] - timedelta(days=3)
        ledger_correct(tenant_id=tenant.pk, project_id=history["research"].pk, provider_account_id=history["a"].pk,
                       at=three_days_ago, amount=Decimal("-4.25"), note="provider credit")
        # not rolled up yet: history still reads the rollups, unchanged
        assert dashboard.build(tenant, f, projects=projects, providers=providers).total == first.total
        rollup_dirty()
        after = dashboard.build(tenant, f, projects=projects, providers=providers)
        slow = dashboard.build(tenant, f, projects=projects, providers=providers, source="ledger")
    assert after.generation > first.generation
    assert after.total == first.total - Decimal("4.25") == slow.total
    assert after.rows() == slow.rows() and after.top == slow.top


@pytest.mark.django_db
def test_todays_spend_can_lift_a_workload_into_the_top(tenant, project, owner, history):
    """Top workloads merge cached history with today's spend: a workload with no history
    that spends more today than the others did in the whole range must rank first."""
    from billing import dashboard

    big = make_pod(tenant, project, owner, history["a"], price="500.00", name="burst-today")
    now = history["now"]
    with clock.frozen(now - timedelta(minutes=30)):
        from workloads.lifecycle import services as wl

        wl.pod_transition(big, PodState.RUNNING, "running")
    projects, providers = dashboard.name_maps(tenant)
    with clock.frozen(now):
        meter_all()
        f = dashboard.parse_filters({"range": "30d"}, projects=projects, providers=providers, today=now.date())
        dashboard.build(tenant, f, projects=projects, providers=providers)  # fill the cache
        fast = dashboard.build(tenant, f, projects=projects, providers=providers)
        slow = dashboard.build(tenant, f, projects=projects, providers=providers, source="ledger")
    assert fast.top[0]["name"] == "burst-today" and fast.top[0]["usd"] >= Decimal("250")
    assert fast.top == slow.top and fast.total == slow.total


@pytest.mark.django_db
def test_dashboard_still_answers_when_the_cache_is_down(client, finance, history, monkeypatch):
    from django.core.cache import cache

    def broken(*args, **kwargs):
        raise ConnectionError("cache server unreachable")

    monkeypatch.setattr(cache, "get", broken)
    monkeypatch.setattr(cache, "set", broken)
    client.force_login(finance)
    r = client.get(reverse("billing:spend"), {"range": "30d"})
    assert r.status_code == 200 and r.context["v"].total > 0


@pytest.mark.django_db
def test_back_links_keep_the_filters_and_csv_columns_are_unique(client, finance, history):
    client.force_login(finance)
    params = {"range": "30d", "group": "project", "grain": "week", "provider": str(history["a"].pk)}
    shown = client.get(reverse("billing:spend"), params).context["f"].query()
    for page in ("billing:budgets", "billing:alerts"):
        html = client.get(reverse(page)).content.decode()
        assert f'href="{reverse("billing:spend")}?{shown.replace("&", "&amp;")}"' in html
    export = client.get(reverse("billing:export"), params)
    header = next(csv.reader(io.StringIO(export.content.decode())))
    assert header[2] == "project" and len(set(header)) == len(header)  # stacked by project: no clash
