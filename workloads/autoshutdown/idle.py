"""Auto-shutdown: the idle policy, the reaper and the graceful stop.

The rule, per running pod whose workload has the policy on: the pod is idle only when EVERY GPU
stays below the threshold in EVERY sample across the WHOLE window, and the window is covered by
samples: for each GPU, no hole longer than ``IDLE_MAX_GAP_SECONDS`` (default 180) anywhere in the
window, its start and its end included (each sample stores its gap to the previous one, so this
is one MAX() in the grouped query rather than a sort of every sample). Missing telemetry is never idle:
it raises a "no telemetry" warning instead, because a pod we cannot see may be busy.

Idle pods get a warning (event + email to the owner), then ``idle_grace_minutes`` during which
GPU activity cancels the shutdown, then a stop (provider can stop: disk kept, deleted after
``idle_delete_after_stopped_minutes`` stopped) or a terminate, verified at the provider.

The reaper tick runs a constant number of SQL queries whatever the number of pods: one locked
read of the candidate pods, one grouped aggregate of their samples, bulk updates and one bulk
insert of events. Candidate rows are locked with ``SELECT ... FOR UPDATE SKIP LOCKED`` (SQLite:
the IMMEDIATE transaction serializes writers instead), so concurrent ticks never act twice on a
pod; per-pod stops re-check everything and move the pod with compare-and-set transitions.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.db import connection, transaction
from django.db.models import Count, DurationField, F, FloatField, Func, Max, Min, Q, Value
from django.db.models.functions import Coalesce
from django.urls import reverse

from providers.adapters.base import REMOTE_STOPPED, REMOTE_TERMINATED, NotFound, NotSupported, ProviderError
from providers.services import adapter_for
from provisioner import clock
from workloads.lifecycle.services import pod_event, pod_terminate, pod_transition
from workloads.models import Pod, PodEvent, PodState, UtilizationSample

logger = logging.getLogger(__name__)

IDLE_REASON = "idle"
BULK_CHUNK = 5000


def stale_minutes() -> int:
    """No sample for this long means "no telemetry" (agent posts every 30 s, providers every 60 s)."""
    return settings.IDLE_TELEMETRY_STALE_MINUTES


def max_gap() -> timedelta:
    """The longest hole in a GPU's telemetry that still counts as covered (3 missed polls)."""
    return timedelta(seconds=settings.IDLE_MAX_GAP_SECONDS)


def delete_after_default_minutes() -> int:
    return settings.IDLE_DELETE_AFTER_STOPPED_DEFAULT_MINUTES


class Epoch(Func):
    """A timestamp as float seconds since 1970 (PostgreSQL and SQLite)."""

    output_field = FloatField()
    template = "EXTRACT(EPOCH FROM %(expressions)s)::float8"

    def as_sqlite(self, compiler, conn, **extra):
        return super().as_sql(compiler, conn, template="((julianday(%(expressions)s) - 2440587.5) * 86400.0)", **extra)


class Minutes(Func):
    """An integer column of minutes as a duration, on PostgreSQL and SQLite alike."""

    output_field = DurationField()
    template = "make_interval(mins => %(expressions)s)"

    def as_sqlite(self, compiler, conn, **extra):
        # Django stores SQLite durations as integer microseconds
        return super().as_sql(compiler, conn, template="(%(expressions)s * 60000000)", **extra)


# --- judging --------------------------------------------------------------------------------


@dataclass
class GpuWindow:
    """One GPU's samples inside the window, aggregated by the database."""

    gpu_index: int
    max_util: float
    first_ts: float  # epoch seconds: the tick loads 10,000s of these, floats are far cheaper than datetimes
    last_ts: float
    samples: int
    max_gap_s: float | None  # longest gap between this GPU's consecutive samples (None: first ever)


