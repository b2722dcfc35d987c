"""RunPod's own figures: ``GET /v2/billing/pods`` (REST v2, runpod-rest-v2.openapi.json,
operation ``listPodBilling``).

One request covers the whole range: ``startTime`` = first day 00:00Z, ``endTime`` = the day
after the last 00:00Z (exclusive), ``bucketSize=day``. Without ``podId`` the API emits "one
record per pod per bucket", each with ``podId``, its bucket's ``startTime`` and
``totalAmount`` (GPU + CPU + pod disk, USD -- "Total pod cost in USD for the bucket"). Buckets
are UTC days because the window is given in UTC and "snapped" to bucket boundaries (spec,
``BillingStartTime``). Network volumes are billed elsewhere (``/v2/billing/network-volumes``);
we create none, so they are not ours to reconcile.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from .base import PermanentError
from .billing import DayCharges, money

PATH = "/v2/billing/pods"


def _z(day: date) -> str:
    return datetime.combine(day, time.min, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def request_params(first: date, last: date) -> dict[str, str]:
    return {"startTime": _z(first), "endTime": _z(last + timedelta(days=1)), "bucketSize": "day"}


def fetch_days(adapter, first: date, last: date) -> list[DayCharges]:
    """RunPod's pod charges per UTC day in ``[first, last]``, per pod id (USD)."""
    body = adapter.client.get_json(PATH, params=request_params(first, last)) or {}
    if not isinstance(body, dict) or not isinstance(body.get("records"), list):
        raise PermanentError("RunPod billing answered without a records list")
    per_day: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for rec in body["records"]:
        start = datetime.fromisoformat(str(rec["startTime"]).replace("Z", "+00:00")).astimezone(UTC)
        per_day[start.date()][str(rec.get("podId") or "")] += money(rec.get("totalAmount"))
    days = []
    d = first
    while d <= last:
        amounts = dict(per_day.get(d, {}))
        unattributed = amounts.pop("", Decimal(0))
        days.append(DayCharges(day=d, currency="USD", by_resource=amounts, unattributed=unattributed))
        d += timedelta(days=1)
    return days
