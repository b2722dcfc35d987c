"""Helpers shared by the idle/heartbeat/agent tests: a running Sandbox pod and fake telemetry."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

from django.db.models import Max

from providers.adapters.base import LaunchRequest
from providers.models import ProviderAccount
from providers.services import adapter_for
from provisioner import clock
from workloads.autoshutdown import telemetry
from workloads.lifecycle import services
from workloads.models import Lifecycle, Pod, PodState, UtilizationSample

from ..factories import PodFactory, WorkloadFactory


def running_pod(tenant, project, owner, *, gpu_count: int = 2, lifecycle: str = Lifecycle.JOB, **workload_fields) -> Pod:
    """A workload and its pod running on the Sandbox (``sandbox`` fixture), launched through the
    adapter directly so that these tests do not depend on placement/failover details."""
    fields = dict(idle_window_minutes=30, idle_threshold_pct=5, idle_grace_minutes=5)
    fields.update(workload_fields)
    w = WorkloadFactory(tenant=tenant, project=project, owner=owner, name="nb", image="jupyter/base",
                        gpu_class="A10", gpu_count=gpu_count, lifecycle=lifecycle, **fields)
    account = ProviderAccount.objects.get(tenant=tenant, kind="sandbox")
    now = clock.now()
    pod = PodFactory(workload=w, requested_at=now, provisioning_at=now)
    remote = adapter_for(account).launch(LaunchRequest(
        tag=str(pod.pk), name=f"nb-{str(pod.pk)[:8]}", image=w.image, gpu_class="A10", gpu_count=gpu_count,
        region="sbx-us-east", env={**telemetry.agent_launch_env(pod=pod), "SANDBOX_IDLE_AFTER_SECONDS": "0"}))
    Pod.objects.filter(pk=pod.pk).update(provider_account=account, external_id=remote.external_id, region="sbx-us-east",
                                         country="US", price_usd_per_hour=Decimal("1.5"), price_per_hour=Decimal("1.5"))
    pod.refresh_from_db()
    assert services.pod_transition(pod, PodState.RUNNING, "Running", expect=(PodState.PROVISIONING,))
    return Pod.objects.select_related("workload", "provider_account").get(pk=pod.pk)


def feed(pod: Pod, *, start: datetime, end: datetime, every_s: int = 30, util=lambda at, gpu: 1.0,
         gpus: int | None = None, source: str = "agent") -> int:
    """Fake telemetry: one sample per GPU every ``every_s`` seconds in [start, end], with the
    gaps that ingest would have recorded."""
    last = {str(r["gpu_index"]): r["last"] for r in
            UtilizationSample.objects.filter(pod=pod).values("gpu_index").annotate(last=Max("at"))}
    rows = []
    at = start
    while at <= end:
        for g in range(pod.gpu_count if gpus is None else gpus):
            prev = last.get(str(g))
            rows.append(UtilizationSample(pod=pod, at=at, gpu_index=g, util_pct=util(at, g), mem_used_mb=100.0,
                                          mem_total_mb=24576.0, source=source,
                                          gap_s=(at - prev).total_seconds() if prev else None))
            last[str(g)] = at
        at += timedelta(seconds=every_s)
    UtilizationSample.objects.bulk_create(rows)
    Pod.objects.filter(pk=pod.pk).update(gpu_last_sample_at={k: v.isoformat() for k, v in last.items()})
    pod.gpu_last_sample_at = {k: v.isoformat() for k, v in last.items()}
    return len(rows)


def now() -> datetime:
    return clock.now()
