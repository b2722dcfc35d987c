"""The agent is started by the pod's entrypoint, and the workload's command still runs as given."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workloads.autoshutdown.telemetry import agent_wrapped_command
from workloads.lifecycle.failover import launch_request


def test_wrapped_command_runs_the_original_argv_exactly(tmp_path):
    cmd, args = agent_wrapped_command([sys.executable, "-c"], ["import sys; print(sys.argv[1:])", "a b", "$HOME", "--x=1"])
    assert args == []
    out = subprocess.run(cmd, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"}, timeout=30)
    assert out.returncode == 0
    assert out.stdout.strip() == "['a b', '$HOME', '--x=1']"


def test_wrapped_command_starts_the_agent_from_its_url(tmp_path):
    agent = tmp_path / "agent.py"
    marker = tmp_path / "started"
    agent.write_text(f"open({str(marker)!r}, 'w').write('yes')\n")
    cmd, _ = agent_wrapped_command(["sh", "-c", "sleep 1"], [])
    subprocess.run(cmd, env={"PATH": "/usr/bin:/bin:/usr/local/bin:" + sys.prefix + "/bin", "AGENT_SCRIPT_URL": agent.as_uri()},
                   timeout=30, check=True)
    assert marker.read_text() == "yes"


def test_no_command_means_the_image_entrypoint_is_left_alone():
    assert agent_wrapped_command([], ["--serve"]) == ([], ["--serve"])


@pytest.mark.django_db
def test_launch_request_carries_agent_env_and_wrapped_command(tenant, project, owner, sandbox):
    from workloads.lifecycle import services

    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="boot", image="busybox",
                                 gpu_class="T4", container_spec={"command": ["python", "train.py"], "args": ["--epochs", "2"]})
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    offer = sandbox.offers.filter(gpu_class="T4", gpu_count=1).first()
    req = launch_request(pod, offer)
    assert req.command[:2] == ["sh", "-c"] and req.command[-4:] == ["python", "train.py", "--epochs", "2"]
    assert req.env["AGENT_TOKEN"] and req.env["AGENT_HEARTBEAT_URL"].endswith(f"/agent/heartbeat/{pod.pk}/")
