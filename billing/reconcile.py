"""Reconciliation: our ledger against each provider's own billing figure, per account and UTC day.

The daily task (``billing.reconcile_provider_billing``) asks every enabled account whose
provider has a billing API (``providers.adapters.billing``: RunPod, Vast.ai, AWS) for the
last ``BILLING_RECONCILE_DAYS`` complete UTC days -- providers bill in UTC days and revise
recent ones, so each run overwrites what it fetched before -- and stores the provider's
figure next to ours in ``ProviderBillingDay``.

An account's first run reaches ``BILLING_RECONCILE_BACKFILL_DAYS`` (default 35) back.

* **Ours** = the ledger of that account for that day, in the provider's currency (the
  ledger keeps each line's native amount), so no exchange rate sits between the figures.
* **Theirs** = what the provider charged that day for the resources our pods launched,
  matched by the provider's id (RunPod, Vast.ai) or our tag (AWS); whatever else the account
  was charged that day is kept apart as other spend.
* **Drift** = ours - theirs, relative to theirs (the invoice is the reference). Both are
  compared in whole cents (half-up, the house rounding): a day drifts when they differ by a
  cent or more and by more than ``BILLING_DRIFT_THRESHOLD_PCT`` % of the provider's figure
  (any difference when the provider charged nothing). A drifting day alerts once per account
  and day once it is settled (``settled``: yesterday's figure may still be arriving) --
  in-app, by e-mail to owners, admins and finance, and to the organization's budget webhooks
  (event ``billing.drift``) -- even when a later re-fetch revises it.
"""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Sum

from providers.adapters.base import PermanentError, ProviderError
from providers.adapters.billing import CLIENTS, MATCH_TAG, DayCharges, billing_client
from providers.models import ProviderAccount
from providers.services import adapter_for
from provisioner import clock
from provisioner.logfilter import scrub_stored_error
from provisioner.outbound import OutboundRefused, check_outbound_url, post_checked
from tenants.models import Role
from workloads.models import Pod

from .budgets import _recipients
from .models import Budget, BudgetAlert, LedgerEntry, ProviderBillingDay, ProviderBillingFetch
from .selectors import day_start
from .webhooks import webhook_signature

logger = logging.getLogger(__name__)
CENT = Decimal("0.01")
ALERT_AFTER_DAYS = 2  # a day alerts from its second re-fetch on: the first may precede the provider's figure
ZERO = Decimal(0)


def cents(x: Decimal) -> Decimal:
    return Decimal(x).quantize(CENT, ROUND_HALF_UP)


def drift_pct(ours: Decimal, provider: Decimal) -> Decimal | None:
    """(ours - provider) / provider in percent, in whole cents; None when the provider charged nothing."""
    o, p = cents(ours), cents(provider)
    if p == 0:
        return None
    return (o - p) * 100 / p


def drifts(ours: Decimal, provider: Decimal, threshold_pct: Decimal) -> bool:
    o, p = cents(ours), cents(provider)
    if o == p:
        return False
    if p == 0:
        return True
    return abs(o - p) * 100 / p > threshold_pct


def threshold_pct() -> Decimal:
    return Decimal(str(settings.BILLING_DRIFT_THRESHOLD_PCT))


def days_to_fetch(at: datetime | None = None, *, first_run: bool = False) -> tuple[date, date]:
    """The last ``BILLING_RECONCILE_DAYS`` complete UTC days (today is still accruing); an
    account's first run goes back ``BILLING_RECONCILE_BACKFILL_DAYS`` so that the month
    finance is closing is reconciled from the day the account is connected."""
    today = (at or clock.now()).date()
    n = max(1, int(settings.BILLING_RECONCILE_DAYS))
    if first_run:
        n = max(n, int(settings.BILLING_RECONCILE_BACKFILL_DAYS))
    return today - timedelta(days=n), today - timedelta(days=1)


def settled(day: date, at: datetime | None = None) -> bool:
    """Has the day been closed long enough to alert on? Providers post a day's charges with a
    delay (AWS billing data arrives 12 to 24 hours late and sometimes later: complete for d-2,
    partial for d-1 -- Costory docs, "Billing Data Refresh Schedule", AWS and GCP billing data
    freshness), so yesterday's figure may be partial: it shows on the page as provisional and
    alerts once it is ``ALERT_AFTER_DAYS`` old (never later than the last day a run fetches)."""
    today = (at or clock.now()).date()
    wait = min(ALERT_AFTER_DAYS, max(1, int(settings.BILLING_RECONCILE_DAYS)))
    return day <= today - timedelta(days=wait)


def _ours(account: ProviderAccount, day: date, currency: str) -> Decimal:
    start = day_start(day)
    return (LedgerEntry.objects.filter(tenant_id=account.tenant_id, provider_account=account, currency=currency,
                                       bucket_start__gte=start, bucket_start__lt=start + timedelta(days=1))
            .aggregate(s=Sum("amount"))["s"] or ZERO)


