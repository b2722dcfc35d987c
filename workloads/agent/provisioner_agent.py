#!/usr/bin/env python3
"""AI Cloud Provisioner in-pod GPU agent.

Posts each GPU's utilization and memory to the provisioner every AGENT_INTERVAL seconds, so
that auto-shutdown can tell a busy pod from an idle one on providers that publish no metrics.

Standalone: Python 3.8+ standard library only. It reads the GPUs through NVML when the
``pynvml`` module (package ``nvidia-ml-py``) is importable, else through
``nvidia-smi --query-gpu=index,utilization.gpu,memory.used,memory.total --format=csv,noheader,nounits``.
Without either it still reports (no GPUs, with the reason), so the pod page can say why.
Each report also carries the host's CPU busy % (from /proc/stat, the change since the previous
report) and memory (/proc/meminfo: MemTotal - MemAvailable), where /proc has them.

Environment (injected by the provisioner into every pod it launches):
  AGENT_HEARTBEAT_URL  https://<provisioner>/agent/heartbeat/<pod-id>/
  AGENT_TOKEN          the pod's bearer token (revoked when the pod ends)
  AGENT_INTERVAL       seconds between reports (default 30)
  AGENT_NVIDIA_SMI     nvidia-smi command to use (default: nvidia-smi on PATH)
  AGENT_NOTICE_CLOUD   aws | gcp | azure: watch that cloud's metadata service for interruption
                       notices and report one at once (empty: no cloud publishes notices here)
  AGENT_NOTICE_POLL    seconds between notice checks (default 5, as AWS recommends)
  AGENT_AWS_IMDS_URL, AGENT_GCP_METADATA_URL, AGENT_AZURE_METADATA_URL
                       metadata base URLs (defaults: the documented link-local addresses)

Usage: ``python3 provisioner_agent.py`` (loop), ``--once`` (one report), ``--print`` (read the
GPUs and print the JSON without posting). Exit status: 0 on a clean stop (SIGTERM/SIGINT, or the
server revoked the token because the pod ended), 2 on bad configuration.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone

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


class HostReader:
    """The host's CPU and memory from /proc (Linux man-pages, proc_stat(5) and proc_meminfo(5)).

    CPU busy % is 100 x (1 - (idle + iowait) / total) over the jiffies counted on the first
    ("cpu") line of /proc/stat since the previous read; memory used is MemTotal - MemAvailable
    (kB). A value /proc does not give is left out; ``read`` never raises."""

    def __init__(self, proc="/proc"):
        self.proc = proc
        self.last = self._cpu_times()

    def _cpu_times(self):
        try:
            with open(os.path.join(self.proc, "stat")) as f:
                fields = f.readline().split()
            if not fields or fields[0] != "cpu":
                return None
            times = [int(v) for v in fields[1:]]
        except (OSError, ValueError):
            return None
        # user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
        times = times[:8]
        idle = times[3] + (times[4] if len(times) > 4 else 0)
        return sum(times), idle

    def _memory(self):
        values = {}
        try:
            with open(os.path.join(self.proc, "meminfo")) as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("MemTotal", "MemAvailable"):
                        values[key] = int(rest.split()[0]) / 1024.0  # kB -> MB
        except (OSError, ValueError, IndexError):
            return None, None
        total, available = values.get("MemTotal"), values.get("MemAvailable")
        if not total or available is None:
            return None, round(total, 1) if total else None
        return round(max(0.0, min(total, total - available)), 1), round(total, 1)

    def read(self):
        out = {}
        now = self._cpu_times()
        if now is not None and self.last is not None and now[0] > self.last[0]:
            busy = 1.0 - (now[1] - self.last[1]) / (now[0] - self.last[0])
            out["cpu_pct"] = round(max(0.0, min(100.0, 100.0 * busy)), 1)
        if now is not None:
            self.last = now
        used, total = self._memory()
        if used is not None:
            out["mem_used_mb"] = used
        if total is not None:
            out["mem_total_mb"] = total
        return out


def build_payload(reader, problem, interval, notice=None, host=None):
    gpus, error = [], problem
    if reader is not None:
        try:
            gpus = reader.read()
        except Exception as exc:  # a failed read is reported, never fatal
            error = f"{reader.name} read failed: {exc}"[:300]
    payload = {"gpus": gpus[:64], "source": reader.name if reader else "none", "agent_version": VERSION,
               "interval": interval, "error": error[:300]}
    if notice:
        payload["notice"] = notice
    reading = host.read() if host is not None else None
    if reading:
        payload["host"] = reading
    return payload


# --- interruption notices -------------------------------------------------------------------
# Each cloud's metadata service, read as its documentation describes. A notice is a dict
# {"provider", "kind", "deadline" (ISO 8601 UTC or None), "detail"}: the heartbeat's "notice" field.

METADATA_TIMEOUT = 2.0
UTC = timezone.utc  # noqa: UP017 - datetime.UTC needs Python 3.11; the agent runs on 3.8+
GCP_NOTICE_SECONDS = 30  # GCP gives no deadline, only the documented ~30 s between notice and stop


def _utc_iso(dt):
    return dt.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _http(method, url, headers, timeout=METADATA_TIMEOUT):
    """(status, body text, headers); status 0 when the metadata service cannot be reached."""
    request = urllib.request.Request(url, method=method, headers=headers, data=b"" if method == "PUT" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read(65536).decode("utf-8", "replace"), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, "", exc.headers
    except (urllib.error.URLError, OSError, ValueError):
        return 0, "", None


class AwsNotices:
    """EC2 instance metadata, IMDSv2.

    Amazon EC2 User Guide, "Spot Instance interruption notices" (section "instance-action"):
    ``spot/instance-action`` exists only once the instance is marked to be stopped or terminated,
    ``{"action": "terminate"|"stop"|"hibernate", "time": "2017-09-18T08:22:00Z"}``, two minutes
    ahead (hibernation starts at once); "we recommend that you check for these interruption notices
    every 5 seconds"; absent = HTTP 404. Same guide, "EC2 instance rebalance recommendations"
    ("Monitor rebalance recommendation signals"): ``events/recommendations/rebalance`` returns
    ``{"noticeTime": "..."}`` once the instance is at elevated risk, 404 before; it has no deadline.
    "Use the Instance Metadata Service to access instance metadata" (IMDSv2): ``PUT /latest/api/token``
    with ``X-aws-ec2-metadata-token-ttl-seconds``, then every GET carries ``X-aws-ec2-metadata-token``;
    an expired token is answered 401.
    """

    provider = "aws"
    TTL = 21600

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.token = None

    def _token(self):
        status, body, _ = _http("PUT", self.base + "/latest/api/token",
                                {"X-aws-ec2-metadata-token-ttl-seconds": str(self.TTL)})
        self.token = body.strip() if status == 200 and body.strip() else None
        return self.token

    def _get(self, path):
        for _ in range(2):  # a second try with a fresh token after a 401
            token = self.token or self._token()
            if not token:
                return 0, ""
            status, body, _ = _http("GET", self.base + "/latest/meta-data/" + path, {"X-aws-ec2-metadata-token": token})
            if status != 401:
                return status, body
            self.token = None
        return 401, ""

    def check(self):
        status, body = self._get("spot/instance-action")
        if status == 200:
            try:
                data = json.loads(body)
                action = str(data.get("action", "terminate"))
                deadline = _utc_iso(datetime.strptime(data["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC))
            except (ValueError, KeyError, TypeError, AttributeError):
                action, deadline = "terminate", None
            if action in ("terminate", "stop", "hibernate"):
                return {"provider": "aws", "kind": action, "deadline": deadline, "detail": "spot/instance-action"}
        status, body = self._get("events/recommendations/rebalance")
        if status == 200:
            return {"provider": "aws", "kind": "rebalance", "deadline": None,
                    "detail": "events/recommendations/rebalance"}
        return None


class GcpNotices:
    """Compute Engine metadata server.

    Compute Engine docs, "Preemptible VM instances" / "Create and use Spot VMs" ("Detect if a VM
    was preempted"; "Preemption process": about 30 seconds between the notice and the stop):
    ``instance/preempted`` reads ``TRUE`` once preemption has begun, ``FALSE`` before; every request
    carries ``Metadata-Flavor: Google``. "Get VM metadata" ("Wait for changes"): ``?wait_for_change=true``
    with ``last_etag`` and ``timeout_sec`` holds the request until the value changes.
    """

    provider = "gcp"

    def __init__(self, base, wait_seconds=60):
        self.base = base.rstrip("/")
        self.etag = None
        self.wait_seconds = wait_seconds
        self.preempted_at = None

    def check(self):
        url = self.base + "/computeMetadata/v1/instance/preempted"
        timeout = METADATA_TIMEOUT
        if self.etag:
            url += f"?wait_for_change=true&last_etag={self.etag}&timeout_sec={self.wait_seconds}"
            timeout = self.wait_seconds + METADATA_TIMEOUT
        status, body, headers = _http("GET", url, {"Metadata-Flavor": "Google"}, timeout=timeout)
        if status != 200:
            self.etag = None
            return None
        self.etag = (headers.get("ETag") if headers else None) or None
        if body.strip().upper() != "TRUE":
            return None
        if self.preempted_at is None:
            self.preempted_at = datetime.now(UTC)
        return {"provider": "gcp", "kind": "preempt", "detail": "instance/preempted",
                "deadline": _utc_iso(self.preempted_at + timedelta(seconds=GCP_NOTICE_SECONDS))}


class AzureNotices:
    """Azure Instance Metadata Service, Scheduled Events.

    Microsoft Learn, "Azure Metadata Service: Scheduled Events for Linux VMs" ("Query for events",
    "Event properties"): ``GET /metadata/scheduledevents?api-version=2020-07-01`` with header
    ``Metadata: true`` returns ``{"DocumentIncarnation", "Events": [{"EventId", "EventType",
    "ResourceType", "Resources": [vm names], "EventStatus", "NotBefore": RFC 1123 time, ...}]}``;
    ``EventType`` "Preempt" is a Spot VM eviction with a minimum notice of 30 seconds.
    ``Resources`` lists the VMs affected: events for other VMs of the same availability set are
    ignored when our name is known (``/metadata/instance/compute/name``).
    """

    provider = "azure"
    API_VERSION = "2020-07-01"

    def __init__(self, base):
        self.base = base.rstrip("/")
        self.name = None

    def _vm_name(self):
        if self.name is None:
            status, body, _ = _http("GET", self.base + "/metadata/instance/compute/name?api-version=2021-02-01&format=text",
                                    {"Metadata": "true"})
            self.name = body.strip() if status == 200 else ""
        return self.name

    def check(self):
        status, body, _ = _http("GET", f"{self.base}/metadata/scheduledevents?api-version={self.API_VERSION}",
                                {"Metadata": "true"})
        if status != 200:
            return None
        try:
            events = json.loads(body).get("Events") or []
        except (ValueError, AttributeError):
            return None
        name = self._vm_name()
        for event in events:
            if not isinstance(event, dict) or event.get("EventType") != "Preempt":
                continue
            resources = event.get("Resources") or []
            if name and isinstance(resources, list) and resources and name not in resources:
                continue
            try:
                deadline = _utc_iso(email.utils.parsedate_to_datetime(event.get("NotBefore") or ""))
            except (TypeError, ValueError, IndexError):
                deadline = None
            return {"provider": "azure", "kind": "preempt", "deadline": deadline,
                    "detail": f"Scheduled Events {str(event.get('EventId', ''))[:60]}"}
        return None


def notice_watcher_from_env(environ=None):
    """The watcher for AGENT_NOTICE_CLOUD, or None (no cloud, or an unknown one: nothing to watch)."""
    env = os.environ if environ is None else environ
    cloud = env.get("AGENT_NOTICE_CLOUD", "").strip().lower()
    if cloud == "aws":
        return AwsNotices(env.get("AGENT_AWS_IMDS_URL") or "http://169.254.169.254")
    if cloud == "gcp":
        return GcpNotices(env.get("AGENT_GCP_METADATA_URL") or "http://metadata.google.internal")
    if cloud == "azure":
        return AzureNotices(env.get("AGENT_AZURE_METADATA_URL") or "http://169.254.169.254")
    return None


class NoticeWatch(threading.Thread):
    """Checks the metadata service every ``poll`` seconds; ``notice`` holds the latest notice and
    ``fresh`` is set whenever it changes, so the report loop posts at once."""

    def __init__(self, watcher, poll, stop):
        super().__init__(daemon=True, name="notice-watch")
        self.watcher, self.poll, self.stop = watcher, poll, stop
        self.notice = None
        self.fresh = threading.Event()

    def run(self):
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                notice = self.watcher.check()
            except Exception as exc:  # never let a metadata oddity end the agent
                log(f"notice check failed: {exc.__class__.__name__}")
                notice = None
            # a notice is never withdrawn by a later miss: the instance is going away regardless,
            # but an interruption replaces a mere rebalance recommendation
            if notice and notice != self.notice and not (self.notice and notice["kind"] == "rebalance"):
                self.notice = notice
                log(f"interruption notice: {notice['provider']} {notice['kind']} by {notice['deadline']}")
                self.fresh.set()
            self.stop.wait(max(0.0, self.poll - (time.monotonic() - started)))


def post(url, token, payload, timeout=10.0):
    """POST the payload. Returns (HTTP status, Retry-After seconds or None, JSON answer or None);
    status 0 = network error."""
    body = json.dumps(payload).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json", "Authorization": f"Bearer {token}",
        "User-Agent": f"provisioner-agent/{VERSION}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            try:
                answer = json.loads(response.read(65536).decode("utf-8"))
            except ValueError:
                answer = None
            return response.status, None, answer if isinstance(answer, dict) else None
    except urllib.error.HTTPError as exc:
        retry = exc.headers.get("Retry-After") if exc.headers else None
        return exc.code, float(retry) if retry and retry.isdigit() else None, None
    except (urllib.error.URLError, OSError, ValueError):
        return 0, None, None


def log(message):
    print(f"provisioner-agent: {message}", file=sys.stderr, flush=True)


def run(url, token, interval, once=False, stop=None, smi_command=None, watcher=None, notice_poll=5.0,
        on_answer=None, host=None):
    """The report loop. Returns the process exit status. With a notice ``watcher`` a notice is
    posted at once, and then with every report until the pod ends. ``on_answer`` gets each
    accepted report's JSON answer (the on-notice command travels there). ``host`` reads the host's
    CPU and memory (a HostReader; none when not given)."""
    stop = stop or threading.Event()
    reader, problem = open_reader(smi_command)
    log(f"reading GPUs with {reader.name if reader else 'nothing'}" + (f" ({problem})" if problem else ""))
    watch = None
    if watcher is not None:
        watch = NoticeWatch(watcher, notice_poll, stop)
        if once:
            watch.notice = watcher.check()
        else:
            watch.start()
    refusals = 0
    backoff = 0.0
    try:
        while True:
            if watch is not None:
                watch.fresh.clear()
            payload = build_payload(reader, problem, interval, watch.notice if watch else None, host)
            status, retry_after, *rest = post(url, token, payload)
            if rest and rest[0] is not None and on_answer is not None and 200 <= status < 300:
                on_answer(rest[0])
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
            if _wait(stop, wait * random.uniform(0.9, 1.1), watch.fresh if watch else None):
                return 0
    finally:
        if reader is not None:
            reader.close()


def _wait(stop, seconds, fresh):
    """Sleep ``seconds``; True when stopped. Cut short when a new notice must be posted."""
    if fresh is None:
        return stop.wait(seconds)
    end = time.monotonic() + seconds
    while True:
        left = end - time.monotonic()
        if left <= 0 or fresh.is_set():
            return stop.is_set()
        if stop.wait(min(left, 0.2)):
            return True


def _on_notice_runner():
    """Runs the workload's on-notice command (from the heartbeat answer) once per notice, with
    the seconds left in NOTICE_SECONDS_LEFT, in the background: the reports go on."""
    started = set()

    def handle(answer):
        order = answer.get("on_notice")
        if not isinstance(order, dict) or not isinstance(order.get("command"), str) or not order["command"]:
            return
        key = (order["command"], str(order.get("deadline")))
        if key in started:
            return
        started.add(key)
        env = dict(os.environ, NOTICE_SECONDS_LEFT=str(order.get("seconds_left", "")),
                   NOTICE_DEADLINE=str(order.get("deadline") or ""))
        log(f"running the on-notice command ({order.get('seconds_left')} s left)")
        try:
            subprocess.Popen(["/bin/sh", "-c", order["command"]], env=env)
        except OSError as exc:
            log(f"on-notice command failed to start: {exc}")

    return handle


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
        host = HostReader()
        time.sleep(0.2)  # CPU busy % is a change between two reads of /proc/stat
        print(json.dumps(build_payload(reader, problem, _interval_from_env() or 30, host=host)))
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
    try:
        poll = min(60.0, max(0.5, float(os.environ.get("AGENT_NOTICE_POLL", "5"))))
    except ValueError:
        poll = 5.0
    return run(url, token, interval, once="--once" in argv, stop=stop, watcher=notice_watcher_from_env(),
               notice_poll=poll, on_answer=_on_notice_runner(), host=HostReader())


if __name__ == "__main__":
    sys.exit(main())
