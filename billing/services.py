"""Writes for billing. The ledger writer lives in ``metering``, rollups in ``rollups``,
budgets, reservations and alerts in ``budgets``; this module is their public face."""

from __future__ import annotations

from .budgets import (  # noqa: F401
    budget_create,
    budget_delete,
    budget_update,
    budgets_enforce,
    reservation_release,
    reservations_release_finished,
)
from .metering import ledger_correct, meter_all, pod_meter  # noqa: F401
from .rollups import rollup_dirty  # noqa: F401
