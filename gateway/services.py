"""Writes for the service gateway: the route of each workload and the readiness-checked cut-over.

``advance(workload)`` is the one step that moves a workload's backends along
(pending → ready → draining → gone, see ``models``) and then writes its route
(``sync_routes``). It runs after every pod change (``workloads.signals.pod_changed`` → the
``gateway.advance`` task), again when a probe or a drain is due (Celery countdown, never a
sleep in a web request), and from the periodic ``gateway.reconcile``, which also repopulates a
restarted gateway. Every step is idempotent; the clock is ``provisioner.clock``.
"""

from __future__ import annotations

import logging
import secrets
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils.text import slugify

from provisioner import clock
from workloads.models import LIVE_POD_STATES, Lifecycle, Pod, PodState, Workload

from .caddy import CaddyAdmin, GatewayError, base_config
from .models import Backend, ServiceEndpoint
from .readiness import Probe, check
from .routes import PREFIX, build_route, route_id

logger = logging.getLogger(__name__)

PROBE_INTERVAL_SECONDS = 1.0
ROUTED_LIFECYCLES = (Lifecycle.SERVICE, Lifecycle.SCHEDULED)


def enabled() -> bool:
    return bool(settings.GATEWAY_ADMIN_URL)


def admin() -> CaddyAdmin:
    return CaddyAdmin(settings.GATEWAY_ADMIN_URL, timeout=settings.GATEWAY_TIMEOUT_SECONDS)


def is_routed(workload: Workload) -> bool:
    """Services and scheduled (burst) workloads get a stable URL; jobs do not."""
    return workload.lifecycle in ROUTED_LIFECYCLES


def stable_url(endpoint: ServiceEndpoint) -> str:
    return f"{settings.GATEWAY_PUBLIC_URL.rstrip('/')}{PREFIX}{endpoint.slug}/"


def endpoint_for(workload: Workload) -> ServiceEndpoint:
    """The workload's endpoint, created on first use. Readiness and drain come from the
    workload's container spec (``readiness: {path, status, timeout_seconds, deadline_seconds}``,
    ``drain_seconds``; a recipe template may set them), else the defaults."""
    found = ServiceEndpoint.objects.filter(workload=workload).first()
    if found is not None:
        return found
    spec = workload.container_spec or {}
    ready = spec.get("readiness") if isinstance(spec.get("readiness"), dict) else {}
    fields: dict[str, Any] = {"slug": f"{slugify(workload.name)[:40].strip('-') or 'service'}-{str(workload.pk)[:8]}"}
    if ready.get("path"):
        fields["ready_path"] = str(ready["path"])[:200]
    for key, field, kind in (("status", "ready_status", int), ("timeout_seconds", "ready_timeout_seconds", float),
                             ("deadline_seconds", "ready_deadline_seconds", int)):
        if ready.get(key) is not None:
            fields[field] = kind(ready[key])
    if spec.get("drain_seconds") is not None:
        fields["drain_seconds"] = int(spec["drain_seconds"])
    endpoint, _ = ServiceEndpoint.objects.get_or_create(workload=workload, defaults=fields)
    return endpoint


def gateway_token(workload: Workload) -> str:
    """A private service's token (the workload's access token, shown on the pod page): created
    when the workload has none yet. Public services need none."""
    if workload.public_ingress:
        return ""
    if not workload.access_token:
        workload.access_token = secrets.token_urlsafe(24)
        workload.save(update_fields=["access_token"])
    return workload.access_token


def pod_address(pod: Pod, workload: Workload) -> str:
    """The pod's upstream URL: its URL for the workload's first HTTP port, else its endpoint."""
    conn = pod.connection or {}
    urls = conn.get("urls") or {}
    for port in workload.ports or []:
        if isinstance(port, dict) and port.get("protocol", "http") == "http" and str(port.get("port")) in urls:
            return str(urls[str(port["port"])])
    if urls:
        return str(next(iter(urls.values())))
    return str(conn.get("endpoint", ""))


# --- the route -------------------------------------------------------------------------------


