"""The reaper tick: constant number of SQL queries, and safe when run twice or concurrently."""

from __future__ import annotations

import contextlib
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from provisioner import clock
from workloads.autoshutdown import idle
from workloads.models import Pod, PodEvent

from .telemetry_helpers import feed, running_pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _fleet(tenant, project, owner, n):
    """n pods of each kind: idle (to warn), busy, silent (no telemetry), warned-then-busy (to cancel)."""
    pods = {"idle": [], "busy": [], "silent": [], "cancel": []}
    for _ in range(n):
        p = running_pod(tenant, project, owner)
        feed(p, start=T0, end=T0 + 31 * M, util=lambda at, g: 0.0)
        pods["idle"].append(p)
        p = running_pod(tenant, project, owner)
        feed(p, start=T0, end=T0 + 31 * M, util=lambda at, g: 50.0)
        pods["busy"].append(p)
        pods["silent"].append(running_pod(tenant, project, owner))
        p = running_pod(tenant, project, owner)
        feed(p, start=T0, end=T0 + 31 * M, util=lambda at, g: 70.0 if g else 0.0)
        Pod.objects.filter(pk=p.pk).update(idle_warning_at=T0 + 20 * M)
        pods["cancel"].append(p)
    return pods


def _tick_queries():
    with CaptureQueriesContext(connection) as ctx:
        result = idle.idle_reap()
    return len(ctx.captured_queries), result


@pytest.mark.django_db
def test_tick_query_count_does_not_grow_with_pods(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        _fleet(tenant, project, owner, 1)
        advance(minutes=31)
        small, r1 = _tick_queries()
        assert (len(r1.warned), len(r1.cancelled), len(r1.telemetry_warned)) == (1, 1, 1)
    Pod.objects.all().delete()
    with clock.frozen(T0) as advance:
        _fleet(tenant, project, owner, 6)
        advance(minutes=31)
        large, r2 = _tick_queries()
        assert (len(r2.warned), len(r2.cancelled), len(r2.telemetry_warned)) == (6, 6, 6)
    assert small == large
    assert large <= 12


@pytest.mark.django_db
def test_running_the_tick_twice_acts_once(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pods = _fleet(tenant, project, owner, 2)
        advance(minutes=31)
        idle.idle_reap()
        again = idle.idle_reap()
    assert again.warned == [] and again.cancelled == [] and again.telemetry_warned == []
    for p in pods["idle"]:
        assert PodEvent.objects.filter(pod=p, kind="idle").count() == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_ticks_warn_each_pod_once(tenant, project, owner, sandbox):
    """Two ticks at once. On PostgreSQL they really overlap (FOR UPDATE SKIP LOCKED decides who
    handles which pod). Reduced meaning on SQLite: the test database is in-memory with a shared
    cache, where a second writer fails instead of waiting, so the two ticks take turns here (a
    file database in IMMEDIATE mode serializes them the same way)."""
    turns = threading.Lock() if connection.vendor == "sqlite" else contextlib.nullcontext()
    with clock.frozen(T0) as advance:
        pods = _fleet(tenant, project, owner, 3)
        advance(minutes=31)
        start = threading.Barrier(2)
        errors = []

        def tick():
            try:
                start.wait()
                with turns:
                    idle.idle_reap()
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=tick) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    assert errors == []
    for p in pods["idle"] + pods["cancel"]:
        assert PodEvent.objects.filter(pod=p, kind="idle").count() == 1, list(PodEvent.objects.filter(pod=p).values_list("message", flat=True))
    for p in pods["silent"]:
        assert PodEvent.objects.filter(pod=p, kind="telemetry").count() == 1
