"""Readiness-checked cut-over through a real Caddy: a move's new pod joins the route only once
its readiness check passes, the old pod leaves the route, drains, and only then is terminated; a
new pod that never becomes ready is rolled back; a restarted gateway is repopulated."""

from __future__ import annotations

import time

import pytest

from gateway import services as gateway
from gateway.models import Backend
from provisioner import clock
from tests.workloads.lifecycle_helpers import launch, sandbox_account, workload
from workloads.lifecycle import services
from workloads.models import PodState
from workloads.placement.move import MoveTarget, workload_move
from workloads.signals import retire_pod

pytestmark = pytest.mark.django_db

PORTS = [{"port": 8000, "protocol": "http"}]


def answer(caddy, w) -> dict:
    response = caddy.get(f"/s/{gateway.endpoint_for(w).slug}/hello")
    assert response.status_code == 200, response.text
    return response.json()


def until_ready(w, pod, seconds: float = 5.0) -> None:
    """The pod's server listens a few ms (or its boot time) after launch, in real time."""
    deadline = time.monotonic() + seconds
    while not Backend.objects.filter(pod=pod, state=Backend.State.READY).exists():
        assert time.monotonic() < deadline, Backend.objects.filter(pod=pod).values("state", "last_check").first()
        time.sleep(0.05)
        gateway.advance(w)


def test_move_joins_after_readiness_and_drains_before_terminating(gateway_on, tenant, project, owner,
                                                                  django_capture_on_commit_callbacks):
    a = sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2, boot_seconds=2)
    w = workload(tenant, project, owner, name="chat", lifecycle="service", ports=PORTS)
    with clock.frozen() as advance:
        old = launch(w)
        assert old.provider_account == a
        until_ready(w, old)
        assert answer(gateway_on, w)["pod"] == str(old.pk)
        (new,) = workload_move(workload=w, target=MoveTarget(provider_account_ids=[str(b.pk)]), enqueue=False)
        services.pod_provision(pod_id=str(new.pk))
        advance(seconds=3)
        with django_capture_on_commit_callbacks(execute=True):  # the pod-change hook, after commit
            services.pods_sync()  # the provider says running: the server still boots (2 s real time)
        new.refresh_from_db()
        old.refresh_from_db()
        assert new.state == PodState.RUNNING
        assert old.state == PodState.RUNNING, "the old pod was retired before its replacement was ready"
        assert Backend.objects.get(pod=new).state == Backend.State.PENDING
        assert answer(gateway_on, w)["pod"] == str(old.pk)
        until_ready(w, new)
        assert Backend.objects.get(pod=old).state == Backend.State.DRAINING
        assert {answer(gateway_on, w)["pod"] for _ in range(4)} == {str(new.pk)}  # old out of the route
        services.pods_sync()  # the sync's safety net must not cut the drain short
        from workloads.placement.move import moves_pending

        moves_pending()
        old.refresh_from_db()
        assert old.state == PodState.RUNNING
        advance(seconds=11)  # the drain period (10 s by default) is over
        gateway.advance(w)
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED
    assert old.events.filter(message__contains="verified at the provider").exists()
    assert old.events.filter(kind="gateway", message__contains="draining 10 s").exists()
    assert new.events.filter(kind="gateway", message__contains="joined the route").exists()
    assert answer(gateway_on, w)["pod"] == str(new.pk)


