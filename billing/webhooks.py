"""Budget alert webhooks: signed, sent from a worker with retry and backoff, only to public
https addresses (issue 16 §4; the address rules live in ``provisioner.outbound``)."""

from __future__ import annotations

import hashlib
import hmac
import json

from provisioner.outbound import OutboundRefused, check_outbound_url, post_checked

from .models import Budget, BudgetAlert

# seconds before attempts 2..5: a receiver that is down for a deploy gets half an hour and more
BACKOFF_SECONDS = (30, 120, 600, 1800)


def webhook_signature(secret: str, body: bytes) -> str:
    """``sha256=<hex HMAC-SHA256 of the raw body>``, sent as X-Provisioner-Signature."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_payload(budget: Budget, alert: BudgetAlert) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({
        "event": {BudgetAlert.Kind.FORECAST: "budget.forecast", BudgetAlert.Kind.ANOMALY: "spend.anomaly"}.get(
            alert.kind, "budget.threshold"),
        "budget": budget.name, "budget_id": str(budget.pk),
        # a dollar threshold says so; percentage thresholds keep their key
        **({"threshold_usd": alert.threshold} if alert.kind == BudgetAlert.Kind.AMOUNT
           else {"threshold_pct": alert.threshold}),
        "spent_usd": str(alert.spent_usd), "limit_usd": str(alert.limit_usd),
        "period_start": alert.period_start.isoformat(), "message": alert.message,
    }, sort_keys=True).encode()
    headers = {"Content-Type": "application/json",
               "X-Provisioner-Signature": webhook_signature(budget.webhook_secret or "", body)}
    return body, headers


def webhook_deliver(*, alert_id, attempt: int = 1, budget_id=None) -> bool:
    """Try to deliver one alert's webhook and record the outcome on the alert. True when the
    failure is worth another attempt (network error, 429, 5xx) and attempts remain.
    ``budget_id``: whose webhook, for an alert of no budget (the organization's spend anomaly
    goes to its organization-wide budget's webhook)."""
    import httpx

    alert = BudgetAlert.objects.select_related("budget").filter(pk=alert_id).first()
    budget = alert.budget if alert is not None else None
    if alert is not None and budget is None and budget_id is not None:
        budget = Budget.objects.filter(pk=budget_id, tenant_id=alert.tenant_id).first()
    if budget is None or not budget.webhook_url:
        return False
    retry = False
    try:
        checked = check_outbound_url(budget.webhook_url)  # resolved again at send time: DNS may have changed
        body, headers = webhook_payload(budget, alert)
        resp = post_checked(checked, body=body, headers=headers)
        status = f"HTTP {resp.status_code}"
        if 300 <= resp.status_code < 400:
            status += " (redirect not followed)"
        retry = resp.status_code == 429 or resp.status_code >= 500
    except OutboundRefused as exc:
        status = f"refused: {exc}"
    except httpx.HTTPError as exc:
        status, retry = f"error: {type(exc).__name__}", True
    again = retry and attempt <= len(BACKOFF_SECONDS)
    if retry:
        status = f"{status} (try {attempt}{', retrying' if again else ', gave up'})"
    BudgetAlert.objects.filter(pk=alert.pk).update(webhook_status=status[:60])
    return again