@dataclass
class Verdict:
    pod_id: str
    idle: bool
    reason: str  # idle | busy | no_telemetry | collecting | gaps | off
    window_start: datetime
    window_end: datetime
    threshold: int
    window_minutes: int
    max_util: float | None = None
    samples: int = 0
    last_sample_ts: float | None = None
    telemetry_missing: bool = False
    gpus: list[int] = field(default_factory=list)

    @property
    def last_sample_at(self) -> datetime | None:
        return None if self.last_sample_ts is None else datetime.fromtimestamp(self.last_sample_ts, UTC)

    def evidence(self) -> dict[str, Any]:
        """What the decision rests on, stored in the pod's events."""
        return {"window_start": self.window_start.isoformat(), "window_end": self.window_end.isoformat(),
                "window_minutes": self.window_minutes, "threshold_pct": self.threshold,
                "max_util_pct": self.max_util, "samples": self.samples, "gpus": self.gpus, "verdict": self.reason}

    def summary(self) -> str:
        return (f"every GPU below {self.threshold} % for {self.window_minutes} min "
                f"(max {self.max_util:.1f} % over {self.samples} samples, "
                f"{self.window_start:%H:%M}–{self.window_end:%H:%M} UTC)")


def judge(*, pod_id: str, gpu_count: int, window_minutes: int, threshold: int, gpus: list[GpuWindow],
          now: datetime, stale_s: float | None = None, max_gap_s: float | None = None) -> Verdict:
    """Apply the idle rule to one pod's window aggregates (pure: no database).

    ``stale_s`` / ``max_gap_s`` default to the settings; the reaper passes them once per tick.
    """
    now_ts = now.timestamp()
    window_s = window_minutes * 60.0
    v = Verdict(pod_id=pod_id, idle=False, reason="no_telemetry", window_start=now - timedelta(minutes=window_minutes),
                window_end=now, threshold=threshold, window_minutes=window_minutes)
    if gpus:
        v.max_util = max(g.max_util for g in gpus)
        v.samples = sum(g.samples for g in gpus)
        v.last_sample_ts = max(g.last_ts for g in gpus)
        v.gpus = sorted(g.gpu_index for g in gpus)
    stale = min(stale_minutes() * 60.0 if stale_s is None else stale_s, window_s)
    v.telemetry_missing = v.last_sample_ts is None or v.last_sample_ts < now_ts - stale
    if v.max_util is not None and v.max_util >= threshold:
        v.reason = "busy"  # one sample at or above the threshold, on any GPU, keeps it running
        return v
    if v.telemetry_missing:
        return v
    hole = max_gap().total_seconds() if max_gap_s is None else max_gap_s
    by_gpu = {g.gpu_index: g for g in gpus}
    window_start_ts = now_ts - window_s
    for index in sorted(set(range(max(1, gpu_count))) | set(by_gpu)):
        g = by_gpu.get(index)
        if g is None or now_ts - g.last_ts > hole:
            v.reason = "gaps"  # a GPU we cannot see (now) may be the busy one
            return v
        if g.first_ts - window_start_ts > hole:
            v.reason = "collecting"  # telemetry does not reach back over the whole window yet
            return v
        if g.max_gap_s is not None and g.max_gap_s > hole:
            v.reason = "gaps"
            return v
    v.idle, v.reason = True, "idle"
    return v


def window_aggregates(pod_filter: Q, *, now: datetime, max_window_minutes: int | None = None) -> dict[str, list[GpuWindow]]:
    """One grouped query: per pod and GPU, the max utilization, first/last sample time, sample count
    and longest gap inside that pod's own window (``now - workload.idle_window_minutes``).
    Plain MAX/MIN/COUNT: PostgreSQL hash-aggregates it in one pass."""
    qs = UtilizationSample.objects.filter(pod_filter, at__lte=now,
                                          at__gte=Value(now) - Minutes(F("pod__workload__idle_window_minutes")))
    if max_window_minutes:
        # the same bound as a constant lets the planner range-scan the ``at`` index
        qs = qs.filter(at__gte=now - timedelta(minutes=max_window_minutes))
    rows = (qs.values("pod_id", "gpu_index").order_by()
            .annotate(mx=Max("util_pct"), first=Epoch(Min("at")), last=Epoch(Max("at")), n=Count("id"),
                      gap=Max("gap_s")))
    out: dict[str, list[GpuWindow]] = defaultdict(list)
    for r in rows:
        out[str(r["pod_id"])].append(GpuWindow(r["gpu_index"], r["mx"], r["first"], r["last"], r["n"], r["gap"]))
    return out


