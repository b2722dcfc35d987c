"""Writes for providers: connecting accounts and polling their capacity."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings as django_settings
from django.db import connections, transaction
from django.db.models import Case, F, Value, When

from provisioner import clock
from provisioner.logfilter import scrub_stored_error
from provisioner.security import register_secret
from tenants.audit import audit_record
from tenants.models import Tenant

from .adapters.base import OfferData, ProviderAdapter, ProviderError
from .adapters.registry import build_adapter, provider_info
from .models import Health, InvoiceRate, Offer, ProviderAccount
from .pod_usage import pod_usage
from .selectors import DEFAULT_RATES, USD_ONLY, is_usd, rate_for, usd_rates_by_tenant

logger = logging.getLogger(__name__)

POLL_TIMEOUT_SECONDS = 20.0
# one thread per account (each waits on the network, not the CPU); beyond this they queue
MAX_POLL_THREADS = 64


def adapter_for(account: ProviderAccount) -> ProviderAdapter:
    """The adapter for ``account``, with its decrypted credentials and settings."""
    settings: dict[str, Any] = dict(account.settings or {})
    settings["account_id"] = str(account.pk)
    # multi-region providers (AWS, GCP, Azure) query only the regions the admin allowed
    settings.setdefault("allowed_regions", list(account.allowed_regions or []))
    credentials = dict(account.credentials or {})
    register_credential_secrets(credentials)
    return build_adapter(account.kind, credentials, settings)


def register_credential_secrets(credentials: Any) -> None:
    """Tell the log filter about every secret value we are about to hand to an adapter."""
    if isinstance(credentials, dict):
        for value in credentials.values():
            register_credential_secrets(value)
    elif isinstance(credentials, (list, tuple)):
        for value in credentials:
            register_credential_secrets(value)
    elif isinstance(credentials, str):
        register_secret(credentials)
        if "\n" in credentials:  # kubeconfig / key files: the embedded tokens too
            for token in credentials.split():
                if len(token) >= 20:
                    register_secret(token.strip("'\""))


def verify_credentials(*, kind: str, credentials: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
    """Check credentials live before anything is saved. Raises ProviderError."""
    register_credential_secrets(credentials)
    build_adapter(kind, credentials, dict(settings or {}, account_id="verify")).verify()


@transaction.atomic
def provider_account_create(
    *,
    tenant: Tenant,
    kind: str,
    name: str,
    credentials: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    spending_cap_usd: Decimal | None = None,
    spending_cap_period: str = "month",
    allowed_regions: list[str] | None = None,
    allowed_countries: list[str] | None = None,
    default_gpu_class: str = "",
    preference_rank: int = 100,
    created_by=None,
    verify: bool = True,
) -> ProviderAccount:
    """Connect a provider. Credentials are verified live first (unless ``verify=False``)."""
    if verify:
        verify_credentials(kind=kind, credentials=credentials or {}, settings=settings)
    account = ProviderAccount.objects.create(
        tenant=tenant, kind=kind, name=name, credentials=credentials or {}, settings=settings or {},
        spending_cap_usd=spending_cap_usd, spending_cap_period=spending_cap_period,
        allowed_regions=allowed_regions or [], allowed_countries=allowed_countries or [],
        default_gpu_class=default_gpu_class, preference_rank=preference_rank, created_by=created_by,
    )
    audit_record(tenant=tenant, action="provider.connected", target=account, actor=created_by,
                 details={"kind": kind, "spending_cap_usd": str(spending_cap_usd), "countries": allowed_countries or []})
    return account


@dataclass
class PollResult:
    account_id: str
    offers: list[OfferData] | None
    error: str = ""


def _fetch(account: ProviderAccount) -> PollResult:
    try:
        return PollResult(str(account.pk), adapter_for(account).list_offers())
    except ProviderError as exc:
        return PollResult(str(account.pk), None, f"{type(exc).__name__}: {exc.message or exc}")
    except Exception as exc:  # a broken adapter must not break the poll of the others
        logger.exception("capacity poll of %s failed", account.pk)
        return PollResult(str(account.pk), None, f"{type(exc).__name__}: {exc}")
    finally:
        # runs in a pool thread: an adapter that touched the DB (the Sandbox) must not leak
        # that thread's connection
        connections.close_all()


def poll_timeout_for(account: ProviderAccount, default: float = POLL_TIMEOUT_SECONDS) -> float:
    """Seconds this account's poll may take before it counts as failed.

    First match wins: the account's ``settings["poll_timeout_seconds"]``, the deployment's
    ``PROVIDER_POLL_TIMEOUTS[kind]``, the adapter's ``info.poll_timeout_seconds``, ``default``.
    """
    candidates: list[Any] = [(account.settings or {}).get("poll_timeout_seconds"),
                             django_settings.PROVIDER_POLL_TIMEOUTS.get(account.kind)]
    try:
        candidates.append(getattr(provider_info(account.kind), "poll_timeout_seconds", None))
    except KeyError:  # a kind whose adapter is not registered (any more)
        pass
    for value in candidates:
        try:
            if value is not None and float(value) > 0:
                return float(value)
        except (TypeError, ValueError):
            continue
    return float(default)


def _to_rows(account: ProviderAccount, offers: list[OfferData], fetched_at, rates: Mapping[str, Decimal]) -> list[Offer]:
    """Offer rows of one account, priced in USD at ``rates``: the account's tenant's invoice
    rates (``usd_rates_for_tenant``), so that an organization's own rate reprices its offers."""
    rows = []
    countries = set(account.allowed_countries or [])
    regions = set(account.allowed_regions or [])
    for o in offers:
        # the admin's region preferences: offers outside them never reach placement
        if (countries and o.country not in countries) or (regions and o.region not in regions):
            continue
        rate = rate_for(o.currency, rates)
        rows.append(Offer(
            provider_account=account, tenant_id=account.tenant_id, kind=account.kind,
            gpu_class=o.gpu_class, gpu_count=o.gpu_count, region=o.region, country=o.country or "",
            zone=o.zone, spot=o.spot, price_per_hour=o.price_per_hour, currency=o.currency,
            price_usd_per_hour=(o.price_per_hour * rate).quantize(Decimal("0.000001"), ROUND_HALF_UP),
            available=o.available, availability=o.availability, instance_type=o.instance_type,
            gpu_memory_gb=o.gpu_memory_gb, setup_fee=o.setup_fee, monthly_price=o.monthly_price,
            supports_volumes=list(o.supports_volumes), extra=o.extra, fetched_at=fetched_at,
        ))
    return rows


