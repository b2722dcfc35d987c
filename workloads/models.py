"""Recipes, workloads, pods and what happened to them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django_cryptography.fields import encrypt

from providers.models import ProviderAccount
from tenants.access import TenantQuerySet
from tenants.models import Project, Tenant


class Lifecycle(models.TextChoices):
    JOB = "job", "One-shot job"
    SERVICE = "service", "Long-running service"
    SCHEDULED = "scheduled", "Scheduled"


class OverlapPolicy(models.TextChoices):
    SKIP = "skip", "Skip the new run"
    QUEUE = "queue", "Queue it until the running one ends"
    ALLOW = "allow", "Allow runs to overlap"


class Recipe(models.Model):
    """A reusable workload template. ``tenant`` is null for the built-in catalog.

    The launchable content lives in ``RecipeVersion`` so that a workload keeps the exact
    version it was launched with.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="recipes")
    slug = models.SlugField(max_length=64)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    category = models.CharField(max_length=32, blank=True)
    builtin = models.BooleanField(default=False)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "slug"], name="uniq_recipe_slug")]

    def __str__(self) -> str:
        return self.name

    @property
    def latest_version(self) -> RecipeVersion | None:
        return self.versions.order_by("-version").first()


class RecipePin(models.Model):
    """A member's pinned recipe: pinned recipes come first in their catalog (dstack's and RunPod's
    template cards can be pinned the same way). Per user and organization, so pins never leak."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="pins")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user", "recipe"], name="uniq_recipe_pin")]


class RecipeVersion(models.Model):
    """One immutable version of a recipe: image, parameter schema, defaults and template."""

    class ImageKind(models.TextChoices):
        DOCKER = "docker", "Docker image"
        NGC = "ngc", "NVIDIA NGC"
        CURATED = "curated", "Curated base image"

    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    image = models.CharField(max_length=300)
    image_kind = models.CharField(max_length=8, choices=ImageKind.choices, default=ImageKind.DOCKER)
    # [{"name","type":"string|int|float|bool|choice|uri|secret","label","default","required","choices","min","max","help"}]
    parameters = models.JSONField(default=list, blank=True)
    # {"gpu_class","gpu_count","min_gpu_count","max_gpu_count","ports","volumes","lifecycle","idle":{...}}
    defaults = models.JSONField(default=dict, blank=True)
    # {"command": [...], "args": [...], "env": {...}} with {{ param }} placeholders
    template = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["recipe", "-version"]
        constraints = [models.UniqueConstraint(fields=["recipe", "version"], name="uniq_recipe_version")]

    def __str__(self) -> str:
        return f"{self.recipe} v{self.version}"


class RegistryCredential(models.Model):
    """A container registry login (e.g. an NGC API key for nvcr.io), encrypted at rest."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="registry_credentials")
    name = models.CharField(max_length=120)
    registry = models.CharField(max_length=200, default="nvcr.io")
    username = models.CharField(max_length=200, default="$oauthtoken")
    secret = encrypt(models.TextField(blank=True, default=""))
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    def __str__(self) -> str:
        return f"{self.name} ({self.registry})"


