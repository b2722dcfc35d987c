#!/usr/bin/env python
"""Clients of a service through the gateway while its pods change (issue 20).

A real Caddy (``gateway.process``) on free loopback ports, Sandbox pods serving real HTTP on
their own loopback ports (``SANDBOX_HTTP``), the real wall clock. A client thread sends
``GET <stable URL>`` every 50 ms over one keep-alive connection while, in four cases, the pods
behind the URL change:

(a) a move to another country; (b) a spot interruption announced 20 s ahead, replaced (boot 5 s);
(c) a burst window: 3 replicas scale up from nothing, serve, and scale down at the window's end;
(d) a rolling relaunch of 2 replicas.

The control plane runs as deployed but in this process, with Celery eager: a loop every 0.25 s
runs the pod sync, the spot sync (notices), the supervisor (burst windows) and the gateway's
reconcile (readiness probes, drains, routes) — the worker and beat's periodic tasks, without a
broker. Readiness: the default TCP connect; drain: the default 10 s.

Per case, one JSON line: failed requests (HTTP status from the gateway other than 2xx, or no
answer) — target 0 — and the latency the gateway adds, two ways: ``p99_in_gateway_ms``, from
Caddy's own logs, its handling time of each answered request minus its upstream round trip (the
target, ≤ 5 ms: it does not move with this shared machine's load), and ``p99_added_ms``, seen by the
client: the case's p99 through the gateway minus the p99 of the same requests sent straight to the
pod that answered, right after (dominated by the machine's load when it is shared). A request
that meets a kept-alive connection the gateway closed at a reload is retried once on a new
connection, as browsers and Go's HTTP client do; such retries are counted, and a request failed
only if it got no 2xx after that. Case (c) counts the
requests from the first replica's readiness until its window's pods leave the route (after that
the service is, by design, not running: 503).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TICK_S = 0.25
EVERY_S = 0.05
P99_TARGET_MS = 5.0
REQUEST_LOG = "{tmp}/caddy-requests.log"
_log = {"path": "", "offset": 0}


def in_gateway_ms() -> list[float]:
    """Per answered request since the last call: Caddy's handling time minus its upstream round
    trip, read from Caddy's own logs (one keep-alive client: entries pair up by remote port)."""
    out: list[float] = []
    trips: dict[str, float] = {}
    if not os.path.exists(_log["path"]):
        return out
    with open(_log["path"]) as f:
        f.seek(_log["offset"])
        for line in f:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            port = str((entry.get("request") or {}).get("remote_port"))
            if entry.get("msg") == "upstream roundtrip":
                trips[port] = float(entry.get("duration", 0))
            elif entry.get("msg") == "handled request" and 200 <= int(entry.get("status", 0)) < 300 and port in trips:
                out.append((float(entry["duration"]) - trips.pop(port)) * 1000)
        _log["offset"] = f.tell()
    return out


def setup(tmp: str) -> tuple:
    from gateway.process import free_port

    admin, port = free_port(), free_port()
    os.environ.pop("DATABASE_URL", None)
    os.environ.update(
        SQLITE_PATH=f"{tmp}/bench.sqlite3", PROVISIONER_VAR_DIR=tmp, DJANGO_SETTINGS_MODULE="provisioner.settings",
        CELERY_TASK_ALWAYS_EAGER="1", SANDBOX_HTTP="1", GATEWAY_ADMIN_URL=f"http://127.0.0.1:{admin}",
        GATEWAY_LISTEN=f"127.0.0.1:{port}", LOG_LEVEL="ERROR")
    for var in ("GATEWAY_ADMIN_LISTEN", "GATEWAY_PUBLIC_URL", "PROVISIONER_TESTING"):
        os.environ.pop(var, None)
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from gateway import services as gateway
    from gateway.process import start_caddy

    call_command("migrate", verbosity=0, interactive=False)
    config = gateway.gateway_config()
    # Caddy's own account of each request: the access log's total and the proxy's upstream round
    # trip (debug), in a file of their own (Caddy docs, "JSON Config Structure" → logging)
    config["apps"]["http"]["servers"]["gateway"]["logs"] = {}
    config["logging"] = {"logs": {
        "default": {"exclude": ["http.log.access", "http.handlers.reverse_proxy"]},
        "requests": {"level": "DEBUG", "include": ["http.log.access", "http.handlers.reverse_proxy"],
                     "writer": {"output": "file", "filename": REQUEST_LOG.format(tmp=tmp)}}}}
    caddy = start_caddy(config, settings.GATEWAY_ADMIN_URL,
                        stdout=open(f"{tmp}/caddy.log", "w"), stderr=__import__("subprocess").STDOUT)
    _log["path"] = REQUEST_LOG.format(tmp=tmp)
    return caddy


