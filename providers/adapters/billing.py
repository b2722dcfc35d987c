"""Provider billing figures: what each provider says it charged, per UTC day and resource.

Kept apart from the adapters (one small module per provider, ``<kind>_billing.py``) so the
reconciliation does not touch the adapter interface: a billing client takes the account's
ordinary adapter (its HTTP client or boto3 session, credentials and base URL) and asks the
provider's billing API for a range of whole UTC days -- providers bill in UTC days.

Each client returns one :class:`DayCharges` per day with the amount per provider resource,
keyed the way our pods remember that resource (``match``): RunPod and Vast.ai by the
provider's id (``Pod.external_id``), AWS by our ``provisioner:pod`` tag (the pod UUID) because
Cost Explorer groups by cost-allocation tag, not by instance.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

MATCH_EXTERNAL_ID = "external_id"
MATCH_TAG = "tag"


@dataclass(frozen=True)
class DayCharges:
    """One UTC day of an account's charges as the provider reports them."""

    day: date
    currency: str
    by_resource: dict[str, Decimal] = field(default_factory=dict)  # resource key -> amount (provider currency)
    unattributed: Decimal = Decimal(0)  # charged that day but not to any resource key (e.g. untagged AWS cost)
    estimated: bool = False  # the provider says the figure may still change (AWS: ``Estimated``)

    @property
    def total(self) -> Decimal:
        return sum(self.by_resource.values(), Decimal(0)) + self.unattributed


@dataclass(frozen=True)
class BillingClient:
    fetch: Callable[[Any, date, date], list[DayCharges]]  # (adapter, first day, last day) inclusive
    match: str  # MATCH_EXTERNAL_ID | MATCH_TAG
    source: str  # the endpoint, shown on the Spend page


# kind -> (module, what our pods are matched on, the endpoint). Imported lazily like the adapters.
CLIENTS: dict[str, tuple[str, str, str]] = {
    "runpod": ("providers.adapters.runpod_billing", MATCH_EXTERNAL_ID, "RunPod REST v2 GET /v2/billing/pods"),
    "vast": ("providers.adapters.vast_billing", MATCH_EXTERNAL_ID, "Vast.ai GET /api/v0/charges"),
    "aws": ("providers.adapters.aws_billing", MATCH_TAG, "AWS Cost Explorer GetCostAndUsage"),
}


def has_billing_api(kind: str) -> bool:
    return kind in CLIENTS


def billing_client(kind: str) -> BillingClient | None:
    """The billing client of a provider kind, or None where the provider exposes no billing API."""
    if kind not in CLIENTS:
        return None
    module, match, source = CLIENTS[kind]
    return BillingClient(fetch=importlib.import_module(module).fetch_days, match=match, source=source)


def money(value: Any) -> Decimal:
    """A provider's JSON number as a Decimal without binary-float noise (0.1 stays 0.1)."""
    return Decimal(str(value)) if value not in (None, "") else Decimal(0)
