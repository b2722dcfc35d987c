"""AWS's own figures: Cost Explorer ``GetCostAndUsage`` through boto3 (botocore model ``ce``).

* One request per run covers the range: ``TimePeriod`` Start = first day, End = the day after
  the last (boto3 reference, CostExplorer.Client.get_cost_and_usage, TimePeriod: "The end
  date is exclusive"), DAILY granularity. Cost Explorer days are UTC days.
* Metric ``UnblendedCost``: the rate actually charged for each usage, what the invoice of a
  standalone account shows (AWS Cost Management user guide, "Understanding your AWS Cost
  Datasets": unblended vs amortized/blended). Amortized cost would spread savings-plan fees
  we never booked.
* ``GroupBy`` TAG ``provisioner:pod``: every instance and volume we launch carries that tag
  (the pod UUID). Group keys come back as ``provisioner:pod$<value>``; ``provisioner:pod$``
  (empty value) is the account's untagged cost -- not ours. The tag must be activated as a
  cost allocation tag in the Billing console (AWS Billing user guide, "Using user-defined
  cost allocation tags": tags must be activated "before they can appear in Cost Explorer"),
  otherwise all cost arrives untagged and the page shows it as other spend.
* ``Estimated: true`` marks a day AWS may still revise: we keep re-fetching recent days.
* The API lives in us-east-1 only (boto3 reference, CostExplorer "Service Endpoint":
  ``https://ce.us-east-1.amazonaws.com``) and "each request will incur a cost of $0.01" (AWS
  Cost Explorer pricing page), so one request per account per run, paged by ``NextPageToken``.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from .aws import TAG_KEY
from .base import PermanentError
from .billing import DayCharges, money

CE_REGION = "us-east-1"
METRIC = "UnblendedCost"
MAX_PAGES = 50


def request_params(first: date, last: date, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {
        "TimePeriod": {"Start": first.isoformat(), "End": (last + timedelta(days=1)).isoformat()},
        "Granularity": "DAILY",
        "Metrics": [METRIC],
        "GroupBy": [{"Type": "TAG", "Key": TAG_KEY}],
    }
    if token:
        params["NextPageToken"] = token
    return params


def fetch_days(adapter, first: date, last: date) -> list[DayCharges]:
    """AWS's unblended cost per UTC day in ``[first, last]``, per ``provisioner:pod`` tag value."""
    ce = adapter._client("ce", CE_REGION)
    per_day: dict[date, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    estimated: dict[date, bool] = {}
    currency: dict[date, str] = {}
    token = None
    for _ in range(MAX_PAGES):
        body = adapter._call(ce, "get_cost_and_usage", **request_params(first, last, token))
        for result in body.get("ResultsByTime") or []:
            day = date.fromisoformat(result["TimePeriod"]["Start"])
            estimated[day] = bool(result.get("Estimated"))
            groups = result.get("Groups") or []
            for group in groups:
                key = (group.get("Keys") or [""])[0]
                value = key.split("$", 1)[1] if "$" in key else ""
                metric = (group.get("Metrics") or {}).get(METRIC) or {}
                per_day[day][value] += money(metric.get("Amount"))
                currency.setdefault(day, str(metric.get("Unit") or "USD"))
            if not groups and (total := (result.get("Total") or {}).get(METRIC)):
                per_day[day][""] += money(total.get("Amount"))
                currency.setdefault(day, str(total.get("Unit") or "USD"))
        token = body.get("NextPageToken")
        if not token:
            break
    else:
        raise PermanentError(f"Cost Explorer did not finish after {MAX_PAGES} pages")
    days, d = [], first
    while d <= last:
        amounts = dict(per_day.get(d, {}))
        untagged = amounts.pop("", Decimal(0))
        days.append(DayCharges(day=d, currency=currency.get(d, "USD"), by_resource=amounts, unattributed=untagged,
                               estimated=estimated.get(d, False)))
        d += timedelta(days=1)
    return days
