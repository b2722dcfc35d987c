"""Each provider's invoice rules (one table, each rule citing the provider's document), and
the pure arithmetic that applies them.

Everything here is pure (no database): the ledger (``billing.metering``) calls ``charges_at``
for a pod at successive instants and books the differences, so that the sum of a pod's ledger
entries always equals what the provider's invoice rules say it owes at that instant (a later
fact, such as a spot interruption inside AWS's first hour, can lower it: the difference is
booked as a negative line, the way the provider's invoice nets it). The invoice-case table
(``tests/billing/test_invoice_cases.py``) exercises these rules through the real launch path.

General rules (where a provider's document says otherwise, its row in ``BILLING_TABLE`` wins):

* **GPU time** is charged for every *running session*: from reaching ``running`` to the stop
  (``stopped``) or the end of the pod. A pod stopped and started again has several sessions,
  each charged (increment and minimum apply per session, as the providers apply them per start).
* **Increment**: a session's time is rounded to the provider's increment: ``up`` (a started
  increment is owed as soon as it starts) or ``down`` (only whole increments, Azure's FAQ).
* **Storage** is charged per second on the disks the provider bills apart from the instance
  price, at a price per GB-month of 730 hours, while running and/or while stopped.
* **Currency**: amounts are computed in the provider's currency (the offer's), then converted
  at the invoice rate in force when the ledger bucket is opened (``billing.metering``).

Per-account overrides (a negotiated rate, an unusual OS) go in
``ProviderAccount.settings["billing"]`` with the keys of ``BillingRule``; they are explicit
settings made by an administrator. Adapters' ``ProviderInfo`` is *never* read here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

Q6 = Decimal("0.000001")
HOURS_PER_MONTH = Decimal(730)  # per-GB-month storage prices: the 730-hour month of AWS/GCP/RunPod price pages
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class BillingRule:
    """How one provider kind invoices a pod."""

    kind: str
    increment_seconds: int = 1
    rounding: str = "up"  # "up": a started increment is owed; "down": only whole increments
    minimum_charge_seconds: int = 0  # per running session
    currency: str = "USD"
    # dedicated servers (Hetzner Robot): the hourly price per started hour, never more than the
    # offer's monthly price in a calendar month; held (charged) from delivery to cancellation
    monthly_cap: bool = False
    setup_fee: bool = False  # the offer's one-off setup fee, booked once at delivery
    # a spot instance interrupted *by the provider* within this many seconds of its start is
    # not charged at all (AWS: the first instance-hour); later it is charged as usual
    spot_interrupt_free_seconds: int = 0
    # storage billed apart from the instance price, per GB-month, on the boot/container disk
    # (``boot_disk_*``) and the workload's persistent volumes
    storage_running_per_gb_month: Decimal = Decimal("0")
    storage_stopped_per_gb_month: Decimal = Decimal("0")
    boot_disk_billed: bool = False  # the pod's root/container disk is a separate storage charge
    boot_disk_min_gb: int = 0  # the adapter provisions at least this (its own minimum size)
    boot_disk_kept_when_stopped: bool = True  # RunPod drops the container disk on stop
    # Vast.ai: the GPU is charged at the host's base rate and storage at the host's storage
    # price, both from the offer snapshot (not from this table)
    prices_from_offer: bool = False
    source: str = ""  # the provider's billing document (title, section)


SRC = {
    "hetzner": "Hetzner Docs, 'Cancellations on Robot' > 'Canceling dedicated servers' > Notes: 'billing is exact "
               "to the hour. You will never pay more than the monthly price', cancel immediately; Hetzner Docs "
               "'Cancellations FAQ': 'immediately cancel ... only pay the hourly price ... never exceed its monthly "
               "price cap'. Setup fee: Robot order API product 'price_setup' (one-off).",
    "aws": "Amazon EC2 User Guide, 'Billing for interrupted Spot Instances' (Linux: interrupted by EC2 in the "
           "first hour: no charge; after: charged for the seconds used); Amazon EC2 pricing FAQ: per-second "
           "billing, 60-second minimum (Linux); Amazon EBS pricing: gp3 $0.08/GB-month, billed per second while "
           "the volume exists (a stopped instance keeps its EBS volumes).",
    "gcp": "Google Cloud, 'VM instance pricing' > 'Billing model': vCPUs/GPUs/memory charged a minimum of 1 minute, "
           "then in 1-second increments; 'Spot VMs' > Pricing: same per-second model, no free preemption found; "
           "'Disk pricing': balanced persistent disk $0.10/GB-month, billed while the disk exists. The Google "
           "page itself was not in the stored documents: the billing model is quoted from course material that "
           "cites it (Google Cloud's 'Essential Google Cloud Infrastructure: Foundation', Compute pricing).",
    "azure": "Azure FAQ (Virtual Machines), 'If my virtual machine ran for 6 minutes and 45 seconds, how much will "
             "I be billed?': billed for the full minutes the VM runs, no extra seconds, so 6 minutes. "
             "Stopped (deallocated): no compute, managed disks still billed (same FAQ, VM states table). "
             "Read in the Norwegian copy of the FAQ (azure.microsoft.com/nb-no/resources/knowledge-center/"
             "if-my-virtual-machine-ran-for-6-minutes-and-45/); the English page was not in the stored documents.",
    "lambda": "Lambda Docs, 'Billing' > 'On-Demand Cloud (ODC) instances': priced hourly, billed in one-minute "
              "increments from launch (health checks passed) to terminate.",
    "runpod": "Runpod Docs, 'Pricing' > 'How billing works': Pods billed by the second for compute and storage; "
              "'Billing information' > 'Storage billing': running Pods $0.10/GB-month for all storage (container "
              "+ volume disk), stopped Pods $0.20/GB-month for volume storage.",
    "vast": "Vast.ai Docs, 'Billing Help' > 'How does pricing work?': the active rental (GPU) cost for every second "
            "the instance is active; the storage cost (the host's $/GB/month, offer field storage_cost) for every "
            "second the instance exists, stopped included.",
    "coreweave": "CoreWeave Docs, 'Billing and charges': 'calculated on a per-minute basis. There is no minimum "
                 "resource charge'; the GPU hourly price includes vCPU, RAM and ephemeral storage.",
    "sandbox": "Simulated provider (no invoice): per second, persistent volumes $0.10/GB-month while stopped.",
    "kubernetes": "Own cluster (internal price per hour): per second, no storage charge.",
}

# The rule table. Sources disagree in two places, both written down here:
# * Azure: the official FAQ (above) says whole minutes, rounded down, and names no minimum.
#   A Microsoft Q&A community answer (2025-04, not an official page) claims a 5-minute minimum
#   from 2025-06-01 with per-second billing after it. We apply the FAQ; an account that is
#   billed otherwise sets {"minimum_charge_seconds": 300, ...} in its billing settings.
# * RunPod: 'Pricing' says storage is billed by the second, 'Billing information' says credits
#   and storage are charged every minute. We take per second (the pricing page, and what the
#   per-minute debits add up to).
# Month of Hetzner's cap: the calendar month in UTC (Robot invoices monthly; no time zone is
# documented).
#
# | kind       | increment       | minimum | running storage         | stopped storage           | other                 |
# |------------|-----------------|---------|-------------------------|---------------------------|-----------------------|
# | hetzner    | 1 h up          | -       | - (server includes)     | - (cannot stop)           | cap monthly, setup, EUR|
# | aws        | 1 s             | 60 s    | EBS gp3 $0.08 (root+vol)| same                      | spot 1st hour free    |
# | gcp        | 1 s             | 60 s    | PD $0.10 (boot+vol)     | same                      |                       |
# | azure      | 60 s down       | -       | disk $0.10 (OS+vol)     | same                      |                       |
# | lambda     | 60 s up         | -       | -                       | - (cannot stop)           |                       |
# | runpod     | 1 s             | -       | $0.10 container+volume  | $0.20 volume              |                       |
# | vast       | 1 s             | -       | offer storage_cost      | offer storage_cost        | GPU at offer dph_base |
# | coreweave  | 60 s up         | -       | - (included)            | -                         |                       |
BILLING_TABLE: dict[str, dict] = {
    "hetzner": {"increment_seconds": 3600, "currency": "EUR", "monthly_cap": True, "setup_fee": True},
    "aws": {"increment_seconds": 1, "minimum_charge_seconds": 60, "spot_interrupt_free_seconds": 3600,
            "storage_running_per_gb_month": Decimal("0.08"), "storage_stopped_per_gb_month": Decimal("0.08"),
            # providers/adapters/aws.py: root gp3 volume of max(disk_gb, 30) GB
            "boot_disk_billed": True, "boot_disk_min_gb": 30},
    "gcp": {"increment_seconds": 1, "minimum_charge_seconds": 60,
            "storage_running_per_gb_month": Decimal("0.10"), "storage_stopped_per_gb_month": Decimal("0.10"),
            # providers/adapters/gcp.py: pd-balanced boot disk of max(disk_gb, 50) GB
            "boot_disk_billed": True, "boot_disk_min_gb": 50},
    # Azure prices managed disks per size tier, not per GB; no tier price was found in the stored
    # documents, so the per-GB figure the project used before is kept (override per account).
    "azure": {"increment_seconds": 60, "rounding": "down",
              "storage_running_per_gb_month": Decimal("0.10"), "storage_stopped_per_gb_month": Decimal("0.10"),
              # providers/adapters/azure_vm.py: OS disk of max(64, disk_gb) GB
              "boot_disk_billed": True, "boot_disk_min_gb": 64},
    "lambda": {"increment_seconds": 60},
    "runpod": {"increment_seconds": 1, "storage_running_per_gb_month": Decimal("0.10"),
               "storage_stopped_per_gb_month": Decimal("0.20"), "boot_disk_billed": True,
               "boot_disk_kept_when_stopped": False},
    "vast": {"increment_seconds": 1, "prices_from_offer": True, "boot_disk_billed": True},
    "coreweave": {"increment_seconds": 60},
    "sandbox": {"increment_seconds": 1, "storage_stopped_per_gb_month": Decimal("0.10")},
    "kubernetes": {"increment_seconds": 1},
}

_DECIMALS = ("storage_running_per_gb_month", "storage_stopped_per_gb_month")
_INTS = ("increment_seconds", "minimum_charge_seconds", "spot_interrupt_free_seconds", "boot_disk_min_gb")
_OVERRIDABLE = {f.name for f in fields(BillingRule)} - {"kind", "source"}


def rule_for(kind: str, account_settings: dict | None = None) -> BillingRule:
    """The billing rule of a provider kind: the table, then the account's explicit override."""
    rule = BillingRule(kind=kind, source=SRC.get(kind, ""), **BILLING_TABLE.get(kind, {}))
    override = {k: v for k, v in ((account_settings or {}).get("billing") or {}).items() if k in _OVERRIDABLE}
    if "storage_price_per_gb_month" in ((account_settings or {}).get("billing") or {}):
        # the older single storage price meant "while stopped"
        override.setdefault("storage_stopped_per_gb_month",
                            (account_settings or {})["billing"]["storage_price_per_gb_month"])
    if "storage_billed_while_stopped" in ((account_settings or {}).get("billing") or {}):
        if not account_settings["billing"]["storage_billed_while_stopped"]:
            override["storage_stopped_per_gb_month"] = Decimal(0)
    for key in _DECIMALS:
        if key in override:
            override[key] = Decimal(str(override[key]))
    for key in _INTS:
        if key in override:
            override[key] = int(override[key])
    if override:
        rule = replace(rule, **override)
    return replace(rule, increment_seconds=max(1, rule.increment_seconds))


