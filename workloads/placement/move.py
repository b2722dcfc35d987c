"""Move a running workload to another region, country or provider (data residency, cost).

A service never goes dark: the new pod is placed and launched beside the old one, and only
once it runs is the old pod terminated (and the termination verified). A job is stopped
(verified) and started again at the new place, in the worker (``workloads.move_job``): the web
request only enqueues, and the task waits for the provider to confirm the termination - many
confirm it only on a later read - re-scheduling itself with a countdown, within a bound, before
it starts the job there (``job_move_step``). Persistent data does not travel between
providers through any adapter we have, so a workload with persistent or network volumes is
moved only after the user confirmed a warning saying so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction

from providers.catalog import country_codes
from provisioner import clock
from provisioner.inputs import split_list
from workloads.lifecycle.services import pod_refresh, pod_request, pod_terminate
from workloads.lifecycle.transitions import JOB_MOVE_ENDED, JOB_MOVE_PENDING, pod_event, workload_settle
from workloads.models import LIVE_POD_STATES, Lifecycle, Pod, PodState, Workload
from workloads.signals import may_retire

from .engine import PlacementResult, placement_for, spec_for_workload

MOVE = "move"
RELAUNCH = "relaunch"  # a rolling relaunch: each pod replaced in place, the old one retired like a move's
RETIRING = (MOVE, RELAUNCH)
PERSISTENT_KINDS = ("persistent", "network")
# Seconds before each new look at a job move's old pod (its termination not yet confirmed by the
# provider): short first, then every minute, about 14 min in all. Beyond that the move ends
# without starting the job elsewhere (two copies of a job must not run) and says so.
JOB_MOVE_WAITS = (2, 3, 5, 10, 20, 30) + (60,) * 13


class MoveError(Exception):
    """The move cannot start; the message says why in words."""


class MoveNeedsConfirmation(MoveError):
    """Data on persistent volumes would not follow: the user must confirm first."""


@dataclass
class MoveTarget:
    countries: list[str] = field(default_factory=list)  # ISO codes or presets
    regions: list[str] = field(default_factory=list)
    provider_account_ids: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.countries or self.regions or self.provider_account_ids)

    def describe(self, names: dict[str, str] | None = None) -> str:
        parts = []
        if self.provider_account_ids:
            parts.append(", ".join((names or {}).get(a, a[:8]) for a in self.provider_account_ids))
        if self.countries:
            parts.append(", ".join(c.upper() for c in self.countries))
        if self.regions:
            parts.append(", ".join(self.regions))
        return " / ".join(parts) or "anywhere else"


def volume_warning(workload: Workload) -> str:
    """Why the data would not follow, or "" when there is nothing to lose."""
    vols = [v for v in (workload.volumes or []) if isinstance(v, dict) and v.get("kind") in PERSISTENT_KINDS]
    if not vols:
        return ""
    names = ", ".join(f"{v.get('mount_path') or v.get('name') or 'volume'} ({v.get('size_gb', '?')} GB {v.get('kind')})"
                      for v in vols)
    return (f"The data on {names} does not follow the move: providers cannot copy volumes between regions or "
            "providers, so the new pod starts with empty volumes. Copy anything you need first.")


def _override(workload: Workload, target: MoveTarget, running: list[Pod]) -> dict[str, Any]:
    return {
        "purpose": MOVE,
        "countries": list(target.countries) or list(workload.countries or []),
        "regions": list(target.regions),
        "provider_account_ids": [str(a) for a in target.provider_account_ids],
        "avoid": sorted({(str(p.provider_account_id), p.region) for p in running}),
    }


def move_preview(*, workload: Workload, target: MoveTarget) -> PlacementResult:
    """Where the move would land, and why (the same placement the move will run)."""
    running = list(workload.pods.filter(state=PodState.RUNNING))
    spec = spec_for_workload(workload, override=_override(workload, target, running))
    return placement_for(tenant_id=workload.tenant_id, project_id=workload.project_id, spec=spec, now=clock.now())


def workload_move(*, workload: Workload, target: MoveTarget, user=None, confirm_data_loss: bool = False,
                  enqueue: bool = True) -> list[Pod]:
    """Start moving every running pod of ``workload`` to ``target``. Returns the new pods.

    Service: new pods are requested beside the old ones; ``move_finish`` retires each old pod
    once its replacement runs. Job: the old pod is terminated (verified) first, by the
    ``workloads.move_job`` task sent after commit (returns the pods being moved); with
    ``enqueue=False`` (tests) one step runs inline and returns the new pods.
    """
    if target.empty:
        raise MoveError("Choose a country, region or provider to move to.")
    if workload.state != Workload.State.ACTIVE:
        raise MoveError(f"The workload is {workload.get_state_display().lower()}; only an active one can move.")
    warning = volume_warning(workload)
    if warning and not confirm_data_loss:
        raise MoveNeedsConfirmation(warning)
    with transaction.atomic():
        Workload.objects.select_for_update().filter(pk=workload.pk).first()
        running = list(workload.pods.filter(state=PodState.RUNNING).order_by("replica_index"))
        if not running:
            raise MoveError("Nothing is running to move.")
        if Pod.objects.filter(replaces__in=running, state__in=LIVE_POD_STATES).exists():
            raise MoveError("A move is already in progress.")
        preview = move_preview(workload=workload, target=target)
        if preview.chosen is None:
            raise MoveError(preview.refusal)
        override = _override(workload, target, running)
        who = f" by {user.username}" if user is not None else ""
        new_pods = []
        for old in running:
            if workload.lifecycle == Lifecycle.SERVICE:
                pod_event(old, "move", f"Move{who} to {target.describe()} started: this pod keeps serving until "
                                       "its replacement runs", data_loss_confirmed=bool(warning))
                new_pods.append(pod_request(workload=workload, replica_index=old.replica_index, enqueue=enqueue,
                                            replaces=old, placement_override=override))
            else:
                pod_event(old, "move", f"Move{who} to {target.describe()}: stopping this job to start it there",
                          job_move=JOB_MOVE_PENDING, override=override, where=target.describe())
                new_pods.append(old)
                if enqueue:
                    from workloads.lifecycle.tasks import move_job

                    args = (str(old.pk), override, target.describe())
                    transaction.on_commit(lambda args=args: move_job.delay(*args))
    if workload.lifecycle == Lifecycle.SERVICE or enqueue:
        return new_pods
    steps = [job_move_step(old_pod_id=str(old.pk), override=override, where=target.describe()) for old in new_pods]
    if any(step.new is None for step in steps):
        for old in new_pods:
            _job_move_ended(old, "Move ended: the provider has not confirmed this job's termination yet; "
                                 "try the move again shortly")
        raise MoveError("The job did not stop yet (termination unverified); try the move again shortly.")
    return [step.new for step in steps]


def _job_move_ended(old: Pod, message: str) -> None:
    """The move will not start the job elsewhere: say so, and let the workload settle as usual."""
    pod_event(old, "move", message, job_move=JOB_MOVE_ENDED)
    workload_settle(workload_id=old.workload_id)


@dataclass
class JobMoveStep:
    new: Pod | None = None  # the job, requested at the new place
    look_again_in: int | None = None  # seconds; None: nothing more to wait for


def job_move_step(*, old_pod_id: str, override: dict[str, Any], where: str, attempt: int = 0) -> JobMoveStep:
    """One step of a job move, in the worker: terminate the old pod (or look whether the provider
    confirmed it by now), and once the termination is verified request the job at the new place.
    Idempotent: a redelivered step finds the new pod it already requested."""
    old = Pod.objects.get(pk=old_pod_id)
    done = Pod.objects.filter(replaces=old, placement_override__purpose=MOVE).first()
    if done is not None:
        return JobMoveStep(new=done)
    reason = f"moved to {where}"
    if old.state in (*LIVE_POD_STATES, PodState.STOPPED):
        if attempt:
            old = pod_refresh(pod_id=old_pod_id)  # the provider may confirm on a later read
        if old.state in (*LIVE_POD_STATES, PodState.STOPPED):
            old = pod_terminate(pod_id=old_pod_id, reason=reason)  # sent again: a failed terminate is retried
    if old.state in (*LIVE_POD_STATES, PodState.STOPPED):
        if attempt < len(JOB_MOVE_WAITS):
            return JobMoveStep(look_again_in=JOB_MOVE_WAITS[attempt])
        waited = sum(JOB_MOVE_WAITS) // 60
        _job_move_ended(old, f"Move to {where} ended: the provider did not confirm this job's termination "
                             f"within {waited} min, so it is not started there (two copies must not run); "
                             "the periodic sync keeps checking this pod")
        return JobMoveStep()
    with transaction.atomic():
        # the workload stays active while its job moves (``job_move_pending``); stopped meanwhile
        # (the user pressed Stop) or a pod that failed instead of stopping: the move is off
        workload = Workload.objects.select_for_update().get(pk=old.workload_id)
        done = Pod.objects.filter(replaces=old, placement_override__purpose=MOVE).first()
        if done is not None:  # the safety net and a late task both got here: one new pod
            return JobMoveStep(new=done)
        if old.exit_code is not None:  # it finished on its own before it stopped: nothing to start again
            _job_move_ended(old, f"Move to {where} cancelled: the job finished (exit {old.exit_code}) before it stopped")
            return JobMoveStep()
        if old.state != PodState.TERMINATED or workload.state != Workload.State.ACTIVE:
            _job_move_ended(old, f"Move to {where} cancelled: the workload is {workload.get_state_display().lower()}"
                                 f" ({workload.state_reason or old.get_state_display().lower()})")
            return JobMoveStep()
        _adopt_pins(workload.pk, override)
        new = pod_request(workload=workload, replica_index=old.replica_index, replaces=old,
                          placement_override=override)
        pod_event(old, "move", f"Stopped (verified at the provider); the job starts again as pod {str(new.pk)[:8]} "
                               f"at {where}", job_move=JOB_MOVE_ENDED)
    return JobMoveStep(new=new)


def workload_roll(*, workload: Workload, user=None, enqueue: bool = True) -> list[Pod]:
    """Rolling relaunch of a running service: each running pod gets a replacement under the
    current declaration; ``move_finish`` retires each old pod once its replacement runs (behind the
    gateway: once it is ready and the old one drained), so the service keeps answering."""
    if workload.lifecycle != Lifecycle.SERVICE or workload.state != Workload.State.ACTIVE:
        raise MoveError("Only an active service relaunches pod by pod.")
    with transaction.atomic():
        Workload.objects.select_for_update().filter(pk=workload.pk).first()
        running = list(workload.pods.filter(state=PodState.RUNNING).order_by("replica_index"))
        if not running:
            raise MoveError("Nothing is running to relaunch.")
        if Pod.objects.filter(replaces__in=running, state__in=LIVE_POD_STATES).exists():
            raise MoveError("A move or relaunch is already in progress.")
        who = f" by {user.username}" if user is not None else ""
        new_pods = []
        for old in running:
            pod_event(old, "relaunch", f"Rolling relaunch{who}: this pod keeps serving until its replacement runs")
            new_pods.append(pod_request(workload=workload, replica_index=old.replica_index, enqueue=enqueue,
                                        replaces=old, placement_override={"purpose": RELAUNCH}))
    return new_pods


def move_finish(*, new_pod_id: str) -> Pod | None:
    """The new pod of a service move runs: terminate the old one, verified. Idempotent. With the
    service gateway on, this waits (returns None) until the new pod passed its readiness check and
    the old one left the route and drained; the gateway calls it again then."""
    new = Pod.objects.select_related("replaces", "provider_account").get(pk=new_pod_id)
    old = new.replaces
    purpose = (new.placement_override or {}).get("purpose")
    if old is None or new.state != PodState.RUNNING or purpose not in RETIRING:
        return None
    if old.state not in (*LIVE_POD_STATES, PodState.STOPPED):
        return old
    if not may_retire(new=new, old=old):  # the gateway: not before the new pod is ready and the old drained
        return None
    where = f"{new.provider_account.name} {new.region}" if new.provider_account else "the new place"
    if purpose == RELAUNCH:
        pod_event(old, "relaunch", f"Relaunched as {str(new.pk)[:8]} at {where}; retiring this pod")
        return pod_terminate(pod_id=str(old.pk), reason=f"relaunched as {str(new.pk)[:8]}")
    _adopt_pins(new.workload_id, new.placement_override)
    pod_event(old, "move", f"Replacement {str(new.pk)[:8]} runs at {where}; retiring this pod")
    return pod_terminate(pod_id=str(old.pk), reason=f"moved to {where}")


def _adopt_pins(workload_id, override: dict[str, Any]) -> None:
    """The residency follows the workload: later re-placements stay inside the new pin."""
    Workload.objects.filter(pk=workload_id).update(
        countries=[c.upper() for c in override.get("countries", [])], regions=list(override.get("regions", [])),
        updated_at=clock.now())


def move_failed(*, new_pod: Pod) -> None:
    """The replacement could not be placed or launched: the old pod keeps running."""
    old = new_pod.replaces
    if old is not None and old.state in LIVE_POD_STATES:
        pod_event(old, "move", f"Move failed: {new_pod.state_reason or 'the new pod did not start'}; "
                               "this pod keeps running")


def moves_pending() -> int:
    """Safety net for the periodic sync: finish moves whose new pod runs but old pod lives on
    (e.g. the terminate failed and must be retried), and job moves whose task was lost."""
    n = 0
    for new in Pod.objects.filter(state=PodState.RUNNING, replaces__state__in=(*LIVE_POD_STATES, PodState.STOPPED),
                                  placement_override__purpose__in=RETIRING):
        move_finish(new_pod_id=str(new.pk))
        n += 1
    return n + _job_moves_resume()


# A job move's task looks at the old pod at least once a minute: a job whose old pod is gone
# this long without the move starting it again lost its task (a worker died).
JOB_MOVE_LOST_AFTER = timedelta(seconds=2 * max(JOB_MOVE_WAITS))


def _job_moves_resume() -> int:
    """Active jobs with no live pod whose last pod ended in a pending move: run the move's last
    step (it starts the job at the new place). Cheap: such workloads exist only mid-move."""
    stale = clock.now() - JOB_MOVE_LOST_AFTER
    stuck = (Workload.objects.filter(lifecycle=Lifecycle.JOB, state=Workload.State.ACTIVE)
             .exclude(pods__state__in=(*LIVE_POD_STATES, PodState.STOPPED)).values_list("pk", flat=True))
    n = 0
    for workload_id in stuck:
        last = Pod.objects.filter(workload_id=workload_id).order_by("-requested_at", "-id").first()
        if last is None or last.state != PodState.TERMINATED or last.ended_at is None or last.ended_at > stale:
            continue
        marker = (last.events.filter(kind="move", data__has_key="job_move").order_by("-at", "-id").first())
        if marker is None or marker.data.get("job_move") != JOB_MOVE_PENDING or "override" not in marker.data:
            continue
        job_move_step(old_pod_id=str(last.pk), override=marker.data["override"], where=marker.data.get("where", ""),
                      attempt=len(JOB_MOVE_WAITS))
        n += 1
    return n


def target_from_params(params) -> MoveTarget:
    """A MoveTarget from a form's data (comma-separated countries/regions, account ids)."""
    accounts = params.getlist("provider_account") if hasattr(params, "getlist") else params.get("provider_account", [])
    return MoveTarget(countries=country_codes(params.get("countries", "")), regions=split_list(params.get("regions", "")),
                      provider_account_ids=[a for a in accounts if a])
