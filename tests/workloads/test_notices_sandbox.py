"""The Sandbox emits interruption notices with a configurable lead time, the fast spot sync sees
them (one list call per account per tick), and the control plane replaces the pod before the
provider takes it; billing ends at the provider's actual end."""

from __future__ import annotations

import pytest

from providers.adapters.sandbox import SandboxAdapter
from provisioner import clock
from workloads.interruptions.actions import survived_without_downtime
from workloads.interruptions.spot_sync import spot_pods_sync
from workloads.lifecycle import calls, services
from workloads.models import Lifecycle, Pod, PodEvent, PodState

from .lifecycle_helpers import launch, sandbox_account, workload


def _spot_service(tenant, project, owner, **kw):
    w = workload(tenant, project, owner, interruption_tolerant=True, lifecycle=Lifecycle.SERVICE, **kw)
    pod = launch(w)
    assert pod.spot, "expected a spot placement for an interruption-tolerant workload"
    return w, pod


@pytest.mark.django_db
def test_notice_30s_replacement_runs_before_the_old_pod_ends(tenant, project, owner, django_capture_on_commit_callbacks):
    sandbox_account(tenant, "Spot", notice_seconds=30, interrupt_after_seconds=60, boot_seconds=5)
    with clock.frozen() as advance:
        w, old = _spot_service(tenant, project, owner)
        advance(seconds=6)
        spot_pods_sync()
        assert Pod.objects.get(pk=old.pk).state == PodState.RUNNING
        # launched at 0, running at 5, taken at 65: no notice before 35
        assert not PodEvent.objects.filter(pod=old, kind="notice").exists()
        advance(seconds=30)  # 36: inside the 30 s notice window
        with django_capture_on_commit_callbacks(execute=True):
            spot_pods_sync()
        notice = PodEvent.objects.get(pod=old, kind="notice")
        assert "Interruption notice from Sandbox" in notice.message and "29 s from now" in notice.message
        new = Pod.objects.get(replaces=old)
        services.pod_provision(pod_id=str(new.pk))
        advance(seconds=6)  # the replacement boots (5 s)
        spot_pods_sync()
        assert Pod.objects.get(pk=new.pk).state == PodState.RUNNING
        assert Pod.objects.get(pk=old.pk).state == PodState.RUNNING  # still serving beside it
        advance(seconds=25)  # 67: the provider took it at 65
        with django_capture_on_commit_callbacks(execute=True):
            spot_pods_sync()
    old.refresh_from_db()
    assert old.state == PodState.INTERRUPTED
    # billing ends at the provider's end (65), not when the sync saw it (67)
    assert old.ended_at == old.interruption_deadline
    assert old.run_sessions[-1][1] == old.interruption_deadline.isoformat()
    assert Pod.objects.filter(workload=w, state__in=("requested", "provisioning", "running")).count() == 1
    assert survived_without_downtime(w) == 1


@pytest.mark.django_db
def test_notice_0s_is_an_unannounced_interruption_seen_by_the_spot_sync(tenant, project, owner):
    sandbox_account(tenant, "Spot", notice_seconds=0, interrupt_after_seconds=10)
    with clock.frozen() as advance:
        w, old = _spot_service(tenant, project, owner)
        advance(seconds=11)
        spot_pods_sync()
    old.refresh_from_db()
    assert old.state == PodState.INTERRUPTED and old.interruption_notice == {}
    assert Pod.objects.filter(replaces=old).exists()  # the existing re-placement after the fact


@pytest.mark.django_db
def test_spot_sync_makes_one_list_call_per_account_and_leaves_on_demand_pods_alone(tenant, project, owner, monkeypatch):
    sandbox_account(tenant, "Spot", interrupt_after_seconds=3600)
    for _ in range(3):
        _spot_service(tenant, project, owner)
    on_demand = launch(workload(tenant, project, owner, name="od"))
    assert not on_demand.spot
    synced_before = Pod.objects.get(pk=on_demand.pk).last_synced_at
    listed, got = [], []
    monkeypatch.setattr(SandboxAdapter, "list_pods", _spy(SandboxAdapter.list_pods, listed))
    monkeypatch.setattr(SandboxAdapter, "get", _spy(SandboxAdapter.get, got))
    assert spot_pods_sync() == 3
    assert len(listed) == 1 and got == []
    assert Pod.objects.get(pk=on_demand.pk).last_synced_at == synced_before


def _spy(fn, calls_made):
    def wrapper(self, *args):
        calls_made.append(args)
        return fn(self, *args)
    return wrapper


def test_spot_sync_is_scheduled_every_few_seconds():
    from provisioner.schedule import SCHEDULE

    assert {e.task: e.every_seconds for e in SCHEDULE}["workloads.sync_spot_pods"] <= 5
    assert calls  # the adapter cache is the one the sync uses


@pytest.mark.django_db
def test_the_escalation_rule_counts_the_interruption_a_notice_announces(tenant, project, owner,
                                                                         django_capture_on_commit_callbacks):
    sandbox_account(tenant, "Spot", notice_seconds=30, interrupt_after_seconds=60)
    with clock.frozen() as advance:
        w, old = _spot_service(tenant, project, owner, max_interruptions_before_on_demand=1)
        advance(seconds=31)
        with django_capture_on_commit_callbacks(execute=True):
            spot_pods_sync()
    new = Pod.objects.get(replaces=old)
    assert new.interruption_count == 1
    assert new.spot is False, "one interruption (the announced one) reaches the limit of 1: on-demand"
    assert PodEvent.objects.filter(pod=new, kind="placement", message__startswith="On-demand only").exists()


@pytest.mark.django_db
def test_an_overlapping_spot_sync_tick_skips(tenant, project, owner):
    from django.core.cache import cache

    from workloads.lifecycle.tasks import sync_spot_pods

    sandbox_account(tenant, "Spot", interrupt_after_seconds=3600)
    _spot_service(tenant, project, owner)
    cache.delete("spot-sync-running")
    assert sync_spot_pods() == 1
    cache.add("spot-sync-running", "1", timeout=60)  # a tick still running
    try:
        assert sync_spot_pods() == 0
    finally:
        cache.delete("spot-sync-running")
