"""The cost ledger, daily rollups and budgets."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_cryptography.fields import encrypt

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
    note = models.CharField(max_length=300, blank=True)  # corrections: why (e.g. provider credit)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "bucket_start"], name="ledger_tenant_time_idx"),
            models.Index(fields=["pod", "bucket_start"], name="ledger_pod_idx"),
        ]
        constraints = [
            # metering upserts one entry per pod, kind and hourly bucket; corrections are extra rows
            models.UniqueConstraint(fields=["pod", "kind", "bucket_start"], condition=~Q(kind="correction"),
                                    name="uniq_ledger_pod_kind_bucket"),
        ]


class SpendRollup(models.Model):
    """Daily spend per tenant x project x provider account x workload (USD), from the ledger.

    Rebuilt per (tenant, day) whenever that day's ledger changes (see ``RollupDirty``), so late
    corrections land in the right day. Dashboards read these for every past day.
    """

    day = models.DateField()
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, null=True, on_delete=models.SET_NULL, related_name="+")
    workload = models.ForeignKey(Workload, null=True, on_delete=models.SET_NULL, related_name="+")
    amount_usd = models.DecimalField(max_digits=16, decimal_places=6)
    gpu_seconds = models.FloatField(default=0)
    # the part of amount_usd booked while every GPU of the pod was idle (billing.idle)
    idle_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            models.Index(fields=["tenant", "day"], name="rollup_tenant_day_idx"),
            # the dashboard of a member limited to some projects (and any project filter): their
            # days directly, instead of AND-ing the day range with every rollup of the project
            models.Index(fields=["project", "day"], name="rollup_project_day_idx"),
        ]


class SpendRollupMonth(models.Model):
    """The daily rollups summed per calendar month (same dimensions), rebuilt with them.

    Long ranges (a year) read whole months here and only the partial months at the edges
    from the daily rollups, so a year's dashboard reads ~12 rows per workload, not ~365.
    """

    month = models.DateField()  # first day of the month
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, null=True, on_delete=models.SET_NULL, related_name="+")
    workload = models.ForeignKey(Workload, null=True, on_delete=models.SET_NULL, related_name="+")
    amount_usd = models.DecimalField(max_digits=16, decimal_places=6)
    gpu_seconds = models.FloatField(default=0)
    # the part of amount_usd booked while every GPU of the pod was idle (billing.idle)
    idle_usd = models.DecimalField(max_digits=16, decimal_places=6, default=0)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["tenant", "month"], name="rollupm_tenant_month_idx")]


class RollupGeneration(models.Model):
    """A counter per tenant, bumped in the same transaction as any rewrite of its rollups.

    Past days change only through the rollups, so (tenant, generation) names one exact state
    of the tenant's history: the dashboard caches what it computed from the rollups under it,
    and a late correction (rebuilt day, re-summed month) makes every such cache entry unused.
    """

    tenant = models.OneToOneField(Tenant, on_delete=models.CASCADE, primary_key=True, related_name="+")
    value = models.PositiveBigIntegerField(default=0)


class RollupDirty(models.Model):
    """A (tenant, day) whose ledger changed since its rollup was last built.

    Written in the same transaction as the ledger change; ``marked_at`` lets the rollup task
    delete only the marker it has processed (a newer mark survives and is processed next run).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    marked_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "day"], name="uniq_rollup_dirty")]


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
    soft_thresholds_usd = models.JSONField(default=list, blank=True)  # whole dollars spent, e.g. [500, 1000]
    hard_limit = models.BooleanField(default=True)
    stop_running_pods = models.BooleanField(default=False)
    webhook_url = models.URLField(blank=True, max_length=2000)  # provisioner.inputs.MAX_URL_CHARS
    webhook_secret = encrypt(models.CharField(max_length=200, blank=True, default=""))
    email_alerts = models.BooleanField(default=True)
    # also alert (once per period) when spend so far, extrapolated linearly to the period's end,
    # exceeds the amount: the warning comes while there is still time to act
    forecast_alert = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def scope_label(self) -> str:
        return f"project {self.project.name}" if self.project_id else "whole organization"


