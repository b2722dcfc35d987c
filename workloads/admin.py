from django.contrib import admin

from .models import Pod, PodEvent, Recipe, RecipeVersion, ScheduledRun, TenantSecret, Workload


class RecipeVersionInline(admin.StackedInline):
    model = RecipeVersion
    extra = 0


@admin.register(Recipe)
class RecipeAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "tenant", "builtin", "category"]
    list_filter = ["builtin", "category"]
    inlines = [RecipeVersionInline]


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin):
    list_display = ["name", "tenant", "project", "lifecycle", "gpu_class", "gpu_count", "state"]
    list_filter = ["lifecycle", "state", "tenant"]


class PodEventInline(admin.TabularInline):
    model = PodEvent
    extra = 0
    readonly_fields = ["at", "kind", "message"]


@admin.register(Pod)
class PodAdmin(admin.ModelAdmin):
    list_display = ["pk", "workload", "provider_account", "state", "region", "price_usd_per_hour", "cost_usd"]
    list_filter = ["state", "spot"]
    inlines = [PodEventInline]


@admin.register(TenantSecret)
class TenantSecretAdmin(admin.ModelAdmin):
    """Names only: the value is write-only (set through the Secrets page)."""

    list_display = ["name", "tenant", "created_at"]
    exclude = ["value"]
    readonly_fields = ["tenant", "name", "created_by"]


@admin.register(ScheduledRun)
class ScheduledRunAdmin(admin.ModelAdmin):
    list_display = ["workload", "due_at", "state", "window_ends_at", "note"]
    list_filter = ["state"]
