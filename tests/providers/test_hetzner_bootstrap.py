"""Hetzner workload bootstrap over SSH, against a real OpenSSH server on 127.0.0.1 whose PATH
holds recording shims of docker, nvidia-smi and the installers (tests/standins/sshd.py).

Issue 13 §2.2: Robot installs an OS only; nothing started the container, yet the pod showed
Running and billed. Now the worker logs in with the account's key, verifies or installs the
driver and the container runtime, starts the container and only then marks the pod running;
a bootstrap that cannot succeed fails the pod and cancels the order.
"""

from __future__ import annotations

import shutil
import time
from datetime import datetime

import pytest

from providers.adapters.base import LaunchRequest
from providers.adapters.hetzner_bootstrap import (
    BootstrapFailed,
    BootstrapRetry,
    SshTarget,
    bootstrap,
    docker_run_argv,
)
from providers.models import ProviderAccount
from providers.services import capacity_poll
from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings, no_sleep, served_hetzner  # noqa: F401
from tests.standins.sshd import SSHD, start_sshd
from workloads.lifecycle import services
from workloads.models import Lifecycle, Pod, PodState

pytestmark = pytest.mark.skipif(shutil.which(SSHD) is None, reason="needs Debian's openssh-server (.ci/run installs it)")

TAG = "8c000000-0000-0000-0000-0000000000b1"
KEY = STANDIN_CREDENTIALS["hetzner"]["ssh_private_key"]


@pytest.fixture
def sshd(tmp_path):
    server = start_sshd(tmp_path / "sshd", private_key=KEY)
    try:
        yield server
    finally:
        server.stop()


def _target(sshd, **kw) -> SshTarget:
    return SshTarget(host="127.0.0.1", port=sshd.port, username=sshd.user, private_key=KEY,
                     host_keys=[sshd.host_key_fingerprint], **kw)


def _req(**kw) -> LaunchRequest:
    base = dict(tag=TAG, name="llm", image="nvcr.io/acme/llm:1", gpu_class="RTX4000ADA", gpu_count=1, region="FSN1",
                command=["python", "serve.py"], args=["--port", "8000"], env={"HF_TOKEN": "hf_secret", "MODE": "a b"},
                ports=[{"port": 8000, "protocol": "http"}])
    return LaunchRequest(**{**base, **kw})


def _run(sshd, tmp_path, request=None, agent_env=None, **kw):
    events: list[str] = []
    facts = bootstrap(_target(sshd, **kw), request or _req(), events.append, agent_env=agent_env,
                      settings={"bootstrap_dir": str(tmp_path / "remote")}, connect_timeout=5)
    return facts, events


def test_the_shims_are_what_the_bootstrap_reaches(sshd, tmp_path):
    """Guard: every command the bootstrap may run resolves to a recording shim, never to this
    machine's real installers."""
    from providers.adapters.hetzner_bootstrap import Session

    session = Session(_target(sshd))
    try:
        out = session.run("for c in docker nvidia-smi apt-get systemctl systemd-run ubuntu-drivers nvidia-ctk curl gpg; "
                          "do command -v $c; done").output.split()
    finally:
        session.close()
    assert len(out) == 9 and all(p.startswith(str(sshd.root / "bin")) for p in out), out


