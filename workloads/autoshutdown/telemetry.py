"""GPU telemetry: per-pod agent tokens, heartbeat validation, sample ingest from the in-pod
agent and from provider metric APIs, and retention.

Two sources feed ``UtilizationSample``:

* the provider's own metric, for adapters that implement ``gpu_utilization`` (polled every
  minute by ``telemetry_poll``);
* the in-pod agent (``workloads/agent/provisioner_agent.py``), which posts to the heartbeat
  endpoint with a per-pod bearer token. Only the token's sha256 is stored (``Pod.agent_token_hash``);
  ``pod_transition`` clears it when the pod ends, which is what makes an old token "expired".

Sample times are the server's receipt time (agent) or the provider's timestamp: pod clocks are
not trusted, and the idle window is judged on one clock.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connections, transaction
from django.urls import reverse

from providers.adapters.base import GpuSample, ProviderAdapter, ProviderError
from providers.models import ProviderAccount
from providers.services import adapter_for
from provisioner import clock
from provisioner.inputs import bad_text_reason
from provisioner.logfilter import redact
from workloads.interruptions.notices import Notice, NoticeInvalid, notice_parse, notice_record
from workloads.models import HostSample, Pod, PodState, UtilizationSample

logger = logging.getLogger(__name__)

SOURCE_AGENT = "agent"
SOURCE_PROVIDER = "provider"
# states in which a pod's agent may report: it can start before our sync has seen "running"
HEARTBEAT_STATES = (PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPING)
MAX_BODY_BYTES = 16 * 1024
MAX_GPUS = 64
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_\-]{20,128}$")


def agent_interval_seconds() -> int:
    return settings.AGENT_INTERVAL_SECONDS


# --- tokens ---------------------------------------------------------------------------------


def agent_token_hash(token: str) -> str:
    """sha256 hex of a token. Tokens are 256-bit random, so a fast hash is enough."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


def agent_token_issue(*, pod: Pod) -> str:
    """Give ``pod`` a fresh agent token (replacing any earlier one) and return it in clear.

    The clear token exists only in the launch request's environment; we keep its hash.
    """
    token = secrets.token_urlsafe(32)
    digest = agent_token_hash(token)
    Pod.objects.filter(pk=pod.pk).update(agent_token_hash=digest)
    pod.agent_token_hash = digest
    return token


def agent_token_revoke(*, pod: Pod) -> None:
    """Invalidate the pod's agent token now (pod_transition also does this on final states)."""
    Pod.objects.filter(pk=pod.pk).update(agent_token_hash="")
    pod.agent_token_hash = ""


def agent_heartbeat_url(pod: Pod) -> str:
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return base + reverse("workloads:agent_heartbeat", args=[pod.pk])


def agent_launch_env(*, pod: Pod) -> dict[str, str]:
    """Environment for the pod's container: where and how the in-pod agent reports.

    Called once per launch attempt; each attempt's token replaces the previous one, so only the
    pod that actually launched can report.
    """
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    return {
        "AGENT_HEARTBEAT_URL": agent_heartbeat_url(pod),
        "AGENT_TOKEN": agent_token_issue(pod=pod),
        "AGENT_INTERVAL": str(agent_interval_seconds()),
        "AGENT_SCRIPT_URL": base + reverse("workloads:agent_script"),
    }


class TokenRefused(Exception):
    """Heartbeat authentication failed; ``status`` is 401 (unknown/expired) or 403 (foreign/not live)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def bearer_token(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None when malformed."""
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not _TOKEN_RE.match(token):
        return None
    return token


def agent_authenticate(*, pod_id: str, token: str) -> Pod:
    """The pod this token belongs to, if it is ``pod_id`` and may report. Raises TokenRefused."""
    pod = (Pod.objects.select_related("workload").filter(agent_token_hash=agent_token_hash(token)).first()
           if token else None)
    if pod is None:
        # never issued, replaced by a later launch attempt, or revoked when the pod ended
        raise TokenRefused(401, "unknown, expired or revoked agent token")
    if str(pod.pk) != str(pod_id):
        raise TokenRefused(403, "this token belongs to another pod")
    if pod.state not in HEARTBEAT_STATES:
        raise TokenRefused(403, f"pod is {pod.state}; heartbeats are not accepted")
    return pod