class TenantSecret(models.Model):
    """A named secret of an organization (e.g. a Hugging Face token), encrypted at rest.

    Recipes reference it by id; its value is resolved only when a pod is launched and is
    never rendered back to a page.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=120)
    value = encrypt(models.TextField(blank=True, default=""))
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_tenant_secret_name")]

    def __str__(self) -> str:
        return self.name


class Workload(models.Model):
    """What a developer declared. Pods are its concrete, placed instances."""

    class State(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        FAILED = "failed", "Failed"
        STOPPED = "stopped", "Stopped"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="workloads")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="workloads")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="workloads")
    name = models.CharField(max_length=120)
    recipe_version = models.ForeignKey(RecipeVersion, null=True, blank=True, on_delete=models.PROTECT, related_name="workloads")
    parameters = models.JSONField(default=dict, blank=True)
    image = models.CharField(max_length=300)
    registry_credential = models.ForeignKey(RegistryCredential, null=True, blank=True, on_delete=models.SET_NULL)
    container_spec = models.JSONField(default=dict, blank=True)  # rendered command/args/env/ports/volumes
    gpu_class = models.CharField(max_length=16)
    acceptable_gpu_classes = models.JSONField(default=list, blank=True)  # alternatives, in order
    custom_instance_type = models.CharField(max_length=128, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=1)
    max_duration_minutes = models.PositiveIntegerField(null=True, blank=True)
    volumes = models.JSONField(default=list, blank=True)  # [{"kind","size_gb","mount_path"}]
    public_ingress = models.BooleanField(default=True)
    ports = models.JSONField(default=list, blank=True)  # [{"port": 8000, "protocol": "http"}]
    lifecycle = models.CharField(max_length=10, choices=Lifecycle.choices, default=Lifecycle.JOB)
    schedule_cron = models.CharField(max_length=120, blank=True)
    overlap_policy = models.CharField(max_length=8, choices=OverlapPolicy.choices, default=OverlapPolicy.SKIP)
    replicas = models.PositiveSmallIntegerField(default=1)
    window_minutes = models.PositiveIntegerField(null=True, blank=True)  # scheduled burst window
    interruption_tolerant = models.BooleanField(default=False)
    restart_on_interruption = models.BooleanField(default=True)
    # run in the container when an interruption notice arrives (e.g. save a checkpoint); the
    # agent gets it in its heartbeat answer, with the seconds left
    on_notice_command = models.CharField(max_length=500, blank=True)
    max_interruptions_before_on_demand = models.PositiveSmallIntegerField(default=2)
    regions = models.JSONField(default=list, blank=True)
    countries = models.JSONField(default=list, blank=True)  # ISO codes or presets (EU, US)
    max_price_per_hour = models.DecimalField(max_digits=10, decimal_places=4, null=True, blank=True)
    # spot on a bidding provider (Vast.ai, RunPod): bid this % above the floor, at most the price
    # ceiling above; None: settings.SPOT_BID_MARGIN_PCT (workloads.placement.bids)
    spot_bid_margin_pct = models.PositiveSmallIntegerField(null=True, blank=True)
    idle_enabled = models.BooleanField(default=True)
    idle_threshold_pct = models.PositiveSmallIntegerField(default=5)
    idle_window_minutes = models.PositiveIntegerField(default=30)
    idle_grace_minutes = models.PositiveIntegerField(default=5)
    idle_delete_after_stopped_minutes = models.PositiveIntegerField(null=True, blank=True)
    # a per-workload access token (Jupyter), generated when a recipe asks for one; encrypted
    access_token = encrypt(models.CharField(max_length=128, blank=True, default=""))
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    state_reason = models.CharField(max_length=300, blank=True)  # why it failed / stopped, in words
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="workload_tenant_idx")]

    def __str__(self) -> str:
        return self.name


class PodState(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PROVISIONING = "provisioning", "Provisioning"
    RUNNING = "running", "Running"
    STOPPING = "stopping", "Stopping"
    STOPPED = "stopped", "Stopped"
    TERMINATED = "terminated", "Terminated"
    FAILED = "failed", "Failed"
    INTERRUPTED = "interrupted", "Interrupted"


LIVE_POD_STATES = (PodState.REQUESTED, PodState.PROVISIONING, PodState.RUNNING, PodState.STOPPING)
BILLABLE_POD_STATES = (PodState.RUNNING, PodState.STOPPING)
FINAL_POD_STATES = (PodState.TERMINATED, PodState.FAILED, PodState.INTERRUPTED)


class Pod(models.Model):
    """One placed instance of a workload at one provider. Its UUID tags the provider resource."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="pods")
    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="pods")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="pods")
    provider_account = models.ForeignKey(ProviderAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="pods")
    external_id = models.CharField(max_length=128, blank=True, db_index=True)
    offer_snapshot = models.JSONField(default=dict, blank=True)
    gpu_class = models.CharField(max_length=16, blank=True)
    gpu_count = models.PositiveSmallIntegerField(default=1)
    region = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=2, blank=True)
    spot = models.BooleanField(default=False)
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    currency = models.CharField(max_length=3, default="USD")
    price_usd_per_hour = models.DecimalField(max_digits=12, decimal_places=6, null=True, blank=True)
    state = models.CharField(max_length=12, choices=PodState.choices, default=PodState.REQUESTED)
    state_reason = models.CharField(max_length=300, blank=True)
    connection = models.JSONField(default=dict, blank=True)
    replica_index = models.PositiveSmallIntegerField(default=0)
    # the cron run this pod belongs to (scheduled workloads); its window ends the pod
    scheduled_run = models.ForeignKey("ScheduledRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="pods")
    interruption_count = models.PositiveSmallIntegerField(default=0)
    # the provider's interruption notice as the agent (or the Sandbox) reported it:
    # {"provider", "kind", "deadline", "detail", "received_at"}; the deadline is the provider's
    interruption_notice = models.JSONField(default=dict, blank=True)
    interruption_deadline = models.DateTimeField(null=True, blank=True)
    # re-placement chain: the pod this one replaces (after an interruption, a vanished
    # resource or a move); placement_override narrows placement for this pod only
    replaces = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replacements")
    placement_override = models.JSONField(default=dict, blank=True)
    launch_path = models.JSONField(default=list, blank=True)  # ["RunPod EU-RO-1: no capacity", "…: launched"]
    exit_code = models.IntegerField(null=True, blank=True)
    # in-pod agent: sha256 of the per-pod token; cleared when the pod ends
    agent_token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    idle_warning_at = models.DateTimeField(null=True, blank=True)
    # auto-shutdown: when the reaper last warned that this pod sends no GPU telemetry (cleared
    # when samples return), and the agent's last self-reported problem (e.g. "NVML not found")
    telemetry_warned_at = models.DateTimeField(null=True, blank=True)
    agent_error = models.CharField(max_length=300, blank=True)
    # {"<gpu index>": iso time of its latest sample}: lets ingest record each sample's gap
    gpu_last_sample_at = models.JSONField(default=dict, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=0)  # accrued so far
    metered_until = models.DateTimeField(null=True, blank=True)
    requested_at = models.DateTimeField()
    provisioning_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)  # first running
    # provisioning: when the provider expects the pod to run (RemotePod.expected_ready_at); the
    # follow-up check is scheduled for then (workloads.lifecycle.tasks.follow_pod)
    ready_expected_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)  # latest stop
    # every running session [start, end or null] (ISO times): a pod stopped and started again
    # is billed for each of them (billing.metering reads this)
    run_sessions = models.JSONField(default=list, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    last_synced_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            models.Index(fields=["tenant", "-requested_at"], name="pod_tenant_idx"),
            models.Index(fields=["state"], name="pod_state_idx"),
            models.Index(fields=["provider_account", "state"], name="pod_account_state_idx"),
            # the spend dashboard's live accrual (every poll): a tenant's few live pods among
            # every pod it ever ran
            models.Index(fields=["tenant", "state"], name="pod_tenant_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workload.name} #{str(self.pk)[:8]}"

    @property
    def is_live(self) -> bool:
        return self.state in LIVE_POD_STATES


class PodEvent(models.Model):
    """Every transition and decision about a pod, in words a user understands."""

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="events")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    at = models.DateTimeField()
    kind = models.CharField(max_length=32)  # state / placement / attempt / failover / idle / ...
    message = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]
        indexes = [models.Index(fields=["pod", "at"], name="podevent_pod_idx")]

    def __str__(self) -> str:
        return self.message


