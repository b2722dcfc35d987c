"""The heartbeat's ``notice`` field: validated like the rest (bad input → 400, never a 500),
recorded once as an "interruption notice" event with the provider's deadline, and acted on:
a replacement placed at once, the on-notice command sent to a job's agent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache

from provisioner import clock
from workloads.autoshutdown import telemetry
from workloads.models import Lifecycle, Pod, PodEvent, PodState

from .telemetry_helpers import running_pod
from .test_heartbeat import beat

T0 = datetime(2026, 12, 2, 18, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _fresh_cache_and_clock():
    cache.clear()
    with clock.frozen(T0):
        yield
    cache.clear()


def body(**notice):
    n = {"provider": "aws", "kind": "terminate", "deadline": "2026-12-02T18:02:00Z", "detail": "spot/instance-action"}
    n.update(notice)
    return {"gpus": [], "notice": {k: v for k, v in n.items() if v is not ...}}


@pytest.mark.django_db
@pytest.mark.parametrize("notice", [
    {"provider": "runpod"}, {"provider": "sandbox"}, {"provider": 7}, {"kind": "explode"}, {"kind": None},
    {"deadline": "tomorrow"}, {"deadline": "2026-12-02T18:02:00"}, {"deadline": 1733162520},
    {"deadline": "2026-12-09T18:02:00Z"}, {"deadline": "2026-12-01T18:02:00Z"}, {"detail": "x" * 201},
    {"detail": "nul\u0000"}, {"extra": 1}, {"deadline": "9" * 41},
])
def test_bad_notices_are_400_and_nothing_is_stored(client, tenant, project, owner, sandbox, notice):
    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
    token = telemetry.agent_token_issue(pod=pod)
    r = beat(client, pod.pk, token, body(**notice))
    assert r.status_code == 400 and "notice" in r.json()["error"]
    fresh = Pod.objects.get(pk=pod.pk)
    assert fresh.interruption_notice == {} and fresh.last_heartbeat_at is None
    assert not PodEvent.objects.filter(pod=pod, kind="notice").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("notice", ["a string", [], 3])
def test_notice_that_is_not_an_object_is_400(client, tenant, project, owner, sandbox, notice):
    pod = running_pod(tenant, project, owner)
    token = telemetry.agent_token_issue(pod=pod)
    assert beat(client, pod.pk, token, {"gpus": [], "notice": notice}).status_code == 400


@pytest.mark.django_db
def test_a_notice_is_recorded_once_and_a_replacement_placed_at_once(client, tenant, project, owner, sandbox,
                                                                     django_capture_on_commit_callbacks):
    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
    token = telemetry.agent_token_issue(pod=pod)
    with django_capture_on_commit_callbacks(execute=True):
        r = beat(client, pod.pk, token, body())
    assert r.status_code == 200 and "on_notice" not in r.json()
    fresh = Pod.objects.get(pk=pod.pk)
    assert fresh.state == PodState.RUNNING  # the old pod keeps serving
    assert fresh.interruption_deadline == T0 + timedelta(minutes=2)
    event = PodEvent.objects.get(pod=pod, kind="notice")
    assert "Interruption notice from AWS (terminate)" in event.message and "120 s from now" in event.message
    assert event.data["deadline"] == "2026-12-02T18:02:00+00:00"
    new = Pod.objects.get(replaces=pod)
    assert new.placement_override["purpose"] == "notice" and new.interruption_count == 1
    assert new.state in (PodState.PROVISIONING, PodState.RUNNING)  # placed through the normal machinery
    # the agent repeats the notice with every report: nothing more happens
    with django_capture_on_commit_callbacks(execute=True):
        assert beat(client, pod.pk, token, body()).status_code == 200
    assert PodEvent.objects.filter(pod=pod, kind="notice").count() == 1
    assert Pod.objects.filter(replaces=pod).count() == 1


@pytest.mark.django_db
def test_rebalance_is_recorded_but_replaces_nothing_and_never_downgrades_a_notice(
        client, tenant, project, owner, sandbox, django_capture_on_commit_callbacks):
    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
    token = telemetry.agent_token_issue(pod=pod)
    with django_capture_on_commit_callbacks(execute=True):
        assert beat(client, pod.pk, token, body(kind="rebalance", deadline=None)).status_code == 200
    assert "Rebalance recommendation" in PodEvent.objects.get(pod=pod, kind="notice").message
    assert not Pod.objects.filter(replaces=pod).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert beat(client, pod.pk, token, body()).status_code == 200
        assert beat(client, pod.pk, token, body(kind="rebalance", deadline=None)).status_code == 200
    assert Pod.objects.get(pk=pod.pk).interruption_notice["kind"] == "terminate"
    assert Pod.objects.filter(replaces=pod).count() == 1


@pytest.mark.django_db
def test_a_job_under_notice_gets_its_on_notice_command_with_the_time_left(client, tenant, project, owner, sandbox,
                                                                          django_capture_on_commit_callbacks):
    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.JOB, on_notice_command="python save.py",
                      restart_on_interruption=False)
    token = telemetry.agent_token_issue(pod=pod)
    assert "on_notice" not in beat(client, pod.pk, token, {"gpus": []}).json()
    with django_capture_on_commit_callbacks(execute=True):
        r = beat(client, pod.pk, token, body(provider="gcp", kind="preempt", deadline="2026-12-02T18:00:30Z"))
    assert r.json()["on_notice"] == {"command": "python save.py", "seconds_left": 30,
                                     "deadline": "2026-12-02T18:00:30+00:00"}
    assert not Pod.objects.filter(replaces=pod).exists()  # restart on interruption is off
    assert beat(client, pod.pk, token, {"gpus": []}).json()["on_notice"]["seconds_left"] == 30  # every answer
    (sent,) = PodEvent.objects.filter(pod=pod, kind="on_notice")  # recorded once
    assert sent.message == "On-notice command sent to the agent (30 s left): python save.py"


def test_notice_watch_env_only_for_spot_pods_on_clouds_that_publish_notices():
    from workloads.interruptions.notices import notice_watch_env

    assert notice_watch_env("aws", spot=True) == {"AGENT_NOTICE_CLOUD": "aws"}
    assert notice_watch_env("azure", spot=False) == {}
    assert notice_watch_env("runpod", spot=True) == {}


@pytest.mark.django_db
def test_the_pod_page_shows_the_notice_deadline_and_replacement(client, tenant, project, owner, sandbox,
                                                                 django_capture_on_commit_callbacks):
    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE, interruption_tolerant=True)
    token = telemetry.agent_token_issue(pod=pod)
    with django_capture_on_commit_callbacks(execute=True):
        assert beat(client, pod.pk, token, body()).status_code == 200
    new = Pod.objects.get(replaces=pod)
    client.force_login(owner)
    html = client.get(f"/pods/{pod.pk}/").content.decode()
    assert 'id="interruption-notice"' in html and "Interruption notice</strong> from AWS (terminate)" in html
    assert "18:02:00 UTC" in html and "120 s left" in html and f"/pods/{new.pk}/" in html
    assert "(interruption notice)" in client.get(f"/pods/{new.pk}/").content.decode()
    page = client.get(f"/workloads/{pod.workload_id}/").content.decode()
    assert "0 interruptions survived with 0 s downtime" in page


@pytest.mark.django_db
def test_the_launch_form_stores_the_on_notice_command_and_a_clone_keeps_it(client, tenant, developer, project, sandbox):
    from django.urls import reverse

    from workloads.models import Workload
    from workloads.recipes.services import builtin_catalog_install, declaration_from_workload

    from .test_workload_form import _llm_post

    builtin_catalog_install()
    client.force_login(developer)
    url = reverse("workloads:recipe_launch", kwargs={"slug": "llm-inference"})
    assert 'name="on_notice_command"' in client.get(url).content.decode()
    r = client.post(url, _llm_post(project, lifecycle="job", on_notice_command="  python save.py --now  "))
    assert r.status_code == 302, r.content.decode()[:2000]
    w = Workload.objects.get(name="chat")
    assert w.on_notice_command == "python save.py --now"
    assert declaration_from_workload(w)["on_notice_command"] == "python save.py --now"
    r = client.post(url, _llm_post(project, name="chat2", on_notice_command="x" * 501))
    assert r.status_code == 200 and not Workload.objects.filter(name="chat2").exists()


@pytest.mark.django_db
def test_provider_notices_far_ahead_and_advisory_ones_on_the_pod_page(client, tenant, project, owner, sandbox,
                                                                      django_capture_on_commit_callbacks):
    from providers.adapters.base import ProviderNotice
    from workloads.interruptions.notices import notice_from_provider

    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE, interruption_tolerant=True)
    client.force_login(owner)
    maintenance = ProviderNotice("maintenance", T0 + timedelta(days=3), source="EC2 scheduled event system-maintenance")
    with django_capture_on_commit_callbacks(execute=True):
        assert notice_from_provider(pod=pod, notice=maintenance)
    html = client.get(f"/pods/{pod.pk}/").content.decode()
    assert "Scheduled maintenance</strong> from Sandbox (EC2 scheduled event system-maintenance) from" in html
    assert "2026-12-05 18:00 UTC" in html and "nothing is replaced" in html
    assert not Pod.objects.filter(replaces=pod).exists()
    retirement = ProviderNotice("terminate", T0 + timedelta(days=14), source="EC2 scheduled event instance-retirement")
    with django_capture_on_commit_callbacks(execute=True):
        assert notice_from_provider(pod=pod, notice=retirement)  # an ending beats a maintenance
    html = client.get(f"/pods/{pod.pk}/").content.decode()
    assert "2026-12-16 18:00 UTC" in html and "14 d 0 h left" in html
    assert "The replacement is placed 30 min before then." in html
    assert not Pod.objects.filter(replaces=pod).exists()
    with django_capture_on_commit_callbacks(execute=True):
        assert not notice_from_provider(pod=pod, notice=maintenance)  # a maintenance never replaces an ending
    assert PodEvent.objects.filter(pod=pod, kind="notice").count() == 2


@pytest.mark.django_db
def test_a_deadline_with_another_offset_is_shown_and_kept_in_utc(client, tenant, project, owner, sandbox,
                                                                  django_capture_on_commit_callbacks):
    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
    token = telemetry.agent_token_issue(pod=pod)
    with django_capture_on_commit_callbacks(execute=True):
        assert beat(client, pod.pk, token, body(deadline="2026-12-02T20:02:00+02:00")).status_code == 200
    event = PodEvent.objects.get(pod=pod, kind="notice")
    assert "takes this pod at 18:02:00 UTC, 120 s from now" in event.message  # not "20:02:00 UTC"
    assert event.data["deadline"] == "2026-12-02T18:02:00+00:00"
    assert Pod.objects.get(pk=pod.pk).interruption_notice["deadline"] == "2026-12-02T18:02:00+00:00"


@pytest.mark.django_db
def test_a_sync_without_a_provider_notice_keeps_the_agents(client, tenant, project, owner, sandbox,
                                                          django_capture_on_commit_callbacks):
    from workloads.lifecycle import services

    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.JOB)
    token = telemetry.agent_token_issue(pod=pod)
    with django_capture_on_commit_callbacks(execute=True):
        assert beat(client, pod.pk, token, body()).status_code == 200
    pod = services.pod_refresh(pod_id=str(pod.pk))  # the Sandbox publishes no notice for it
    assert pod.interruption_notice["kind"] == "terminate" and pod.interruption_deadline == T0 + timedelta(minutes=2)
