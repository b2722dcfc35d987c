"""Connected provider accounts, their capacity snapshots (offers) and the Sandbox's pods."""

from __future__ import annotations

import uuid

from django.conf import settings as django_settings
from django.db import models
from django_cryptography.fields import encrypt

from tenants.access import TenantQuerySet
from tenants.models import Tenant


class ProviderKind(models.TextChoices):
    SANDBOX = "sandbox", "Sandbox (simulated)"
    RUNPOD = "runpod", "RunPod"
    LAMBDA = "lambda", "Lambda Cloud"
    VAST = "vast", "Vast.ai"
    HETZNER = "hetzner", "Hetzner (dedicated GPU servers)"
    AWS = "aws", "AWS EC2"
    GCP = "gcp", "Google Cloud"
    AZURE = "azure", "Microsoft Azure"
    KUBERNETES = "kubernetes", "Kubernetes (on-prem)"
    COREWEAVE = "coreweave", "CoreWeave (CKS)"


class CapPeriod(models.TextChoices):
    DAY = "day", "per day"
    WEEK = "week", "per week"
    MONTH = "month", "per month"


class Health(models.TextChoices):
    UNKNOWN = "unknown", "Not polled yet"
    OK = "ok", "Healthy"
    STALE = "stale", "Stale (last poll failed)"
    ERROR = "error", "Failing"


