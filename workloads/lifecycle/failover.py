"""Launch with failover: try ranked candidates until one launches, bounded in count and time.

Leak-proofing, in order of the steps of one attempt:
1. *Intent first*: before the provider is called, the pod row names the account, region and
   offer it is being launched at. A worker killed during the call leaves a pod that says where
   to look; reconciliation adopts the tagged resource (or terminates it if the pod moved on).
2. *Per-attempt timeout*: the adapter call runs in a worker thread (``calls.call_with_timeout``).
3. *Ambiguous outcomes* (client-side timeout, unexpected error): the provider is asked for a
   resource carrying the pod's tag; if one exists it is adopted instead of launching again.
4. *Compare-and-set on success*: if the pod was cancelled meanwhile, the fresh resource is
   terminated at once (and reconciliation stays the safety net).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q

from billing.gate import SCOPE_BUDGET, release, reserve_launch
from billing.rules import rule_for
from providers.adapters.base import (
    CapacityUnavailable,
    InvalidCredentials,
    LaunchRequest,
    LaunchTimeout,
    ProviderError,
    QuotaExceeded,
    RemotePod,
    TransientError,
)
from provisioner import clock
from provisioner.logfilter import redact
from workloads.autoshutdown.telemetry import agent_launch_env, agent_wrapped_command
from workloads.interruptions.notices import notice_watch_env
from workloads.models import LaunchAttempt, LaunchBlock, Pod, PodState
from workloads.placement.bids import SpotBid, bid_for
from workloads.placement.engine import Candidate
from workloads.recipes.schema import launch_env, registry_auth

from . import calls
from .transitions import pod_event

logger = logging.getLogger(__name__)

Outcome = LaunchAttempt.Outcome

# how long a provider-region stays on the blocklist after a failure of each kind
BLOCK_MINUTES = {Outcome.NO_CAPACITY: 15, Outcome.QUOTA: 30, Outcome.TIMEOUT: 10,
                 Outcome.TRANSIENT: 3, Outcome.ERROR: 10}


def max_attempts() -> int:
    return int(settings.LAUNCH_MAX_ATTEMPTS)


def total_seconds() -> float:
    return float(settings.LAUNCH_TOTAL_SECONDS)


@dataclass
class LaunchOutcome:
    remote: RemotePod | None
    offer: Any = None
    path: list[str] | None = None
    reason: str = ""


def launch_request(pod: Pod, offer) -> LaunchRequest:
    """What the adapter needs to stand ``pod`` up on ``offer``; tagged with the pod's UUID."""
    w = pod.workload
    bid = bid_for(w, offer)
    spec = w.container_spec or {}
    # the explicit command runs unchanged, behind a shell line that starts the GPU agent
    command, args = agent_wrapped_command(list(spec.get("command", [])), list(spec.get("args", [])))
    return LaunchRequest(
        tag=str(pod.pk), name=f"{w.name}-{str(pod.pk)[:8]}", image=w.image, gpu_class=offer.gpu_class,
        gpu_count=offer.gpu_count, region=offer.region, instance_type=offer.instance_type, zone=offer.zone,
        # a bidding provider gets floor + margin (bids.py); elsewhere the spot price is a cap at most
        spot=offer.spot, bid_price_per_hour=(bid.price if bid else offer.price_per_hour) if offer.spot else None,
        command=command, args=args,
        # recipe secret references are resolved here, and only here; plus the in-pod GPU agent's
        # heartbeat URL and a fresh per-pod token (each attempt's token replaces the previous one)
        env={**launch_env(w), **agent_launch_env(pod=pod), **notice_watch_env(offer.kind, spot=offer.spot)},
        env_refs={k: v["secret_ref"] for k, v in (spec.get("env") or {}).items()
                  if isinstance(v, dict) and v.get("secret_ref")},
        ports=list(w.ports or spec.get("ports", [])), volumes=list(w.volumes or []),
        public_ingress=w.public_ingress, registry_auth=registry_auth(w),
    )


def offer_snapshot(offer) -> dict[str, Any]:
    """The offer as launched: what the pod shows, and every price billing needs (the monthly
    price and setup fee of a dedicated server, a host's split GPU/storage prices, the disk
    the launch asks for), locked at launch like the hourly price."""
    # the host's split prices are read only where the kind's billing rule uses them (placement
    # loads offers without ``extra``: reading it costs a query)
    extra = (offer.extra or {}) if rule_for(offer.kind).prices_from_offer else {}

    def text(value: Any) -> str | None:
        return None if value in (None, "") else str(value)

    return {
        "provider": offer.provider_account.name, "kind": offer.kind, "gpu_class": offer.gpu_class,
        "gpu_count": offer.gpu_count, "region": offer.region, "country": offer.country, "zone": offer.zone,
        "spot": offer.spot, "price_per_hour": str(offer.price_per_hour), "currency": offer.currency,
        "price_usd_per_hour": str(offer.price_usd_per_hour), "instance_type": offer.instance_type,
        # monthly-billed servers (Hetzner): metering books the one-time setup fee and caps a
        # month at the monthly price from these, so they must travel with the launch
        "monthly_price": None if offer.monthly_price is None else str(offer.monthly_price),
        "setup_fee": str(offer.setup_fee or 0),
        "base_price_per_hour": text(extra.get("base_price_per_hour")),
        "storage_per_gb_month": text(extra.get("storage_per_gb_month")),
        "disk_gb": LaunchRequest.disk_gb,  # launch_request leaves the adapter's default disk
    }