def test_verifies_driver_and_runtime_then_starts_the_container(sshd, tmp_path):
    auth = {"registry": "nvcr.io", "username": "$oauthtoken", "password": "ngc-secret"}
    agent = {"AGENT_TOKEN": "agent-secret", "AGENT_SCRIPT_URL": "https://prov.example/agent.py"}
    facts, events = _run(sshd, tmp_path, _req(registry_auth=auth), agent_env=agent)
    calls = sshd.calls()
    assert calls[0] == "nvidia-smi --query-gpu=name,driver_version --format=csv,noheader"
    assert "docker info --format {{json .Runtimes}}" in calls
    assert not [c for c in calls if c.startswith(("apt-get", "ubuntu-drivers", "nvidia-ctk"))]  # nothing to install
    assert "docker login --username $oauthtoken --password-stdin nvcr.io" in calls
    assert (sshd.root / "login-stdin").read_text() == "ngc-secret"  # on stdin only
    assert "docker pull nvcr.io/acme/llm:1" in calls
    run = next(c for c in calls if c.startswith("docker run"))
    name = f"provisioner-{TAG}"
    assert run.startswith(f"docker run -d --name {name} --restart unless-stopped --gpus all "
                          f"--label provisioner-pod={TAG} --env-file {tmp_path}/remote/{name}.env")
    assert run.endswith("-p 8000:8000 --entrypoint python nvcr.io/acme/llm:1 serve.py --port 8000")
    assert calls.index(f"docker rm -f {name}") < calls.index(run)
    assert f"docker inspect -f {{{{.State.Running}}}} {name}" in calls
    # secrets: in a mode-600 env file, never in a command line
    assert not [c for c in calls if "hf_secret" in c or "ngc-secret" in c or "agent-secret" in c]
    # the GPU agent on the host, as a restarting transient unit, its token in its own env file
    unit = f"provisioner-agent-{TAG}"
    agent_run = next(c for c in calls if c.startswith("systemd-run"))
    assert agent_run.startswith(f"systemd-run --unit {unit} --collect --property=Restart=always")
    assert f"--property=EnvironmentFile={tmp_path}/remote/{unit}.env python3 -c" in agent_run
    assert calls.index(f"systemctl stop {unit}") < calls.index(agent_run) and calls.index(run) < calls.index(agent_run)
    assert (tmp_path / "remote" / f"{unit}.env").read_text() == ("AGENT_SCRIPT_URL=https://prov.example/agent.py\n"
                                                                "AGENT_TOKEN=agent-secret\n")
    env = tmp_path / "remote" / f"{name}.env"
    assert env.read_text() == "HF_TOKEN=hf_secret\nMODE=a b\n" and oct(env.stat().st_mode & 0o777) == "0o600"
    assert facts == {"host_key": sshd.host_key_fingerprint, "container": name,
                     "driver": "NVIDIA RTX 4000 SFF Ada Generation, 550.127.05", "urls": {"8000": "http://127.0.0.1:8000"}}
    assert events[0].startswith("Connected over SSH to 127.0.0.1") and events[-2].startswith(f"Container {name} running")
    assert events[-1] == f"GPU agent running on the host (unit {unit})"
    assert any("NVIDIA driver present" in e for e in events) and any("Pulling" in e for e in events)


def test_missing_driver_is_installed_then_the_server_reboots(sshd, tmp_path):
    sshd.set_state("no-driver")
    with pytest.raises(BootstrapRetry, match="rebooting"):
        _run(sshd, tmp_path)
    deadline = time.monotonic() + 10
    while "systemctl reboot" not in sshd.calls() and time.monotonic() < deadline:
        time.sleep(0.1)
    calls = sshd.calls()
    assert "ubuntu-drivers list --gpgpu" in calls
    assert "apt-get install -y -q nvidia-driver-550-server nvidia-utils-550-server" in calls
    assert "systemctl reboot" in calls and not [c for c in calls if c.startswith("docker run")]


def test_missing_container_toolkit_is_installed(sshd, tmp_path):
    sshd.set_state("no-runtime")
    _, events = _run(sshd, tmp_path)
    calls = sshd.calls()
    assert "apt-get install -y -q nvidia-container-toolkit" in calls
    assert "nvidia-ctk runtime configure --runtime=docker" in calls and "systemctl restart docker" in calls
    assert any("NVIDIA Container Toolkit installed" in e for e in events)
    assert any(c.startswith("docker run") for c in calls)


def test_failures_are_typed(sshd, tmp_path):
    sshd.set_state("pull-fails")
    with pytest.raises(BootstrapFailed) as failed:
        _run(sshd, tmp_path)
    assert failed.value.step == "pull" and "manifest unknown" in failed.value.message
    (sshd.root / "state" / "pull-fails").unlink()
    sshd.set_state("exits")
    with pytest.raises(BootstrapFailed, match="not running: python: can't open file"):
        _run(sshd, tmp_path)
    with pytest.raises(BootstrapFailed, match="host key"):  # not the key Robot listed: never log in
        bootstrap(SshTarget(host="127.0.0.1", port=sshd.port, username=sshd.user, private_key=KEY,
                            host_keys=["00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"]), _req(), print)
    other = start_sshd(tmp_path / "other")  # admits another key only
    try:
        with pytest.raises(BootstrapFailed, match="refused the account's SSH key"):
            bootstrap(SshTarget(host="127.0.0.1", port=other.port, username=other.user, private_key=KEY), _req(), print)
    finally:
        other.stop()
    with pytest.raises(BootstrapRetry, match="not answering"):  # nothing listens: not up yet
        bootstrap(SshTarget(host="127.0.0.1", port=other.port, private_key=KEY), _req(), print, connect_timeout=2)