class ScheduledRun(models.Model):
    """One firing of a scheduled workload's cron: started, skipped or queued (overlap policy).

    ``window_ends_at`` is set for burst windows: every pod of the run is torn down then.
    """

    class State(models.TextChoices):
        QUEUED = "queued", "Queued (previous run still going)"
        STARTED = "started", "Started"
        SKIPPED = "skipped", "Skipped (previous run still going)"
        ENDED = "ended", "Ended"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    workload = models.ForeignKey(Workload, on_delete=models.CASCADE, related_name="scheduled_runs")
    due_at = models.DateTimeField()
    state = models.CharField(max_length=8, choices=State.choices)
    started_at = models.DateTimeField(null=True, blank=True)
    window_ends_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    note = models.CharField(max_length=300, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-due_at", "-id"]
        indexes = [
            models.Index(fields=["workload", "state"], name="schedrun_workload_state_idx"),
            models.Index(fields=["state", "window_ends_at"], name="schedrun_window_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.workload} @ {self.due_at:%Y-%m-%d %H:%M} ({self.state})"


class UtilizationSample(models.Model):
    """One GPU's utilization at one moment, from the provider or the in-pod agent."""

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField()
    gpu_index = models.PositiveSmallIntegerField(default=0)
    util_pct = models.FloatField()
    mem_used_mb = models.FloatField(null=True, blank=True)
    mem_total_mb = models.FloatField(null=True, blank=True)
    source = models.CharField(max_length=16, default="provider")  # provider / agent
    # seconds since this GPU's previous sample (null for its first): the reaper checks that the
    # idle window has no hole with one MAX() instead of sorting every sample
    gap_s = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["pod", "at"], name="sample_pod_at_idx"),
            # the reaper reads only the last window of every running pod, and retention
            # purges by age: both are range scans on ``at``
            models.Index(fields=["at"], name="sample_at_idx"),
        ]


class HostSample(models.Model):
    """The pod host's CPU and memory at one moment, as the in-pod agent read them (/proc/stat,
    /proc/meminfo); charted on the pod page and purged with the GPU samples."""

    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="host_samples")
    at = models.DateTimeField()
    cpu_pct = models.FloatField(null=True, blank=True)
    mem_used_mb = models.FloatField(null=True, blank=True)
    mem_total_mb = models.FloatField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(fields=["pod", "at"], name="hostsample_pod_at_idx"),
            models.Index(fields=["at"], name="hostsample_at_idx"),  # retention purges by age
        ]


