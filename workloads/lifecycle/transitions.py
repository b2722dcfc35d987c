"""Compare-and-set state changes of pods and workloads, each recorded as an event.

Every change is an ``UPDATE ... WHERE state IN (expected)``: a task that runs twice, or two
workers racing (sync vs. reconcile vs. a user's terminate), cannot both act on the same pod.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from provisioner import clock
from provisioner.logfilter import redact
from workloads.models import FINAL_POD_STATES, LIVE_POD_STATES, Lifecycle, Pod, PodEvent, PodState, Workload
from workloads.signals import pod_changed

_TIMESTAMP_FOR = {
    PodState.PROVISIONING: "provisioning_at",
    PodState.RUNNING: "started_at",
    PodState.STOPPED: "stopped_at",
    PodState.TERMINATED: "ended_at",
    PodState.FAILED: "ended_at",
    PodState.INTERRUPTED: "ended_at",
}


# a running session ends when the pod stops or ends (STOPPING is still billed: the provider
# charges until the instance is actually stopped)
_SESSION_ENDS = (PodState.STOPPED, *FINAL_POD_STATES)


def _sessions_after(sessions: list, new_state: str, now) -> list:
    """The pod's running sessions once it moves to ``new_state`` at ``now``."""
    sessions = [list(s) for s in sessions]
    is_open = bool(sessions) and sessions[-1][1] is None
    if new_state == PodState.RUNNING and not is_open:
        sessions.append([now.isoformat(), None])
    elif new_state in _SESSION_ENDS and is_open:
        sessions[-1][1] = now.isoformat()
    return sessions


def pod_event(pod: Pod, kind: str, message: str, **data: Any) -> PodEvent:
    """Record one decision or transition about a pod, in words a user understands. Provider
    errors quoted here are shown on the pod page: secrets are scrubbed before saving."""
    data = {k: redact(v) if isinstance(v, str) else v for k, v in data.items()}
    return PodEvent.objects.create(pod=pod, tenant_id=pod.tenant_id, at=clock.now(), kind=kind,
                                   message=redact(message)[:500], data=data)


def pod_transition(pod: Pod, new_state: str, message: str, *, expect: tuple[str, ...] | None = None,
                   fields: dict[str, Any] | None = None, **data: Any) -> bool:
    """Move ``pod`` to ``new_state`` if it is still in one of ``expect`` (compare-and-set).

    Returns False (and changes nothing) when another actor moved it first.
    """
    now = clock.now()
    updates: dict[str, Any] = {"state": new_state, "updated_at": now, **(fields or {})}
    if isinstance(updates.get("state_reason"), str):
        updates["state_reason"] = redact(updates["state_reason"])[:300]
    ts = _TIMESTAMP_FOR.get(new_state)
    if ts and (not getattr(pod, ts) or new_state == PodState.STOPPED):  # stopped_at: the latest stop
        updates.setdefault(ts, now)
    if new_state in FINAL_POD_STATES:
        updates["agent_token_hash"] = ""  # the agent's token dies with the pod
    with transaction.atomic():
        qs = Pod.objects.filter(pk=pod.pk)
        if expect is not None:
            qs = qs.filter(state__in=expect)
        if new_state == PodState.RUNNING or new_state in _SESSION_ENDS:
            # the sessions are read and written under the row lock: two transitions cannot
            # interleave their read-modify-write
            locked = qs.select_for_update().values_list("run_sessions", flat=True).first()
            if locked is None:
                return False
            # a caller that backdates the start (billed from delivery) backdates the session
            # ... and a caller that knows the provider's actual end (a notice's deadline) ends it there
            at = updates.get("started_at", now) if new_state == PodState.RUNNING else updates.get(ts or "", now)
            updates["run_sessions"] = _sessions_after(locked or [], new_state, at)
        if not qs.update(**updates):
            return False
        for k, v in updates.items():
            setattr(pod, k, v)
        pod_event(pod, "state", message, state=new_state, **data)
        pod_id, workload_id = pod.pk, pod.workload_id
        transaction.on_commit(lambda: pod_changed.send(sender=Pod, pod_id=pod_id, workload_id=workload_id,
                                                       state=new_state))
    return True


# A job move (``workloads.placement.move``) marks the old pod's move events with where it stands.
JOB_MOVE_PENDING, JOB_MOVE_ENDED = "pending", "ended"


def job_move_pending(pod: Pod) -> bool:
    """Is this ended job pod on its way to a new place? Then its end does not settle the
    workload as stopped: the move starts the job again there."""
    last = pod.events.filter(kind="move", data__has_key="job_move").order_by("-at", "-id").first()
    return last is not None and last.data.get("job_move") == JOB_MOVE_PENDING


def workload_settle(*, workload_id) -> str | None:
    """Once a job or service has no live pod left, give the workload its final state and the
    reason in words. Scheduled workloads stay active between runs. Returns the new state."""
    workload = Workload.objects.get(pk=workload_id)
    if workload.state != Workload.State.ACTIVE or workload.lifecycle == Lifecycle.SCHEDULED:
        return None
    pods = workload.pods.all()
    if pods.filter(state__in=(*LIVE_POD_STATES, PodState.STOPPED)).exists():
        return None
    last = pods.order_by("-requested_at", "-id").first()
    if last is None:
        return None
    if (workload.lifecycle == Lifecycle.JOB and last.state == PodState.TERMINATED and last.exit_code is None
            and job_move_pending(last)):
        return None  # stopped to move: the move starts it again at the new place
    if last.state == PodState.FAILED:
        state, reason = Workload.State.FAILED, last.state_reason or "the pod failed"
    elif last.state == PodState.INTERRUPTED:
        state, reason = Workload.State.FAILED, "interrupted by the provider; restart on interruption is off"
    elif workload.lifecycle == Lifecycle.JOB and last.exit_code is not None:
        ok = last.exit_code == 0
        state = Workload.State.COMPLETED if ok else Workload.State.FAILED
        reason = f"job finished (exit {last.exit_code})"
    else:
        state, reason = Workload.State.STOPPED, last.state_reason or "terminated"
    done = Workload.objects.filter(pk=workload.pk, state=Workload.State.ACTIVE).update(
        state=state, state_reason=reason[:300], updated_at=clock.now())
    return state if done else None