def heartbeat_rate_limited(token_digest: str) -> int:
    """Count one heartbeat for this token in the current fixed one-minute window.

    Returns 0 when allowed, else the seconds until the window ends (for Retry-After).
    Uses the Django cache, so with several web processes it needs a shared cache (Redis).
    """
    limit = settings.AGENT_HEARTBEAT_LIMIT_PER_MINUTE
    now = clock.now().timestamp()
    window = int(now // 60)
    key = f"agent-hb:{token_digest[:32]}:{window}"
    cache.add(key, 0, timeout=90)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=90)
        count = 1
    if count > limit:
        return max(1, int((window + 1) * 60 - now))
    return 0


# --- heartbeat payload ---------------------------------------------------------------------


class HeartbeatInvalid(Exception):
    """The heartbeat body is not the documented JSON; ``status`` is 400 or 413/415."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class HostReading:
    """The host's CPU busy % (from /proc/stat deltas) and memory in MB (from /proc/meminfo)."""

    cpu_pct: float | None = None
    mem_used_mb: float | None = None
    mem_total_mb: float | None = None


@dataclass
class Heartbeat:
    gpus: list[GpuSample]
    source: str = ""
    agent_version: str = ""
    interval: int | None = None
    error: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    notice: Notice | None = None
    host: HostReading | None = None


_TOP_KEYS = {"gpus", "source", "agent_version", "interval", "error", "notice", "host"}
_GPU_KEYS = {"index", "util", "mem_used_mb", "mem_total_mb"}
_HOST_KEYS = {"cpu_pct", "mem_used_mb", "mem_total_mb"}