def pod_verdict(pod: Pod, *, now: datetime | None = None) -> Verdict:
    """The idle verdict for one pod (the per-pod stop re-checks with this; the pod page shows it)."""
    now = now or clock.now()
    w = pod.workload
    aggs = window_aggregates(Q(pod_id=pod.pk), now=now)
    return judge(pod_id=str(pod.pk), gpu_count=pod.gpu_count, window_minutes=w.idle_window_minutes,
                 threshold=w.idle_threshold_pct, gpus=aggs.get(str(pod.pk), []), now=now)


# --- the reaper tick ------------------------------------------------------------------------


@dataclass
class ReapResult:
    evaluated: int = 0
    warned: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    telemetry_warned: list[str] = field(default_factory=list)
    telemetry_restored: list[str] = field(default_factory=list)
    to_stop: list[str] = field(default_factory=list)  # grace over: the caller dispatches idle_stop
    to_delete: list[str] = field(default_factory=list)  # stopped long enough: dispatch idle_delete


_CANDIDATE_FIELDS = ("id", "tenant_id", "gpu_count", "workload__idle_enabled", "workload__idle_threshold_pct",
                     "workload__idle_window_minutes", "workload__idle_grace_minutes")
_CANDIDATE_TIMES = {"started_ts": Epoch("started_at"), "warned_ts": Epoch("idle_warning_at"),
                    "telemetry_warned_ts": Epoch("telemetry_warned_at")}


def _chunks(ids: list, size: int = BULK_CHUNK):
    for i in range(0, len(ids), size):
        yield ids[i:i + size]


def idle_reap() -> ReapResult:
    """One reaper tick over every running pod. Constant query count; safe to run concurrently.

    Warnings, cancellations and telemetry flags are written here in bulk; stops and deletes are
    returned for per-pod tasks, because they call the provider (never under a database lock), and
    the warning emails for a task of their own (``idle_warnings_notify``).
    """
    now = clock.now()
    now_ts = now.timestamp()
    result = ReapResult()
    events: list[PodEvent] = []
    stale = stale_minutes()
    hole_s = max_gap().total_seconds()
    with transaction.atomic():
        qs = Pod.objects.filter(state=PodState.RUNNING).filter(
            Q(workload__idle_enabled=True) | Q(idle_warning_at__isnull=False) | Q(telemetry_warned_at__isnull=False))
        if connection.features.has_select_for_update_skip_locked:
            qs = qs.select_for_update(skip_locked=True, of=("self",))
        pods = list(qs.order_by().values(*_CANDIDATE_FIELDS, **_CANDIDATE_TIMES))
        result.evaluated = len(pods)
        enabled = [p for p in pods if p["workload__idle_enabled"]]
        aggs = window_aggregates(Q(pod__state=PodState.RUNNING, pod__workload__idle_enabled=True), now=now,
                                 max_window_minutes=max((p["workload__idle_window_minutes"] for p in enabled), default=0))

        def event(p: dict[str, Any], kind: str, message: str, **data: Any) -> None:
            events.append(PodEvent(pod_id=p["id"], tenant_id=p["tenant_id"], at=now, kind=kind, message=message[:500], data=data))

        for p in pods:
            pid = str(p["id"])
            warned_ts, flagged = p["warned_ts"], p["telemetry_warned_ts"] is not None
            if not p["workload__idle_enabled"]:  # policy switched off meanwhile: drop its warnings
                if warned_ts is not None:
                    result.cancelled.append(pid)
                    event(p, "idle", "Auto-shutdown is off for this workload: idle shutdown cancelled")
                if flagged:
                    result.telemetry_restored.append(pid)
                continue
            gpus = aggs.get(pid, [])
            if (warned_ts is None and not flagged and gpus
                    and max(g.max_util for g in gpus) >= p["workload__idle_threshold_pct"]):
                continue  # busy, nothing pending: the common case needs no verdict at all
            v = judge(pod_id=pid, gpu_count=p["gpu_count"], window_minutes=p["workload__idle_window_minutes"],
                      threshold=p["workload__idle_threshold_pct"], gpus=gpus, now=now,
                      stale_s=stale * 60.0, max_gap_s=hole_s)
            started_ts = now_ts if p["started_ts"] is None else p["started_ts"]
            if v.telemetry_missing and started_ts <= now_ts - stale * 60 and not flagged:
                result.telemetry_warned.append(pid)
                last = v.last_sample_at
                event(p, "telemetry", f"No GPU telemetry for {stale} min: auto-shutdown cannot judge this pod "
                      "and will not stop it", last_sample_at=last.isoformat() if last else None)
            elif not v.telemetry_missing and flagged:
                result.telemetry_restored.append(pid)
                event(p, "telemetry", "GPU telemetry is back")
            if warned_ts is None:
                if v.idle:
                    grace = p["workload__idle_grace_minutes"]
                    result.warned.append(pid)
                    event(p, "idle", f"Idle: {v.summary()}. Stopping in {grace} min unless a GPU gets busy",
                          stop_at=(now + timedelta(minutes=grace)).isoformat(), **v.evidence())
            elif not v.idle:
                result.cancelled.append(pid)
                why = ("GPU activity again" if v.reason == "busy" else "GPU telemetry incomplete")
                event(p, "idle", f"{why}: idle shutdown cancelled", **v.evidence())
            elif now_ts >= warned_ts + p["workload__idle_grace_minutes"] * 60:
                result.to_stop.append(pid)

        running = Q(state=PodState.RUNNING)
        for ids in _chunks(result.warned):
            Pod.objects.filter(running, pk__in=ids, idle_warning_at__isnull=True).update(idle_warning_at=now)
        for ids in _chunks(result.cancelled):
            Pod.objects.filter(pk__in=ids).update(idle_warning_at=None)
        for ids in _chunks(result.telemetry_warned):
            Pod.objects.filter(pk__in=ids).update(telemetry_warned_at=now)
        for ids in _chunks(result.telemetry_restored):
            Pod.objects.filter(pk__in=ids).update(telemetry_warned_at=None)
        PodEvent.objects.bulk_create(events)  # one INSERT on PostgreSQL (UNNEST), batched on SQLite

    result.to_delete = [str(pk) for pk in Pod.objects.filter(
        state=PodState.STOPPED, state_reason=IDLE_REASON,
        stopped_at__lte=Value(now) - Minutes(Coalesce(F("workload__idle_delete_after_stopped_minutes"),
                                                      Value(delete_after_default_minutes()))),
    ).values_list("pk", flat=True)]
    return result


