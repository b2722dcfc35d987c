"""The cost ledger, daily rollups and budgets."""

from __future__ import annotations

import uuid

from django.db import models

from providers.models import ProviderAccount
from tenants.access import TenantQuerySet
from tenants.models import Project, Tenant
from workloads.models import Pod, Workload


class LedgerEntry(models.Model):
    """Cost of one pod over one time bucket, in the provider's currency and in USD.

    ``usd_rate`` is copied from the invoice rate in force, so history never changes.
    """

    class Kind(models.TextChoices):
        GPU = "gpu", "GPU time"
        STORAGE = "storage", "Storage"
        SETUP = "setup", "Setup fee"
        CORRECTION = "correction", "Correction"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, null=True, on_delete=models.SET_NULL, related_name="+")
    workload = models.ForeignKey(Workload, null=True, on_delete=models.SET_NULL, related_name="+")
    pod = models.ForeignKey(Pod, null=True, on_delete=models.SET_NULL, related_name="ledger_entries")
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.GPU)
    bucket_start = models.DateTimeField()
    bucket_end = models.DateTimeField()
    seconds = models.FloatField(default=0)
    amount = models.DecimalField(max_digits=14, decimal_places=6)
    currency = models.CharField(max_length=3, default="USD")
    usd_rate = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    amount_usd = models.DecimalField(max_digits=14, decimal_places=6)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "bucket_start"], name="ledger_tenant_time_idx"),
            models.Index(fields=["pod", "bucket_start"], name="ledger_pod_idx"),
        ]


class Budget(models.Model):
    """A spending limit for a tenant (project=None) or one project, per period."""

    class Period(models.TextChoices):
        DAY = "day", "Daily"
        WEEK = "week", "Weekly"
        MONTH = "month", "Monthly"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="budgets")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    name = models.CharField(max_length=120)
    period = models.CharField(max_length=8, choices=Period.choices, default=Period.MONTH)
    amount_usd = models.DecimalField(max_digits=12, decimal_places=2)
    soft_thresholds = models.JSONField(default=list, blank=True)  # e.g. [50, 80, 100]
    hard_limit = models.BooleanField(default=True)
    stop_running_pods = models.BooleanField(default=False)
    webhook_url = models.URLField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
