"""The budget gate: the one function ``workloads`` calls upward.

It must stay free of imports of ``workloads`` (dependency direction: billing depends on
workloads, never the reverse).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class GateDecision:
    allowed: bool
    reason: str = ""
    budget_name: str = ""


def may_spend(*, tenant_id, project_id, provider_account_id, usd_per_hour: Decimal, hours: Decimal | None = None) -> GateDecision:
    """May this tenant/project start spending ``usd_per_hour`` on that provider account?

    Foundation version: every hard-limit budget whose period spend has reached its amount
    refuses. The billing issue extends this with reservations and provider caps.
    """
    from .selectors import exhausted_hard_budget

    budget = exhausted_hard_budget(tenant_id=tenant_id, project_id=project_id)
    if budget is not None:
        return GateDecision(False, f'Budget "{budget.name}" is exhausted for this period', budget.name)
    return GateDecision(True)