def _client_loop(url: str, halt, out) -> None:
    """In its own process (the control loop holds this process's GIL): ``GET url`` every 50 ms
    over one keep-alive connection, then the same request straight to the pod that answered (its
    port is in the answer), so the gateway's share of the latency is read pairwise under the same
    load. Records (time, status or 0, ms through the gateway, ms direct or None, error)."""
    import httpx

    results = []
    with httpx.Client(timeout=5) as gw, httpx.Client(timeout=5) as direct:
        nxt = time.monotonic()
        while not halt.is_set():
            t = time.monotonic()
            status, error, port = 0, "", None
            retried = 0
            for _attempt in range(2):
                try:
                    response = gw.get(url)
                    status = response.status_code
                    if 200 <= status < 300:
                        port = response.json().get("port")
                    break
                except (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError) as exc:
                    # the gateway closed the kept-alive connection as this request went out (a
                    # graceful reload closes idle connections): an idempotent request is retried
                    # once on a new connection, as browsers and Go's client do (RFC 9112 §9.3.1)
                    error, retried = type(exc).__name__, 1
                except httpx.HTTPError as exc:
                    error = type(exc).__name__
                    break
            if status:
                error = ""
            lat = (time.monotonic() - t) * 1000
            lat_direct = None
            if port:
                t2 = time.monotonic()
                try:
                    direct.get(f"http://127.0.0.1:{port}/")
                    lat_direct = (time.monotonic() - t2) * 1000
                except httpx.HTTPError:
                    pass
            results.append((t, status, lat, lat_direct, error, retried))
            nxt += EVERY_S
            time.sleep(max(0.0, nxt - time.monotonic()))
    out.put(results)


class Client:
    def __init__(self, url: str):
        import multiprocessing

        ctx = multiprocessing.get_context("fork")
        self.halt, self.out = ctx.Event(), ctx.Queue()
        self.proc = ctx.Process(target=_client_loop, args=(url, self.halt, self.out), daemon=True)

    def start(self) -> None:
        self.proc.start()

    def finish(self) -> list:
        self.halt.set()
        results = self.out.get(timeout=30)
        self.proc.join(timeout=10)
        return results


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[98] if len(values) > 1 else (values or [0])[0]


def tick() -> None:
    from gateway import services as gateway
    from workloads.interruptions.spot_sync import spot_pods_sync
    from workloads.lifecycle.services import pods_sync
    from workloads.lifecycle.supervision import supervise

    pods_sync()
    spot_pods_sync()
    supervise()
    gateway.reconcile()


def run_until(done, limit_s: float) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        tick()
        if done():
            return True
        time.sleep(TICK_S)
    return False


def ready(pod) -> bool:
    from gateway.models import Backend

    return Backend.objects.filter(pod=pod, state=Backend.State.READY).exists()


