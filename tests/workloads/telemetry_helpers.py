"""Helpers shared by the idle/heartbeat/agent tests: a running Sandbox pod and fake telemetry."""

from __future__ import annotations

from datetime import datetime, timedelta

from provisioner import clock
from workloads import services
from workloads.models import Lifecycle, Pod, PodState, UtilizationSample


def running_pod(tenant, project, owner, *, gpu_count: int = 2, lifecycle: str = Lifecycle.JOB, **workload_fields) -> Pod:
    """Declare and launch a workload on the Sandbox; returns its running pod."""
    fields = dict(idle_window_minutes=30, idle_threshold_pct=5, idle_grace_minutes=5)
    fields.update(workload_fields)
    w = services.workload_create(tenant=tenant, project=project, owner=owner, name="nb", image="jupyter/base",
                                 gpu_class="A10", gpu_count=gpu_count, lifecycle=lifecycle, **fields)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING, pod.events.values_list("message", flat=True)
    return Pod.objects.select_related("workload", "provider_account").get(pk=pod.pk)


def feed(pod: Pod, *, start: datetime, end: datetime, every_s: int = 30, util=lambda at, gpu: 1.0,
         gpus: int | None = None, source: str = "agent") -> int:
    """Fake telemetry: one sample per GPU every ``every_s`` seconds in [start, end]."""
    rows = []
    at = start
    while at <= end:
        for g in range(pod.gpu_count if gpus is None else gpus):
            rows.append(UtilizationSample(pod=pod, at=at, gpu_index=g, util_pct=util(at, g),
                                          mem_used_mb=100.0, mem_total_mb=24576.0, source=source))
        at += timedelta(seconds=every_s)
    UtilizationSample.objects.bulk_create(rows)
    return len(rows)


def now() -> datetime:
    return clock.now()