@dataclass(frozen=True)
class PodFacts:
    """What the ledger needs to know about a pod (decoupled from the ORM for testing)."""

    price_per_hour: Decimal  # provider currency, locked at launch
    started_at: datetime | None
    ended_at: datetime | None  # pod gone (None while it exists)
    # running sessions (start, end or None while running), in order
    sessions: tuple[tuple[datetime, datetime | None], ...] = ()
    interrupted: bool = False  # ended by the provider reclaiming spot capacity
    spot: bool = False
    persistent_gb: int = 0
    boot_gb: int = 0  # the boot/container disk the launch asked for
    monthly_price: Decimal | None = None  # from the offer snapshot (Hetzner)
    setup_fee: Decimal = Decimal("0")  # from the offer snapshot (Hetzner)
    base_price_per_hour: Decimal | None = None  # offer's GPU-only rate (Vast dph_base)
    offer_storage_per_gb_month: Decimal | None = None  # offer's storage price (Vast storage_cost)


def q6(x: Decimal) -> Decimal:
    return x.quantize(Q6, ROUND_HALF_UP)


def charged_seconds(elapsed: float, rule: BillingRule) -> int:
    """Seconds the provider charges for one running session of ``elapsed`` seconds."""
    if elapsed <= 0:
        return 0
    inc = rule.increment_seconds
    if rule.rounding == "down":
        n = int(math.floor(elapsed / inc + 1e-9)) * inc
    else:
        n = int(math.ceil(elapsed / inc - 1e-9)) * inc
    return max(n, rule.minimum_charge_seconds)