def desired_route(workload: Workload, endpoint: ServiceEndpoint) -> dict[str, Any]:
    """Ready pods serve. When none is ready but some drain (the whole service scales down, a burst
    window ends), the draining ones keep answering until they are terminated: a drain stops new
    traffic only where it has somewhere else to go."""
    backends = Backend.objects.filter(workload=workload).exclude(address="")
    upstreams = list(backends.filter(state=Backend.State.READY).values_list("address", flat=True))
    if not upstreams:
        upstreams = list(backends.filter(state=Backend.State.DRAINING).values_list("address", flat=True))
    return build_route(endpoint.slug, upstreams, gateway_token(workload))


def gateway_config() -> dict[str, Any]:
    """The base config from the settings (``manage.py rungateway`` starts Caddy with it)."""
    admin_host = urlsplit(settings.GATEWAY_ADMIN_URL).netloc
    listen = settings.GATEWAY_ADMIN_LISTEN
    loopback = listen.startswith(("127.", "localhost", "[::1]"))
    return base_config(settings.GATEWAY_LISTEN, listen, None if loopback or not admin_host else [admin_host])


def ensure_layout(gw: CaddyAdmin) -> bool:
    """Load the base config into a fresh (or restarted) gateway. True when it was loaded."""
    if gw.has_layout():
        return False
    gw.load(gateway_config())
    return True


def sync_routes(workload: Workload) -> bool:
    """Write the workload's route from its ready backends. Idempotent: an unchanged route is not
    written. A writer that raced another re-reads the database after its write and writes again
    if the route it wrote is already stale, so the last writer leaves the current route."""
    if not enabled():
        return False
    endpoint = endpoint_for(workload)
    changed = False
    with admin() as gw:
        for _ in range(3):
            route = desired_route(workload, endpoint)
            try:
                changed |= gw.put_route(route)
            except GatewayError:
                if not ensure_layout(gw):
                    raise
                changed |= gw.put_route(route)
            if desired_route(workload, endpoint) == route:
                break
    ServiceEndpoint.objects.filter(pk=endpoint.pk).update(pushed=route, pushed_at=clock.now())
    return changed


def route_remove(workload: Workload) -> bool:
    endpoint = ServiceEndpoint.objects.filter(workload=workload).first()
    if endpoint is None or not enabled():
        return False
    with admin() as gw:
        return gw.delete_route(route_id(endpoint.slug))


# --- the cut-over ----------------------------------------------------------------------------


def _event(pod: Pod, message: str, **data: Any) -> None:
    from workloads.lifecycle.transitions import pod_event

    pod_event(pod, "gateway", message, **data)


def _track_running(workload: Workload, endpoint: ServiceEndpoint, now) -> None:
    """Running pods get a backend (pending); backends whose pod no longer runs leave."""
    running = list(workload.pods.filter(state=PodState.RUNNING))
    known = set(Backend.objects.filter(workload=workload).values_list("pod_id", flat=True))
    for pod in running:
        address = pod_address(pod, workload)
        if pod.pk not in known:
            Backend.objects.get_or_create(pod=pod, defaults={
                "workload": workload, "address": address,
                "deadline_at": now + timedelta(seconds=endpoint.ready_deadline_seconds)})
        else:
            Backend.objects.filter(pod=pod).exclude(address=address).exclude(state=Backend.State.GONE).update(
                address=address)
    Backend.objects.filter(workload=workload).exclude(state=Backend.State.GONE).exclude(
        pod_id__in=[p.pk for p in running]).update(state=Backend.State.GONE)


def _probe_pending(workload: Workload, endpoint: ServiceEndpoint, now) -> None:
    probe = Probe(path=endpoint.ready_path, status=endpoint.ready_status, timeout=endpoint.ready_timeout_seconds)
    for backend in Backend.objects.filter(workload=workload, state=Backend.State.PENDING).select_related("pod"):
        ready, seen = check(backend.address, probe)
        if ready:
            if Backend.objects.filter(pk=backend.pk, state=Backend.State.PENDING).update(
                    state=Backend.State.READY, ready_at=now, last_check=seen[:300], checks=backend.checks + 1):
                _event(backend.pod, f"Ready ({seen}); joined the route of {stable_url(endpoint)}")
            continue
        Backend.objects.filter(pk=backend.pk).update(last_check=seen[:300], checks=backend.checks + 1)
        if backend.deadline_at and now >= backend.deadline_at:
            _not_ready_in_time(backend, endpoint, seen)