def test_a_replacement_never_ready_is_rolled_back(gateway_on, tenant, project, owner):
    sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2)
    # readiness: GET /healthz must answer 204 within 1 s; the pod answers 200, so it never passes
    w = workload(tenant, project, owner, name="strict", lifecycle="service", ports=PORTS,
                 container_spec={"readiness": {"path": "/healthz", "status": 204, "timeout_seconds": 1,
                                               "deadline_seconds": 30}})
    with clock.frozen() as advance:
        old = launch(w)
        Backend.objects.create(pod=old, workload=w, state=Backend.State.READY,  # as if it had passed before
                               address=gateway.pod_address(old, w))
        gateway.sync_routes(w)
        (new,) = workload_move(workload=w, target=MoveTarget(provider_account_ids=[str(b.pk)]), enqueue=False)
        services.pod_provision(pod_id=str(new.pk))
        gateway.advance(w)
        assert Backend.objects.get(pod=new).state == Backend.State.PENDING
        advance(seconds=31)
        gateway.advance(w)
    new.refresh_from_db()
    old.refresh_from_db()
    assert new.state == PodState.TERMINATED and "rolled back" in new.state_reason
    assert old.state == PodState.RUNNING
    assert old.events.filter(kind="gateway", message__contains="rolled back").exists()
    assert new.events.filter(kind="gateway", message__contains="answered 200, expected 204").exists()
    assert answer(gateway_on, w)["pod"] == str(old.pk)


def test_restarted_gateway_is_repopulated_by_reconcile(gateway_on, tenant, project, owner):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="api", lifecycle="service", ports=PORTS)
    pod = launch(w)
    until_ready(w, pod)
    gateway_on.stop()
    gateway_on.start()  # an empty Caddy: no layout, no routes
    assert gateway_on.get(f"/s/{gateway.endpoint_for(w).slug}/").status_code != 200
    assert gateway.reconcile() == {"workloads": 1, "removed": 0}
    assert answer(gateway_on, w)["pod"] == str(pod.pk)


def test_private_service_is_behind_the_workload_token(gateway_on, tenant, project, owner):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="private", lifecycle="service", ports=PORTS, public_ingress=False)
    pod = launch(w)
    until_ready(w, pod)
    w.refresh_from_db()
    assert w.access_token  # generated for the gateway, shown on the pod page
    path = f"/s/{gateway.endpoint_for(w).slug}/"
    assert gateway_on.get(path).status_code == 401
    assert gateway_on.get(path, headers={"Authorization": f"Bearer {w.access_token}"}).json()["pod"] == str(pod.pk)


def test_scale_down_drains_before_terminating(gateway_on, tenant, project, owner):
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="burst", lifecycle="service", ports=PORTS, replicas=2)
    with clock.frozen() as advance:
        pods = [services.pod_provision(pod_id=str(p.pk)) for p in services.workload_launch(workload=w, enqueue=False)]
        for p in pods:
            until_ready(w, p)
        retire_pod(pod_id=str(pods[1].pk), reason="burst window ended")
        pods[1].refresh_from_db()
        assert pods[1].state == PodState.RUNNING  # still running, out of the route
        assert {answer(gateway_on, w)["pod"] for _ in range(4)} == {str(pods[0].pk)}
        advance(seconds=11)
        gateway.advance(w)
        pods[1].refresh_from_db()
        assert pods[1].state == PodState.TERMINATED
        retire_pod(pod_id=str(pods[0].pk), reason="burst window ended")  # the last one: drains in the route
        assert answer(gateway_on, w)["pod"] == str(pods[0].pk)
        advance(seconds=11)
        gateway.advance(w)
    pods[0].refresh_from_db()
    assert pods[0].state == PodState.TERMINATED
    assert gateway_on.get(f"/s/{gateway.endpoint_for(w).slug}/").status_code == 503


def test_gateway_off_keeps_the_immediate_retirement(tenant, project, owner, settings):
    settings.GATEWAY_ADMIN_URL = ""
    sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2)
    w = workload(tenant, project, owner, lifecycle="service", ports=PORTS)
    old = launch(w)
    (new,) = workload_move(workload=w, target=MoveTarget(provider_account_ids=[str(b.pk)]), enqueue=False)
    services.pod_provision(pod_id=str(new.pk))
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED
    assert not Backend.objects.exists()