def _our_keys(account: ProviderAccount, match: str, keys: set[str]) -> set[str]:
    """Which of the provider's resource keys belong to pods we launched on this account."""
    if not keys:
        return set()
    pods = Pod.objects.filter(provider_account=account)
    if match == MATCH_TAG:
        valid = set()
        for k in keys:
            try:
                valid.add(str(uuid.UUID(k)))
            except ValueError:
                continue
        return {str(pk) for pk in pods.filter(pk__in=valid).values_list("pk", flat=True)}
    return set(pods.filter(external_id__in=keys).values_list("external_id", flat=True))


def _store(account: ProviderAccount, charges: DayCharges, match: str, now: datetime) -> tuple[ProviderBillingDay, bool]:
    mine = _our_keys(account, match, set(charges.by_resource))
    provider = sum((a for k, a in charges.by_resource.items() if k in mine), ZERO)
    other = charges.total - provider
    ours = _ours(account, charges.day, charges.currency)
    flagged = drifts(ours, provider, threshold_pct())
    with transaction.atomic():
        row, created = ProviderBillingDay.objects.select_for_update().get_or_create(
            provider_account=account, day=charges.day,
            defaults={"tenant_id": account.tenant_id, "currency": charges.currency, "ours_amount": ours,
                      "provider_amount": provider, "other_amount": other, "estimated": charges.estimated,
                      "drift_flagged": flagged, "fetched_at": now, "first_fetched_at": now})
        if not created:
            row.currency, row.ours_amount, row.provider_amount = charges.currency, ours, provider
            row.other_amount, row.estimated, row.drift_flagged, row.fetched_at = other, charges.estimated, flagged, now
            row.save(update_fields=["currency", "ours_amount", "provider_amount", "other_amount", "estimated",
                                    "drift_flagged", "fetched_at"])
    return row, flagged


def _record_fetch(account: ProviderAccount, now: datetime, *, error: str = "") -> None:
    # the error is shown on the Spend page: never with a credential a provider echoed back
    error = scrub_stored_error(error, account.credentials) if error else ""
    values = {"tenant_id": account.tenant_id, "attempted_at": now, "error": error[:300]}
    if not error:
        values["succeeded_at"] = now
    ProviderBillingFetch.objects.update_or_create(provider_account=account, defaults=values)


def reconcile_account(*, account: ProviderAccount, first: date | None = None, last: date | None = None,
                      at: datetime | None = None) -> list[ProviderBillingDay]:
    """Fetch the provider's figures for ``[first, last]`` (default: the recent complete days),
    store them next to ours and alert each drifting day once. Raises ProviderError."""
    client = billing_client(account.kind)
    if client is None:
        return []
    now = at or clock.now()
    if first is None or last is None:
        first_run = not ProviderBillingDay.objects.filter(provider_account=account).exists()
        first, last = days_to_fetch(now, first_run=first_run)
    adapter = adapter_for(account)
    try:
        charges = client.fetch(adapter, first, last)
    except ProviderError as exc:
        _record_fetch(account, now, error=f"{type(exc).__name__}: {exc}")
        raise
    except (KeyError, IndexError, TypeError, ValueError, ArithmeticError) as exc:  # an answer we cannot read
        _record_fetch(account, now, error=f"unexpected billing answer: {exc!r}")
        raise PermanentError(f"unexpected billing answer from {account.kind}: {exc!r}") from exc
    finally:
        close = getattr(adapter, "close", None)
        if callable(close):
            close()
    _record_fetch(account, now)
    rows, alerts = [], []
    for day_charges in charges:
        row, flagged = _store(account, day_charges, client.match, now)
        if flagged and settled(row.day, now) and (alert := drift_alert(account=account, row=row)):
            alerts.append(alert)
        rows.append(row)
    drift_email(account=account, alerts=alerts)
    return rows


def reconcile_all(*, at: datetime | None = None) -> int:
    """The daily pass over every account with a billing API, disabled ones included (disabled
    only leaves placement: pods may still run and bill); removed accounts have no credentials
    left. One account's failure (bad key, provider down) is recorded and logged and does not
    stop the others; the next run retries."""
    done = 0
    accounts = ProviderAccount.objects.filter(kind__in=list(CLIENTS)).exclude(settings__has_key="removed_at")
    for account in accounts.order_by("pk"):
        try:
            done += len(reconcile_account(account=account, at=at))
        except ProviderError as exc:
            logger.warning("billing reconciliation of %s (%s) failed: %s", account.pk, account.kind, exc)
    return done


# --- alerts ---------------------------------------------------------------------------------


def _money(x: Decimal, currency: str) -> str:
    return f"${cents(x):,}" if currency == "USD" else f"{cents(x):,} {currency}"