def idle_warnings_notify(*, pod_ids: list[str]) -> int:
    """Email each warned pod's owner, with the evidence and the way out (one SMTP connection).

    Runs as its own task after the tick (building mail is slow and must not hold the reaper's
    locks). Mail trouble is logged, never raised. Returns the number of emails sent.
    """
    pods = list(Pod.objects.filter(pk__in=pod_ids, state=PodState.RUNNING, idle_warning_at__isnull=False)
                .select_related("workload", "workload__owner"))
    notes = {e.pod_id: e.message for e in PodEvent.objects.filter(pod_id__in=[p.pk for p in pods], kind="idle")
             .order_by("at", "id")}  # the latest idle event per pod wins
    base = settings.PUBLIC_BASE_URL.rstrip("/")
    messages = []
    for pod in pods:
        owner = pod.workload.owner
        if owner is None or not owner.email:
            continue
        grace = pod.workload.idle_grace_minutes
        url = base + reverse("workloads:pod_detail", args=[pod.pk])
        messages.append(EmailMessage(
            subject=f"Pod {pod.workload.name} is idle and stops in {grace} min",
            body=(f"Your pod {pod.workload.name} ({str(pod.pk)[:8]}) looks idle.\n{notes.get(pod.pk, '')}\n\n"
                  f"It will be stopped in {grace} minutes. Any GPU activity before then cancels the shutdown.\n\n{url}\n"),
            to=[owner.email],
        ))
    if not messages:
        return 0
    try:
        return get_connection(fail_silently=False).send_messages(messages) or 0
    except Exception:
        logger.exception("could not send %d idle warning email(s)", len(messages))
        return 0


# --- per-pod actions ------------------------------------------------------------------------


