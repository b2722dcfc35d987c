"""``seed_demo --with-history``: the living demo, written by the real services, and idempotent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db.models import Sum
from django_celery_beat.models import PeriodicTask

from billing.models import BudgetAlert, LedgerEntry, RollupDirty, SpendRollup, SpendRollupMonth
from providers.models import ProviderAccount
from provisioner import clock
from tenants.models import Tenant
from workloads.autoshutdown.idle import IDLE_REASON, idle_reap
from workloads.lifecycle.scheduling import beat_entry_name
from workloads.models import Lifecycle, Pod, PodEvent, PodState, ScheduledRun, UtilizationSample, Workload

NOW = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


def _seed(*args: str) -> None:
    with clock.frozen(NOW):
        call_command("seed_demo", *args, verbosity=0)


@pytest.fixture
def seeded(db):
    _seed("--with-history")
    return Tenant.objects.get(slug="acme")


def test_the_bare_seed_has_no_history(db):
    """The browser journeys and the soak connect the Sandbox through the wizard themselves."""
    _seed()
    tenant = Tenant.objects.get(slug="acme")
    assert not ProviderAccount.objects.filter(tenant=tenant).exists()
    assert not Workload.objects.filter(tenant=tenant).exists()
    assert not LedgerEntry.objects.exists()


def test_a_connected_sandbox_a_running_service_a_finished_job_and_a_scheduled_workload(seeded):
    assert ProviderAccount.objects.filter(tenant=seeded, kind="sandbox", name="Sandbox").count() == 1
    service = Pod.objects.get(workload__name="chat-api")
    assert service.state == PodState.RUNNING and service.external_id.startswith("sbx-")
    assert (NOW - service.started_at).days >= 70  # serving for months: most of the spend history

    job = Workload.objects.get(name="resnet-benchmark")
    assert job.state == Workload.State.COMPLETED
    (pod,) = job.pods.all()
    assert pod.state == PodState.TERMINATED and pod.exit_code == 0

    nightly = Workload.objects.get(name="nightly-eval")
    assert nightly.lifecycle == Lifecycle.SCHEDULED and nightly.state == Workload.State.ACTIVE
    assert PeriodicTask.objects.get(name=beat_entry_name(nightly)).enabled
    assert ScheduledRun.objects.filter(workload=nightly, state=ScheduledRun.State.ENDED).count() >= 25
    assert nightly.pods.filter(scheduled_run__isnull=False, state=PodState.TERMINATED).count() >= 25


def test_an_idle_pod_was_reaped_with_its_evidence(seeded):
    pod = Pod.objects.get(workload__name="notebook-forgotten")
    assert pod.state == PodState.STOPPED and pod.state_reason == IDLE_REASON
    samples = UtilizationSample.objects.filter(pod=pod)
    assert samples.count() >= 90
    assert samples.filter(util_pct__gte=50).exists() and samples.filter(util_pct__lt=5).exists()
    messages = list(PodEvent.objects.filter(pod=pod, kind__in=("idle", "state")).values_list("message", flat=True))
    assert any(m.startswith("Idle: every GPU below 5 %") for m in messages)
    assert any(m.startswith("Stopped (idle)") for m in messages)


def test_months_of_spend_through_the_ledger_and_the_rollups(seeded):
    ledger = LedgerEntry.objects.filter(tenant=seeded).aggregate(s=Sum("amount_usd"))["s"]
    daily = SpendRollup.objects.filter(tenant=seeded).aggregate(s=Sum("amount_usd"))["s"]
    monthly = SpendRollupMonth.objects.filter(tenant=seeded).aggregate(s=Sum("amount_usd"))["s"]
    booked = Pod.objects.filter(tenant=seeded).aggregate(s=Sum("cost_usd"))["s"]
    assert ledger > 1000
    assert round(daily, 4) == round(ledger, 4) == round(monthly, 4) == round(booked, 4)
    assert not RollupDirty.objects.exists()
    assert SpendRollupMonth.objects.filter(tenant=seeded).values("month").distinct().count() >= 3
    # spread across projects and workloads
    assert SpendRollup.objects.filter(tenant=seeded).values("project_id").distinct().count() == 3
    assert SpendRollup.objects.filter(tenant=seeded).values("workload_id").distinct().count() >= 5


def test_one_soft_budget_alert_fired(seeded):
    (alert,) = BudgetAlert.objects.filter(tenant=seeded)
    assert alert.kind == BudgetAlert.Kind.SPENT and alert.threshold == 80
    assert alert.budget.name == "Acme AI monthly" and not alert.budget.hard_limit
    assert alert.created_at < NOW.replace(day=1)  # last month's, raised at that month's end
    assert 80 <= alert.spent_usd * 100 / alert.limit_usd < 100


def test_a_second_run_changes_nothing(seeded):
    models = (ProviderAccount, Workload, Pod, PodEvent, UtilizationSample, ScheduledRun, LedgerEntry, SpendRollup,
              SpendRollupMonth, BudgetAlert, PeriodicTask)
    before = {m.__name__: m.objects.count() for m in models}
    cost = Pod.objects.aggregate(s=Sum("cost_usd"))["s"]
    _seed("--with-history")
    assert {m.__name__: m.objects.count() for m in models} == before
    assert Pod.objects.aggregate(s=Sum("cost_usd"))["s"] == cost


def test_the_first_login_pages_show_the_demo(seeded, client):
    """Finance reads months of spend and the fired alert; the developer reads the reaped pod."""
    from django.contrib.auth import get_user_model
    from django.urls import reverse

    users = get_user_model().objects
    client.force_login(users.get(username="finance"))
    with clock.frozen(NOW):
        spend = client.get(reverse("billing:spend"), {"range": "90d"})
        alerts = client.get(reverse("billing:alerts"))
    assert spend.status_code == 200 and b"chat-api" in spend.content
    assert alerts.status_code == 200 and b"reached 80%" in alerts.content
    client.force_login(users.get(username="dev"))
    pod = Pod.objects.get(workload__name="notebook-forgotten")
    with clock.frozen(NOW):
        page = client.get(reverse("workloads:pod_detail", args=[pod.pk]))
    assert page.status_code == 200 and b"Stopped (idle)" in page.content


def test_the_periodic_tasks_keep_the_demo_as_seeded(seeded):
    """What runstack's beat does next leaves the story intact: the service keeps running, the
    reaped pod stays stopped, every Sandbox resource belongs to its pod, no new alert."""
    from datetime import timedelta

    from billing.services import budgets_enforce, meter_all
    from workloads.autoshutdown.telemetry import telemetry_poll
    from workloads.lifecycle.reconcile import reconcile_all
    from workloads.lifecycle.services import pods_sync

    with clock.frozen(NOW + timedelta(minutes=1)):
        pods_sync()
        telemetry_poll()
        assert idle_reap().to_stop == []
        meter_all()
        assert budgets_enforce() == 0
        (report,) = reconcile_all()
    assert not (report.terminated or report.adopted or report.vanished or report.error)
    states = dict(Pod.objects.exclude(state=PodState.TERMINATED).values_list("workload__name", "state"))
    assert states == {"chat-api": PodState.RUNNING, "notebook-forgotten": PodState.STOPPED}