def _not_ready_in_time(backend: Backend, endpoint: ServiceEndpoint, seen: str) -> None:
    """Past its deadline: a replacement whose old pod still serves is rolled back (terminated;
    the old pod keeps serving); any other pod keeps being probed, said once."""
    from workloads.lifecycle.services import pod_terminate

    pod = backend.pod
    old = Pod.objects.filter(pk=pod.replaces_id, state=PodState.RUNNING).first() if pod.replaces_id else None
    limit = endpoint.ready_deadline_seconds
    if old is None:
        if backend.checks and not backend.last_check.startswith("late: "):
            Backend.objects.filter(pk=backend.pk).update(last_check=f"late: {seen}"[:300])
            _event(pod, f"Not ready {limit} s after it started ({seen}); still waiting, not in the route")
        return
    if not Backend.objects.filter(pk=backend.pk, state=Backend.State.PENDING).update(
            state=Backend.State.GONE, last_check=f"rolled back: {seen}"[:300]):
        return
    why = (pod.placement_override or {}).get("purpose") or "replacement"
    _event(pod, f"Rolled back: not ready {limit} s after it started ({seen}); pod {str(old.pk)[:8]} keeps serving",
           rolled_back=True, purpose=why)
    _event(old, f"The {why} to pod {str(pod.pk)[:8]} was rolled back: it never became ready within {limit} s; "
                "this pod keeps serving", rolled_back=True, purpose=why)
    pod_terminate(pod_id=str(pod.pk), reason=f"rolled back: not ready within {limit} s")


def _start_drains(workload: Workload, endpoint: ServiceEndpoint, now) -> None:
    """A ready replacement takes over: its old pod leaves the route and drains."""
    ready_new = Backend.objects.filter(workload=workload, state=Backend.State.READY, pod__replaces__isnull=False,
                                       pod__replaces__state=PodState.RUNNING).select_related("pod")
    for new in ready_new:
        old_id = new.pod.replaces_id
        purpose = (new.pod.placement_override or {}).get("purpose") or "replacement"
        old_backend, _ = Backend.objects.get_or_create(pod_id=old_id, defaults={"workload": workload,
                                                                                "state": Backend.State.READY})
        if old_backend.state in (Backend.State.DRAINING, Backend.State.GONE) and old_backend.drain_until:
            continue
        until = now + timedelta(seconds=endpoint.drain_seconds)
        if Backend.objects.filter(pk=old_backend.pk).exclude(state=Backend.State.DRAINING).update(
                state=Backend.State.DRAINING, drain_until=until, retire_reason=f"{purpose}: {str(new.pod_id)[:8]}"):
            old = Pod.objects.get(pk=old_id)
            _event(old, f"Replacement {str(new.pod_id)[:8]} is ready: left the route, draining "
                        f"{endpoint.drain_seconds} s before it is terminated")


def drain_then_terminate(*, pod_id: str, reason: str) -> bool:
    """Scale-down of one pod (a burst window's end): out of the route first, terminated after the
    drain (``_finish_drains``). False when the gateway does not serve the pod (the caller
    terminates it at once)."""
    pod = Pod.objects.select_related("workload").get(pk=pod_id)
    if not enabled() or not Backend.objects.filter(pod=pod, state=Backend.State.READY).exists():
        return False
    endpoint = endpoint_for(pod.workload)
    Backend.objects.filter(pod=pod, state=Backend.State.READY).update(
        state=Backend.State.DRAINING, drain_until=clock.now() + timedelta(seconds=endpoint.drain_seconds),
        retire_reason=reason[:200])
    _event(pod, f"Left the route, draining {endpoint.drain_seconds} s before it is terminated ({reason})")
    schedule_advance(pod.workload, advance(pod.workload))
    return True


def _finish_drains(workload: Workload, now) -> None:
    """Drains that are over: the pods leave the route (written first, so no request is sent to a
    pod being terminated), then are terminated, verified."""
    from workloads.lifecycle.services import pod_terminate
    from workloads.placement.move import RETIRING, move_finish

    done = list(Backend.objects.filter(workload=workload, state=Backend.State.DRAINING, drain_until__lte=now)
                .select_related("pod"))
    if not done:
        return
    Backend.objects.filter(pk__in=[b.pk for b in done]).update(state=Backend.State.GONE)
    try:
        sync_routes(workload)
    except GatewayError as exc:
        logger.warning("gateway route of %s not written before a retirement: %s", workload.pk, exc)
    for backend in done:
        pod = backend.pod
        if pod.state not in (*LIVE_POD_STATES, PodState.STOPPED):
            continue
        new = Pod.objects.filter(replaces=pod, state=PodState.RUNNING).order_by("-requested_at").first()
        if new is not None and (new.placement_override or {}).get("purpose") in RETIRING:
            move_finish(new_pod_id=str(new.pk))  # a move adopts its pins; terminates (verified)
        else:
            pod_terminate(pod_id=str(pod.pk), reason=f"drained after {backend.retire_reason or 'scale-down'}")


