"""Job moves run in the worker (issue 20 §2): the move page only enqueues; the task waits for the
provider to confirm the old pod's termination (re-scheduled with a countdown, bounded) and then
starts the job at the new place."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.adapters.base import ProviderAdapter, RemotePod
from provisioner import clock
from workloads.lifecycle import calls
from workloads.lifecycle.supervision import workload_stop
from workloads.models import Pod, PodState, Workload

from .lifecycle_helpers import launch, sandbox_account, workload
from .timers import Timers

pytestmark = pytest.mark.django_db

MOVE_TASK = "workloads.move_job"


class ConfirmsLater(ProviderAdapter):
    """Wraps a real adapter: a terminate is accepted but carried out only after
    ``gets_before_done`` more gets (None: never) - the get that verifies right after the
    terminate still sees the pod running, as with providers that tear down asynchronously."""

    def __init__(self, inner: ProviderAdapter, asked: dict[str, int], gets_before_done: int | None):
        self.inner, self.asked, self.gets_before_done = inner, asked, gets_before_done
        self.info, self.credentials, self.settings = inner.info, inner.credentials, inner.settings

    def verify(self):
        return self.inner.verify()

    def list_offers(self):
        return self.inner.list_offers()

    def launch(self, request):
        return self.inner.launch(request)

    def terminate(self, external_id: str) -> None:
        self.asked.setdefault(external_id, 0)

    def get(self, external_id: str) -> RemotePod:
        if external_id in self.asked:
            self.asked[external_id] += 1
            if self.gets_before_done is not None and self.asked[external_id] > self.gets_before_done:
                self.inner.terminate(external_id)
        return self.inner.get(external_id)

    def list_pods(self):
        return self.inner.list_pods()


def _confirms_later(monkeypatch, gets_before_done: int | None = 1) -> dict[str, int]:
    asked: dict[str, int] = {}
    real = calls.adapter
    monkeypatch.setattr(calls, "adapter", lambda account: ConfirmsLater(real(account), asked, gets_before_done))
    return asked


def _job_on_a(tenant, project, owner):
    sandbox_account(tenant, "A", rank=1)
    b = sandbox_account(tenant, "B", rank=2)
    w = workload(tenant, project, owner)
    old = launch(w)
    assert old.state == PodState.RUNNING
    return w, old, b


def _post_move(client, owner, w, b, on_commit):
    client.force_login(owner)
    with on_commit() as sent:
        response = client.post(reverse("workloads:workload_move", args=[w.pk]), {"provider_account": str(b.pk)})
    return response, sent


def test_move_page_only_enqueues_and_the_task_waits_for_the_providers_confirmation(
        client, tenant, project, owner, monkeypatch, django_capture_on_commit_callbacks):
    w, old, b = _job_on_a(tenant, project, owner)
    asked = _confirms_later(monkeypatch, gets_before_done=1)
    timers = Timers(monkeypatch)
    with clock.frozen() as advance:
        response, sent = _post_move(client, owner, w, b, django_capture_on_commit_callbacks)
        assert response.status_code == 302 and response.url == reverse("workloads:workload_detail", args=[w.pk])
        old.refresh_from_db()
        assert old.state == PodState.RUNNING and asked == {}  # the request itself called no provider
        assert old.events.filter(kind="move", message__contains="stopping this job").exists()

        with django_capture_on_commit_callbacks(execute=True):
            for callback in sent:
                callback()  # the worker picks the task up
        old.refresh_from_db()
        assert old.state == PodState.STOPPING  # terminate sent; the provider has not confirmed yet
        assert w.pods.count() == 1
        (retry,) = [t for t in timers.pending if t.name == MOVE_TASK]
        assert retry.when > clock.now()  # a countdown, not a sleep in the worker

        advance(seconds=(retry.when - clock.now()).total_seconds())
        with django_capture_on_commit_callbacks(execute=True):
            timers.run_due()
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED
    new = Pod.objects.get(workload=w, replaces=old)
    assert new.state == PodState.RUNNING and new.provider_account == b
    w.refresh_from_db()
    assert w.state == Workload.State.ACTIVE
    assert old.events.filter(kind="move", message__contains=str(new.pk)[:8]).exists()


def test_a_provider_that_never_confirms_ends_the_wait_and_says_so(
        client, tenant, project, owner, monkeypatch, django_capture_on_commit_callbacks):
    w, old, b = _job_on_a(tenant, project, owner)
    real_adapter = calls.adapter
    _confirms_later(monkeypatch, gets_before_done=None)
    timers = Timers(monkeypatch)
    with clock.frozen() as advance:
        response, sent = _post_move(client, owner, w, b, django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=True):
            for callback in sent:
                callback()
        waited = 0
        while pending := [t for t in timers.pending if t.name == MOVE_TASK]:
            step = (pending[0].when - clock.now()).total_seconds()
            assert 0 < step <= 60
            advance(seconds=step)
            waited += step
            timers.run_due()
    assert 0 < waited <= 15 * 60  # bounded
    assert len(timers.named(MOVE_TASK)) >= 3
    assert old.events.filter(kind="move", message__contains="did not confirm").exists()
    assert w.pods.count() == 1  # nothing started beside a job that may still run
    old.refresh_from_db()
    assert old.state == PodState.STOPPING
    # the provider gets there in the end: the sync sees it, and the workload settles as stopped
    monkeypatch.setattr(calls, "adapter", real_adapter)
    real_adapter(old.provider_account).terminate(old.external_id)
    from workloads.lifecycle.services import pods_sync

    pods_sync()
    old.refresh_from_db()
    w.refresh_from_db()
    assert old.state == PodState.TERMINATED and w.state == Workload.State.STOPPED


def test_stopping_the_workload_during_the_wait_cancels_the_move(
        client, tenant, project, owner, monkeypatch, django_capture_on_commit_callbacks):
    w, old, b = _job_on_a(tenant, project, owner)
    _confirms_later(monkeypatch, gets_before_done=1)
    timers = Timers(monkeypatch)
    with clock.frozen() as advance:
        response, sent = _post_move(client, owner, w, b, django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=True):
            for callback in sent:
                callback()
        workload_stop(workload=w, reason="Stopped by owner")
        advance(minutes=5)
        with django_capture_on_commit_callbacks(execute=True):
            timers.run_due()
            from workloads.lifecycle.services import pods_sync

            pods_sync()
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED
    assert w.pods.count() == 1
    w.refresh_from_db()
    assert w.state == Workload.State.STOPPED and w.state_reason == "Stopped by owner"


def test_a_job_that_finishes_on_its_own_during_the_wait_is_not_started_again(
        client, tenant, project, owner, monkeypatch, django_capture_on_commit_callbacks):
    w, old, b = _job_on_a(tenant, project, owner)
    _confirms_later(monkeypatch, gets_before_done=1)
    timers = Timers(monkeypatch)
    with clock.frozen() as advance:
        response, sent = _post_move(client, owner, w, b, django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=True):
            for callback in sent:
                callback()
        Pod.objects.filter(pk=old.pk).update(exit_code=0)  # the container exited meanwhile (seen by a sync)
        advance(minutes=1)
        with django_capture_on_commit_callbacks(execute=True):
            timers.run_due()
    old.refresh_from_db()
    assert old.state == PodState.TERMINATED and w.pods.count() == 1
    assert old.events.filter(kind="move", message__contains="finished (exit 0)").exists()
    w.refresh_from_db()
    assert w.state == Workload.State.COMPLETED


def test_a_job_move_whose_task_was_lost_is_finished_by_the_periodic_sync(
        client, tenant, project, owner, monkeypatch, django_capture_on_commit_callbacks):
    """The worker died between two looks: the sync confirms the old pod's end, and a little later
    its safety net starts the job at the new place (the workload did not settle as stopped)."""
    from workloads.lifecycle.tasks import sync_pods

    w, old, b = _job_on_a(tenant, project, owner)
    _confirms_later(monkeypatch, gets_before_done=1)
    timers = Timers(monkeypatch)
    with clock.frozen() as advance:
        response, sent = _post_move(client, owner, w, b, django_capture_on_commit_callbacks)
        with django_capture_on_commit_callbacks(execute=True):
            for callback in sent:
                callback()
        timers.pending.clear()  # lost with the worker
        with django_capture_on_commit_callbacks(execute=True):
            sync_pods()
        old.refresh_from_db()
        w.refresh_from_db()
        assert old.state == PodState.TERMINATED and w.state == Workload.State.ACTIVE and w.pods.count() == 1
        advance(minutes=3)
        with django_capture_on_commit_callbacks(execute=True):
            sync_pods()
            sync_pods()  # twice: one new pod
    new = Pod.objects.get(workload=w, replaces=old)
    assert new.state == PodState.RUNNING and new.provider_account == b
