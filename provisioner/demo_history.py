"""The living demo (``seed_demo --with-history``): what Acme AI looks like after a few months.

Everything is written by the product's own services with the injectable clock
(``provisioner.clock.frozen``) set to the moment it "happened": the Sandbox is connected
through ``provider_account_create`` and polled; the pods that are still on screen (the
running service, the finished job, the reaped idle pod) are placed and launched on the
Sandbox by ``pod_provision``, followed by ``pod_refresh``, stopped by the idle reaper; the
past pods move through ``pod_request`` and ``pod_transition``. Their cost is then booked by
the real ledger writer (``meter_all``) and summed by the real rollups (``rollup_dirty``), and
the organization budget's soft alert is fired by ``budget_check``: no ledger or rollup row is
hand-made. Deterministic (one seeded ``random.Random``) and modest: about a hundred past pods,
so that ``make run`` stays fast (bench/seed_demo.py measures it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_UP, Decimal

from django.db import transaction

from billing.budgets import budget_check, budget_create
from billing.models import Budget
from billing.selectors import period_start, spend_since
from billing.services import meter_all, rollup_dirty
from providers.adapters.base import GpuSample
from providers.models import Offer, ProviderAccount
from providers.services import capacity_poll, provider_account_create
from provisioner import clock
from tenants.models import Project, Tenant
from tenants.services import project_create
from workloads.autoshutdown.idle import idle_reap, idle_stop
from workloads.autoshutdown.telemetry import samples_ingest
from workloads.lifecycle.failover import _intent_fields
from workloads.lifecycle.scheduling import workload_schedule_sync
from workloads.lifecycle.services import pod_provision, pod_refresh, pod_request, workload_create, workload_launch
from workloads.lifecycle.transitions import pod_transition, workload_settle
from workloads.models import Lifecycle, Pod, PodState, ScheduledRun, Workload

HISTORY_DAYS = 90
ACCOUNT_NAME = "Sandbox"
# the workload whose existence says the history was already seeded (created first, in the
# same transaction as everything else: all of it exists or none of it)
MARKER_WORKLOAD = "chat-api"
SEED = 20260101


@dataclass(frozen=True)
class Summary:
    pods: int
    ledger_usd: Decimal
    budget: str


def history_present(tenant: Tenant) -> bool:
    return Workload.objects.filter(tenant=tenant, name=MARKER_WORKLOAD).exists()


def _project(tenant: Tenant, name: str) -> Project:
    return tenant.projects.filter(name=name).first() or project_create(tenant=tenant, name=name)


def _offer(account: ProviderAccount, gpu: str, count: int = 1, *, spot: bool = False, country: str = "") -> Offer:
    """The cheapest current Sandbox offer of that shape: what the past pods are priced at."""
    qs = Offer.objects.filter(provider_account=account, gpu_class=gpu, gpu_count=count, spot=spot)
    if country:
        qs = qs.filter(country=country)
    return qs.select_related("provider_account").order_by("price_usd_per_hour").first()


def _past_pod(workload: Workload, offer: Offer, start: datetime, hours: float, *, exit_code: int | None = 0,
              run: ScheduledRun | None = None) -> Pod:
    """One pod that ran ``hours`` from ``start`` and ended, through the pod state machine."""
    with clock.frozen(start - timedelta(minutes=2)):
        fields = _intent_fields(offer)
        fields.pop("gpu_class"), fields.pop("gpu_count")  # the workload's, as pod_request sets them
        pod = pod_request(workload=workload, enqueue=False, scheduled_run=run, **fields)
        pod.external_id = f"sbx-demo-{str(pod.pk)[:12]}"
        Pod.objects.filter(pk=pod.pk).update(external_id=pod.external_id)
        pod_transition(pod, PodState.PROVISIONING, f"Placed: {offer.gpu_count}x{offer.gpu_class} in {offer.region}",
                       expect=(PodState.REQUESTED,))
    with clock.frozen(start):
        pod_transition(pod, PodState.RUNNING, "Running", expect=(PodState.PROVISIONING,))
    with clock.frozen(start + timedelta(hours=hours)):
        if exit_code is not None:
            Pod.objects.filter(pk=pod.pk).update(exit_code=exit_code)
            pod.exit_code = exit_code
            reason = f"Job finished (exit {exit_code})"
        else:
            reason = "Terminated by dev"
        pod_transition(pod, PodState.TERMINATED, f"Terminated ({reason}); verified at the provider",
                       expect=(PodState.RUNNING,), fields={"state_reason": reason})
    return pod


def _launch_live(workload: Workload, at: datetime) -> Pod:
    """Launch ``workload`` on the Sandbox at ``at`` the way the worker does, and follow it to Running."""
    with clock.frozen(at):
        (pod,) = workload_launch(workload=workload, enqueue=False)
        pod_provision(pod_id=str(pod.pk))
    with clock.frozen(at + timedelta(minutes=3)):  # past the Sandbox's boot time
        return pod_refresh(pod_id=str(pod.pk))


def _nightly_runs(workload: Workload, offer: Offer, now: datetime, rnd: random.Random) -> int:
    """The scheduled evaluation's past runs: every night at 02:00 UTC for the last 4 weeks."""
    n = 0
    today = now.replace(hour=2, minute=0, second=0, microsecond=0)
    for d in range(28, 0, -1):
        due = today - timedelta(days=d)
        with clock.frozen(due):
            run = ScheduledRun.objects.create(tenant_id=workload.tenant_id, workload=workload, due_at=due,
                                              state=ScheduledRun.State.STARTED, started_at=due, note="Started 1 pod")
        hours = 0.75 + rnd.random() * 0.5
        _past_pod(workload, offer, due + timedelta(minutes=3), hours, run=run)
        ScheduledRun.objects.filter(pk=run.pk).update(state=ScheduledRun.State.ENDED,
                                                      ended_at=due + timedelta(hours=hours, minutes=3))
        n += 1
    return n