def drift_message(account: ProviderAccount, row: ProviderBillingDay) -> str:
    pct = drift_pct(row.ours_amount, row.provider_amount)
    rel = f"{pct:+.1f}%" if pct is not None else "the provider charged nothing"
    hint = ""
    if untagged_only(account.kind, ours=row.ours_amount, provider=row.provider_amount, other=row.other_amount):
        from providers.adapters.aws import TAG_KEY  # boto3 loads only where AWS is reconciled

        hint = f"; none of its cost carries our {TAG_KEY} tag: is it activated as a cost allocation tag?"
    return (f'Billing drift on "{account.name}" for {row.day.isoformat()} (UTC): we booked '
            f'{_money(row.ours_amount, row.currency)}, {account.get_kind_display()} charged '
            f'{_money(row.provider_amount, row.currency)} ({rel}; threshold {threshold_pct()}%){hint}')


def untagged_only(kind: str, *, ours: Decimal, provider: Decimal, other: Decimal) -> bool:
    """A tag-matched provider (AWS) that reports cost, none of it under our tag, while we booked
    some: the classic sign of a cost allocation tag that was never activated."""
    return CLIENTS.get(kind, ("", "", ""))[1] == MATCH_TAG and provider == 0 and other > 0 and cents(ours) > 0


def _send_webhooks(account: ProviderAccount, row: ProviderBillingDay, message: str) -> str:
    """POST the drift to each distinct webhook of the organization's budgets (the channel
    finance already wired up), signed like budget alerts. Returns the statuses."""
    import httpx

    body = json.dumps({
        "event": "billing.drift", "provider_account": account.name, "provider_account_id": str(account.pk),
        "provider": account.kind, "day": row.day.isoformat(), "currency": row.currency,
        "ours": str(cents(row.ours_amount)), "provider_amount": str(cents(row.provider_amount)),
        "drift": str(cents(row.ours_amount) - cents(row.provider_amount)), "threshold_pct": str(threshold_pct()),
        "message": message,
    }, sort_keys=True).encode()
    statuses, seen = [], set()
    for url, secret in Budget.objects.filter(tenant_id=account.tenant_id).exclude(webhook_url="") \
            .order_by("created_at").values_list("webhook_url", "webhook_secret"):
        if url in seen:
            continue
        seen.add(url)
        headers = {"Content-Type": "application/json", "X-Provisioner-Signature": webhook_signature(secret or "", body)}
        try:  # public addresses only, no redirects (provisioner.outbound, issue 16 §4)
            statuses.append(f"HTTP {post_checked(check_outbound_url(url), body=body, headers=headers).status_code}")
        except OutboundRefused:
            statuses.append("refused: not a public address")
        except httpx.HTTPError as exc:
            statuses.append(f"error: {type(exc).__name__}")
    return ", ".join(statuses)[:60]


def drift_alert(*, account: ProviderAccount, row: ProviderBillingDay) -> BudgetAlert | None:
    """Alert this account's drift for this day unless it already did (the unique constraint
    holds when two runs race): the in-app alert, then the webhooks (one event per day, for
    machines). The e-mail goes out per run (``drift_email``), so a first run that backfills a
    month sends one message listing every drifting day, not one per day."""
    message = drift_message(account, row)
    threshold = int(threshold_pct().to_integral_value(ROUND_HALF_UP))
    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                tenant_id=account.tenant_id, provider_account=account, period_start=day_start(row.day),
                threshold=threshold, kind=BudgetAlert.Kind.DRIFT, spent_usd=cents(row.ours_amount),
                limit_usd=cents(row.provider_amount), message=message[:300], created_at=clock.now())
    except IntegrityError:
        return None
    status = _send_webhooks(account, row, message)
    BudgetAlert.objects.filter(pk=alert.pk).update(webhook_status=status)
    alert.webhook_status = status
    return alert


def drift_email(*, account: ProviderAccount, alerts: list[BudgetAlert]) -> list[str]:
    """One e-mail to owners, admins and finance for the days this run alerted."""
    to = _recipients(account.tenant_id, [Role.OWNER, Role.ADMIN, Role.FINANCE])
    if not alerts or not to:
        return []
    if len(alerts) == 1:
        subject = alerts[0].message
    else:
        subject = f'Billing drift on "{account.name}" on {len(alerts)} days'
    body = "\n".join(f"- {a.message}" for a in alerts)
    send_mail(f"[Provisioner] {subject}"[:200], body + "\n\nOpen the spend dashboard (Provider reconciliation) for details.",
              settings.DEFAULT_FROM_EMAIL, to, fail_silently=True)
    BudgetAlert.objects.filter(pk__in=[a.pk for a in alerts]).update(emailed_to=to)
    for a in alerts:
        a.emailed_to = to
    return to