class BudgetReservation(models.Model):
    """Projected cost a launch holds against budgets and its provider cap until its pod ends.

    Counted as ``max(0, amount_usd - pod.cost_usd)``: as the pod's real cost lands in the
    ledger, the reservation shrinks, so nothing is counted twice. Released when the pod ends
    (or its launch fails).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, null=True, on_delete=models.CASCADE, related_name="+")
    pod = models.ForeignKey(Pod, null=True, on_delete=models.CASCADE, related_name="+")
    usd_per_hour = models.DecimalField(max_digits=12, decimal_places=6)
    hours = models.DecimalField(max_digits=10, decimal_places=4)
    amount_usd = models.DecimalField(max_digits=14, decimal_places=6)
    created_at = models.DateTimeField()
    released_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["tenant", "released_at"], name="reservation_active_idx")]
        constraints = [models.UniqueConstraint(fields=["pod"], condition=Q(released_at__isnull=True),
                                               name="uniq_active_reservation_per_pod")]


class BudgetAlert(models.Model):
    """One threshold crossed in one period, for a budget or a provider spending cap.

    The unique constraints are what make "alert once per threshold per period" hold even
    when two enforcement runs race.
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.CASCADE, related_name="alerts")
    provider_account = models.ForeignKey(ProviderAccount, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    class Kind(models.TextChoices):
        SPENT = "spent", "Spent"
        FORECAST = "forecast", "Forecast"
        DRIFT = "drift", "Provider drift"  # our figure vs the provider's, once per account and UTC day
        AMOUNT = "amount", "Spent (USD threshold)"  # threshold = whole dollars instead of a percent
        ANOMALY = "anomaly", "Spend anomaly"  # today > N x the trailing 7-day mean, once per organization and day

    period_start = models.DateTimeField()
    threshold = models.PositiveIntegerField()  # percent; whole dollars for kind "amount"
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.SPENT)
    spent_usd = models.DecimalField(max_digits=14, decimal_places=2)
    limit_usd = models.DecimalField(max_digits=14, decimal_places=2)
    message = models.CharField(max_length=300)
    emailed_to = models.JSONField(default=list, blank=True)
    webhook_status = models.CharField(max_length=60, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "-created_at"], name="alert_tenant_idx")]
        constraints = [
            models.UniqueConstraint(fields=["budget", "period_start", "threshold", "kind"],
                                    condition=Q(budget__isnull=False), name="uniq_budget_alert"),
            models.UniqueConstraint(fields=["provider_account", "period_start", "threshold"],
                                    condition=Q(provider_account__isnull=False) & ~Q(kind="drift"),
                                    name="uniq_cap_alert"),
            # whatever the threshold was set to that day: one drift alert per account and day
            models.UniqueConstraint(fields=["provider_account", "period_start"],
                                    condition=Q(provider_account__isnull=False, kind="drift"),
                                    name="uniq_drift_alert"),
            models.UniqueConstraint(fields=["tenant", "period_start"],
                                    condition=Q(budget__isnull=True, provider_account__isnull=True, kind="anomaly"),
                                    name="uniq_anomaly_alert"),
        ]

    def __str__(self) -> str:
        return self.message


class SavedSpendView(models.Model):
    """A named dashboard view (its filters as a query string), shared with the organization:
    finance's "saved report", opened from the Spend page or by its link."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000)  # normalized by ``billing.dashboard.Filters.query``
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_saved_spend_view_name")]

    def __str__(self) -> str:
        return self.name


class ProviderBillingDay(models.Model):
    """One provider account's charges for one UTC day as the provider reports them, next to ours.

    Written by the daily reconciliation (``billing.reconcile``), which re-fetches the last few
    days every run because providers revise recent figures (AWS marks them ``Estimated``).
    Amounts are in the provider's billing currency (all three billing APIs answer in USD), so
    no exchange rate sits between the two figures. ``provider_amount`` covers the resources our
    pods launched (matched by external id or tag); ``other_amount`` is what the same account
    was charged that day for anything else (launched by hand, volumes, serverless).
    """

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()  # a UTC day: providers bill in UTC days
    currency = models.CharField(max_length=3, default="USD")
    ours_amount = models.DecimalField(max_digits=14, decimal_places=6)
    provider_amount = models.DecimalField(max_digits=14, decimal_places=6)
    other_amount = models.DecimalField(max_digits=14, decimal_places=6, default=0)
    estimated = models.BooleanField(default=False)
    drift_flagged = models.BooleanField(default=False)  # over the threshold at the last fetch
    fetched_at = models.DateTimeField()
    first_fetched_at = models.DateTimeField()

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["day"]
        indexes = [models.Index(fields=["tenant", "day"], name="billingday_tenant_day_idx")]
        constraints = [models.UniqueConstraint(fields=["provider_account", "day"], name="uniq_billing_day")]

    @property
    def drift_amount(self):
        return self.ours_amount - self.provider_amount


class ProviderBillingFetch(models.Model):
    """The last reconciliation attempt of one account: when it ran, when it last worked and why
    it failed (a key without billing access, the provider down), so the page can say so."""

    provider_account = models.OneToOneField(ProviderAccount, on_delete=models.CASCADE, primary_key=True,
                                            related_name="billing_fetch")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    attempted_at = models.DateTimeField()
    succeeded_at = models.DateTimeField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)  # empty after a success

    objects = TenantQuerySet.as_manager()


class SpendDigest(models.Model):
    """A member's recurring spend e-mail (finance's "daily/weekly digest"): what was spent in the
    last day or week, month to date and the forecast, the top workloads, idle GPU spend and the
    budgets — limited to the projects the member may see. Budget alerts stay immediate."""

    class Frequency(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly (Mondays)"

    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    frequency = models.CharField(max_length=8, choices=Frequency.choices)
    last_sent_on = models.DateField(null=True, blank=True)  # the UTC day it last went out: one a day at most
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["tenant", "user"], name="uniq_spend_digest")]

    def __str__(self) -> str:
        return f"{self.frequency} digest for {self.user} @ {self.tenant}"