def test_docker_run_argv_keeps_private_ports_local_and_mounts_volumes():
    argv = docker_run_argv(_req(command=[], args=[], public_ingress=False,
                                volumes=[{"kind": "persistent", "size_gb": 50, "mount_path": "/data"},
                                         {"kind": "ephemeral", "mount_path": "/scratch"}]),
                           env_path="/x.env", volume_dir="/v")
    assert argv[argv.index("-p") + 1] == "127.0.0.1:8000:8000"
    assert ["-v", f"/v/{TAG}-0:/data", "-v", "/scratch"] == argv[argv.index("-v"):argv.index("-v") + 4]
    assert argv[-1] == "nvcr.io/acme/llm:1" and "--entrypoint" not in argv


# --- through the real lifecycle (order -> delivery -> bootstrap -> running) ----------------------


def _account(tenant, served, sshd, tmp_path):
    served.standin.server_ip = "127.0.0.1"
    served.standin.host_keys = [sshd.host_key_fingerprint]
    account = ProviderAccount.objects.create(
        tenant=tenant, kind="hetzner", name="Hetzner (stand-in)", credentials=STANDIN_CREDENTIALS["hetzner"],
        settings=account_settings(served, ssh_port=sshd.port, ssh_user=sshd.user, bootstrap_dir=str(tmp_path / "remote")))
    capacity_poll(accounts=[account])
    return account


def _launch(tenant, project, owner, image="ghcr.io/acme/llm:1"):
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="llm", image=image,
                                 gpu_class="RTX4000ADA", gpu_count=1, lifecycle=Lifecycle.SERVICE,
                                 container_spec={"command": ["python", "serve.py"]})
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    return services.pod_provision(pod_id=str(pod.pk))


@pytest.mark.django_db(transaction=True)
def test_pod_runs_only_once_its_container_was_started(tenant, project, owner, served_hetzner, no_sleep, sshd, tmp_path):  # noqa: F811
    _account(tenant, served_hetzner, sshd, tmp_path)
    pod = _launch(tenant, project, owner)
    tx = served_hetzner.standin.transactions[pod.external_id]
    assert tx["product"]["dist"] == "Ubuntu 24.04 LTS base" and tx["addons"] == ["primary_ipv4"]  # not the rescue system
    pod = services.pod_refresh(pod_id=str(pod.pk))  # delivered: the bootstrap runs (eagerly, in tests)
    assert pod.state == PodState.RUNNING
    run = next(c for c in sshd.calls() if c.startswith("docker run"))
    assert f"--label provisioner-pod={pod.pk}" in run
    # the workload's command exactly as given; the GPU agent runs on the host with the pod's token
    assert run.endswith("--entrypoint python ghcr.io/acme/llm:1 serve.py")
    assert "AGENT_" not in (tmp_path / "remote" / f"provisioner-{pod.pk}.env").read_text()
    agent_env = (tmp_path / "remote" / f"provisioner-agent-{pod.pk}.env").read_text()
    assert "AGENT_TOKEN=" in agent_env and f"/agent/heartbeat/{pod.pk}/" in agent_env
    assert any(c.startswith(f"systemd-run --unit provisioner-agent-{pod.pk}") for c in sshd.calls())
    assert pod.connection["host"] == "127.0.0.1" and pod.connection["host_key"] == sshd.host_key_fingerprint
    # billed from delivery, as Robot bills the server
    assert pod.started_at == datetime.fromisoformat(pod.connection["delivered_at"])
    messages = list(pod.events.filter(kind="bootstrap").values_list("message", flat=True))
    assert messages[0].startswith("Server delivered (127.0.0.1)") and any("NVIDIA driver present" in m for m in messages)
    services.pod_refresh(pod_id=str(pod.pk))  # a later sync keeps what the bootstrap recorded
    pod.refresh_from_db()
    assert pod.connection["container"] == f"provisioner-{pod.pk}"
    pod = services.pod_terminate(pod_id=str(pod.pk))
    assert pod.state == PodState.TERMINATED and served_hetzner.standin.servers[tx["server_number"]]["cancelled"]