class LaunchAttempt(models.Model):
    """One launch attempt at one provider region: failover history and the observed launch
    success rate placement uses as a tie-break."""

    class Outcome(models.TextChoices):
        LAUNCHED = "launched", "Launched"
        ADOPTED = "adopted", "Launched (found after a timeout)"
        NO_CAPACITY = "no_capacity", "No capacity"
        QUOTA = "quota", "Quota exceeded"
        TIMEOUT = "timeout", "Timed out"
        TRANSIENT = "transient", "Temporary error"
        ERROR = "error", "Error"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    pod = models.ForeignKey(Pod, on_delete=models.CASCADE, related_name="attempts")
    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="+")
    region = models.CharField(max_length=64)
    outcome = models.CharField(max_length=12, choices=Outcome.choices)
    message = models.CharField(max_length=300, blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    at = models.DateTimeField()

    class Meta:
        indexes = [models.Index(fields=["tenant", "at"], name="launchattempt_tenant_at_idx")]

    @property
    def ok(self) -> bool:
        return self.outcome in (self.Outcome.LAUNCHED, self.Outcome.ADOPTED)


class ReconcileAction(models.Model):
    """What reconciliation did about one provider resource (orphan terminated, pod adopted,
    pod whose resource vanished). Unique per resource and action, so concurrent runs record once."""

    class Action(models.TextChoices):
        TERMINATED = "terminated", "Orphan terminated"
        ADOPTED = "adopted", "Adopted into its pod"
        VANISHED = "vanished", "Resource vanished"
        ABANDONED = "abandoned", "Launch never completed"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="+")
    external_id = models.CharField(max_length=128)
    tag = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=10, choices=Action.choices)
    message = models.CharField(max_length=300, blank=True)
    verified = models.BooleanField(default=False)
    at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-at"]
        constraints = [models.UniqueConstraint(fields=["provider_account", "external_id", "action"],
                                               name="uniq_reconcile_action")]


class LaunchBlock(models.Model):
    """A provider region that recently failed a launch; placement avoids it until ``until``."""

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="+")
    region = models.CharField(max_length=64)
    reason = models.CharField(max_length=300)
    until = models.DateTimeField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["tenant", "until"], name="launchblock_idx")]
