"""Vast.ai's own figures: ``GET /api/v0/charges`` (vastai.openapi.yaml, ``showCharges``: "Shows
charges per instance, including GPU, storage, and bandwidth").

``select_filters`` requires the ``day`` range "in unix seconds (UTC)" with ``gte``/``lte``; we
ask one UTC day at a time (00:00:00 to 23:59:59, the spec's own January example ends on
...:59) so every contract's ``amount`` is that day's charge. Rows are per contract with
``source`` = ``"{type}-{id}"``: ``instance-<id>`` is the instance id we keep as the pod's
external id; volumes and serverless contracts are not ours (we create neither) and count
as the account's other spend. Pages of 100 follow ``next_token`` until it is null. The
request is the one the official SDK's ``show invoices-v1 --charges`` sends (contract test).
Amounts are USD ("$0.389/hour"), rounded by Vast.ai to 3 decimals.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from .base import PermanentError
from .billing import DayCharges, money

PATH = "/api/v0/charges"
# the spec says "Server maximum 500"; the official SDK (vastai 1.9.1, api/billing.py
# show_invoices_v1) never asks more than 100: both agree on 100
PAGE_LIMIT = 100
MAX_PAGES = 100


def request_params(day: date, after_token: str | None = None) -> dict[str, str]:
    start = int(datetime.combine(day, time.min, tzinfo=UTC).timestamp())
    params = {"select_filters": json.dumps({"day": {"gte": start, "lte": start + 86400 - 1}}, separators=(",", ":")),
              "format": "table", "limit": str(PAGE_LIMIT)}
    if after_token:
        params["after_token"] = after_token
    return params


def _day(adapter, day: date) -> DayCharges:
    by_resource: dict[str, Decimal] = {}
    other = Decimal(0)
    token: str | None = None
    for _ in range(MAX_PAGES):
        body = adapter.client.get_json(PATH, params=request_params(day, token)) or {}
        if not isinstance(body, dict) or not isinstance(body.get("results"), list):
            raise PermanentError("Vast.ai charges answered without a results list")
        for row in body["results"]:
            source = str(row.get("source") or "")
            amount = money(row.get("amount"))
            if source.startswith("instance-"):
                key = source.removeprefix("instance-")
                by_resource[key] = by_resource.get(key, Decimal(0)) + amount
            else:
                other += amount
        token = body.get("next_token")
        if not token:
            break
    else:
        raise PermanentError(f"Vast.ai charges for {day} did not end after {MAX_PAGES} pages")
    return DayCharges(day=day, currency="USD", by_resource=by_resource, unattributed=other)


def fetch_days(adapter, first: date, last: date) -> list[DayCharges]:
    """Vast.ai's charges per UTC day in ``[first, last]``, per instance id (USD)."""
    days, d = [], first
    while d <= last:
        days.append(_day(adapter, d))
        d += timedelta(days=1)
    return days
