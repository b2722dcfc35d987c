#!/usr/bin/env python3
"""AI Cloud Provisioner in-pod GPU agent.

Posts each GPU's utilization and memory to the provisioner every AGENT_INTERVAL seconds, so
that auto-shutdown can tell a busy pod from an idle one on providers that publish no metrics.

Standalone: Python 3.8+ standard library only. It reads the GPUs through NVML when the
``pynvml`` module (package ``nvidia-ml-py``) is importable, else through
``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits``.
Without either it still reports (no GPUs, with the reason), so the pod page can say why.

Environment (injected by the provisioner into every pod it launches):
  AGENT_HEARTBEAT_URL  https://<provisioner>/agent/heartbeat/<pod-id>/
  AGENT_TOKEN          the pod's bearer token (revoked when the pod ends)
  AGENT_INTERVAL       seconds between reports (default 30)
  AGENT_NVIDIA_SMI     nvidia-smi command to use (default: nvidia-smi on PATH)

Usage: ``python3 provisioner_agent.py`` (loop), ``--once`` (one report), ``--print`` (read the
GPUs and print the JSON without posting). Exit status: 0 on a clean stop (SIGTERM/SIGINT, or the
server revoked the token because the pod ended), 2 on bad configuration.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request

VERSION = "1"
SMI_QUERY = ["--query-gpu=index,utilization.gpu,memory.used,memory.total", "--format=csv,noheader,nounits"]
MIB = 1024 * 1024
REFUSALS_BEFORE_EXIT = 3  # 401/403 in a row: the token is revoked, the pod has ended


class NvmlReader:
    """Reads GPUs through NVML. Initialised once; ``read`` raises on any NVML error."""

    name = "nvml"

    def __init__(self, module):
        self.nvml = module
        self.nvml.nvmlInit()

    def read(self):
        nvml = self.nvml
        gpus = []
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            util = nvml.nvmlDeviceGetUtilizationRates(handle)
            mem = nvml.nvmlDeviceGetMemoryInfo(handle)
            gpus.append({"index": i, "util": float(util.gpu),
                         "mem_used_mb": round(mem.used / MIB, 1), "mem_total_mb": round(mem.total / MIB, 1)})
        return gpus

    def close(self):
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # shutting down: nothing useful to do with an NVML error
            pass


def _smi_number(text):
    text = text.strip()
    try:
        return float(text)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


class SmiReader:
    """Reads GPUs by running nvidia-smi once per report."""

    name = "nvidia-smi"

    def __init__(self, command=None):
        self.command = (command or os.environ.get("AGENT_NVIDIA_SMI") or "nvidia-smi").split()

    def read(self):
        out = subprocess.run(self.command + SMI_QUERY, capture_output=True, text=True, timeout=15, check=True).stdout
        gpus = []
        for line in out.splitlines():
            parts = [p.strip() for p in line.split(",")]
            if len(parts) != 4 or not parts[0].isdigit():
                continue
            util = _smi_number(parts[1])
            if util is None:
                continue  # a GPU without a utilization reading is left out: never reported as idle
            used, total = _smi_number(parts[2]), _smi_number(parts[3])
            if used is not None and total is not None and used > total:
                used = total
            gpus.append({"index": int(parts[0]), "util": max(0.0, min(100.0, util)),
                         "mem_used_mb": used, "mem_total_mb": total})
        return gpus

    def close(self):
        pass


def open_reader(smi_command=None):
    """The best GPU reader available: (reader or None, why not NVML / why nothing)."""
    problems = []
    try:
        import pynvml  # noqa: PLC0415 - optional dependency
    except Exception as exc:  # ImportError, or a broken install
        problems.append(f"pynvml not importable ({exc.__class__.__name__})")
    else:
        try:
            return NvmlReader(pynvml), ""
        except Exception as exc:  # NVMLError_LibraryNotFound / DriverNotLoaded ...
            problems.append(f"NVML unavailable ({exc})")
    smi = SmiReader(smi_command)
    try:
        smi.read()
        return smi, ""
    except FileNotFoundError:
        problems.append("nvidia-smi not found")
    except (subprocess.SubprocessError, OSError) as exc:
        problems.append(f"nvidia-smi failed ({exc.__class__.__name__})")
    return None, "; ".join(problems)


def build_payload(reader, problem, interval):
    gpus, error = [], problem
    if reader is not None:
        try:
            gpus = reader.read()
        except Exception as exc:  # a failed read is reported, never fatal
            error = f"{reader.name} read failed: {exc}"[:300]
    return {"gpus": gpus[:64], "source": reader.name if reader else "none", "agent_version": VERSION,
            "interval": interval, "error": error[:300]}


def post(url, token, payload, timeout=10.0):
    """POST the payload. Returns (HTTP status, Retry-After seconds or None); status 0 = network error."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}",
        "User-Agent": f"provisioner-agent/{VERSION}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, None
    except urllib.error.HTTPError as exc:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        return exc.code, float(retry) if retry and retry.isdigit() else None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None


def log(message):
    print(f"provisioner-agent: {message}", file=sys.stderr, flush=True)


def run(url, token, interval, once=False, stop=None, smi_command=None):
    """The report loop. Returns the process exit status."""
    stop = stop or threading.Event()
    reader, problem = open_reader(smi_command)
    log(f"reading GPUs with {reader.name if reader else 'nothing'}" + (f" ({problem})" if problem else ""))
    refusals = 0
    backoff = 0.0
    try:
        while True:
            status, retry_after = post(url, token, build_payload(reader, problem, interval))
            if status in (401, 403):
                refusals += 1
                log(f"heartbeat refused ({status})")
                if refusals >= REFUSALS_BEFORE_EXIT:
                    log("token revoked or not valid for this pod: stopping")
                    return 0
            else:
                refusals = 0
            if status == 0 or status >= 500:
                backoff = min(300.0, max(interval, backoff * 2 or interval))
            else:
                backoff = 0.0
            if once:
                return 0 if 200 <= status < 300 else 1
            wait = retry_after if status == 429 and retry_after else (backoff or interval)
            # jitter so that thousands of pods do not report in lockstep
            if stop.wait(wait * random.uniform(0.9, 1.1)):
                return 0
    finally:
        if reader is not None:
            reader.close()


def _interval_from_env():
    """AGENT_INTERVAL in seconds (default 30), 0 when it is not a number."""
    try:
        return min(3600, max(1, int(os.environ.get("AGENT_INTERVAL", "30"))))
    except ValueError:
        return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--print" in argv:
        reader, problem = open_reader()
        print(json.dumps(build_payload(reader, problem, _interval_from_env() or 30)))
        if reader is not None:
            reader.close()
        return 0
    url = os.environ.get("AGENT_HEARTBEAT_URL", "")
    token = os.environ.get("AGENT_TOKEN", "")
    interval = _interval_from_env()
    if not url.startswith(("http://", "https://")) or not token or not interval:
        log("AGENT_HEARTBEAT_URL, AGENT_TOKEN and AGENT_INTERVAL must be set")
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            signal.signal(sig, lambda *_: stop.set())
        except ValueError:  # not the main thread (embedded use)
            pass
    return run(url, token, interval, once="--once" in argv, stop=stop)


if __name__ == "__main__":
    sys.exit(main())