class World:
    def __init__(self):
        from providers.models import ProviderAccount
        from providers.services import capacity_poll
        from tenants.services import tenant_create

        self.tenant = tenant_create(name="Bench gateway", slug=f"bench-gw-{int(time.time() * 1000)}")
        self.project = self.tenant.projects.get(name="Default")
        from django.contrib.auth import get_user_model

        from tenants.models import Role
        from tenants.services import membership_set

        self.owner = get_user_model().objects.create_user(f"bench-{self.tenant.slug}", password="x")
        membership_set(tenant=self.tenant, user=self.owner, role=Role.OWNER)  # scheduled runs launch as the owner
        self.account = ProviderAccount.objects.create(tenant=self.tenant, kind="sandbox", name="Sandbox", credentials={},
                                                      settings={"seed": "bench", "boot_seconds": 2})
        self.spot = ProviderAccount.objects.create(
            tenant=self.tenant, kind="sandbox", name="Spot sandbox", credentials={}, preference_rank=1,
            settings={"seed": "bench", "boot_seconds": 5, "notice_seconds": 20, "interrupt_after_seconds": 25})
        capacity_poll(accounts=[self.account, self.spot])

    def service(self, name: str, **kw):
        from workloads.lifecycle import services

        fields = dict(gpu_class="A100-80", gpu_count=1, lifecycle="service", image="vllm/vllm-openai",
                      ports=[{"port": 8000, "protocol": "http"}])
        fields.update(kw)
        return services.workload_create(tenant=self.tenant, project=self.project, owner=self.owner, name=name,
                                        **fields)

    def start(self, w):
        from workloads.lifecycle import services

        pods = services.workload_launch(workload=w)
        assert run_until(lambda: all(ready(p) for p in pods), 30), "service never became ready"
        return [p.__class__.objects.get(pk=p.pk) for p in pods]


def url_of(w) -> str:
    from gateway import services as gateway

    return gateway.stable_url(gateway.endpoint_for(w))


def report(case: str, results: list, started: float, **extra) -> dict:
    inside = in_gateway_ms()
    inside_p99 = round(p99(inside), 2) if inside else None
    failed = [r for r in results if not 200 <= r[1] < 300]
    paired = [r for r in results if 200 <= r[1] < 300 and r[3] is not None]
    gw_p99 = p99([r[2] for r in paired]) if paired else None
    direct_p99 = p99([r[3] for r in paired]) if paired else None
    added = round(gw_p99 - direct_p99, 2) if paired else None
    why: dict[str, int] = {}
    for r in failed:
        key = r[4] or str(r[1])
        why[key] = why.get(key, 0) + 1
    return {"bench": "gateway", "case": case, "metric": "failed requests", "value": len(failed), "unit": "requests",
            "target": f"0 failed; p99 added by the gateway <= {P99_TARGET_MS:g} ms",
            "ok": not failed and inside_p99 is not None and inside_p99 <= P99_TARGET_MS,
            "requests": len(results), "failed_by": why, "p99_in_gateway_ms": inside_p99,
            "p50_in_gateway_ms": round(statistics.median(inside), 2) if inside else None,
            "retried_on_closed_connection": sum(r[5] for r in results),
            "p99_through_gateway_ms": round(gw_p99, 2) if gw_p99 is not None else None,
            "p99_direct_ms": round(direct_p99, 2) if direct_p99 is not None else None,
            "p99_added_ms": added, "wall_s": round(time.monotonic() - started, 1), **extra}


def case_rest(world) -> dict:
    """No change: the gateway's latency at rest."""
    from workloads.lifecycle.supervision import workload_stop

    started = time.monotonic()
    w = world.service("at-rest")
    world.start(w)
    in_gateway_ms()  # what came before this case is not counted
    client = Client(url_of(w))
    client.start()
    time.sleep(5)
    results = client.finish()
    workload_stop(workload=w, reason="bench case done")
    return report("at rest (no change)", results, started)


def case_move(world) -> dict:
    from workloads.models import Pod, PodState
    from workloads.placement.move import MoveTarget, workload_move

    started = time.monotonic()
    w = world.service("move-me")
    (old,) = world.start(w)
    target = (world.account.offers.filter(gpu_class="A100-80", gpu_count=1, spot=False, available__gt=0)
              .exclude(country=old.country).values_list("country", flat=True).first())
    in_gateway_ms()  # what came before this case is not counted
    client = Client(url_of(w))
    client.start()
    time.sleep(0.5)
    (new,) = workload_move(workload=w, target=MoveTarget(countries=[target], provider_account_ids=[str(world.account.pk)]))
    ok = run_until(lambda: Pod.objects.get(pk=old.pk).state == PodState.TERMINATED and ready(new), 60)
    time.sleep(1)
    results = client.finish()
    new.refresh_from_db()
    return report("move to another country", results, started, completed=ok,
                  moved=f"{old.country} -> {new.country}")


