"""The in-pod agent: NVML against a fake NVML module, nvidia-smi against a fake command, the
report loop, and an end-to-end run of the script as a subprocess against the live server."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import types
from pathlib import Path

import pytest
from django.urls import reverse

from workloads.autoshutdown import telemetry
from workloads.models import Pod, UtilizationSample

from .telemetry_helpers import running_pod

AGENT = Path(__file__).resolve().parents[2] / "workloads" / "agent" / "provisioner_agent.py"

FAKE_NVML = textwrap.dedent('''
    """A stand-in for nvidia-ml-py's pynvml: two GPUs, 42 % and 7 % busy."""
    class NVMLError(Exception):
        pass
    class _Util:
        def __init__(self, gpu):
            self.gpu, self.memory = gpu, 0
    class _Mem:
        def __init__(self, used, total):
            self.used, self.total, self.free = used, total, total - used
    _UTIL = [42, 7]
    calls = []
    def nvmlInit():
        calls.append("init")
    def nvmlShutdown():
        calls.append("shutdown")
    def nvmlDeviceGetCount():
        return len(_UTIL)
    def nvmlDeviceGetHandleByIndex(i):
        return ("handle", i)
    def nvmlDeviceGetUtilizationRates(handle):
        return _Util(_UTIL[handle[1]])
    def nvmlDeviceGetMemoryInfo(handle):
        return _Mem(2048 * 1024 * 1024, 24576 * 1024 * 1024)
