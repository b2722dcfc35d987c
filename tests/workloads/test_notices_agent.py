"""The in-pod agent reads interruption notices as AWS, GCP and Azure document them, from
stand-ins on 127.0.0.1 (tests/standins/metadata.py), and posts a notice at once."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from tests.standins._loopback import serve
from tests.standins.metadata import AwsImds, AzureImds, GcpMetadata
from workloads.autoshutdown import telemetry

from .test_agent import load_agent


@pytest.fixture
def agent():
    return load_agent()


def _valid_for_the_server(notice):
    """The agent's notice passes the heartbeat validator unchanged."""
    beat = telemetry.heartbeat_parse(json.dumps({"gpus": [], "notice": notice}).encode())
    assert beat.notice is not None and beat.notice.kind == notice["kind"]
    return beat.notice


def test_aws_imdsv2_instance_action_and_rebalance(agent):
    imds = AwsImds()
    with serve(imds) as base:
        watcher = agent.notice_watcher_from_env({"AGENT_NOTICE_CLOUD": "aws", "AGENT_AWS_IMDS_URL": base})
        assert watcher.check() is None  # both items absent: 404
        assert imds.requests[0] == ("PUT", "/latest/api/token")
        imds.rebalance_time = "2026-12-02T18:00:00Z"
        notice = watcher.check()
        assert notice == {"provider": "aws", "kind": "rebalance", "deadline": None,
                          "detail": "events/recommendations/rebalance"}
        _valid_for_the_server(notice)
        soon = (datetime.now(UTC) + timedelta(minutes=2)).replace(microsecond=0)
        imds.instance_action = {"action": "terminate", "time": soon.strftime("%Y-%m-%dT%H:%M:%SZ")}
        imds.expire_tokens()  # the token expired meanwhile: 401, a fresh token, the same answer
        notice = watcher.check()
        assert notice["kind"] == "terminate" and notice["deadline"] == soon.isoformat().replace("+00:00", "Z")
        assert _valid_for_the_server(notice).deadline == soon
        assert [r for r in imds.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token")] * 2


def test_aws_stop_and_hibernate_actions_are_kept(agent):
    imds = AwsImds()
    with serve(imds) as base:
        watcher = agent.AwsNotices(base)
        for action in ("stop", "hibernate"):
            imds.instance_action = {"action": action, "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
            assert watcher.check()["kind"] == action


def test_gcp_preempted_with_metadata_flavor_and_wait_for_change(agent):
    meta = GcpMetadata()
    with serve(meta) as base:
        watcher = agent.notice_watcher_from_env({"AGENT_NOTICE_CLOUD": "gcp", "AGENT_GCP_METADATA_URL": base})
        watcher.wait_seconds = 1
        assert watcher.check() is None  # FALSE
        meta.preempted = True
        before = datetime.now(UTC)
        notice = watcher.check()
        assert notice["provider"] == "gcp" and notice["kind"] == "preempt"
        deadline = _valid_for_the_server(notice).deadline
        # no deadline from GCP: the documented ~30 s from the moment we saw TRUE
        assert before + timedelta(seconds=28) <= deadline <= datetime.now(UTC) + timedelta(seconds=31)
        # the second request waited for a change of the value it had seen
        assert "wait_for_change=true" in meta.requests[1] and "last_etag=etag-false" in meta.requests[1]


def test_azure_scheduled_events_preempt_for_this_vm_only(agent):
    imds = AzureImds(vm_name="spot-vm-1")
    with serve(imds) as base:
        watcher = agent.notice_watcher_from_env({"AGENT_NOTICE_CLOUD": "azure", "AGENT_AZURE_METADATA_URL": base})
        assert watcher.check() is None  # {"DocumentIncarnation": 1, "Events": []}
        not_before = (datetime.now(UTC) + timedelta(seconds=30)).replace(microsecond=0)
        imds.preempt(format_datetime(not_before, usegmt=True), resources=["another-vm"])
        assert watcher.check() is None  # an event of another VM in our availability set
        imds.preempt(format_datetime(not_before, usegmt=True))
        notice = watcher.check()
        assert notice["provider"] == "azure" and notice["kind"] == "preempt"
        assert _valid_for_the_server(notice).deadline == not_before


def test_no_cloud_no_watcher_and_metadata_unreachable_is_no_notice(agent):
    assert agent.notice_watcher_from_env({}) is None
    assert agent.notice_watcher_from_env({"AGENT_NOTICE_CLOUD": "runpod"}) is None
    # nothing listens on port 9 of 127.0.0.1: no notice, no exception
    assert agent.AwsNotices("http://127.0.0.1:9").check() is None


def test_the_loop_posts_a_notice_at_once_not_at_the_next_interval(agent, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pynvml", None)
    monkeypatch.setenv("AGENT_NVIDIA_SMI", "/nonexistent/nvidia-smi")
    imds = AwsImds()
    sent = []

    def fake_post(url, token, payload, timeout=10.0):
        sent.append(payload)
        return 200, None, {"ok": True}

    monkeypatch.setattr(agent, "post", fake_post)
    stop = threading.Event()
    with serve(imds) as base:
        # an hour between reports: only the notice can make a second report happen
        thread = threading.Thread(target=agent.run, args=("http://x/", "tok", 3600),
                                  kwargs={"stop": stop, "watcher": agent.AwsNotices(base), "notice_poll": 0.1})
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not sent and time.monotonic() < deadline:
                time.sleep(0.05)
            assert sent and "notice" not in sent[0]
            imds.instance_action = {"action": "terminate", "time": "2026-12-02T18:02:00Z"}
            while len(sent) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            stop.set()
            thread.join(timeout=10)
    assert len(sent) == 2 and sent[1]["notice"]["kind"] == "terminate"


def test_on_notice_command_runs_once_with_the_time_left(agent, tmp_path):
    out = tmp_path / "ran.txt"
    handle = agent._on_notice_runner()
    order = {"on_notice": {"command": f'echo "$NOTICE_SECONDS_LEFT" >> {out}', "seconds_left": 97,
                           "deadline": "2026-12-02T18:02:00+00:00"}}
    handle(order)
    handle(order)  # every heartbeat answer repeats it: it runs once
    handle({"ok": True})
    deadline = time.monotonic() + 10
    while not out.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    assert out.read_text() == "97\n"


# --- end to end: the real agent script, the AWS stand-in, the live heartbeat endpoint --------


@pytest.mark.django_db(transaction=True)
def test_agent_subprocess_reports_an_aws_notice_and_a_replacement_is_placed(live_server, tmp_path, tenant, project,
                                                                            owner, sandbox):
    import os
    import signal
    import subprocess
    import sys

    from django.urls import reverse

    from workloads.models import Lifecycle, Pod, PodEvent

    from .telemetry_helpers import running_pod
    from .test_agent import AGENT, _agent_env

    pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE, interruption_tolerant=True)
    token = telemetry.agent_token_issue(pod=pod)
    url = live_server.url + reverse("workloads:agent_heartbeat", args=[pod.pk])
    imds = AwsImds()
    with serve(imds) as base:
        env = _agent_env(tmp_path, url, token, interval="600")  # only a notice can cause a 2nd report
        env.update(AGENT_NOTICE_CLOUD="aws", AGENT_AWS_IMDS_URL=base, AGENT_NOTICE_POLL="0.5")
        proc = subprocess.Popen([sys.executable, str(AGENT)], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 30
            while Pod.objects.get(pk=pod.pk).last_heartbeat_at is None and time.monotonic() < deadline:
                time.sleep(0.1)
            soon = (datetime.now(UTC) + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
            imds.instance_action = {"action": "terminate", "time": soon}
            while not PodEvent.objects.filter(pod=pod, kind="notice").exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "interruption notice: aws terminate" in err
    event = PodEvent.objects.get(pod=pod, kind="notice")
    assert "Interruption notice from AWS (terminate)" in event.message
    assert event.data["deadline"] == soon.replace("Z", "+00:00")
    assert Pod.objects.filter(replaces=pod).exists()
    assert os.environ.get("AGENT_NOTICE_CLOUD") is None  # the test leaked nothing into our own env