@pytest.mark.django_db(transaction=True)
def test_failed_bootstrap_fails_the_pod_and_cancels_the_order(tenant, project, owner, served_hetzner, no_sleep, sshd, tmp_path):  # noqa: F811
    _account(tenant, served_hetzner, sshd, tmp_path)
    sshd.set_state("pull-fails")
    pod = _launch(tenant, project, owner, image="ghcr.io/acme/missing:1")
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.FAILED and "bootstrap failed at pull" in pod.state_reason
    server = served_hetzner.standin.servers[served_hetzner.standin.transactions[pod.external_id]["server_number"]]
    assert server["cancelled"]
    assert pod.started_at is not None and pod.ended_at is not None  # the hours Robot bills are metered
    assert Pod.objects.filter(workload=pod.workload).count() == 1  # no new order (and setup fee) for the same failure
    assert pod.events.filter(message__startswith="Order cancelled at the provider").exists()


def test_registry_login_goes_to_the_image_registry_host(sshd, tmp_path):
    """Issue 13 §2.1: the login targets the host the image is pulled from (a credential saved
    with another spelling, or none, would otherwise log in to Docker Hub)."""
    auth = {"registry": "", "username": "$oauthtoken", "password": "ngc-secret"}
    _run(sshd, tmp_path, _req(registry_auth=auth))
    assert "docker login --username $oauthtoken --password-stdin nvcr.io" in sshd.calls()


def test_the_bootstrap_runs_in_its_own_worker_queue():
    """A driver install takes minutes: the task has its own queue and its own worker process, so
    it never holds up other pods' provisioning, syncs or terminations (default queue)."""
    from pathlib import Path

    from workloads.lifecycle.tasks import bootstrap_pod, provision_pod, sync_pods

    queue = {t.name: t._get_exec_options()["queue"] for t in (bootstrap_pod, provision_pod, sync_pods)}  # what apply_async sends
    assert queue == {"workloads.bootstrap_pod": "bootstrap", "workloads.provision_pod": None, "workloads.sync_pods": None}
    procfile = (Path(__file__).resolve().parents[2] / "Procfile").read_text()
    assert "-Q bootstrap" in procfile.split("bootstrap:", 1)[1].splitlines()[0]


# --- the Logs card: the container's output over SSH (Robot has no logs API) ----------------------


@pytest.mark.django_db(transaction=True)
def test_the_logs_card_reads_the_containers_output_over_ssh(tenant, project, owner, served_hetzner, no_sleep, sshd,  # noqa: F811
                                                            tmp_path):
    from workloads.pods.logs import pod_logs, provider_has_logs

    _account(tenant, served_hetzner, sshd, tmp_path)
    pod = _launch(tenant, project, owner)
    assert provider_has_logs(pod) is True
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING
    recorded = dict(pod.connection)
    pod.connection = {"host": recorded["host"]}  # delivered, container not started yet
    waiting = pod_logs(pod)
    assert "has not been started on the server yet" in waiting.unsupported and not waiting.text
    pod.connection = recorded
    logs = pod_logs(pod, tail_lines=50)
    assert not logs.error and logs.text.strip() == "python: can't open file '/app/serve.py'"
    assert f"docker logs --tail 50 provisioner-{pod.pk}" in sshd.calls()
    # another machine answering at the server's address (not the host key Robot listed and the
    # bootstrap pinned): nothing is read from it
    reads = len([c for c in sshd.calls() if c.startswith("docker logs")])
    pod.connection = {**pod.connection, "host_key": "00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff",
                      "host_keys": ["00:11:22:33:44:55:66:77:88:99:aa:bb:cc:dd:ee:ff"]}
    refused = pod_logs(pod)
    assert "host key" in refused.error and not refused.text
    assert len([c for c in sshd.calls() if c.startswith("docker logs")]) == reads