''')


def load_agent():
    spec = importlib.util.spec_from_file_location("provisioner_agent_under_test", AGENT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def fake_nvml(monkeypatch):
    module = types.ModuleType("pynvml")
    exec(FAKE_NVML, module.__dict__)
    monkeypatch.setitem(sys.modules, "pynvml", module)
    return module


@pytest.fixture
def no_nvml(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)  # "import pynvml" raises ImportError


@pytest.fixture
def fake_smi(tmp_path):
    """A fake nvidia-smi that records its arguments and prints two GPUs, one without a reading."""
    args_file = tmp_path / "args.txt"
    script = tmp_path / "nvidia-smi"
    script.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        echo "$@" > {args_file}
        echo "0, 12, 1024, 24576"
        echo "1, [N/A], [N/A], 24576"
        echo "2, 99, 30000, 24576"
        """))
    script.chmod(0o755)
    return script, args_file


def test_nvml_path_reads_every_gpu_in_mib(fake_nvml):
    agent = load_agent()
    reader, problem = agent.open_reader()
    assert isinstance(reader, agent.NvmlReader) and problem == ""
    payload = agent.build_payload(reader, problem, 30)
    assert payload["source"] == "nvml" and payload["error"] == "" and payload["interval"] == 30
    assert payload["gpus"] == [
        {"index": 0, "util": 42.0, "mem_used_mb": 2048.0, "mem_total_mb": 24576.0},
        {"index": 1, "util": 7.0, "mem_used_mb": 2048.0, "mem_total_mb": 24576.0},
    ]
    reader.close()
    assert fake_nvml.calls == ["init", "shutdown"]  # initialised once, shut down on close
    # the payload is exactly what the server accepts
    beat = telemetry.heartbeat_parse(json.dumps(payload).encode())
    assert [(g.gpu_index, g.util_pct) for g in beat.gpus] == [(0, 42.0), (1, 7.0)]


def test_nvml_without_driver_falls_back_to_nvidia_smi(fake_nvml, fake_smi):
    def no_driver():
        raise fake_nvml.NVMLError("NVML Shared Library Not Found")

    fake_nvml.nvmlInit = no_driver
    agent = load_agent()
    script, args_file = fake_smi
    reader, problem = agent.open_reader(str(script))
    assert isinstance(reader, agent.SmiReader) and problem == ""
    payload = agent.build_payload(reader, problem, 30)
    assert args_file.read_text().split() == [
        "--query-gpu=index,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]
    # a GPU without a utilization reading is left out (never reported idle); memory clamped
    assert payload["source"] == "nvidia-smi"
    assert payload["gpus"] == [
        {"index": 0, "util": 12.0, "mem_used_mb": 1024.0, "mem_total_mb": 24576.0},
        {"index": 2, "util": 99.0, "mem_used_mb": 24576.0, "mem_total_mb": 24576.0},
    ]
    telemetry.heartbeat_parse(json.dumps(payload).encode())


def test_nvidia_smi_from_the_environment(no_nvml, fake_smi, monkeypatch):
    script, _ = fake_smi
    monkeypatch.setenv("AGENT_NVIDIA_SMI", str(script))
    agent = load_agent()
    reader, _ = agent.open_reader()
    assert reader.name == "nvidia-smi" and [g["index"] for g in reader.read()] == [0, 2]


def test_no_gpu_reader_still_reports_why(no_nvml, tmp_path):
    agent = load_agent()
    reader, problem = agent.open_reader(str(tmp_path / "missing-nvidia-smi"))
    assert reader is None
    assert "pynvml not importable" in problem and "nvidia-smi not found" in problem
    payload = agent.build_payload(None, problem, 30)
    assert payload["gpus"] == [] and payload["source"] == "none" and payload["error"] == problem
    telemetry.heartbeat_parse(json.dumps(payload).encode())


def test_loop_backs_off_honours_retry_after_and_stops_when_the_token_is_revoked(fake_nvml, monkeypatch):
    agent = load_agent()
    answers = iter([(200, None), (429, 0.01), (500, None), (401, None), (403, None), (401, None)])
    sent = []

    def fake_post(url, token, payload, timeout=10.0):
        sent.append((url, token, payload["source"]))
        return next(answers)

    monkeypatch.setattr(agent, "post", fake_post)
    waits = []

    class Stop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return False

    assert agent.run("http://x/agent/heartbeat/p/", "tok", 0.01, stop=Stop()) == 0
    assert len(sent) == 6 and sent[0] == ("http://x/agent/heartbeat/p/", "tok", "nvml")
    assert 0.009 <= waits[1] <= 0.011  # Retry-After honoured after the 429
    assert fake_nvml.calls[-1] == "shutdown"


def test_bad_configuration_exits_2(monkeypatch):
    agent = load_agent()
    monkeypatch.delenv("AGENT_HEARTBEAT_URL", raising=False)
    monkeypatch.setenv("AGENT_TOKEN", "x")
    assert agent.main([]) == 2


# --- end to end: the real script, a fake NVML on PYTHONPATH, the live heartbeat endpoint -----


def _agent_env(tmp_path, url, token, interval="1"):
    (tmp_path / "pynvml.py").write_text(FAKE_NVML)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    env.update(PYTHONPATH=str(tmp_path), AGENT_HEARTBEAT_URL=url, AGENT_TOKEN=token, AGENT_INTERVAL=interval)
    return env


@pytest.mark.django_db(transaction=True)
def test_agent_subprocess_reports_to_the_live_server(live_server, tmp_path, tenant, project, owner, sandbox):
    pod = running_pod(tenant, project, owner)
    token = telemetry.agent_token_issue(pod=pod)
    url = live_server.url + reverse("workloads:agent_heartbeat", args=[pod.pk])
    done = subprocess.run([sys.executable, str(AGENT), "--once"], env=_agent_env(tmp_path, url, token),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "reading GPUs with nvml" in done.stderr
    rows = list(UtilizationSample.objects.filter(pod=pod).order_by("gpu_index").values_list("gpu_index", "util_pct", "source"))
    assert rows == [(0, 42.0, "agent"), (1, 7.0, "agent")]
    assert Pod.objects.get(pk=pod.pk).last_heartbeat_at is not None

    # the loop: reports every second until SIGTERM, then exits cleanly
    proc = subprocess.Popen([sys.executable, str(AGENT)], env=_agent_env(tmp_path, url, token),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while UtilizationSample.objects.filter(pod=pod).count() < 6 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert UtilizationSample.objects.filter(pod=pod).count() >= 6
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err

    # a forged token gets nothing in, and the agent says so
    forged = subprocess.run([sys.executable, str(AGENT), "--once"], env=_agent_env(tmp_path, url, "F" * 43),
                            capture_output=True, text=True, timeout=60)
    assert forged.returncode == 1 and "refused (401)" in forged.stderr


def test_print_mode_shows_a_valid_payload(fake_nvml, capsys, monkeypatch):
    monkeypatch.delenv("AGENT_INTERVAL", raising=False)
    agent = load_agent()
    assert agent.main(["--print"]) == 0
    payload = capsys.readouterr().out
    beat = telemetry.heartbeat_parse(payload.encode())
    assert beat.interval == 30 and beat.source == "nvml" and len(beat.gpus) == 2


def test_host_reader_reads_cpu_deltas_and_memory_from_proc(tmp_path):
    agent = load_agent()
    (tmp_path / "stat").write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n")
    (tmp_path / "meminfo").write_text("MemTotal:       16384000 kB\nMemFree: 1 kB\nMemAvailable:   12288000 kB\n")
    host = agent.HostReader(proc=str(tmp_path))
    # no time passed: memory only (a CPU % needs two different reads)
    assert host.read() == {"mem_used_mb": 4000.0, "mem_total_mb": 16000.0}
    # +1000 jiffies of which idle +200 and iowait +50: 75 % busy
    (tmp_path / "stat").write_text("cpu  500 0 450 900 150 0 0 0 0 0\n")
    assert host.read()["cpu_pct"] == 75.0
    beat = telemetry.heartbeat_parse(json.dumps(agent.build_payload(None, "", 30, host=host)).encode())
    assert beat.host is not None and beat.host.mem_total_mb == 16000.0
    # no /proc at all: nothing to report, no "host" key, never an exception
    empty = agent.HostReader(proc=str(tmp_path / "missing"))
    assert empty.read() == {} and "host" not in agent.build_payload(None, "", 30, host=empty)