def _intent_fields(offer, bid: SpotBid | None = None) -> dict[str, Any]:
    # a bidding provider charges the bid: the pod is priced (and metered) at it, not at the floor
    snapshot = offer_snapshot(offer)
    if bid is not None:
        snapshot.update(bid_per_hour=str(bid.price), bid_floor=str(bid.floor), bid_margin_pct=bid.margin_pct)
    return dict(provider_account=offer.provider_account, external_id="", offer_snapshot=snapshot,
                gpu_class=offer.gpu_class, gpu_count=offer.gpu_count, region=offer.region, country=offer.country,
                spot=offer.spot, price_per_hour=bid.price if bid else offer.price_per_hour, currency=offer.currency,
                price_usd_per_hour=bid.price_usd if bid else offer.price_usd_per_hour)


def short_error(exc: BaseException) -> str:
    if isinstance(exc, LaunchTimeout):
        name = "timed out"
    elif isinstance(exc, CapacityUnavailable):
        name = "no capacity"
    elif isinstance(exc, QuotaExceeded):
        name = "quota exceeded"
    elif isinstance(exc, TransientError):
        name = "rate limited" if getattr(exc, "status", None) == 429 else "temporary error"
    elif isinstance(exc, InvalidCredentials):
        name = "credentials refused"
    else:
        name = type(exc).__name__
    msg = getattr(exc, "message", "") or ""
    return f"{name} ({msg})" if msg and msg.lower() != name else name


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, LaunchTimeout):
        return Outcome.TIMEOUT
    if isinstance(exc, CapacityUnavailable):
        return Outcome.NO_CAPACITY
    if isinstance(exc, QuotaExceeded):
        return Outcome.QUOTA
    if isinstance(exc, TransientError):
        return Outcome.TRANSIENT
    return Outcome.ERROR


def find_tagged(adapter, tag: str, *, timeout: float) -> RemotePod | None:
    """The live resource carrying ``tag`` at this provider, or None (also when asking fails)."""
    try:
        pods = calls.call_with_timeout(adapter.list_pods, timeout=timeout, what="listing pods")
    except ProviderError:
        return None
    for remote in pods:
        if remote.tag == tag and remote.state not in ("terminated",):
            return remote
    return None


def _record(pod: Pod, offer, outcome: str, message: str, started: float) -> None:
    LaunchAttempt.objects.create(tenant_id=pod.tenant_id, pod=pod, provider_account_id=offer.provider_account_id,
                                 region=offer.region, outcome=outcome, message=redact(message)[:300],
                                 duration_ms=int((time.monotonic() - started) * 1000), at=clock.now())
    minutes = BLOCK_MINUTES.get(outcome)
    if minutes:
        region = "*" if outcome == Outcome.QUOTA else offer.region  # quota is account-wide
        label = {Outcome.NO_CAPACITY: "no capacity", Outcome.QUOTA: "quota exceeded", Outcome.TIMEOUT: "timed out",
                 Outcome.TRANSIENT: "temporary error", Outcome.ERROR: "launch error"}[outcome]
        LaunchBlock.objects.create(tenant_id=pod.tenant_id, provider_account_id=offer.provider_account_id,
                                   region=region, reason=label, until=clock.now() + timedelta(minutes=minutes))


def _hours(pod: Pod):
    from decimal import Decimal

    minutes = pod.workload.max_duration_minutes
    return (Decimal(minutes) / 60) if minutes else None


