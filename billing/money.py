"""The one rounding rule for money shown anywhere (page, CSV, alerts, API): half-up to the
cent, at display only. The ledger keeps full precision (6 decimal places); totals are summed
from it and rounded once, here, so the page and the CSV print the same string for the same
figure (Python's own ``f"{x:.2f}"`` rounds half to even: $0.125 would read 0.12 in one place
and 0.13 in another)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")


def cents(x) -> Decimal:
    """``x`` (Decimal, int or numeric string) rounded half-up to the cent."""
    return Decimal(str(x if x is not None else 0)).quantize(CENT, ROUND_HALF_UP)


def usd(x) -> str:
    """Plain amount for tables and CSV: ``1234.57``."""
    return f"{cents(x):.2f}"


def usd_label(x) -> str:
    """Amount for sentences (alerts, e-mails): ``$1,234.57``."""
    return f"${cents(x):,.2f}"