class ProviderAccount(models.Model):
    """One organization's connection to one provider.

    ``credentials`` is encrypted at rest and never rendered back. ``settings`` holds
    non-secret per-account options: ``base_url`` (admin-only stand-in override), rate cards,
    Sandbox knobs.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="provider_accounts")
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    name = models.CharField(max_length=120)
    credentials = encrypt(models.JSONField(default=dict, blank=True))
    settings = models.JSONField(default=dict, blank=True)
    spending_cap_usd = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    spending_cap_period = models.CharField(max_length=8, choices=CapPeriod.choices, default=CapPeriod.MONTH)
    allowed_regions = models.JSONField(default=list, blank=True)
    allowed_countries = models.JSONField(default=list, blank=True)
    default_gpu_class = models.CharField(max_length=16, blank=True)
    preference_rank = models.PositiveIntegerField(default=100, help_text="Lower is preferred")
    # spot bids on this account (Vast.ai, RunPod): % above the floor when the workload sets none;
    # None: settings.SPOT_BID_MARGIN_PCT (workloads.placement.bids)
    spot_bid_margin_pct = models.PositiveSmallIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    health = models.CharField(max_length=8, choices=Health.choices, default=Health.UNKNOWN)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    offer_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(django_settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["preference_rank", "name"]
        constraints = [models.UniqueConstraint(fields=["tenant", "name"], name="uniq_provider_account_name")]
        permissions = [
            ("use_credentials", "Use this account's credentials to provision"),
            ("manage_provider", "Change or remove this provider account"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()})"


class Offer(models.Model):
    """A capacity snapshot row: one shape at one place at one price. Replaced per poll."""

    provider_account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="offers")
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=16, choices=ProviderKind.choices)
    gpu_class = models.CharField(max_length=16)
    gpu_count = models.PositiveSmallIntegerField()
    region = models.CharField(max_length=64)
    country = models.CharField(max_length=2)
    zone = models.CharField(max_length=64, blank=True)
    spot = models.BooleanField(default=False)
    price_per_hour = models.DecimalField(max_digits=12, decimal_places=6)
    currency = models.CharField(max_length=3, default="USD")
    price_usd_per_hour = models.DecimalField(max_digits=12, decimal_places=6)
    available = models.IntegerField(null=True, blank=True)
    availability = models.CharField(max_length=8, blank=True)
    instance_type = models.CharField(max_length=128, blank=True)
    gpu_memory_gb = models.PositiveIntegerField(null=True, blank=True)
    setup_fee = models.DecimalField(max_digits=12, decimal_places=2, default=0)
    monthly_price = models.DecimalField(max_digits=12, decimal_places=2, null=True, blank=True)
    supports_volumes = models.JSONField(default=list, blank=True)
    extra = models.JSONField(default=dict, blank=True)
    fetched_at = models.DateTimeField()
    stale = models.BooleanField(default=False)

    objects = TenantQuerySet.as_manager()

    class Meta:
        indexes = [
            # placement: equality on tenant/class/count, then exactly placement's order (price, spot,
            # id), so "the 60 cheapest of this shape" is an ordered index scan that stops early
            models.Index(fields=["tenant", "gpu_class", "gpu_count", "price_usd_per_hour", "spot", "id"],
                         name="offer_placement_idx"),
            # pinned placement: one ordered scan per (class, pinned country or region), stopping after
            # a page however few offers of the class the place has (workloads.placement._keys); the
            # country one also serves (tenant, country) lookups
            models.Index(fields=["tenant", "country", "gpu_class", "gpu_count", "price_usd_per_hour", "spot", "id"],
                         name="offer_country_place_idx"),
            models.Index(fields=["tenant", "region", "gpu_class", "gpu_count", "price_usd_per_hour", "spot", "id"],
                         name="offer_region_place_idx"),
            # a custom instance type, cheapest first
            models.Index(fields=["tenant", "instance_type", "price_usd_per_hour", "spot", "id"],
                         name="offer_instance_type_idx"),
            models.Index(fields=["provider_account", "fetched_at"], name="offer_account_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.gpu_count}x{self.gpu_class} {self.region} ${self.price_usd_per_hour}/h"


class SandboxInstance(models.Model):
    """A simulated pod of the Sandbox provider. The Sandbox is a provider like any other,
    only its "cloud" lives in our database so that web, worker and tests all see it."""

    account = models.ForeignKey(ProviderAccount, on_delete=models.CASCADE, related_name="sandbox_instances")
    external_id = models.CharField(max_length=32, unique=True)
    tag = models.CharField(max_length=64, db_index=True)
    spec = models.JSONField(default=dict)
    created_at = models.DateTimeField()
    boot_at = models.DateTimeField()
    interrupt_at = models.DateTimeField(null=True, blank=True)
    exit_at = models.DateTimeField(null=True, blank=True)
    stopped_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)


class InvoiceRateQuerySet(models.QuerySet):
    """Rows are either the platform's (``tenant`` NULL, edited by operators in the admin) or
    one organization's overrides. Never read the table unfiltered: an override is that
    organization's private finance setting."""

    def platform(self):
        return self.filter(tenant__isnull=True)

    def for_tenant(self, tenant: Tenant | None):
        """The organization's own overrides only (not the platform rows it falls back to)."""
        if tenant is None:
            return self.none()
        return self.filter(tenant=tenant)


class InvoiceRate(models.Model):
    """USD value of one unit of a billing currency, as the providers invoice it.

    A row without a tenant is the platform's rate; a row with one is that organization's
    override (e.g. its finance converts a Hetzner EUR invoice at its bank's rate). The rate
    a tenant's money uses is ``providers.selectors.usd_rates_for_tenant``: its override, else
    the platform row, else the built-in default. Offers are normalized with the current rate;
    ledger entries copy the rate they used so that history never changes when a rate does.
    """

    tenant = models.ForeignKey(Tenant, null=True, blank=True, on_delete=models.CASCADE, related_name="+",
                               help_text="Empty: the platform rate every organization falls back to")
    currency = models.CharField(max_length=3)
    usd_per_unit = models.DecimalField(max_digits=12, decimal_places=6)
    updated_at = models.DateTimeField(auto_now=True)

    objects = InvoiceRateQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["tenant", "currency"], name="uniq_invoice_rate_tenant_currency"),
            # NULLs are distinct in a unique index, so the platform rows need their own constraint
            models.UniqueConstraint(fields=["currency"], condition=models.Q(tenant__isnull=True),
                                    name="uniq_invoice_rate_platform_currency"),
        ]

    def __str__(self) -> str:
        return f"1 {self.currency} = {self.usd_per_unit} USD"
