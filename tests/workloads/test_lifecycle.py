"""The walking skeleton: declare -> place -> launch on the Sandbox -> run -> terminate -> cost."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.services import meter_all
from provisioner import clock
from workloads.lifecycle import services
from workloads.models import Pod, PodState
from workloads.pods.selectors import pod_cost_so_far

from ..factories import WorkloadFactory


@pytest.mark.django_db
def test_launch_runs_and_terminates_with_cost(tenant, project, owner, sandbox):
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    with clock.frozen() as advance:
        (pod,) = services.workload_launch(workload=w, enqueue=False)
        pod = services.pod_provision(pod_id=str(pod.pk))
        assert pod.state == PodState.RUNNING  # boot_seconds=0
        assert pod.provider_account == sandbox
        assert pod.price_usd_per_hour > 0
        assert not pod.spot  # not interruption tolerant -> on-demand
        assert pod.connection["ssh"].startswith("ssh root@")
        advance(minutes=30)
        meter_all()
        pod.refresh_from_db()
        expected_half_hour = (pod.price_usd_per_hour / 2).quantize(Decimal("0.000001"))
        assert pod.cost_usd == expected_half_hour
        advance(minutes=30)
        pod = services.pod_terminate(pod_id=str(pod.pk))
        assert pod.state == PodState.TERMINATED
        # termination is verified at the provider
        assert pod.events.filter(message__contains="verified").exists()
        meter_all()
        pod.refresh_from_db()
        assert pod.cost_usd == pod.price_usd_per_hour.quantize(Decimal("0.000001"))
        assert pod_cost_so_far(pod) == pod.cost_usd
        advance(hours=5)
        meter_all()  # nothing more is charged after termination
        pod.refresh_from_db()
        assert pod.cost_usd == pod.price_usd_per_hour.quantize(Decimal("0.000001"))


@pytest.mark.django_db
def test_cheapest_feasible_offer_wins(tenant, project, owner, sandbox):
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner, gpu_class="H100", gpu_count=2)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    cheapest = (sandbox.offers.filter(gpu_class="H100", gpu_count=2, spot=False).exclude(available=0)
                .order_by("price_usd_per_hour").first())
    assert pod.price_usd_per_hour == cheapest.price_usd_per_hour


@pytest.mark.django_db
def test_spot_only_when_tolerated(tenant, project, owner, sandbox):
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner, interruption_tolerant=True, gpu_class="A10")
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    cheapest = sandbox.offers.filter(gpu_class="A10", gpu_count=1).exclude(available=0).order_by("price_usd_per_hour").first()
    assert pod.price_usd_per_hour == cheapest.price_usd_per_hour


@pytest.mark.django_db
def test_provision_twice_launches_once(tenant, project, owner, sandbox):
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    services.pod_provision(pod_id=str(pod.pk))
    services.pod_provision(pod_id=str(pod.pk))
    assert sandbox.sandbox_instances.count() == 1


@pytest.mark.django_db
def test_no_capacity_fails_with_reason(tenant, project, owner, sandbox):
    sandbox.settings["no_capacity_regions"] = list(sandbox.offers.values_list("region", flat=True).distinct())
    sandbox.save()
    from providers.services import capacity_poll

    capacity_poll(accounts=[sandbox])
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.FAILED
    assert "capacity" in pod.state_reason.lower()


@pytest.mark.django_db
def test_a_sync_that_sees_our_termination_first_records_it_as_verified(tenant, project, owner, sandbox):
    """Terminate and the periodic sync race: when the sync observes the provider's
    "terminated" for a pod we are stopping, that is the verification, said as such."""
    from workloads.lifecycle import calls

    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    with clock.frozen():
        (pod,) = services.workload_launch(workload=w, enqueue=False)
        pod = services.pod_provision(pod_id=str(pod.pk))
        assert services.pod_transition(pod, PodState.STOPPING, "Stopping: test", expect=(PodState.RUNNING,))
        calls.adapter(sandbox).terminate(pod.external_id)  # the provider has done it; our verify has not run
        services.pods_sync()
    pod.refresh_from_db()
    assert pod.state == PodState.TERMINATED
    assert pod.events.filter(message__startswith="Terminated; verified at the provider").exists()


@pytest.mark.django_db
def test_pod_boots_after_delay_and_sync_moves_it(tenant, project, owner, sandbox):
    sandbox.settings["boot_seconds"] = 20
    sandbox.save()
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner)
    with clock.frozen() as advance:
        (pod,) = services.workload_launch(workload=w, enqueue=False)
        pod = services.pod_provision(pod_id=str(pod.pk))
        assert pod.state == PodState.PROVISIONING
        services.pods_sync()
        assert Pod.objects.get(pk=pod.pk).state == PodState.PROVISIONING
        advance(seconds=21)
        services.pods_sync()
        assert Pod.objects.get(pk=pod.pk).state == PodState.RUNNING
    states = list(pod.events.filter(kind="state").values_list("data__state", flat=True))
    assert states == ["requested", "running"] or states == ["requested", "provisioning", "running"] or "running" in states


@pytest.mark.django_db
def test_spot_interruption_detected(tenant, project, owner, sandbox):
    sandbox.settings["interrupt_rate_per_hour"] = 50  # interrupted within minutes
    sandbox.save()
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner, interruption_tolerant=True)
    with clock.frozen() as advance:
        (pod,) = services.workload_launch(workload=w, enqueue=False)
        pod = services.pod_provision(pod_id=str(pod.pk))
        if not pod.spot:
            pytest.fail("expected a spot placement for an interruption-tolerant workload")
        advance(hours=3)
        services.pods_sync()
    pod.refresh_from_db()
    assert pod.state == PodState.INTERRUPTED
    assert pod.interruption_count == 1
