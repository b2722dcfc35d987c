"""Chaos: 200 launches against three Sandbox accounts with faults injected at random
(timeout after the resource was created, timeouts whose resource the listing shows only later,
429, 5xx, capacity errors, workers killed before and after the provider call) plus spot
interruptions. After reconciliation: no provider resource without a live pod, and every
workload running, finished/stopped, or failed with a reason."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from providers.adapters.base import CapacityUnavailable, QuotaExceeded, TransientError
from providers.models import SandboxInstance
from provisioner import clock
from workloads.lifecycle import services
from workloads.lifecycle.reconcile import reconcile_all, stuck_after
from workloads.models import Pod, PodState, ReconcileAction, Workload

from .lifecycle_helpers import FaultInjector, WorkerKilled, sandbox_account, workload

pytestmark = pytest.mark.django_db

LAUNCHES = int(__import__("os").environ.get("CHAOS_LAUNCHES", "200"))
FAULTS = [  # (weight, fault)
    (50, None),
    (9, "timeout_after_create"),
    (8, "hide"),
    (7, "rate_limited"),
    (7, "server_error"),
    (8, "capacity"),
    (2, "quota"),
    (3, "kill_after_create"),
    (3, "kill_before_call"),
]
HELD = (PodState.REQUESTED, PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPING, PodState.STOPPED)


def _fault_source(rng: random.Random, tally: Counter):
    weights = [w for w, _ in FAULTS]
    kinds = [f for _, f in FAULTS]

    def pick():
        kind = rng.choices(kinds, weights)[0]
        tally[kind or "none"] += 1
        return {
            "rate_limited": TransientError("429 Too Many Requests", status=429, retry_after=2),
            "server_error": TransientError("502 Bad Gateway", status=502),
            "capacity": CapacityUnavailable("no capacity for this shape"),
            "quota": QuotaExceeded("GPU quota exceeded"),
        }.get(kind, kind)

    return pick


def test_two_hundred_faulty_launches_leave_no_leak(tenant, project, owner, monkeypatch, settings,
                                                   django_capture_on_commit_callbacks):
    settings.LAUNCH_MAX_ATTEMPTS = 4
    rng = random.Random(20261127)
    tally: Counter = Counter()
    accounts = [sandbox_account(tenant, "Alpha", rank=1), sandbox_account(tenant, "Bravo", rank=2),
                sandbox_account(tenant, "Charlie", rank=3, interrupt_rate_per_hour=0.6)]
    faults = FaultInjector(monkeypatch)
    for a in accounts:
        faults.faults[str(a.pk)] = _fault_source(rng, tally)
    killed = 0
    with clock.frozen() as advance:
        for i in range(LAUNCHES):
            w = workload(tenant, project, owner, name=f"w{i}", gpu_class=rng.choice(["A10", "A100-80", "H100", "L4"]),
                         lifecycle=rng.choice(["job", "job", "service"]),
                         interruption_tolerant=rng.random() < 0.3)
            (pod,) = services.workload_launch(workload=w, enqueue=False)
            try:
                services.pod_provision(pod_id=str(pod.pk))
            except WorkerKilled:
                killed += 1
            advance(seconds=45)
            if i % 50 == 49:  # the periodic sync runs meanwhile, faults and all
                try:
                    with django_capture_on_commit_callbacks(execute=True):
                        services.pods_sync()
                except WorkerKilled:
                    killed += 1
        # the providers calm down; the listings catch up; time passes; periodic work runs
        faults.faults.clear()
        faults.reveal()
        for _ in range(2):
            advance(seconds=stuck_after().total_seconds() + 1)
            with django_capture_on_commit_callbacks(execute=True):
                reconcile_all()
                services.pods_sync()
        with django_capture_on_commit_callbacks(execute=True):
            reconcile_all()

    # every kind of fault really happened
    assert all(tally[k] > 0 for k in ("timeout_after_create", "hide", "rate_limited", "server_error", "capacity",
                                       "kill_after_create", "kill_before_call")), tally
    assert killed > 0

    # 0 provider resources without a live pod
    orphans = []
    for inst in SandboxInstance.objects.filter(ended_at__isnull=True):
        owner_pod = Pod.objects.filter(provider_account_id=inst.account_id, external_id=inst.external_id,
                                       state__in=HELD).first()
        if owner_pod is None:
            orphans.append(inst.external_id)
    assert orphans == []
    # ... and no live pod without its resource
    for pod in Pod.objects.filter(state__in=HELD):
        assert pod.state == PodState.RUNNING, (pod.pk, pod.state, pod.state_reason)
        assert SandboxInstance.objects.filter(external_id=pod.external_id, ended_at__isnull=True).exists()

    # every workload running, finished/stopped, or failed with a reason
    states = Counter()
    for w in Workload.objects.all():
        states[w.state] += 1
        if w.state == Workload.State.ACTIVE:
            assert w.pods.filter(state=PodState.RUNNING).exists(), w.name
        elif w.state == Workload.State.FAILED:
            assert w.state_reason, w.name
        else:
            assert w.state in (Workload.State.COMPLETED, Workload.State.STOPPED)
    assert sum(states.values()) == LAUNCHES
    assert states[Workload.State.ACTIVE] > LAUNCHES // 2  # most of them made it despite the faults
    # reconciliation did real work: orphans terminated (verified) and stuck launches adopted
    actions = Counter(ReconcileAction.objects.values_list("action", flat=True))
    assert actions["terminated"] > 0 and actions["adopted"] > 0
    assert not ReconcileAction.objects.filter(action="terminated", verified=False).exists()
