"""Follow-up checks after a launch (issue 18 §2): scheduled by what the provider says about the
boot, not on a fixed 1, 1, 2, 2, 3 … s back-off; and the pod page polls faster while a state
change is due."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from provisioner import clock
from workloads.lifecycle import follow, services, tasks
from workloads.models import Pod, PodState

from ..factories import WorkloadFactory

pytestmark = pytest.mark.django_db


def _booting(tenant, project, owner, sandbox, seconds: int):
    sandbox.settings["boot_seconds"] = seconds
    sandbox.save()
    (pod,) = services.workload_launch(workload=WorkloadFactory(tenant=tenant, project=project, owner=owner),
                                      enqueue=False)
    return pod


def test_the_pod_keeps_the_providers_expected_boot_and_the_first_check_is_then(
        tenant, project, owner, sandbox, monkeypatch):
    scheduled = []
    monkeypatch.setattr(tasks.follow_pod, "apply_async", lambda args, countdown: scheduled.append((args, countdown)))
    with clock.frozen() as advance:
        pod = _booting(tenant, project, owner, sandbox, 60)
        tasks.provision_pod(str(pod.pk))
        pod = Pod.objects.get(pk=pod.pk)
        assert pod.state == PodState.PROVISIONING
        assert pod.ready_expected_at == clock.now() + timedelta(seconds=60)
        # before: the first check came after 1 s and the back-off reached 60 s only after ~55 s of checks
        assert scheduled == [((str(pod.pk), 0), pytest.approx(60 - follow.WATCH_LEAD_SECONDS))]
        monkeypatch.setattr("django.conf.settings.CELERY_TASK_ALWAYS_EAGER", False)
        monkeypatch.setattr(follow, "sleep", lambda s: advance(seconds=s))
        advance(seconds=59.5)  # the first check: still booting, then asked every 0.1 s in the task
        scheduled.clear()
        tasks.follow_pod(str(pod.pk), 0)
        pod = Pod.objects.get(pk=pod.pk)
        assert pod.state == PodState.RUNNING and scheduled == []
        assert (pod.started_at - pod.ready_expected_at).total_seconds() <= follow.WATCH_INTERVAL_SECONDS


def test_a_pod_due_by_the_end_of_its_launch_is_checked_in_the_launch_task(
        tenant, project, owner, sandbox, monkeypatch):
    """A boot shorter than the launch's own tail: no trip through the broker (the embedded one
    polls its file) before the first check."""
    scheduled = []
    monkeypatch.setattr(tasks.follow_pod, "apply_async", lambda args, countdown: scheduled.append((args, countdown)))
    monkeypatch.setattr("django.conf.settings.CELERY_TASK_ALWAYS_EAGER", False)
    with clock.frozen() as advance:
        monkeypatch.setattr(follow, "sleep", lambda s: advance(seconds=s))
        pod = _booting(tenant, project, owner, sandbox, 0.3)
        tasks.provision_pod(str(pod.pk))
        pod = Pod.objects.get(pk=pod.pk)
        assert pod.state == PodState.RUNNING and scheduled == []
        assert (pod.started_at - pod.ready_expected_at).total_seconds() <= follow.WATCH_INTERVAL_SECONDS


def test_one_check_task_asks_for_at_most_its_hold_then_hands_over(monkeypatch):
    """A provider late on its own estimate: the task stops asking after WATCH_HOLD_SECONDS (the
    next check is a new task, ``next_check``), so a worker is not held for the whole window."""
    from types import SimpleNamespace

    with clock.frozen() as advance:
        monkeypatch.setattr(follow, "sleep", lambda s: advance(seconds=s))
        start, asked = clock.now(), []

        def refresh():
            asked.append(clock.now())
            return SimpleNamespace(state=PodState.PROVISIONING, ready_expected_at=start)

        pod = follow.watch(refresh, now=clock.now)
        assert pod.state == PodState.PROVISIONING
        assert (asked[-1] - start).total_seconds() == pytest.approx(follow.WATCH_HOLD_SECONDS)
        assert len(asked) == round(follow.WATCH_HOLD_SECONDS / follow.WATCH_INTERVAL_SECONDS) + 1
        assert follow.next_check(now=clock.now(), expected=start, step=0) == (follow.WATCH_INTERVAL_SECONDS, 0)


def test_next_check_before_around_and_after_the_expected_time():
    now = clock.now()
    at = now + timedelta(seconds=180)
    assert follow.first_check_in(now=now, expected=at) == pytest.approx(179.5)
    assert follow.first_check_in(now=now, expected=None) == follow.FOLLOW_DELAYS[0]
    assert follow.next_check(now=now, expected=at, step=3) == (pytest.approx(179.5), 3)  # no step spent
    interval = follow.WATCH_INTERVAL_SECONDS
    assert follow.next_check(now=at - timedelta(seconds=0.2), expected=at, step=3) == (interval, 3)
    assert follow.next_check(now=at + timedelta(seconds=4), expected=at, step=3) == (interval, 3)
    # past the window (the estimate was wrong): the back-off resumes where it was
    assert follow.next_check(now=at + timedelta(seconds=6), expected=at, step=3) == (follow.FOLLOW_DELAYS[4], 4)
    assert follow.next_check(now=now, expected=None, step=len(follow.FOLLOW_DELAYS) - 1) is None


def test_a_revised_estimate_moves_the_expected_time(tenant, project, owner, sandbox):
    from providers.models import SandboxInstance

    with clock.frozen():
        pod = services.pod_provision(pod_id=str(_booting(tenant, project, owner, sandbox, 60).pk))
        later = clock.now() + timedelta(seconds=90)
        SandboxInstance.objects.filter(external_id=pod.external_id).update(boot_at=later)
        pod = services.pod_refresh(pod_id=str(pod.pk))
        assert pod.state == PodState.PROVISIONING and pod.ready_expected_at == later


def test_the_pod_page_polls_twice_a_second_while_booting_and_every_2s_once_running(
        client, tenant, project, owner, sandbox):
    client.force_login(owner)
    with clock.frozen() as advance:
        pod = services.pod_provision(pod_id=str(_booting(tenant, project, owner, sandbox, 5).pk))
        url = reverse("workloads:pod_detail", args=[pod.pk])
        assert 'hx-trigger="every 500ms"' in client.get(url, HTTP_HX_REQUEST="true").content.decode()
        advance(seconds=6)
        services.pod_refresh(pod_id=str(pod.pk))
        body = client.get(url, HTTP_HX_REQUEST="true").content.decode()
        assert 'hx-trigger="every 2s"' in body and "every 500ms" not in body