def advance(workload: Workload) -> float | None:
    """One step of the workload's cut-over, then its route. Returns the seconds until the next
    step is due (a probe or a drain), or None when nothing waits."""
    if not is_routed(workload):
        return None
    now = clock.now()
    endpoint = endpoint_for(workload)
    _track_running(workload, endpoint, now)
    _probe_pending(workload, endpoint, now)
    _start_drains(workload, endpoint, now)
    _finish_drains(workload, now)
    _track_running(workload, endpoint, now)  # pods the steps above terminated leave at once
    try:
        sync_routes(workload)
    except GatewayError as exc:
        logger.warning("gateway route of %s not written: %s", endpoint.slug, exc)
    waits = []
    if Backend.objects.filter(workload=workload, state=Backend.State.PENDING).exists():
        waits.append(PROBE_INTERVAL_SECONDS)
    nxt = (Backend.objects.filter(workload=workload, state=Backend.State.DRAINING)
           .order_by("drain_until").values_list("drain_until", flat=True).first())
    if nxt is not None:
        waits.append(max(0.05, (nxt - now).total_seconds()))
    return min(waits) if waits else None


def schedule_advance(workload: Workload, delay: float | None) -> None:
    """Run ``advance`` again after ``delay`` seconds (a Celery countdown). Eager Celery (tests)
    ignores countdowns, so nothing is scheduled there: tests step the clock and call ``advance``."""
    if delay is None or settings.CELERY_TASK_ALWAYS_EAGER:
        return
    from django.core.cache import cache

    from .tasks import advance_workload

    # one step per workload per second: the reconcile, pod changes and the steps themselves all
    # schedule the next one, and their chains merge here instead of multiplying
    due = int(time.time() + delay)
    if cache.add(f"gateway-advance-{workload.pk}-{due}", 1, timeout=int(delay) + 5):
        advance_workload.apply_async((str(workload.pk),), countdown=delay)


def may_retire(*, new: Pod, old: Pod) -> bool:
    """Whether the old pod of a move may be terminated now: without a gateway, as soon as the new
    pod runs; with one, only once the new pod passed its readiness check and the old one drained."""
    if not enabled() or not is_routed(new.workload):
        return True
    if not Backend.objects.filter(pod=new, state=Backend.State.READY).exists():
        return False
    old_backend = Backend.objects.filter(pod=old).first()
    if old_backend is None or old_backend.state == Backend.State.GONE:
        return True
    return old_backend.state == Backend.State.DRAINING and old_backend.drain_until <= clock.now()


def reconcile() -> dict[str, int]:
    """The periodic pass: the gateway's layout (a restarted gateway is empty), every routed
    workload advanced and its route rewritten, routes of workloads that ended removed."""
    if not enabled():
        return {"workloads": 0, "removed": 0}
    with admin() as gw:
        ensure_layout(gw)
        present = set(gw.route_ids())
    active = list(Workload.objects.filter(lifecycle__in=ROUTED_LIFECYCLES, state=Workload.State.ACTIVE))
    keep = set()
    for workload in active:
        schedule_advance(workload, advance(workload))
        keep.add(route_id(endpoint_for(workload).slug))
    removed = 0
    with admin() as gw:
        for stale in present - keep:
            removed += gw.delete_route(stale)
    Backend.objects.exclude(workload__in=active).exclude(state=Backend.State.GONE).update(state=Backend.State.GONE)
    return {"workloads": len(active), "removed": removed}


def cutover_settings_save(*, workload: Workload, form) -> ServiceEndpoint:
    """Save the workload's readiness check and drain (a validated ``CutoverForm``), audited."""
    from tenants.audit import audit_record

    endpoint = form.save()
    audit_record(tenant=workload.tenant_id, action="workload.cutover_changed", target=workload,
                 details={f: form.cleaned_data[f] for f in form.Meta.fields})
    return endpoint