def capacity_store(*, account: ProviderAccount, result: PollResult) -> None:
    """Replace the account's offers with a successful poll, or keep the last good ones
    (marked stale) and record the error."""
    capacity_store_many(results=[(account, result)])


def capacity_store_many(*, results: list[tuple[ProviderAccount, PollResult]]) -> None:
    """Store several accounts' poll results in one transaction (see ``capacity_store``).

    A poll cycle stores results as they arrive, and accounts answering together are stored
    together: a fixed handful of statements for the batch rather than a handful per account,
    since storing sits on the cycle's critical path. The account rows are locked first, in
    primary-key order, so concurrent polls (beat and "Poll now") neither interleave nor deadlock.
    """
    if not results:
        return
    now = clock.now()
    good = [(a, r) for a, r in results if r.offers is not None]
    failed = [(a, r) for a, r in results if r.offers is None]
    with transaction.atomic():
        ids = sorted({a.pk for a, _ in results})
        list(ProviderAccount.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", flat=True))
        for account, result in failed:
            kept = Offer.objects.filter(provider_account_id=account.pk).update(stale=True)
            ProviderAccount.objects.filter(pk=account.pk).update(
                last_polled_at=now, last_error=scrub_stored_error(result.error, account.credentials)[:2000], health=Health.STALE if kept else Health.ERROR,
                consecutive_failures=F("consecutive_failures") + 1)
        if good:
            # every tenant's rates in one query, and none when all offers are in USD
            priced = {a.tenant_id for a, r in good if not all(is_usd(o.currency) for o in r.offers or [])}
            rates = usd_rates_by_tenant(priced) if priced else {}
            rows = {a.pk: _to_rows(a, r.offers or [], now, rates.get(a.tenant_id, USD_ONLY)) for a, r in good}
            ProviderAccount.objects.filter(pk__in=list(rows)).update(
                last_polled_at=now, last_success_at=now, last_error="", consecutive_failures=0, health=Health.OK,
                offer_count=Case(*[When(pk=pk, then=Value(len(r))) for pk, r in rows.items()],
                                 output_field=ProviderAccount._meta.get_field("offer_count")))
            Offer.objects.filter(provider_account_id__in=list(rows)).delete()
            Offer.objects.bulk_create([row for r in rows.values() for row in r], batch_size=1000)


def capacity_poll(*, accounts: list[ProviderAccount], timeout: float | None = None) -> list[PollResult]:
    """Poll every account concurrently and store each result as soon as it arrives.

    Every account runs in its own thread from the start, so one poll cycle takes as long as
    the slowest account *within its own timeout* (``poll_timeout_for``; ``timeout`` overrides
    it for all), never the sum. A provider that overruns is recorded as failed (its last good
    offers kept, marked stale) and its thread is abandoned, so it delays nobody else.
    """
    if not accounts:
        return []
    started = time.monotonic()
    deadlines = {str(a.pk): started + (timeout if timeout is not None else poll_timeout_for(a)) for a in accounts}
    by_id = {str(a.pk): a for a in accounts}
    results: list[PollResult] = []
    pool = ThreadPoolExecutor(max_workers=min(MAX_POLL_THREADS, len(accounts)), thread_name_prefix="poll")
    try:
        pending = {pool.submit(_fetch, a): str(a.pk) for a in accounts}
        while pending:
            next_deadline = min(deadlines[i] for i in pending.values())
            wait(pending, timeout=max(0.0, next_deadline - time.monotonic()), return_when=FIRST_COMPLETED)
            batch: list[PollResult] = []
            now = time.monotonic()
            for future, account_id in list(pending.items()):
                if future.done():  # every account that has answered by now, stored together
                    batch.append(future.result())  # _fetch never raises
                elif deadlines[account_id] <= now:
                    future.cancel()
                    limit = deadlines[account_id] - started
                    batch.append(PollResult(account_id, None, f"TransientError: no answer within {limit:.1f}s (poll timeout)"))
                else:
                    continue
                pending.pop(future)
            capacity_store_many(results=[(by_id[r.account_id], r) for r in batch])
            results.extend(batch)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    return results


def capacity_poll_all() -> list[PollResult]:
    return capacity_poll(accounts=list(ProviderAccount.objects.filter(enabled=True)))


# --- wizard and account management ------------------------------------------------------


def offers_fetch_live(*, kind: str, credentials: dict[str, Any], settings: dict[str, Any] | None = None) -> list[OfferData]:
    """Live offers for credentials that are not saved yet (the wizard). Raises ProviderError."""
    return build_adapter(kind, credentials, dict(settings or {}, account_id="preview")).list_offers()


def offer_rows_preview(*, kind: str, offers: list[OfferData], rates: Mapping[str, Decimal],
                       allowed_countries: list[str] | None = None, allowed_regions: list[str] | None = None) -> list[Offer]:
    """Unsaved Offer rows (USD-normalized at ``rates``, the connecting tenant's
    ``usd_rates_for_tenant``; region preferences applied) for display only."""
    draft = ProviderAccount(kind=kind, allowed_countries=list(allowed_countries or []),
                            allowed_regions=list(allowed_regions or []))
    return _to_rows(draft, offers, clock.now(), rates)


class ProviderAccountBusy(Exception):
    """The account still has live pods, so it cannot be removed."""


@transaction.atomic
def provider_account_update(*, account: ProviderAccount, **changes: Any) -> ProviderAccount:
    """Change an account's admin-editable fields (name, cap, regions, default class, rank,
    enabled, settings). Region changes take effect at the next poll."""
    allowed = {"name", "spending_cap_usd", "spending_cap_period", "allowed_regions", "allowed_countries",
               "default_gpu_class", "preference_rank", "enabled", "settings", "spot_bid_margin_pct"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValueError(f"not editable: {', '.join(sorted(unknown))}")
    before = {f: getattr(account, f) for f in changes}
    for field, value in changes.items():
        setattr(account, field, value)
    account.save()
    audit_record(tenant=account.tenant_id, action="provider.changed", target=account,
                 details={f: {"from": str(before[f]), "to": str(v)} for f, v in changes.items() if before[f] != v and f != "settings"}
                 | ({"settings": "changed"} if "settings" in changes and before["settings"] != changes["settings"] else {}))
    return account


@transaction.atomic
def provider_account_credentials_replace(*, account: ProviderAccount, credentials: dict[str, Any],
                                         verify: bool = True) -> ProviderAccount:
    """Replace the stored credentials, verified live first. Old values are never shown."""
    if verify:
        verify_credentials(kind=account.kind, credentials=credentials, settings=dict(account.settings or {}))
    account.credentials = credentials
    account.consecutive_failures = 0
    account.save()
    audit_record(tenant=account.tenant_id, action="provider.credentials_replaced", target=account,
                 details={"fields": sorted(credentials)})
    return account


def account_has_live_pods(account: ProviderAccount) -> bool:
    """True while any pod on this account has not ended (stopped pods still hold a disk);
    workloads answers through ``providers.pod_usage``."""
    return pod_usage().live_on_account(account)


@transaction.atomic
def provider_account_remove(*, account: ProviderAccount) -> str:
    """Remove an account. Refuses while it has live pods (ProviderAccountBusy).

    An account that never ran a pod is deleted. One with pod history is archived instead:
    credentials wiped, disabled, offers dropped, renamed, ``settings["removed_at"]`` set, so
    that past pods and their costs keep pointing at it. Returns "deleted" or "archived".
    """
    account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
    if account_has_live_pods(account):
        raise ProviderAccountBusy(f"{account.name} still has live pods; terminate them first.")
    if not pod_usage().any_on_account(account):
        audit_record(tenant=account.tenant_id, action="provider.removed", target=account, details={"mode": "deleted"})
        account.delete()
        return "deleted"
    now = clock.now()
    account.offers.all().delete()
    account.credentials = {}
    account.enabled = False
    account.offer_count = 0
    account.settings = dict(account.settings or {}, removed_at=now.isoformat())
    account.name = f"{account.name} (removed {now:%Y-%m-%d %H:%M})"[:120]
    account.save()
    audit_record(tenant=account.tenant_id, action="provider.removed", target=account, details={"mode": "archived"})
    return "archived"


# --- an organization's invoice rates ---------------------------------------------------------

CURRENCY_CODE = re.compile(r"[A-Z]{3}")
# the column keeps 6 decimal places: a finer rate would be stored as something else
RATE_PLACES = 6
# the dearest currency (KWD) is worth about 3.3 USD a unit: beyond this a rate is a typo (say,
# USD per 1,000 units typed for USD per unit), and every cost of the tenant would follow it
MAX_USD_PER_UNIT = Decimal("1000")


class InvoiceRateInvalid(ValueError):
    """The currency code or the rate was refused; the message says why, for the user, and
    ``field`` which of the two ("currency" or "usd_per_unit") it is about."""

    def __init__(self, message: str, *, field: str):
        super().__init__(message)
        self.field = field


def invoice_rate_validate(*, currency: str, usd_per_unit: Decimal) -> tuple[str, Decimal]:
    """The checked (currency, rate) of an override, or InvoiceRateInvalid."""
    if not isinstance(currency, str) or not CURRENCY_CODE.fullmatch(currency):
        raise InvoiceRateInvalid("Use a three-letter ISO 4217 currency code in capitals, e.g. EUR.", field="currency")
    if currency == "USD":
        raise InvoiceRateInvalid("USD is the currency everything is converted to; its rate is always 1.",
                                 field="currency")
    if not isinstance(usd_per_unit, Decimal) or not usd_per_unit.is_finite():
        raise InvoiceRateInvalid("The rate must be a number.", field="usd_per_unit")
    if usd_per_unit <= 0 or usd_per_unit > MAX_USD_PER_UNIT:
        raise InvoiceRateInvalid(f"The rate must be more than 0 and at most {MAX_USD_PER_UNIT} USD per unit.",
                                 field="usd_per_unit")
    if usd_per_unit != usd_per_unit.quantize(Decimal(1).scaleb(-RATE_PLACES)):
        raise InvoiceRateInvalid(f"Use at most {RATE_PLACES} decimal places.", field="usd_per_unit")
    return currency, usd_per_unit


def _rate_text(rate: Decimal) -> str:
    """A rate as stored (6 places), so that an audit trail's "from" and "to" compare as text."""
    return str(rate.quantize(Decimal(1).scaleb(-RATE_PLACES)))


@transaction.atomic
def invoice_rate_set(*, tenant: Tenant, currency: str, usd_per_unit: Decimal) -> InvoiceRate:
    """Set the organization's own rate for ``currency`` (its override of the platform rate).

    Only the tenant's row is written, never the platform's or another tenant's. New offers and
    ledger lines of this tenant use it from the next poll and meter on; booked ledger lines
    keep the rate they were booked at.
    """
    currency, usd_per_unit = invoice_rate_validate(currency=currency, usd_per_unit=usd_per_unit)
    before = (InvoiceRate.objects.for_tenant(tenant).select_for_update().filter(currency=currency)
              .values_list("usd_per_unit", flat=True).first())
    row, _ = InvoiceRate.objects.update_or_create(tenant=tenant, currency=currency,
                                                  defaults={"usd_per_unit": usd_per_unit})
    if before != usd_per_unit:
        audit_record(tenant=tenant, action="invoice_rate.set", target=row,
                     details={"currency": currency, "from": _rate_text(before) if before is not None else "",
                              "to": _rate_text(usd_per_unit)})
    return row


def _no_fallback(currency: str) -> bool:
    return currency not in DEFAULT_RATES and not InvoiceRate.objects.platform().filter(currency=currency).exists()


def _bills_in(tenant: Tenant, currency: str) -> bool:
    """Does any of the tenant's offers, or a pod still metered (not ended), bill in ``currency``?"""
    return (Offer.objects.for_tenant(tenant).filter(currency=currency).exists()
            or pod_usage().live_billing_in(tenant, currency))


@transaction.atomic
def invoice_rate_clear(*, tenant: Tenant, currency: str) -> bool:
    """Drop the organization's override of ``currency`` (it falls back to the platform rate).
    Returns whether there was one. Never touches the platform's or another tenant's rows."""
    row = InvoiceRate.objects.for_tenant(tenant).select_for_update().filter(currency=currency).first()
    if row is None:
        return False
    if _no_fallback(currency) and _bills_in(tenant, currency):
        # without a rate the next poll and meter of these accounts would fail: keep it
        raise InvoiceRateInvalid(f"Your providers still bill in {currency} and there is no platform or built-in "
                                 f"{currency} rate to fall back to: set a new rate instead of removing it.",
                                 field="currency")
    audit_record(tenant=tenant, action="invoice_rate.cleared", target=row,
                 details={"currency": row.currency, "from": _rate_text(row.usd_per_unit)})
    row.delete()
    return True
