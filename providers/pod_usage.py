"""What the pods of the app above hold on provider accounts, asked without importing that app.

Removing an account, or an organization's invoice rate, depends on the pods still running there,
but providers must not import workloads (the one direction is tenants ← providers ← workloads ←
billing). Workloads registers its answers here at start-up (``WorkloadsConfig.ready``, from
``workloads/pods/selectors.py``); until it does, no account holds a pod.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenants.models import Tenant

    from .models import ProviderAccount


@dataclass(frozen=True)
class PodUsage:
    # a pod on the account that has not ended (a stopped pod still holds a disk there)
    live_on_account: Callable[[ProviderAccount], bool]
    # any pod the account ever ran (its history and costs keep pointing at the account)
    any_on_account: Callable[[ProviderAccount], bool]
    # a pod of the organization still metered (not ended) in the currency
    live_billing_in: Callable[[Tenant, str], bool]


NO_PODS = PodUsage(live_on_account=lambda account: False, any_on_account=lambda account: False,
                   live_billing_in=lambda tenant, currency: False)
_usage = NO_PODS


def register(usage: PodUsage) -> None:
    global _usage
    _usage = usage


def pod_usage() -> PodUsage:
    return _usage