def _idle_evidence(pod: Pod, start: datetime, busy_minutes: int, idle_minutes: int, rnd: random.Random) -> None:
    """One GPU reading a minute: a notebook at work, then left open with the GPU at rest."""
    samples = []
    for m in range(busy_minutes + idle_minutes):
        util = 55 + rnd.random() * 40 if m < busy_minutes else rnd.random() * 2
        samples.append(GpuSample(gpu_index=0, util_pct=round(util, 1), mem_used_mb=16_000.0 if m < busy_minutes else 900.0,
                                 mem_total_mb=24_576.0, at=start + timedelta(minutes=m)))
    pod.refresh_from_db()
    with clock.frozen(start + timedelta(minutes=busy_minutes + idle_minutes)):
        samples_ingest(pod=pod, samples=samples, source="agent")


@transaction.atomic
def seed_history(*, tenant: Tenant, owner, developer, now: datetime | None = None) -> Summary | None:
    """Seed Acme AI's past (None when it is already there: a second run changes nothing)."""
    if history_present(tenant):
        return None
    now = (now or clock.now()).replace(second=0, microsecond=0)
    rnd = random.Random(SEED)
    start = now - timedelta(days=HISTORY_DAYS)
    research, inference, evaluation = (_project(tenant, n) for n in ("Research", "Inference", "Evaluation"))

    with clock.frozen(start - timedelta(days=2)):
        account = ProviderAccount.objects.filter(tenant=tenant, name=ACCOUNT_NAME).first() or provider_account_create(
            tenant=tenant, kind="sandbox", name=ACCOUNT_NAME, settings={"seed": "acme-demo"}, verify=False,
            spending_cap_usd=Decimal("25000"), created_by=owner)
    with clock.frozen(now - timedelta(minutes=1)):
        capacity_poll(accounts=[account])

    # the running service: launched on the real path 75 days ago, still serving
    chat = workload_create(tenant=tenant, project=inference, owner=owner, name=MARKER_WORKLOAD,
                           image="vllm/vllm-openai:v0.6.3", gpu_class="L4", lifecycle=Lifecycle.SERVICE,
                           ports=[{"port": 8000, "protocol": "http"}], countries=["EU"])
    _launch_live(chat, now - timedelta(days=75))

    pods = 1
    # fine-tuning runs (Research): every few days, 2x A100-80, 5-14 h, now and then on spot
    tune = workload_create(tenant=tenant, project=research, owner=developer, name="llama-finetune",
                           image="nvcr.io/nvidia/pytorch:24.10-py3", gpu_class="A100-80", gpu_count=2)
    day = start
    while day < now - timedelta(days=2):
        offer = _offer(account, "A100-80", 2, spot=rnd.random() < 0.3)
        _past_pod(tune, offer, day.replace(hour=9, minute=rnd.randrange(60)), 5 + rnd.random() * 9)
        pods += 1
        day += timedelta(days=rnd.choice((3, 4, 5)))
    workload_settle(workload_id=tune.pk)  # the last run finished: the workload is completed

    # interactive notebooks (Research): two or three working days a week, a few hours each
    nb = workload_create(tenant=tenant, project=research, owner=developer, name="notebook-dev",
                         image="jupyter/pytorch-notebook:latest", gpu_class="RTX4090", lifecycle=Lifecycle.SERVICE,
                         ports=[{"port": 8888, "protocol": "http"}], idle_enabled=True)
    rtx = _offer(account, "RTX4090")
    day = start
    while day < now - timedelta(days=1):
        if day.weekday() < 5 and rnd.random() < 0.4:
            _past_pod(nb, rtx, day.replace(hour=13, minute=rnd.randrange(60)), 2 + rnd.random() * 4, exit_code=None)
            pods += 1
        day += timedelta(days=1)
    workload_settle(workload_id=nb.pk)

    # the scheduled workload (Evaluation) and its nightly runs
    nightly = workload_create(tenant=tenant, project=evaluation, owner=developer, name="nightly-eval",
                              image="ghcr.io/acme/eval-harness:2026.11", gpu_class="H100",
                              lifecycle=Lifecycle.SCHEDULED, schedule_cron="0 2 * * *",
                              container_spec={"env": {"SANDBOX_JOB_SECONDS": "2700"}})
    workload_schedule_sync(workload=nightly)
    pods += _nightly_runs(nightly, _offer(account, "H100"), now, rnd)

    # a finished job on the real path: the Sandbox container exits after 40 minutes
    bench = workload_create(tenant=tenant, project=research, owner=developer, name="resnet-benchmark",
                            image="nvcr.io/nvidia/pytorch:24.10-py3", gpu_class="A10",
                            container_spec={"env": {"SANDBOX_JOB_SECONDS": "2400"}})
    job_at = now - timedelta(hours=5)
    _launch_live(bench, job_at)
    with clock.frozen(job_at + timedelta(minutes=50)):
        pod_refresh(pod_id=str(bench.pods.get().pk))  # the provider reports the exit: terminated, completed
    pods += 1

    # the idle pod the reaper stopped minutes ago: 60 min at work, then 35 min at rest; warned,
    # then stopped (recent enough that the pod page's default 1 h chart shows both)
    idle_wl = workload_create(tenant=tenant, project=research, owner=developer, name="notebook-forgotten",
                              image="jupyter/pytorch-notebook:latest", gpu_class="L4", lifecycle=Lifecycle.SERVICE,
                              ports=[{"port": 8888, "protocol": "http"}], idle_enabled=True)
    idle_at = now - timedelta(minutes=110)
    pod = _launch_live(idle_wl, idle_at)
    running_from = idle_at + timedelta(minutes=3)
    _idle_evidence(pod, running_from, 60, 35, rnd)
    with clock.frozen(running_from + timedelta(minutes=95)):
        idle_reap()  # warns: idle for the whole window, stopping after the grace period
    # the first tick after the grace period (a tick exactly at its end may read the warning's
    # time a hair later on SQLite, whose epoch arithmetic is floating point, and wait one more)
    after_grace = idle_wl.idle_grace_minutes + 1
    with clock.frozen(running_from + timedelta(minutes=95 + after_grace)):
        _idle_evidence(pod, running_from + timedelta(minutes=95), 0, after_grace, rnd)
        for pod_id in idle_reap().to_stop:
            idle_stop(pod_id=pod_id)
    pods += 1

    with clock.frozen(now):
        meter_all(until=now)
        rollup_dirty()
        budget = _budgets(tenant, research, now)
    return Summary(pods=pods, ledger_usd=spend_since(tenant_id=tenant.pk, since=start, at=now), budget=budget.name)


def _budgets(tenant: Tenant, research: Project, now: datetime) -> Budget:
    """A monthly organization budget that last month's spend took past its 80 % soft threshold
    (the alert fired then, by the enforcement pass run at that month's last minute), and a hard
    project budget with room left, so launches are not refused."""
    this_month = period_start(Budget.Period.MONTH, now)
    last_minute = this_month - timedelta(minutes=1)
    spent = spend_since(tenant_id=tenant.pk, since=period_start(Budget.Period.MONTH, last_minute), at=last_minute)
    # rounded up to $10, so that last month ends between 80 % and 100 % of it
    amount = max(Decimal(10), (spent / Decimal("0.85") / 10).quantize(Decimal(1), ROUND_UP) * 10)
    org = budget_create(tenant=tenant, name="Acme AI monthly", amount_usd=amount, soft_thresholds=(80, 100),
                        hard_limit=False)
    budget_create(tenant=tenant, name="Research GPUs", project=research, amount_usd=Decimal("20000"),
                  soft_thresholds=(80, 100), hard_limit=True)
    Budget.objects.filter(tenant=tenant).update(created_at=now - timedelta(days=HISTORY_DAYS))
    with clock.frozen(last_minute):
        budget_check(org, at=last_minute)
    return org
