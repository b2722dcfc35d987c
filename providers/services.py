"""Writes for providers: connecting accounts and polling their capacity."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import transaction

from provisioner import clock
from tenants.models import Tenant

from .adapters.base import OfferData, ProviderAdapter, ProviderError
from .adapters.registry import build_adapter
from .models import Health, Offer, ProviderAccount
from .selectors import usd_rate

logger = logging.getLogger(__name__)

POLL_TIMEOUT_SECONDS = 20.0


def adapter_for(account: ProviderAccount) -> ProviderAdapter:
    """The adapter for ``account``, with its decrypted credentials and settings."""
    settings: dict[str, Any] = dict(account.settings or {})
    settings["account_id"] = str(account.pk)
    # multi-region providers (AWS, GCP, Azure) query only the regions the admin allowed
    settings.setdefault("allowed_regions", list(account.allowed_regions or []))
    return build_adapter(account.kind, dict(account.credentials or {}), settings)


def verify_credentials(*, kind: str, credentials: dict[str, Any], settings: dict[str, Any] | None = None) -> None:
    """Check credentials live before anything is saved. Raises ProviderError."""
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
    return ProviderAccount.objects.create(
        tenant=tenant, kind=kind, name=name, credentials=credentials or {}, settings=settings or {},
        spending_cap_usd=spending_cap_usd, spending_cap_period=spending_cap_period,
        allowed_regions=allowed_regions or [], allowed_countries=allowed_countries or [],
        default_gpu_class=default_gpu_class, preference_rank=preference_rank, created_by=created_by,
    )


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


def _to_rows(account: ProviderAccount, offers: list[OfferData], fetched_at) -> list[Offer]:
    rows = []
    countries = set(account.allowed_countries or [])
    regions = set(account.allowed_regions or [])
    for o in offers:
        # the admin's region preferences: offers outside them never reach placement
        if (countries and o.country not in countries) or (regions and o.region not in regions):
            continue
        rate = usd_rate(o.currency)
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
    now = clock.now()
    with transaction.atomic():
        account = ProviderAccount.objects.select_for_update().get(pk=account.pk)
        account.last_polled_at = now
        if result.offers is None:
            account.consecutive_failures += 1
            account.last_error = result.error[:2000]
            has_offers = account.offers.exists()
            account.health = Health.STALE if has_offers else Health.ERROR
            account.offers.update(stale=True)
        else:
            account.offers.all().delete()
            Offer.objects.bulk_create(_to_rows(account, result.offers, now), batch_size=1000)
            account.offer_count = account.offers.count()
            account.last_success_at = now
            account.last_error = ""
            account.consecutive_failures = 0
            account.health = Health.OK
        account.save()


def capacity_poll(*, accounts: list[ProviderAccount], timeout: float = POLL_TIMEOUT_SECONDS) -> list[PollResult]:
    """Poll every account concurrently; a slow provider delays nobody beyond ``timeout``."""
    if not accounts:
        return []
    results: list[PollResult] = []
    pool = ThreadPoolExecutor(max_workers=min(16, len(accounts)), thread_name_prefix="poll")
    try:
        futures = {pool.submit(_fetch, a): a for a in accounts}
        deadline = clock.now().timestamp() + timeout
        for future, account in futures.items():
            remaining = max(0.0, deadline - clock.now().timestamp())
            try:
                results.append(future.result(timeout=remaining))
            except FutureTimeout:
                results.append(PollResult(str(account.pk), None, f"timed out after {timeout:.0f}s"))
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
    by_id = {str(a.pk): a for a in accounts}
    for r in results:
        capacity_store(account=by_id[r.account_id], result=r)
    return results


def capacity_poll_all() -> list[PollResult]:
    return capacity_poll(accounts=list(ProviderAccount.objects.filter(enabled=True)))
