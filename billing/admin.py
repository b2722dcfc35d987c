"""Operator admin for billing. Invoice rates are edited in the providers admin
(providers.InvoiceRate); ledger and rollups are read-only here (write through services)."""

from django.contrib import admin

from .models import Budget, BudgetAlert, BudgetReservation, LedgerEntry, ProviderBillingDay, SpendRollup


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "project", "period", "amount_usd", "soft_thresholds", "hard_limit",
                    "stop_running_pods"]
    list_filter = ["tenant", "period", "hard_limit"]
    search_fields = ["name"]
    exclude = ["webhook_secret"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["pod", "kind", "bucket_start", "amount", "currency", "usd_rate", "amount_usd", "note"]
    list_filter = ["tenant", "kind", "currency"]
    readonly_fields = [f.name for f in LedgerEntry._meta.fields]


@admin.register(SpendRollup)
class SpendRollupAdmin(admin.ModelAdmin):
    list_display = ["day", "tenant", "project", "provider_account", "workload", "amount_usd"]
    list_filter = ["tenant"]
    date_hierarchy = "day"
    readonly_fields = [f.name for f in SpendRollup._meta.fields]


@admin.register(BudgetReservation)
class BudgetReservationAdmin(admin.ModelAdmin):
    list_display = ["pod", "tenant", "project", "provider_account", "amount_usd", "created_at", "released_at"]
    list_filter = ["tenant"]
    readonly_fields = [f.name for f in BudgetReservation._meta.fields]


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    list_display = ["created_at", "tenant", "message", "threshold", "webhook_status", "read_at"]
    list_filter = ["tenant", "threshold"]
    readonly_fields = [f.name for f in BudgetAlert._meta.fields]


@admin.register(ProviderBillingDay)
class ProviderBillingDayAdmin(admin.ModelAdmin):
    list_display = ["day", "tenant", "provider_account", "currency", "ours_amount", "provider_amount", "other_amount",
                    "drift_flagged", "estimated", "fetched_at"]
    list_filter = ["tenant", "drift_flagged"]
    date_hierarchy = "day"
    readonly_fields = [f.name for f in ProviderBillingDay._meta.fields]
