"""Spot bids: what to bid on a provider that takes one, above its floor and under the workload's ceiling.

Vast.ai (interruptible) and RunPod (spot) rent by bid. An offer's price is the floor: Vast's
``min_bid`` and RunPod's listed spot price. A bid *at* the floor loses the machine to the next
client who bids a cent more (Vast docs, "Rental Types": "Interruptible instances use a bidding
system: clients set a bid price for each instance; the host then decides which instances run
when to maximize revenue (naturally favoring higher bidders)"; RunPod's ``bidPerGpu`` works the
same way, and both charge the bid while the instance runs). So the bid is the floor plus a
margin (the workload's, else its account's, else ``SPOT_BID_MARGIN_PCT``), never above the workload's price ceiling
and never below the floor. Providers without bids (AWS, GCP, Azure: the market price is paid)
are not affected.

Pure: the caller passes the offer; the provider facts come from ``ProviderInfo.spot_bids``.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings

BID_QUANTUM = Decimal("0.0001")  # RunPod's bidPerGpu is sent with 4 decimals; Vast accepts any


def default_margin_pct() -> int:
    return int(settings.SPOT_BID_MARGIN_PCT)


@dataclass(frozen=True)
class SpotBid:
    """One bid, per pod-hour in the offer's currency, with how it was reached."""

    floor: Decimal
    price: Decimal
    currency: str
    margin_pct: int
    ceiling: Decimal | None  # the workload's price ceiling in the offer's currency
    usd_per_unit: Decimal  # the offer's own USD rate

    @property
    def capped(self) -> bool:
        return self.ceiling is not None and self.price == self.ceiling and self.price < self._uncapped

    @property
    def _uncapped(self) -> Decimal:
        return (self.floor * (100 + self.margin_pct) / 100).quantize(BID_QUANTUM, ROUND_HALF_UP)

    @property
    def price_usd(self) -> Decimal:
        return (self.price * self.usd_per_unit).quantize(Decimal("0.000001"), ROUND_HALF_UP)

    def describe(self) -> str:
        unit = "$" if self.currency == "USD" else f"{self.currency} "
        text = f"bid {unit}{self.price:.4f}/h = floor {unit}{self.floor:.4f} + {self.margin_pct} %"
        if self.capped:
            text += f", capped by the price ceiling {unit}{self.ceiling:.4f}"
        return text


def spot_bid(*, floor: Decimal, currency: str = "USD", usd_per_unit: Decimal = Decimal(1), margin_pct: int,
             ceiling_usd: Decimal | None = None) -> SpotBid:
    """Floor + margin, at most the ceiling (converted to the offer's currency), at least the floor."""
    floor = Decimal(floor)
    margin = max(0, int(margin_pct))
    price = (floor * (100 + margin) / 100).quantize(BID_QUANTUM, ROUND_HALF_UP)
    ceiling = None
    if ceiling_usd is not None and usd_per_unit > 0:
        ceiling = (Decimal(ceiling_usd) / usd_per_unit).quantize(BID_QUANTUM, ROUND_HALF_UP)
        price = min(price, ceiling)
    return SpotBid(floor=floor, price=max(price, floor), currency=currency, margin_pct=margin, ceiling=ceiling,
                   usd_per_unit=usd_per_unit)


def takes_bids(kind: str) -> bool:
    from providers.adapters.registry import provider_info

    try:
        return bool(provider_info(kind).spot_bids)
    except (KeyError, ImportError, AttributeError):
        return False


def bid_for_offer(offer, *, margin_pct: int | None, ceiling_usd: Decimal | None) -> SpotBid | None:
    """The bid for a spot offer of a bidding provider, or None (on-demand, or no bids there).

    The margin: the workload's (``margin_pct``), else the offer's account's, else the platform's."""
    if not offer.spot or not takes_bids(getattr(offer, "kind", "")):
        return None
    if margin_pct is None:
        account = getattr(offer, "provider_account", None)
        margin_pct = getattr(account, "spot_bid_margin_pct", None)
    price, usd = Decimal(offer.price_per_hour), Decimal(offer.price_usd_per_hour)
    rate = usd / price if price > 0 else Decimal(1)
    return spot_bid(floor=price, currency=offer.currency or "USD", usd_per_unit=rate,
                    margin_pct=default_margin_pct() if margin_pct is None else margin_pct, ceiling_usd=ceiling_usd)


def bid_for(workload, offer) -> SpotBid | None:
    """The workload's bid on ``offer`` (its margin, its price ceiling)."""
    return bid_for_offer(offer, margin_pct=workload.spot_bid_margin_pct, ceiling_usd=workload.max_price_per_hour)
