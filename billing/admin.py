from django.contrib import admin

from .models import Budget, LedgerEntry


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "project", "period", "amount_usd", "hard_limit"]
    list_filter = ["tenant", "period", "hard_limit"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    list_display = ["pod", "kind", "bucket_start", "bucket_end", "amount", "currency", "amount_usd"]
    list_filter = ["tenant", "kind", "currency"]
    readonly_fields = [f.name for f in LedgerEntry._meta.fields]