def idle_warning_cancel(*, pod: Pod, message: str, **data: Any) -> bool:
    """Withdraw a pending idle shutdown (compare-and-set; False when there was none)."""
    if not Pod.objects.filter(pk=pod.pk, idle_warning_at__isnull=False).update(idle_warning_at=None):
        return False
    pod.idle_warning_at = None
    pod_event(pod, "idle", message, **data)
    return True


def idle_stop(*, pod_id: str) -> Pod:
    """Stop (or terminate) an idle pod whose grace period is over, verified at the provider.

    Re-checks the verdict first: activity since the tick cancels. Safe to run twice: the
    running -> stopping compare-and-set lets one caller through.
    """
    pod = Pod.objects.select_related("workload", "provider_account").get(pk=pod_id)
    w = pod.workload
    now = clock.now()
    if pod.state != PodState.RUNNING or pod.idle_warning_at is None or not w.idle_enabled:
        return pod
    if now < pod.idle_warning_at + timedelta(minutes=w.idle_grace_minutes):
        return pod
    verdict = pod_verdict(pod, now=now)
    if not verdict.idle:
        idle_warning_cancel(pod=pod, message="GPU activity again: idle shutdown cancelled", **verdict.evidence())
        return pod
    if pod.provider_account is None or not pod.external_id:
        return pod
    warned_at = pod.idle_warning_at
    if not pod_transition(pod, PodState.STOPPING, f"Stopping: idle — {verdict.summary()}", expect=(PodState.RUNNING,),
                          fields={"state_reason": IDLE_REASON, "idle_warning_at": None}, reason=IDLE_REASON,
                          **verdict.evidence()):
        return pod
    adapter = adapter_for(pod.provider_account)
    keep_disk = adapter.info.can_stop and w.idle_delete_after_stopped_minutes != 0
    try:
        if keep_disk:
            try:
                adapter.stop(pod.external_id)
            except NotSupported as exc:
                # e.g. EC2 refuses to stop a one-time spot instance: terminate it now, once,
                # instead of returning the pod to Running and asking again every tick while it bills
                keep_disk = False
                pod_event(pod, "state", "The provider cannot stop this instance"
                          + (f" ({exc.message})" if exc.message else "") + ": terminating it instead (disk not kept)",
                          code=getattr(exc, "code", ""))
        if not keep_disk:
            adapter.terminate(pod.external_id)
        try:
            remote_state = adapter.get(pod.external_id).state
        except NotFound:
            remote_state = REMOTE_TERMINATED
    except ProviderError as exc:
        # back to running with the warning kept: the next tick retries
        pod_transition(pod, PodState.RUNNING, f"Idle stop failed at the provider, will retry: {exc}",
                       expect=(PodState.STOPPING,), fields={"state_reason": "", "idle_warning_at": warned_at})
        return pod
    if remote_state == REMOTE_TERMINATED:
        pod_transition(pod, PodState.TERMINATED, "Terminated (idle); verified at the provider",
                       expect=(PodState.STOPPING,), fields={"state_reason": IDLE_REASON}, **verdict.evidence())
    elif remote_state == REMOTE_STOPPED:
        pod_transition(pod, PodState.STOPPED, "Stopped (idle); verified at the provider — disk kept",
                       expect=(PodState.STOPPING,), fields={"state_reason": IDLE_REASON}, **verdict.evidence())
    else:
        pod_event(pod, "state", f"Idle stop requested; the provider still reports {remote_state}, waiting for it")
    pod.refresh_from_db()
    return pod


def idle_delete(*, pod_id: str) -> Pod:
    """Terminate a pod that has stayed stopped (idle) past its delete timer."""
    pod = Pod.objects.select_related("workload").get(pk=pod_id)
    if pod.state != PodState.STOPPED or pod.state_reason != IDLE_REASON or pod.stopped_at is None:
        return pod
    minutes = pod.workload.idle_delete_after_stopped_minutes
    minutes = delete_after_default_minutes() if minutes is None else minutes
    if clock.now() < pod.stopped_at + timedelta(minutes=minutes):
        return pod
    return pod_terminate(pod_id=str(pod.pk), reason=f"idle: deleted after {_human_minutes(minutes)} stopped")


