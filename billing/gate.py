"""The budget gate: the one place ``workloads`` calls upward.

It must stay free of imports of ``workloads`` (dependency direction: billing depends on
workloads, never the reverse), so the billing modules it uses are imported lazily.

* ``may_spend`` — read-only: would a launch at this price fit under every hard budget of the
  tenant/project and under the provider account's spending cap? Placement calls it per
  candidate.
* ``reserve_launch`` — the same check under row locks, and on success a reservation of the
  projected cost for the pod (see ``billing.budgets`` for the definition), so concurrent
  launches cannot overspend. ``pod_provision`` calls it for the candidate it is about to launch.
* ``release`` — drop the pod's reservation (its launch failed; ended pods are released by
  the meter).
* ``live_cost_usd`` — a pod's cost so far (ledger + the live, not-yet-metered tail under the
  provider's billing rules), so the pod page shows the same figure the ledger will book.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

SCOPE_BUDGET = "budget"
SCOPE_PROVIDER_CAP = "provider_cap"


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    reason: str = ""
    budget_name: str = ""
    scope: str = ""  # SCOPE_BUDGET (refuse the launch) or SCOPE_PROVIDER_CAP (try another account)
    reservation_id: str = ""


def _decision(v) -> GateDecision:
    return GateDecision(v.allowed, v.reason, v.budget_name, v.scope, v.reservation_id)


def may_spend(*, tenant_id, project_id, provider_account_id, usd_per_hour: Decimal,
              hours: Decimal | None = None) -> GateDecision:
    """May this tenant/project start spending ``usd_per_hour`` on that provider account?"""
    from .budgets import evaluate

    verdict, _ = evaluate(tenant_id=tenant_id, project_id=project_id, provider_account_id=provider_account_id,
                          usd_per_hour=usd_per_hour, hours=hours, lock=False)
    return _decision(verdict)


def spend_gate(*, tenant_id, project_id, capped_account_ids: Iterable[str] | None = None,
               budgeted: bool | None = None):
    """``may_spend`` for one placement that asks about many accounts.

    Placement asks the gate once per candidate account. The answer can only be "no" where a hard
    budget covers this tenant/project or the account has a spending cap, so those two facts are
    read once and the full evaluation runs only for the checks they concern. The answers are the
    same as ``may_spend``'s; the launch itself is still checked under lock by ``reserve_launch``.
    ``capped_account_ids``: the tenant's accounts that have a spending cap, when the caller has
    just read its accounts anyway (one query fewer); read here otherwise. ``budgeted``: whether
    ``hard_budgets_for(tenant_id, project_id)`` has a row, when the caller read that fact with its
    own (placement's one policy statement); read here otherwise.
    """
    from providers.models import ProviderAccount

    from .selectors import hard_budgets_for

    if budgeted is None:
        budgeted = hard_budgets_for(tenant_id=tenant_id, project_id=project_id).exists()
    if capped_account_ids is None:
        capped_account_ids = ProviderAccount.objects.filter(
            tenant_id=tenant_id, spending_cap_usd__isnull=False).values_list("pk", flat=True)
    capped = {str(pk) for pk in capped_account_ids}

    def check(*, tenant_id=tenant_id, project_id=project_id, provider_account_id, usd_per_hour: Decimal,
              hours: Decimal | None = None) -> GateDecision:
        if not budgeted and str(provider_account_id) not in capped:
            return GateDecision(True)
        return may_spend(tenant_id=tenant_id, project_id=project_id, provider_account_id=provider_account_id,
                         usd_per_hour=usd_per_hour, hours=hours)

    return check


def reserve_launch(*, tenant_id, project_id, provider_account_id, usd_per_hour: Decimal, pod_id,
                   hours: Decimal | None = None) -> GateDecision:
    """Check under lock and reserve the launch's projected cost for ``pod_id``."""
    from .budgets import reserve_launch as _reserve

    return _decision(_reserve(tenant_id=tenant_id, project_id=project_id, provider_account_id=provider_account_id,
                              usd_per_hour=usd_per_hour, pod_id=pod_id, hours=hours))


def release(*, pod_id) -> None:
    """Release the pod's reservation. Safe to call twice."""
    from .budgets import reservation_release

    reservation_release(pod_id=pod_id)


def live_cost_usd(pod) -> Decimal:
    """Booked cost plus the live tail since the last meter, by the same rules as the ledger.

    Reads ``pod.provider_account`` and ``pod.workload`` (select_related them for lists); the
    invoice rates are read only for pods billed in another currency.
    """
    from providers.selectors import usd_rates_needed

    from .metering import unbooked_usd

    # the pod's own tenant's rates: another organization's override must never price this pod
    return (pod.cost_usd or Decimal(0)) + unbooked_usd(pod, usd_rates_needed(pod.tenant_id, [pod.currency]))
