"""The agent heartbeat endpoint: token auth, strict JSON, rate limit (issue 8)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from provisioner import clock
from workloads.autoshutdown import telemetry
from workloads.lifecycle import services
from workloads.models import HostSample, Pod, PodState, UtilizationSample

from .telemetry_helpers import running_pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
GOOD = {"gpus": [{"index": 0, "util": 37.5, "mem_used_mb": 1200, "mem_total_mb": 24576},
                 {"index": 1, "util": 0, "mem_used_mb": None, "mem_total_mb": None}],
        "source": "nvml", "agent_version": "1", "interval": 30}


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def pod(tenant, project, owner, sandbox):
    return running_pod(tenant, project, owner)


def beat(client, pod_id, token, body=GOOD, content_type="application/json"):
    data = body if isinstance(body, bytes | str) else json.dumps(body)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.post(reverse("workloads:agent_heartbeat", args=[pod_id]), data=data,
                       content_type=content_type, **headers)


def _nothing_changed(pod):
    fresh = Pod.objects.get(pk=pod.pk)
    return (not UtilizationSample.objects.filter(pod=pod).exists() and not HostSample.objects.filter(pod=pod).exists()
            and fresh.last_heartbeat_at is None
            and fresh.agent_error == "" and fresh.idle_warning_at == pod.idle_warning_at)


@pytest.mark.django_db
def test_valid_heartbeat_is_stored_without_csrf(pod):
    token = telemetry.agent_token_issue(pod=pod)
    assert len(Pod.objects.get(pk=pod.pk).agent_token_hash) == 64 and token not in Pod.objects.get(pk=pod.pk).agent_token_hash
    client = Client(enforce_csrf_checks=True)  # token auth: no CSRF cookie needed
    with clock.frozen(T0):
        r = beat(client, pod.pk, token)
    assert r.status_code == 200, r.content
    assert r.json()["stored"] == 2
    rows = list(UtilizationSample.objects.filter(pod=pod).order_by("gpu_index").values_list("gpu_index", "util_pct", "source", "at"))
    assert rows == [(0, 37.5, "agent", T0), (1, 0.0, "agent", T0)]
    assert Pod.objects.get(pk=pod.pk).last_heartbeat_at == T0


@pytest.mark.django_db
@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc", "Bearer short", "Bearer " + "x" * 300, "Bearer bad token!!"])
def test_missing_or_malformed_token_is_401(client, pod, header):
    telemetry.agent_token_issue(pod=pod)
    kwargs = {} if header is None else {"HTTP_AUTHORIZATION": header}
    r = client.post(reverse("workloads:agent_heartbeat", args=[pod.pk]), data=json.dumps(GOOD),
                    content_type="application/json", **kwargs)
    assert r.status_code == 401
    assert _nothing_changed(pod)


@pytest.mark.django_db
def test_forged_heartbeat_is_refused_and_changes_nothing(client, pod):
    telemetry.agent_token_issue(pod=pod)
    # warn the pod first: a forged "busy" report must not cancel a pending idle shutdown either
    Pod.objects.filter(pk=pod.pk).update(idle_warning_at=T0)
    pod.refresh_from_db()
    events_before = pod.events.count()
    forged = "A" * 43
    r = beat(client, pod.pk, forged, {"gpus": [{"index": 0, "util": 99}]})
    assert r.status_code == 401
    assert _nothing_changed(pod)
    assert Pod.objects.get(pk=pod.pk).idle_warning_at == T0
    assert pod.events.count() == events_before


@pytest.mark.django_db
def test_foreign_token_is_403(client, tenant, project, owner, sandbox, pod):
    other = running_pod(tenant, project, owner)
    other_token = telemetry.agent_token_issue(pod=other)
    telemetry.agent_token_issue(pod=pod)
    r = beat(client, pod.pk, other_token)
    assert r.status_code == 403
    assert _nothing_changed(pod) and _nothing_changed(other)


@pytest.mark.django_db
def test_token_expires_with_the_pod_and_a_reissue_replaces_it(client, pod):
    first = telemetry.agent_token_issue(pod=pod)
    second = telemetry.agent_token_issue(pod=pod)  # e.g. a failover launch attempt
    assert beat(client, pod.pk, first).status_code == 401
    assert beat(client, pod.pk, second).status_code == 200
    services.pod_terminate(pod_id=str(pod.pk))
    assert Pod.objects.get(pk=pod.pk).agent_token_hash == ""
    n = UtilizationSample.objects.count()
    assert beat(client, pod.pk, second).status_code == 401
    assert UtilizationSample.objects.count() == n


@pytest.mark.django_db
def test_stopped_pod_is_403(client, pod):
    token = telemetry.agent_token_issue(pod=pod)
    Pod.objects.filter(pk=pod.pk).update(state=PodState.STOPPED)
    assert beat(client, pod.pk, token).status_code == 403
    assert _nothing_changed(pod)


BAD_BODIES = [
    (b"", 400), (b"not json", 400), (b"\xff\xfe", 400), (b"[]", 400), (b"null", 400), (b'"x"', 400),
    (b'{"gpus": {}}', 400), (b"{}", 400), (b'{"gpus": [1]}', 400),
    (b'{"gpus": [{"index": 0}]}', 400),
    (b'{"gpus": [{"index": 0, "util": "50"}]}', 400),
    (b'{"gpus": [{"index": 0, "util": true}]}', 400),
    (b'{"gpus": [{"index": 0, "util": NaN}]}', 400),
    (b'{"gpus": [{"index": 0, "util": Infinity}]}', 400),
    (b'{"gpus": [{"index": 0, "util": 101}]}', 400),
    (b'{"gpus": [{"index": 0, "util": -1}]}', 400),
    (b'{"gpus": [{"index": -1, "util": 1}]}', 400),
    (b'{"gpus": [{"index": 1.5, "util": 1}]}', 400),
    (b'{"gpus": [{"index": 0, "util": 1}, {"index": 0, "util": 2}]}', 400),
    (b'{"gpus": [{"index": 0, "util": 1, "mem_used_mb": 10, "mem_total_mb": 5}]}', 400),
    (b'{"gpus": [{"index": 0, "util": 1, "power": 3}]}', 400),
    (b'{"gpus": [], "extra": 1}', 400),
    (b'{"gpus": [], "interval": 0}', 400),
    (b'{"gpus": [], "error": 5}', 400),
    (b'{"gpus": [], "error": "' + b"e" * 400 + b'"}', 400),
    (b'{"gpus": [' + b",".join(b'{"index": %d, "util": 1}' % i for i in range(65)) + b"]}", 400),
    (b"[" * 100000 + b"]" * 100000, 413),
    # the host's CPU and memory (optional): numbers in range, used <= total, no other keys
    (b'{"gpus": [], "host": []}', 400),
    (b'{"gpus": [], "host": {"cpu_pct": 101}}', 400),
    (b'{"gpus": [], "host": {"cpu_pct": "5"}}', 400),
    (b'{"gpus": [], "host": {"cpu_pct": true}}', 400),
    (b'{"gpus": [], "host": {"cpu_pct": NaN}}', 400),
    (b'{"gpus": [], "host": {"mem_used_mb": -1}}', 400),
    (b'{"gpus": [], "host": {"mem_used_mb": 9, "mem_total_mb": 8}}', 400),
    (b'{"gpus": [], "host": {"load": 1}}', 400),
]


@pytest.mark.django_db
@pytest.mark.parametrize("body,status", BAD_BODIES)
def test_bad_bodies_are_refused_never_a_500(client, pod, body, status):
    token = telemetry.agent_token_issue(pod=pod)
    r = beat(client, pod.pk, token, body)
    assert r.status_code == status, r.content
    assert "error" in r.json()
    assert _nothing_changed(pod)


@pytest.mark.django_db
def test_deeply_nested_json_under_the_size_limit_is_a_400(client, pod):
    token = telemetry.agent_token_issue(pod=pod)
    r = beat(client, pod.pk, token, b"[" * 8000 + b"]" * 8000)
    assert r.status_code == 400


@pytest.mark.django_db
def test_wrong_content_type_and_method(client, pod):
    token = telemetry.agent_token_issue(pod=pod)
    assert beat(client, pod.pk, token, json.dumps(GOOD), content_type="text/plain").status_code == 415
    assert client.get(reverse("workloads:agent_heartbeat", args=[pod.pk])).status_code == 405
    assert _nothing_changed(pod)


@pytest.mark.django_db
def test_agent_error_and_empty_gpu_list_are_recorded(client, pod):
    token = telemetry.agent_token_issue(pod=pod)
    r = beat(client, pod.pk, token, {"gpus": [], "source": "none", "error": "nvidia-smi not found"})
    assert r.status_code == 200 and r.json()["stored"] == 0
    fresh = Pod.objects.get(pk=pod.pk)
    assert fresh.agent_error == "nvidia-smi not found" and fresh.last_heartbeat_at is not None


@pytest.mark.django_db
def test_rate_limited_per_token_with_retry_after(client, pod, settings):
    settings.AGENT_HEARTBEAT_LIMIT_PER_MINUTE = 3
    token = telemetry.agent_token_issue(pod=pod)
    with clock.frozen(T0) as advance:
        assert [beat(client, pod.pk, token).status_code for _ in range(3)] == [200, 200, 200]
        r = beat(client, pod.pk, token)
        assert r.status_code == 429 and 1 <= int(r["Retry-After"]) <= 60
        assert UtilizationSample.objects.filter(pod=pod).count() == 6  # the 4th stored nothing
        advance(seconds=60)
        assert beat(client, pod.pk, token).status_code == 200


@pytest.mark.django_db
def test_launch_env_carries_url_token_and_interval(pod, settings):
    settings.PUBLIC_BASE_URL = "https://provisioner.example.com/"
    settings.AGENT_INTERVAL_SECONDS = 15
    env = telemetry.agent_launch_env(pod=pod)
    assert env["AGENT_HEARTBEAT_URL"] == f"https://provisioner.example.com/agent/heartbeat/{pod.pk}/"
    assert env["AGENT_INTERVAL"] == "15"
    assert env["AGENT_SCRIPT_URL"] == "https://provisioner.example.com/agent/provisioner_agent.py"
    assert Pod.objects.get(pk=pod.pk).agent_token_hash == telemetry.agent_token_hash(env["AGENT_TOKEN"])


@pytest.mark.django_db
def test_agent_script_is_downloadable(client):
    r = client.get(reverse("workloads:agent_script"))
    assert r.status_code == 200
    assert b"def main(" in b"".join(r.streaming_content)


@pytest.mark.django_db
def test_provisioning_injects_the_agent_env_and_the_token_works(client, tenant, project, owner, sandbox):
    """The real launch path: the pod's container env carries the agent's URL, token and interval."""
    from providers.adapters.base import LaunchRequest
    from providers.adapters.sandbox import SandboxAdapter

    seen: list[LaunchRequest] = []
    original = SandboxAdapter.launch

    def spy(self, request):
        seen.append(request)
        return original(self, request)

    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="train", image="img",
                                 gpu_class="A10", gpu_count=1)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    SandboxAdapter.launch = spy
    try:
        pod = services.pod_provision(pod_id=str(pod.pk))
    finally:
        SandboxAdapter.launch = original
    assert pod.state == PodState.RUNNING and seen
    env = seen[-1].env
    assert env["AGENT_HEARTBEAT_URL"].endswith(f"/agent/heartbeat/{pod.pk}/")
    assert env["AGENT_INTERVAL"] == str(telemetry.agent_interval_seconds())
    assert beat(client, pod.pk, env["AGENT_TOKEN"]).status_code == 200


@pytest.mark.django_db
def test_each_sample_records_its_gap_to_the_previous_one(client, pod):
    token = telemetry.agent_token_issue(pod=pod)
    with clock.frozen(T0) as advance:
        beat(client, pod.pk, token)
        advance(seconds=30)
        beat(client, pod.pk, token, {"gpus": [{"index": 0, "util": 1}]})
        advance(seconds=45)
        beat(client, pod.pk, token)
    gaps = list(UtilizationSample.objects.filter(pod=pod).order_by("at", "gpu_index").values_list("gpu_index", "gap_s"))
    # GPU 1 missed one report: its gap spans both intervals
    assert gaps == [(0, None), (1, None), (0, 30.0), (0, 45.0), (1, 75.0)]


@pytest.mark.django_db
def test_host_cpu_and_memory_are_stored_with_the_beat(client, pod):
    token = telemetry.agent_token_issue(pod=pod)
    with clock.frozen(T0):
        r = beat(client, pod.pk, token, {**GOOD, "host": {"cpu_pct": 12.5, "mem_used_mb": 2048, "mem_total_mb": 65536}})
        assert r.status_code == 200, r.content
        # each field is optional; a beat without "host" (an older agent) stores no host row
        assert beat(client, pod.pk, token, {**GOOD, "host": {"mem_total_mb": 65536}}).status_code == 200
        assert beat(client, pod.pk, token, GOOD).status_code == 200
    rows = list(HostSample.objects.filter(pod=pod).order_by("pk").values_list("at", "cpu_pct", "mem_used_mb", "mem_total_mb"))
    assert rows == [(T0, 12.5, 2048.0, 65536.0), (T0, None, None, 65536.0)]