def _human_minutes(minutes: int) -> str:
    if minutes % 1440 == 0 and minutes >= 1440:
        return f"{minutes // 1440} d"
    if minutes % 60 == 0 and minutes >= 60:
        return f"{minutes // 60} h"
    return f"{minutes} min"


# --- reads for the pod page -----------------------------------------------------------------


@dataclass
class IdleStatus:
    """What the pod page says about auto-shutdown."""

    enabled: bool
    state: str  # off | not_running | waiting | no_telemetry | collecting | gaps | busy | idle | warning
    message: str
    threshold: int
    window_minutes: int
    stops_at: datetime | None = None
    minutes_left: int | None = None
    last_sample_at: datetime | None = None
    no_telemetry: bool = False
    waiting: bool = False  # running for less than the stale period and no sample yet


def pod_idle_status(pod: Pod, *, now: datetime | None = None) -> IdleStatus:
    """The idle countdown ("stops in 12 min at <5 % GPU") and the "no telemetry" warning.

    Two small queries: the window aggregate and the latest busy sample.
    """
    now = now or clock.now()
    w = pod.workload
    status = IdleStatus(enabled=w.idle_enabled, state="off", message="Auto-shutdown is off for this workload",
                        threshold=w.idle_threshold_pct, window_minutes=w.idle_window_minutes)
    last = UtilizationSample.objects.filter(pod_id=pod.pk).order_by("-at").values_list("at", flat=True).first()
    status.last_sample_at = last
    stale = timedelta(minutes=stale_minutes())
    # a pod that started less than the stale period ago has simply not reported yet: the README
    # promises the warning only after that long without samples
    waiting = pod.state == PodState.RUNNING and last is None and pod.started_at is not None and now - pod.started_at < stale
    status.waiting = waiting
    if pod.state == PodState.RUNNING:
        status.no_telemetry = not waiting and (last is None or last < now - stale)
    if pod.state == PodState.STOPPED and pod.state_reason == IDLE_REASON:
        status.state, status.message = "stopped", "Stopped by auto-shutdown (idle)"
        return status
    if not w.idle_enabled or pod.state != PodState.RUNNING:
        if w.idle_enabled:
            status.state, status.message = "not_running", "Auto-shutdown watches this pod while it runs"
        return status
    v = pod_verdict(pod, now=now)
    grace = timedelta(minutes=w.idle_grace_minutes)
    window = timedelta(minutes=w.idle_window_minutes)
    limit = f"at <{w.idle_threshold_pct} % GPU"
    if pod.idle_warning_at:
        status.state, status.stops_at = "warning", pod.idle_warning_at + grace
    elif waiting:
        status.state = "waiting"
        status.message = "Waiting for the first GPU reading: auto-shutdown starts watching when it arrives"
        return status
    elif v.telemetry_missing:
        status.state = "no_telemetry"
        status.message = ("No GPU telemetry yet" if last is None else
                          f"No GPU telemetry since {last:%H:%M} UTC") + ": auto-shutdown will not stop a pod it cannot see"
        return status
    elif v.idle:
        status.state, status.stops_at = "idle", now + grace
    else:
        busy_at = (UtilizationSample.objects.filter(pod_id=pod.pk, at__gte=now - window, at__lte=now,
                                                    util_pct__gte=w.idle_threshold_pct)
                   .order_by("-at").values_list("at", flat=True).first())
        status.state = v.reason
        if busy_at is not None and last is not None and busy_at >= last:
            status.message = (f"GPU busy now (max {v.max_util:.0f} %): stops after {w.idle_window_minutes} min {limit}")
            return status
        # below the threshold since the last busy sample, or since telemetry began in the window
        since = busy_at or _first_sample_at(pod, now - window) or now
        status.stops_at = since + window + grace
    status.minutes_left = max(0, math.ceil((status.stops_at - now).total_seconds() / 60))
    status.message = f"Stops in {status.minutes_left} min {limit}"
    if status.state == "warning":
        status.message += " — idle warning sent; any GPU activity cancels"
    elif status.state == "gaps":
        status.message += " if telemetry stays complete"
    return status


def _first_sample_at(pod: Pod, since: datetime) -> datetime | None:
    return (UtilizationSample.objects.filter(pod_id=pod.pk, at__gte=since)
            .order_by("at").values_list("at", flat=True).first())
