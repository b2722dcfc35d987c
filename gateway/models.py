"""What the gateway serves: one endpoint per routed workload and one backend per pod.

``ServiceEndpoint`` holds the stable URL's slug and the workload's readiness and drain policy;
``Backend`` follows one pod through the cut-over: ``pending`` (running, readiness not yet
passed) → ``ready`` (in the route) → ``draining`` (out of the route, still running for the drain
period) → ``gone`` (not served). Only ``ready`` backends are in the gateway's route.
"""

from __future__ import annotations

from django.db import models

from workloads.models import Pod, Workload

DEFAULT_DRAIN_SECONDS = 10
DEFAULT_READY_TIMEOUT_SECONDS = 2.0
DEFAULT_READY_DEADLINE_SECONDS = 300


class ServiceEndpoint(models.Model):
    workload = models.OneToOneField(Workload, on_delete=models.CASCADE, primary_key=True, related_name="endpoint")
    slug = models.SlugField(max_length=64, unique=True)
    # readiness: an HTTP GET of ``ready_path`` must answer ``ready_status`` within ``ready_timeout``;
    # no path: a TCP connect to the first HTTP port
    ready_path = models.CharField(max_length=200, blank=True)
    ready_status = models.PositiveSmallIntegerField(default=200)
    ready_timeout_seconds = models.FloatField(default=DEFAULT_READY_TIMEOUT_SECONDS)
    # a replacement not ready this long after it runs is rolled back (the old pod keeps serving)
    ready_deadline_seconds = models.PositiveIntegerField(default=DEFAULT_READY_DEADLINE_SECONDS)
    drain_seconds = models.PositiveIntegerField(default=DEFAULT_DRAIN_SECONDS)
    # the route last written to the gateway (a repeat write is skipped)
    pushed = models.JSONField(default=dict, blank=True)
    pushed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return self.slug


class Backend(models.Model):
    class State(models.TextChoices):
        PENDING = "pending", "Waiting for readiness"
        READY = "ready", "Serving"
        DRAINING = "draining", "Draining"
        GONE = "gone", "Not served"

    pod = models.OneToOneField(Pod, on_delete=models.CASCADE, primary_key=True, related_name="backend")
    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="backends")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    address = models.CharField(max_length=300, blank=True)  # the upstream URL, e.g. http://127.0.0.1:41234
    checks = models.PositiveIntegerField(default=0)
    last_check = models.CharField(max_length=300, blank=True)
    ready_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    drain_until = models.DateTimeField(null=True, blank=True)
    retire_reason = models.CharField(max_length=200, blank=True)  # set: terminate after the drain
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["workload", "state"])]