def launch_with_failover(pod: Pod, candidates: list[Candidate]) -> LaunchOutcome:
    """Try ``candidates`` in order. Returns the launched (or adopted) remote pod with its offer,
    or ``remote=None`` and the reason. The pod must be in ``provisioning`` (claimed)."""
    deadline = time.monotonic() + total_seconds()
    attempts = 0
    path: list[str] = []
    skip_accounts: set[str] = set()
    refusals: list[str] = []
    for cand in candidates:
        offer = cand.offer
        where = cand.where
        account_id = str(offer.provider_account_id)
        if account_id in skip_accounts:
            continue
        if attempts >= max_attempts():
            path.append(f"stopped after {attempts} attempts")
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            path.append(f"gave up after {total_seconds():.0f} s")
            break
        bid = bid_for(pod.workload, offer)
        # check and reserve under lock at the moment of spending: placement's answer may be stale
        decision = reserve_launch(tenant_id=pod.tenant_id, project_id=pod.project_id,
                                  provider_account_id=offer.provider_account_id,
                                  usd_per_hour=bid.price_usd if bid else offer.price_usd_per_hour, pod_id=pod.pk,
                                  hours=_hours(pod))
        if not decision.allowed:
            refusals.append(f"{where}: {decision.reason}")
            pod_event(pod, "placement", f"Skipped {where}: {decision.reason}")
            if decision.scope == SCOPE_BUDGET:  # a budget binds every provider alike
                return LaunchOutcome(None, path=refusals, reason=f"Refused: {decision.reason}")
            skip_accounts.add(account_id)
            continue
        # intent first: the pod row says where it is being launched before we call the provider
        # ... and only while the claim is still ours (its provisioning_at is the claim's generation:
        # a re-queue after a lost lease changes it, see workloads/lifecycle/claims.py)
        if not Pod.objects.filter(pk=pod.pk, state=PodState.PROVISIONING,
                                  provisioning_at=pod.provisioning_at).update(**_intent_fields(offer, bid)):
            release(pod_id=pod.pk)
            return LaunchOutcome(None, path=path, reason="cancelled before launch")
        if bid is not None:
            pod_event(pod, "placement", f"Spot at {where}: {bid.describe()}", bid=str(bid.price), floor=str(bid.floor))
        attempts += 1
        adapter = calls.adapter(offer.provider_account)
        started = time.monotonic()
        timeout = max(0.1, min(calls.attempt_timeout(), remaining))
        try:
            remote = calls.call_with_timeout(adapter.launch, launch_request(pod, offer), timeout=timeout,
                                             timeout_error=LaunchTimeout, what=f"launch at {where}")
            outcome = Outcome.LAUNCHED
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            ambiguous = isinstance(exc, LaunchTimeout) or not isinstance(exc, ProviderError)
            if not isinstance(exc, ProviderError):
                logger.exception("unexpected error launching pod %s at %s", pod.pk, where)
            remote = find_tagged(adapter, str(pod.pk), timeout=min(timeout, 30.0)) if ambiguous else None
            if remote is None:
                msg = f"{where}: {short_error(exc)}"
                path.append(msg)
                pod_event(pod, "attempt", msg, attempt=attempts, error=type(exc).__name__, account=account_id,
                          region=offer.region)
                _record(pod, offer, _outcome_of(exc), short_error(exc), started)
                if isinstance(exc, InvalidCredentials):
                    skip_accounts.add(account_id)
                    continue
                if isinstance(exc, ProviderError) and not exc.failover:
                    release(pod_id=pod.pk)
                    return LaunchOutcome(None, path=path, reason=f"Launch refused: {msg}")
                if isinstance(exc, QuotaExceeded):
                    skip_accounts.add(account_id)
                continue
            outcome = Outcome.ADOPTED
            path.append(f"{where}: {short_error(exc)}, found the pod launched")
        path.append(f"{where}: launched")
        _record(pod, offer, outcome, "launched", started)
        claimed = (Pod.objects.filter(pk=pod.pk, state=PodState.PROVISIONING, provider_account_id=offer.provider_account_id)
                   .filter(Q(external_id="") | Q(external_id=remote.external_id))
                   .update(external_id=remote.external_id, launch_path=path))
        if not claimed:
            release(pod_id=pod.pk)
            _discard(pod, adapter, remote, where)
            return LaunchOutcome(None, path=path, reason="cancelled while launching")
        return LaunchOutcome(remote, offer=offer, path=path)
    release(pod_id=pod.pk)  # nothing launched: the reservation goes back
    if not path and refusals:
        return LaunchOutcome(None, path=refusals, reason="Refused: " + "; ".join(refusals))
    reason = "Launch failed: " + " → ".join(path + refusals) if path or refusals else "no candidate left to try"
    return LaunchOutcome(None, path=path, reason=reason)


def _discard(pod: Pod, adapter, remote: RemotePod, where: str) -> None:
    """The pod was cancelled while its launch was in flight: do not keep what was launched."""
    try:
        calls.call_with_timeout(adapter.terminate, remote.external_id, timeout=calls.attempt_timeout(), what="terminate")
        pod_event(pod, "reconcile", f"Cancelled while launching at {where}; terminated {remote.external_id} there")
    except ProviderError as exc:
        pod_event(pod, "reconcile", f"Cancelled while launching at {where}; terminate failed ({short_error(exc)}), "
                                    "reconciliation will remove it")