def _month_start(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def _next_month(m: datetime) -> datetime:
    return (m + timedelta(days=32)).replace(day=1)


def capped_hourly_amount(hourly: Decimal, monthly: Decimal | None, start: datetime, until: datetime) -> Decimal:
    """Hetzner Robot: every started hour from ``start`` at ``hourly``; the hours that start in
    one calendar month never cost more than ``monthly`` together."""
    seconds = (until - start).total_seconds()
    if seconds <= 0:
        return Decimal(0)
    hours = int(math.ceil(seconds / 3600 - 1e-9))
    total = Decimal(0)
    month = _month_start(start)
    while True:
        nxt = _next_month(month)
        # hour k starts at start + k h: it belongs to the month it starts in
        lo = max(0, math.ceil((month - start).total_seconds() / 3600 - 1e-9))
        hi = min(hours, math.ceil((nxt - start).total_seconds() / 3600 - 1e-9))
        if hi > lo:
            amount = hourly * (hi - lo)
            total += min(amount, monthly) if monthly is not None else amount
        if hi >= hours:
            return total
        month = nxt


def _clip(sessions, at: datetime) -> list[tuple[datetime, datetime, bool]]:
    """Sessions as known at ``at``: (start, end, closed)."""
    out = []
    for s, e in sessions:
        if s >= at:
            break
        closed = e is not None and e <= at
        out.append((s, e if closed else at, closed))
    return out


def _gb_month(price: Decimal, gb: int, seconds: float) -> Decimal:
    if not price or gb <= 0 or seconds <= 0:
        return Decimal(0)
    return price * gb * Decimal(str(seconds)) / (HOURS_PER_MONTH * 3600)


def charges_at(facts: PodFacts, rule: BillingRule, at: datetime) -> dict[str, Decimal]:
    """Cumulative amount owed per ledger kind (provider currency, 6 dp) as known at ``at``.

    ``at`` beyond the pod's end gives the final amounts. Deterministic, so booking
    ``charges_at(t2) - charges_at(t1)`` for consecutive instants never drifts.
    """
    out = {"gpu": Decimal(0), "storage": Decimal(0), "setup": Decimal(0)}
    start = facts.started_at
    if start is None or at <= start:
        return out
    held_until = min(at, facts.ended_at) if facts.ended_at else at
    if rule.monthly_cap:
        # a dedicated server is held (and charged) from delivery until it is cancelled
        out["gpu"] = q6(capped_hourly_amount(facts.price_per_hour, facts.monthly_price, start, held_until))
        if rule.setup_fee:
            out["setup"] = q6(facts.setup_fee)
        return out
    gpu_price = facts.price_per_hour
    running_price, stopped_price = rule.storage_running_per_gb_month, rule.storage_stopped_per_gb_month
    if rule.prices_from_offer:
        if facts.offer_storage_per_gb_month is not None and facts.base_price_per_hour is not None:
            gpu_price = facts.base_price_per_hour
            running_price = stopped_price = facts.offer_storage_per_gb_month
        else:  # an offer without the split: its total rate covers the disk while running
            running_price = stopped_price = Decimal(0)
    sessions = _clip(facts.sessions or ((start, facts.ended_at),), at)
    gpu_seconds = 0
    running = 0.0
    for i, (s, e, closed) in enumerate(sessions):
        elapsed = (e - s).total_seconds()
        running += elapsed
        last = i == len(sessions) - 1
        if (closed and last and facts.interrupted and facts.spot and rule.spot_interrupt_free_seconds
                and elapsed < rule.spot_interrupt_free_seconds):
            continue  # reclaimed by the provider inside the free window: not charged
        gpu_seconds += charged_seconds(elapsed, rule)
    out["gpu"] = q6(gpu_price * gpu_seconds / Decimal(3600))
    # the boot disk is known from the launch snapshot; a pod launched before it recorded one
    # (boot_gb 0) is not charged for a disk we cannot size
    boot = max(facts.boot_gb, rule.boot_disk_min_gb) if rule.boot_disk_billed and facts.boot_gb else 0
    stopped = max(0.0, (held_until - start).total_seconds() - running)
    stopped_gb = facts.persistent_gb + (boot if rule.boot_disk_kept_when_stopped else 0)
    out["storage"] = q6(_gb_month(running_price, boot + facts.persistent_gb, running)
                        + _gb_month(stopped_price, stopped_gb, stopped))
    return out