def _number(value: Any, what: str, *, lo: float, hi: float, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    # bool is an int in Python; a JSON true is not a percentage
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise HeartbeatInvalid(f"{what} must be a number")
    if not lo <= value <= hi:
        raise HeartbeatInvalid(f"{what} must be between {lo:g} and {hi:g}")
    return float(value)


def _reject_constant(name: str):
    raise HeartbeatInvalid(f"{name} is not valid JSON")


def heartbeat_parse(body: bytes, content_type: str = "application/json") -> Heartbeat:
    """Validate a heartbeat strictly. Anything unexpected is a HeartbeatInvalid, never a crash.

    Body: ``{"gpus": [{"index": 0, "util": 37.5, "mem_used_mb": 1200, "mem_total_mb": 81920}],
    "source": "nvml", "agent_version": "1", "interval": 30, "error": ""}`` — only ``gpus`` is
    required; unknown keys are refused so that typos do not pass silently. ``notice`` (optional)
    is the cloud's interruption notice as the agent read it (``notices.notice_parse``).
    """
    if not body:
        raise HeartbeatInvalid("empty body")
    if content_type.split(";")[0].strip().lower() != "application/json":
        raise HeartbeatInvalid("Content-Type must be application/json", status=415)
    if len(body) > MAX_BODY_BYTES:
        raise HeartbeatInvalid("body too large", status=413)
    try:
        data = json.loads(body.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise HeartbeatInvalid("body is not valid JSON")
    if not isinstance(data, dict):
        raise HeartbeatInvalid("body must be a JSON object")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise HeartbeatInvalid(f"unknown field(s): {', '.join(sorted(map(str, unknown)))[:200]}")
    gpus = data.get("gpus")
    if not isinstance(gpus, list):
        raise HeartbeatInvalid("gpus must be a list")
    if len(gpus) > MAX_GPUS:
        raise HeartbeatInvalid(f"at most {MAX_GPUS} GPUs")
    samples: list[GpuSample] = []
    seen: set[int] = set()
    for n, g in enumerate(gpus):
        if not isinstance(g, dict):
            raise HeartbeatInvalid(f"gpus[{n}] must be an object")
        if set(g) - _GPU_KEYS:
            raise HeartbeatInvalid(f"gpus[{n}] has unknown field(s)")
        index = g.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_GPUS:
            raise HeartbeatInvalid(f"gpus[{n}].index must be an integer 0..{MAX_GPUS - 1}")
        if index in seen:
            raise HeartbeatInvalid(f"gpus[{n}].index {index} is repeated")
        seen.add(index)
        util = _number(g.get("util"), f"gpus[{n}].util", lo=0, hi=100)
        used = _number(g.get("mem_used_mb"), f"gpus[{n}].mem_used_mb", lo=0, hi=1e8, optional=True)
        total = _number(g.get("mem_total_mb"), f"gpus[{n}].mem_total_mb", lo=0, hi=1e8, optional=True)
        if used is not None and total is not None and used > total:
            raise HeartbeatInvalid(f"gpus[{n}].mem_used_mb exceeds mem_total_mb")
        samples.append(GpuSample(gpu_index=index, util_pct=float(util), mem_used_mb=used, mem_total_mb=total))
    beat = Heartbeat(gpus=samples)
    for key, limit in (("source", 32), ("agent_version", 32), ("error", 300)):
        value = data.get(key, "")
        if not isinstance(value, str) or len(value) > limit:
            raise HeartbeatInvalid(f"{key} must be a string of at most {limit} characters")
        why = bad_text_reason(value)  # "\u0000" or "\ud800" decode fine from JSON but no database stores them
        if why:
            raise HeartbeatInvalid(f"{key}: {why}")
        setattr(beat, key, value)
    interval = data.get("interval")
    if interval is not None:
        if isinstance(interval, bool) or not isinstance(interval, int) or not 1 <= interval <= 3600:
            raise HeartbeatInvalid("interval must be an integer 1..3600")
        beat.interval = interval
    if data.get("notice") is not None:
        try:
            beat.notice = notice_parse(data["notice"])
        except NoticeInvalid as exc:
            raise HeartbeatInvalid(str(exc)) from None
    if data.get("host") is not None:
        beat.host = _host_parse(data["host"])
    return beat


def _host_parse(host: Any) -> HostReading:
    """``{"cpu_pct": 12.5, "mem_used_mb": 2048, "mem_total_mb": 65536}``, each field optional."""
    if not isinstance(host, dict):
        raise HeartbeatInvalid("host must be an object")
    if set(host) - _HOST_KEYS:
        raise HeartbeatInvalid(f"host has unknown field(s): {', '.join(sorted(map(str, set(host) - _HOST_KEYS)))[:200]}")
    reading = HostReading(cpu_pct=_number(host.get("cpu_pct"), "host.cpu_pct", lo=0, hi=100, optional=True),
                          mem_used_mb=_number(host.get("mem_used_mb"), "host.mem_used_mb", lo=0, hi=1e9, optional=True),
                          mem_total_mb=_number(host.get("mem_total_mb"), "host.mem_total_mb", lo=0, hi=1e9, optional=True))
    if reading.mem_used_mb is not None and reading.mem_total_mb is not None and reading.mem_used_mb > reading.mem_total_mb:
        raise HeartbeatInvalid("host.mem_used_mb exceeds host.mem_total_mb")
    return reading


# --- ingest ---------------------------------------------------------------------------------


def samples_ingest(*, pod: Pod, samples: Sequence[GpuSample], source: str, at: datetime | None = None,
                   pod_updates: dict[str, Any] | None = None) -> int:
    """Store one reading of each GPU; GPU activity during an idle warning cancels the shutdown.

    Each sample records its gap to the same GPU's previous sample (from ``Pod.gpu_last_sample_at``),
    so that the reaper can see holes in the telemetry cheaply. ``pod_updates`` are further Pod
    fields written by the same UPDATE. ``pod.workload`` should be loaded (its threshold decides
    what counts as activity).
    """
    now = at or clock.now()
    last = dict(pod.gpu_last_sample_at or {})
    rows = []
    for s in samples:
        when = s.at or now
        key = str(s.gpu_index)
        prev = _parse_time(last.get(key))
        gap = max(0.0, (when - prev).total_seconds()) if prev else None
        if prev is None or when > prev:
            last[key] = when.isoformat()
        rows.append(UtilizationSample(pod_id=pod.pk, at=when, gpu_index=s.gpu_index, util_pct=s.util_pct,
                                      mem_used_mb=s.mem_used_mb, mem_total_mb=s.mem_total_mb, source=source, gap_s=gap))
    updates = dict(pod_updates or {})
    if rows:
        updates["gpu_last_sample_at"] = last
    with transaction.atomic():
        if updates:
            Pod.objects.filter(pk=pod.pk).update(**updates)
            for k, v in updates.items():
                setattr(pod, k, v)
        if rows:
            UtilizationSample.objects.bulk_create(rows)
            _cancel_warning_on_activity(pod, rows)
    return len(rows)


def _parse_time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _cancel_warning_on_activity(pod: Pod, rows: Sequence[UtilizationSample]) -> None:
    if pod.idle_warning_at is None:
        return
    from .idle import idle_warning_cancel  # idle builds on telemetry, not the reverse

    threshold = pod.workload.idle_threshold_pct
    busiest = max(rows, key=lambda r: r.util_pct)
    if busiest.util_pct >= threshold:
        idle_warning_cancel(pod=pod, message=(f"GPU {busiest.gpu_index} is busy again ({busiest.util_pct:.0f} % ≥ "
                                              f"{threshold} %): idle shutdown cancelled"),
                            util_pct=busiest.util_pct, gpu_index=busiest.gpu_index)


def heartbeat_record(*, pod: Pod, beat: Heartbeat) -> int:
    """Store an authenticated agent heartbeat. Returns the number of samples stored."""
    now = clock.now()
    stored = samples_ingest(pod=pod, samples=beat.gpus, source=SOURCE_AGENT, at=now,
                            pod_updates={"last_heartbeat_at": now, "agent_error": redact(beat.error)[:300]})
    host = beat.host
    if host is not None and (host.cpu_pct, host.mem_used_mb, host.mem_total_mb) != (None, None, None):
        HostSample.objects.create(pod_id=pod.pk, at=now, cpu_pct=host.cpu_pct, mem_used_mb=host.mem_used_mb,
                                  mem_total_mb=host.mem_total_mb)
    if beat.notice is not None:
        notice_record(pod=pod, notice=beat.notice)
    return stored


# --- provider metrics -----------------------------------------------------------------------


def has_provider_metrics(adapter: ProviderAdapter) -> bool:
    """True when the adapter overrides ``gpu_utilization`` (the base returns None)."""
    return type(adapter).gpu_utilization is not ProviderAdapter.gpu_utilization


def _poll_account(account: ProviderAccount, pods: list[Pod], threaded: bool) -> list[tuple[Pod, list[GpuSample]]]:
    out: list[tuple[Pod, list[GpuSample]]] = []
    try:
        adapter = adapter_for(account)
        if not has_provider_metrics(adapter):
            return out
        for pod in pods:
            try:
                samples = adapter.gpu_utilization(pod.external_id)
            except ProviderError as exc:
                logger.info("GPU metrics of pod %s unavailable: %s", pod.pk, exc)
                continue
            if samples:
                out.append((pod, samples))
    except Exception:  # one broken adapter must not stop the others' telemetry
        logger.exception("GPU metrics poll of account %s failed", account.pk)
    finally:
        if threaded:
            connections.close_all()  # this worker thread's own connections
    return out


def telemetry_poll() -> int:
    """Read provider GPU metrics for every running pod whose provider has them. Returns samples stored.

    Accounts are polled concurrently (``TELEMETRY_POLL_WORKERS``), each account's pods in turn.
    """
    pods = list(Pod.objects.filter(state=PodState.RUNNING, provider_account__isnull=False)
                .exclude(external_id="").select_related("provider_account", "workload"))
    by_account: dict[str, tuple[ProviderAccount, list[Pod]]] = {}
    for pod in pods:
        by_account.setdefault(str(pod.provider_account_id), (pod.provider_account, []))[1].append(pod)
    workers = min(settings.TELEMETRY_POLL_WORKERS, len(by_account))
    results: list[tuple[Pod, list[GpuSample]]] = []
    if workers > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpu-metrics") as pool:
            for chunk in pool.map(lambda item: _poll_account(item[0], item[1], True), by_account.values()):
                results.extend(chunk)
    else:
        for account, account_pods in by_account.values():
            results.extend(_poll_account(account, account_pods, False))
    now = clock.now()
    stored = 0
    for pod, samples in results:
        stored += samples_ingest(pod=pod, samples=samples, source=SOURCE_PROVIDER, at=now)
    return stored


# --- retention ------------------------------------------------------------------------------


def samples_purge(*, batch: int = 50_000) -> int:
    """Delete GPU and host samples older than ``UTILIZATION_RETENTION_DAYS`` (default 14), in
    batches so that no single statement holds locks for long. Returns the number deleted."""
    cutoff = clock.now() - timedelta(days=settings.UTILIZATION_RETENTION_DAYS)
    deleted = 0
    for model in (UtilizationSample, HostSample):
        while True:
            ids = list(model.objects.filter(at__lt=cutoff).values_list("pk", flat=True)[:batch])
            if not ids:
                break
            deleted += model.objects.filter(pk__in=ids).delete()[0]
    return deleted


# --- reads ----------------------------------------------------------------------------------

CHART_RANGES = {"15m": 15, "1h": 60, "6h": 360, "24h": 1440, "7d": 7 * 1440}
MAX_POINTS_PER_GPU = 360
Point = tuple[datetime, float]


def _peaks(rows, *, start: datetime, minutes: int) -> dict[Any, list[Point]]:
    """``(series, at, value)`` rows ordered by time -> per series the maximum of each time bucket
    (at most MAX_POINTS_PER_GPU), so that a short spike stays visible on a long range."""
    bucket = max(1.0, minutes * 60 / MAX_POINTS_PER_GPU)
    series: dict[Any, dict[int, Point]] = {}
    for name, at, value in rows:
        if value is None:
            continue
        key = int((at - start).total_seconds() // bucket)
        per = series.setdefault(name, {})
        if key not in per or value > per[key][1]:
            per[key] = (at, value)
    return {name: list(per.values()) for name, per in series.items()}


def pod_utilization_series(pod: Pod, *, minutes: int, now: datetime | None = None) -> dict[int, list[Point]]:
    """Per-GPU (time, utilization %) for the last ``minutes``, downsampled to the maximum of each
    time bucket so that a short spike stays visible (it is what keeps a pod alive)."""
    now = now or clock.now()
    start = now - timedelta(minutes=minutes)
    rows = (UtilizationSample.objects.filter(pod_id=pod.pk, at__gte=start, at__lte=now)
            .order_by("at").values_list("gpu_index", "at", "util_pct"))
    return dict(sorted(_peaks(rows.iterator(chunk_size=5000), start=start, minutes=minutes).items()))


def pod_gpu_memory_series(pod: Pod, *, minutes: int, now: datetime | None = None) -> tuple[dict[int, list[Point]], dict[int, float]]:
    """Per-GPU (time, memory used %) for the last ``minutes`` (bucket maxima, as above), and each
    GPU's latest total memory in MB. Samples without both used and total (most provider metrics)
    are left out."""
    now = now or clock.now()
    start = now - timedelta(minutes=minutes)
    rows = (UtilizationSample.objects.filter(pod_id=pod.pk, at__gte=start, at__lte=now, mem_used_mb__isnull=False,
                                             mem_total_mb__gt=0)
            .order_by("at").values_list("gpu_index", "at", "mem_used_mb", "mem_total_mb"))
    totals: dict[int, float] = {}

    def percents():
        for gpu, at, used, total in rows.iterator(chunk_size=5000):
            totals[gpu] = total
            yield gpu, at, 100.0 * used / total

    series = dict(sorted(_peaks(percents(), start=start, minutes=minutes).items()))
    return series, totals


def pod_host_series(pod: Pod, *, minutes: int, now: datetime | None = None) -> tuple[dict[str, list[Point]], float | None]:
    """The host's ``{"CPU": [(time, %)], "Memory": [(time, %)]}`` for the last ``minutes``
    (bucket maxima) and the latest total memory in MB."""
    now = now or clock.now()
    start = now - timedelta(minutes=minutes)
    rows = (HostSample.objects.filter(pod_id=pod.pk, at__gte=start, at__lte=now).order_by("at")
            .values_list("at", "cpu_pct", "mem_used_mb", "mem_total_mb"))
    total: float | None = None

    def points():
        nonlocal total
        for at, cpu, used, mem_total in rows.iterator(chunk_size=5000):
            yield "CPU", at, cpu
            if used is not None and mem_total:
                total = mem_total
                yield "Memory", at, 100.0 * used / mem_total

    series = _peaks(points(), start=start, minutes=minutes)
    return {name: series[name] for name in ("CPU", "Memory") if name in series}, total


# The in-pod agent is started by the pod's own entrypoint: when the workload has an explicit
# command, it is wrapped so that a POSIX shell first starts the agent in the background (only
# where the image has python3 and the agent URL is set), then execs the real command unchanged.
# Images launched with their default entrypoint start the agent themselves (README: "In-pod
# GPU agent").
AGENT_BOOTSTRAP = (
    'if [ -n "$AGENT_SCRIPT_URL" ] && command -v python3 >/dev/null 2>&1; then '
    "(python3 -c 'import os, urllib.request; "
    'exec(compile(urllib.request.urlopen(os.environ["AGENT_SCRIPT_URL"], timeout=15).read(), "provisioner_agent.py", "exec"))\' '
    ">/tmp/provisioner-agent.log 2>&1 &); fi; "
    'exec "$@"'
)


def agent_wrapped_command(command: list[str], args: list[str]) -> tuple[list[str], list[str]]:
    """(command, args) that start the agent, then run ``command + args`` exactly as given."""
    if not command:
        return command, args
    return ["sh", "-c", AGENT_BOOTSTRAP, "provisioner-entrypoint", *command, *args], []