def case_interruption(world) -> dict:
    from workloads.models import Pod, PodState

    started = time.monotonic()
    # its replacement goes on-demand (escalation after 1 interruption), so it is not taken in turn
    w = world.service("spot-svc", interruption_tolerant=True, max_interruptions_before_on_demand=1)
    (old,) = world.start(w)
    assert old.spot and old.provider_account_id == world.spot.pk, "the bench needs the spot sandbox"
    in_gateway_ms()  # what came before this case is not counted
    client = Client(url_of(w))
    client.start()
    ok = run_until(lambda: Pod.objects.get(pk=old.pk).state not in (PodState.RUNNING, PodState.STOPPING), 60)
    time.sleep(2)
    results = client.finish()
    old.refresh_from_db()
    new = Pod.objects.filter(replaces=old).order_by("requested_at").first()
    replacement_ready = bool(new and ready(new))
    from workloads.lifecycle.supervision import workload_stop

    workload_stop(workload=w, reason="bench case done")
    return report("spot interruption (notice 20 s, boot 5 s)", results, started, completed=ok,
                  old_pod_end=f"{old.state}: {old.state_reason}", replacement_serving=replacement_ready)


def case_burst(world) -> dict:
    from workloads.lifecycle.scheduling import scheduled_workload_fire
    from workloads.models import Pod, PodState, ScheduledRun

    started = time.monotonic()
    # the window counts from the firing's minute (its cron time), so a 1-min window fired late in a
    # minute could end before the scale-up is measured; the case ends it itself below
    w = world.service("burst", lifecycle="scheduled", replicas=3, schedule_cron="0 3 * * *", window_minutes=10)
    run = scheduled_workload_fire(str(w.pk))
    pods = list(Pod.objects.filter(scheduled_run=run))
    assert run_until(lambda: any(ready(p) for p in pods), 30)
    in_gateway_ms()  # what came before this case is not counted
    client = Client(url_of(w))
    client.start()
    assert run_until(lambda: all(ready(p) for p in pods), 30)  # scale-up: 1 → 3 replicas in the route
    time.sleep(1)
    from provisioner import clock

    ScheduledRun.objects.filter(pk=run.pk).update(window_ends_at=clock.now() + timedelta(seconds=1))
    # scale-down: at the window's end the pods drain (10 s) in the route, then leave it
    from gateway.models import Backend

    ok = run_until(lambda: not Backend.objects.filter(pod__in=pods, state__in=("ready", "draining")).exists(), 60)
    results = client.finish()
    stop_at = max((r[0] for r in results if r[1] == 200), default=0)
    counted = [r for r in results if r[0] <= stop_at]
    ended = set(Pod.objects.filter(pk__in=[p.pk for p in pods]).values_list("state", flat=True))
    return report("burst window scale-up and scale-down (3 replicas)", counted, started, completed=ok,
                  pods_after=sorted(ended), after_window_503=sum(1 for r in results if r[0] > stop_at),
                  note="counted until the window's pods left the route; then 503 by design"
                  if ended <= {PodState.TERMINATED, PodState.STOPPING} else "")


def case_relaunch(world) -> dict:
    from workloads.lifecycle.supervision import workload_relaunch, workload_stop
    from workloads.models import Pod, PodState

    started = time.monotonic()
    w = world.service("relaunch-me", replicas=2)
    olds = world.start(w)
    in_gateway_ms()  # what came before this case is not counted
    client = Client(url_of(w))
    client.start()
    time.sleep(0.5)
    news = workload_relaunch(workload=w)
    ok = run_until(lambda: all(ready(n) for n in news) and set(
        Pod.objects.filter(pk__in=[o.pk for o in olds]).values_list("state", flat=True)) == {PodState.TERMINATED}, 60)
    time.sleep(1)
    results = client.finish()
    workload_stop(workload=w, reason="bench case done")
    return report("rolling relaunch (2 replicas)", results, started, completed=ok)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="same cases (each takes 15-35 s)")
    parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        caddy = setup(tmp)
        from gateway.process import stop_caddy
        from providers.adapters import sandbox_http

        try:
            world = World()
            for case in (case_rest, case_move, case_interruption, case_burst, case_relaunch):
                print(json.dumps(case(world)), flush=True)
        finally:
            stop_caddy(caddy)
            sandbox_http.stop_all_started()
    return 0


if __name__ == "__main__":
    sys.exit(main())