def test_burst_window_end_drains_its_pods_first(gateway_on, tenant, project, owner):
    from workloads.lifecycle.scheduling import scheduled_runs_tick, scheduled_workload_fire
    from workloads.models import Pod, ScheduledRun

    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="nightly", lifecycle="scheduled", ports=PORTS, replicas=2,
                 schedule_cron="0 2 * * *", window_minutes=10)
    with clock.frozen() as advance:
        run = scheduled_workload_fire(str(w.pk))
        pods = [services.pod_provision(pod_id=str(p.pk)) for p in Pod.objects.filter(scheduled_run=run)]
        for p in pods:
            until_ready(w, p)
        advance(minutes=10)
        scheduled_runs_tick()  # the window is over
        assert ScheduledRun.objects.get(pk=run.pk).state == ScheduledRun.State.ENDED
        assert set(Pod.objects.filter(pk__in=[p.pk for p in pods]).values_list("state", flat=True)) == {PodState.RUNNING}
        assert set(Backend.objects.filter(workload=w).values_list("state", flat=True)) == {Backend.State.DRAINING}
        assert answer(gateway_on, w)["pod"] in {str(p.pk) for p in pods}  # drains in the route: nothing else serves
        advance(seconds=11)
        gateway.advance(w)
    assert set(Pod.objects.filter(pk__in=[p.pk for p in pods]).values_list("state", flat=True)) == {PodState.TERMINATED}


def test_rolling_relaunch_replaces_pod_by_pod_behind_the_gateway(gateway_on, tenant, project, owner):
    from workloads.lifecycle.supervision import workload_relaunch

    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, name="roll", lifecycle="service", ports=PORTS, replicas=2)
    with clock.frozen() as advance:
        olds = [services.pod_provision(pod_id=str(p.pk)) for p in services.workload_launch(workload=w, enqueue=False)]
        for p in olds:
            until_ready(w, p)
        news = workload_relaunch(workload=w)
        assert [n.replaces_id for n in news] == [o.pk for o in olds]
        for n in news:
            services.pod_provision(pod_id=str(n.pk))
            until_ready(w, n)
        assert all(Backend.objects.get(pod=o).state == Backend.State.DRAINING for o in olds)
        assert {answer(gateway_on, w)["pod"] for _ in range(6)} == {str(n.pk) for n in news}
        advance(seconds=11)
        gateway.advance(w)
    for o in olds:
        o.refresh_from_db()
        assert o.state == PodState.TERMINATED and "relaunched as" in o.state_reason


def test_rolling_relaunch_without_gateway_retires_when_the_new_pod_runs(tenant, project, owner, settings):
    from workloads.lifecycle.supervision import workload_relaunch

    settings.GATEWAY_ADMIN_URL = ""
    sandbox_account(tenant, "A")
    w = workload(tenant, project, owner, lifecycle="service", ports=PORTS)
    old = launch(w)
    (new,) = workload_relaunch(workload=w)  # before: "This workload still has live pods"
    new = services.pod_provision(pod_id=str(new.pk))
    old.refresh_from_db()
    assert new.state == PodState.RUNNING and old.state == PodState.TERMINATED


def test_advance_steps_of_one_workload_merge_instead_of_multiplying(tenant, project, owner, settings, monkeypatch):
    """The reconcile (every 10 s), pod changes and each step schedule the next step: while a pod
    waits for readiness, their chains must merge, not add up."""
    from gateway import tasks

    settings.CELERY_TASK_ALWAYS_EAGER = False
    sent: list = []
    monkeypatch.setattr(tasks.advance_workload, "apply_async", lambda args, countdown: sent.append(countdown))
    monkeypatch.setattr(gateway.time, "time", lambda: 1_800_000_000.2)  # the five calls in one second
    w = workload(tenant, project, owner, lifecycle="service", ports=PORTS)
    for _ in range(5):
        gateway.schedule_advance(w, 1.0)
    assert sent == [1.0]
    gateway.schedule_advance(w, 3.0)  # a later step (a drain's end) is its own
    assert sent == [1.0, 3.0]
