"""Reads for workloads."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import QuerySet

from billing.gate import live_cost_usd
from providers.models import ProviderAccount
from providers.pod_usage import PodUsage
from tenants.models import Tenant
from workloads.models import Pod, Workload


def pods_for_tenant(tenant: Tenant | None) -> QuerySet[Pod]:
    return Pod.objects.for_tenant(tenant).select_related("workload", "provider_account", "project")


def pods_for(membership) -> QuerySet[Pod]:
    """The pods a member may see (the access helper's restricted queryset), with what the pod
    list shows of each: workload and its owner, account, project."""
    return Pod.objects.restrict(membership).select_related("workload__owner", "provider_account", "project")


def workloads_for_tenant(tenant: Tenant | None) -> QuerySet[Workload]:
    return Workload.objects.for_tenant(tenant).select_related("project", "owner")


def pod_cost_so_far(pod: Pod) -> Decimal:
    """Metered cost plus the not-yet-metered tail (live accrual), computed by billing with the
    provider's invoice rules (increments, minimums, storage) so it matches the ledger."""
    return live_cost_usd(pod)


def account_has_live_pods(account: ProviderAccount) -> bool:
    return Pod.objects.filter(provider_account=account, ended_at__isnull=True).exists()


def account_has_pods(account: ProviderAccount) -> bool:
    return Pod.objects.filter(provider_account=account).exists()


def tenant_has_live_pods_in(tenant: Tenant, currency: str) -> bool:
    return Pod.objects.for_tenant(tenant).filter(currency=currency, ended_at__isnull=True).exists()


# providers asks these through providers.pod_usage (registered in WorkloadsConfig.ready)
POD_USAGE = PodUsage(live_on_account=account_has_live_pods, any_on_account=account_has_pods,
                     live_billing_in=tenant_has_live_pods_in)
