"""Each provider's invoice rules, and the pure arithmetic that applies them.

Everything here is pure (no database): the ledger (``billing.metering``) calls
``charges_at`` for a pod at successive instants and books the differences, so that the sum
of a pod's ledger entries always equals what the provider's invoice rules say it owes at
that instant. The invoice-case tests exercise these functions through the real metering.

Rules (documented here because finance will ask):

* **GPU time** is charged from ``started_at`` (first *running*) to the end of the running
  session: ``stopped_at`` (a stopped pod keeps its disk, not its GPU) or ``ended_at``.
  Provisioning time is not charged.
* **Increment**: the elapsed running time is rounded *up* to the provider's billing increment
  (1 s, 60 s, 3600 s); a started increment is owed as soon as it starts, so a running pod on
  an hourly provider shows the whole current hour as spent (that is what the invoice will
  say, and what budgets must count).
* **Minimum charge**: a session is charged at least ``minimum_charge_seconds``.
* **Interrupted** (spot reclaimed by the provider): the increment the provider cut short is
  not charged and the minimum does not apply (AWS's rule for provider-initiated
  interruptions; per-second providers lose at most a second). Nothing after the interruption
  is charged.
* **Monthly-billed dedicated servers** (Hetzner Robot): the monthly price is amortized evenly
  over the seconds of each calendar month the server is held (pro rata from delivery in the
  first month). Cancellation takes effect at the end of the month in which the server is
  released, so the rest of that month is booked at release. The one-off setup fee is booked
  at delivery. A stopped dedicated server is still held, so it keeps being charged.
* **Storage while stopped**: where the provider bills persistent volumes of stopped pods,
  ``persistent GB x storage price per GB-month / 730 h`` per hour stopped, from
  ``stopped_at`` to ``ended_at`` (or now).
* **Currency**: amounts are computed in the provider's currency, then converted to USD at the
  invoice rate in force when the entry is booked; the rate is stored on the entry.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

Q6 = Decimal("0.000001")
HOURS_PER_MONTH = Decimal(730)  # the cloud convention for per-GB-month storage prices


@dataclass(frozen=True)
class BillingRule:
    """How one provider kind invoices (merged from ProviderInfo and the table below)."""

    kind: str
    increment_seconds: int = 1
    minimum_charge_seconds: int = 0
    currency: str = "USD"
    monthly_billed: bool = False
    storage_billed_while_stopped: bool = False
    storage_price_per_gb_month: Decimal = Decimal("0")  # in ``currency``
    setup_fee: Decimal = Decimal("0")  # default when the offer snapshot has none


# Facts ProviderInfo does not carry (storage price) and fallbacks for kinds whose adapter is
# not registered yet. Sources: providers' public pricing pages (see
# ../shared/reference/providers.md); per-account overrides go in
# ProviderAccount.settings["billing"] (same keys as BillingRule).
#
# | kind       | increment | minimum | currency | stopped storage    | notes                          |
# |------------|-----------|---------|----------|--------------------|--------------------------------|
# | sandbox    | 1 s       | -       | USD      | $0.10 / GB-month   | simulated                      |
# | runpod     | 1 s       | -       | USD      | $0.20 / GB-month   | stopped pods keep volume disk  |
# | lambda     | 60 s      | -       | USD      | -                  | cannot stop; terminate only    |
# | vast       | 1 s       | -       | USD      | $0.15 / GB-month   | storage billed while stopped   |
# | hetzner    | monthly   | 1 month | EUR      | - (server held)    | + one-off setup fee            |
# | aws        | 1 s       | 60 s    | USD      | $0.08 / GB-month   | EBS gp3 while stopped          |
# | gcp        | 1 s       | 60 s    | USD      | $0.10 / GB-month   | balanced PD while stopped      |
# | azure      | 60 s      | 60 s    | USD      | $0.10 / GB-month   | managed disk while deallocated |
# | coreweave  | 60 s      | -       | USD      | -                  |                                |
# | kubernetes | 1 s       | -       | USD      | -                  | on-prem, internal price        |
BILLING_TABLE: dict[str, dict] = {
    "sandbox": {"increment_seconds": 1, "storage_billed_while_stopped": True, "storage_price_per_gb_month": Decimal("0.10")},
    "runpod": {"increment_seconds": 1, "storage_billed_while_stopped": True, "storage_price_per_gb_month": Decimal("0.20")},
    "lambda": {"increment_seconds": 60},
    "vast": {"increment_seconds": 1, "storage_billed_while_stopped": True, "storage_price_per_gb_month": Decimal("0.15")},
    "hetzner": {"monthly_billed": True, "currency": "EUR", "setup_fee": Decimal("0")},
    "aws": {"increment_seconds": 1, "minimum_charge_seconds": 60, "storage_billed_while_stopped": True,
            "storage_price_per_gb_month": Decimal("0.08")},
    "gcp": {"increment_seconds": 1, "minimum_charge_seconds": 60, "storage_billed_while_stopped": True,
            "storage_price_per_gb_month": Decimal("0.10")},
    "azure": {"increment_seconds": 60, "minimum_charge_seconds": 60, "storage_billed_while_stopped": True,
              "storage_price_per_gb_month": Decimal("0.10")},
    "coreweave": {"increment_seconds": 60},
    "kubernetes": {"increment_seconds": 1},
}

_INFO_FIELDS = {"billing_increment_seconds": "increment_seconds", "minimum_charge_seconds": "minimum_charge_seconds",
                "currency": "currency", "monthly_billed": "monthly_billed",
                "storage_billed_while_stopped": "storage_billed_while_stopped"}


def rule_for(kind: str, account_settings: dict | None = None) -> BillingRule:
    """The billing rule of a provider kind: table fallback < ProviderInfo < account override."""
    values: dict = {"kind": kind, **BILLING_TABLE.get(kind, {})}
    try:
        from providers.adapters.registry import provider_info

        info = provider_info(kind)
    except (KeyError, ImportError, AttributeError):
        info = None
    if info is not None:
        for src, dst in _INFO_FIELDS.items():
            if hasattr(info, src):
                values[dst] = getattr(info, src)
    override = (account_settings or {}).get("billing") or {}
    for key in ("increment_seconds", "minimum_charge_seconds", "currency", "monthly_billed",
                "storage_billed_while_stopped", "storage_price_per_gb_month", "setup_fee"):
        if key in override:
            values[key] = override[key]
    for key in ("storage_price_per_gb_month", "setup_fee"):
        values[key] = Decimal(str(values.get(key, "0")))
    values["increment_seconds"] = max(1, int(values.get("increment_seconds", 1)))
    return BillingRule(**values)


@dataclass(frozen=True)
class PodFacts:
    """What the ledger needs to know about a pod (decoupled from the ORM for testing)."""

    price_per_hour: Decimal  # provider currency, locked at launch
    started_at: datetime | None
    gpu_end: datetime | None  # end of the running session, None while running
    ended_at: datetime | None  # pod gone (None while it exists)
    stopped_at: datetime | None
    interrupted: bool = False
    persistent_gb: int = 0
    monthly_price: Decimal | None = None
    setup_fee: Decimal = Decimal("0")


def q6(x: Decimal) -> Decimal:
    return x.quantize(Q6, ROUND_HALF_UP)


def charged_seconds(elapsed: float, rule: BillingRule, *, closed: bool, interrupted: bool) -> int:
    """Seconds the provider charges for a running session of ``elapsed`` seconds."""
    if elapsed <= 0:
        return 0
    inc = rule.increment_seconds
    if closed and interrupted:
        return int(math.floor(elapsed / inc + 1e-9)) * inc
    n = int(math.ceil(elapsed / inc - 1e-9)) * inc
    return max(n, rule.minimum_charge_seconds)


def _month_bounds(at: datetime) -> tuple[datetime, datetime]:
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    days = calendar.monthrange(at.year, at.month)[1]
    return start, start + timedelta(days=days)


def monthly_amount(price: Decimal, start: datetime, until: datetime, *, closed: bool) -> Decimal:
    """Amortized monthly charge for holding a server from ``start`` to ``until``.

    Pro rata per second of each calendar month; if ``closed`` the month of ``until`` is
    charged to its end (cancellation takes effect at month end).
    """
    total = Decimal(0)
    cursor = start
    while True:
        m_start, m_end = _month_bounds(cursor)
        month_seconds = Decimal(int((m_end - m_start).total_seconds()))
        last = until <= m_end
        seg_end = (m_end if closed else until) if last else m_end
        total += price * Decimal(str((seg_end - cursor).total_seconds())) / month_seconds
        if last:
            break
        cursor = m_end
    return total


def charges_at(facts: PodFacts, rule: BillingRule, at: datetime) -> dict[str, Decimal]:
    """Cumulative amount owed per ledger kind (provider currency, 6 dp) as known at ``at``.

    ``at`` beyond the pod's end gives the final amounts. Deterministic, so booking
    ``charges_at(t2) - charges_at(t1)`` for consecutive instants never drifts.
    """
    out = {"gpu": Decimal(0), "storage": Decimal(0), "setup": Decimal(0)}
    start = facts.started_at
    if start is None or at <= start:
        return out
    if rule.monthly_billed:
        price = facts.monthly_price if facts.monthly_price is not None else facts.price_per_hour * HOURS_PER_MONTH
        closed = facts.ended_at is not None and at >= facts.ended_at
        until = facts.ended_at if closed else at
        out["gpu"] = q6(monthly_amount(price, start, until, closed=closed))
        out["setup"] = q6(facts.setup_fee)
        return out
    closed = facts.gpu_end is not None and at >= facts.gpu_end
    end = facts.gpu_end if closed else at
    seconds = charged_seconds((end - start).total_seconds(), rule, closed=closed, interrupted=facts.interrupted)
    out["gpu"] = q6(facts.price_per_hour * seconds / Decimal(3600))
    if rule.storage_billed_while_stopped and facts.persistent_gb and facts.stopped_at and at > facts.stopped_at:
        s_end = min(at, facts.ended_at) if facts.ended_at else at
        stopped = Decimal(str(max(0.0, (s_end - facts.stopped_at).total_seconds())))
        out["storage"] = q6(rule.storage_price_per_gb_month * facts.persistent_gb * stopped / (HOURS_PER_MONTH * 3600))
    return out
