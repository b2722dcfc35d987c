"""The first-time provider connection wizard: steps, their forms, and the state between them.

State lives in the user's session, keyed by a wizard id that is part of every step's URL, so
Back/Next and a page refresh lose nothing and two wizards in two tabs do not mix. Nothing
touches the database until the last step: an abandoned wizard leaves no account behind.
Verified credentials are kept in the session only as a Fernet token (key derived from
``settings.CRYPTOGRAPHY_KEY``), and the whole entry is dropped on connect or cancel.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django import forms
from django.conf import settings as django_settings
from django.db import IntegrityError
from django.http import HttpRequest

from tenants.models import Tenant

from . import services
from .adapters.base import CredentialField, ProviderError, ProviderInfo
from .adapters.registry import ADAPTERS, provider_info
from .adapters.rest import base_url_override_allowed
from .catalog import GPU_CLASSES
from .forms import PASTE_SUFFIX, CredentialsForm, GpuClassForm, ProviderChoiceForm, RegionsForm, SpendingCapForm
from .models import Offer, ProviderAccount
from .recommend import Recommendation, recommend_provider
from .selectors import rate_for, usd_rates_for_tenant

STEPS: tuple[str, ...] = ("provider", "credentials", "cap", "regions", "gpu", "review")
STEP_TITLES = {"provider": "Provider", "credentials": "Credentials", "cap": "Spending cap",
               "regions": "Regions", "gpu": "Default GPU", "review": "Review"}
SESSION_KEY = "provider_wizards"
MAX_WIZARDS_PER_SESSION = 5
WIZARD_TTL_SECONDS = 24 * 3600
REVIEW_OFFER_ROWS = 200


# --- sealing secrets ------------------------------------------------------------------------


def _encryption_key() -> str:
    # the credential-encryption key (settings.ENCRYPTION_KEY, set from $CRYPTOGRAPHY_KEY; older
    # settings call it CRYPTOGRAPHY_KEY) — never SECRET_KEY
    key = django_settings.ENCRYPTION_KEY
    if not key or not isinstance(key, str):
        raise RuntimeError("no credential encryption key configured (CRYPTOGRAPHY_KEY)")
    return key


def _fernet() -> Fernet:
    digest = hashlib.sha256(b"provider-wizard/" + _encryption_key().encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))


def seal(data: dict[str, Any]) -> str:
    return _fernet().encrypt(json.dumps(data).encode()).decode()


def unseal(token: str) -> dict[str, Any]:
    """The sealed dict, or {} when the token is missing, tampered with or older than the TTL."""
    if not token:
        return {}
    try:
        return json.loads(_fernet().decrypt(token.encode(), ttl=WIZARD_TTL_SECONDS))
    except (InvalidToken, ValueError):
        return {}


# --- state ------------------------------------------------------------------------------------


@dataclass
class WizardState:
    """One wizard run. ``steps[step]`` holds ``draft`` (non-secret values as typed, to refill
    the form) and ``clean`` (validated, JSON-safe values; None until the step is passed)."""

    id: str
    tenant_id: str
    created: float
    kind: str = ""
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    sealed_credentials: str = ""
    offer_summary: dict[str, Any] | None = None

    def clean(self, step: str) -> dict[str, Any] | None:
        return self.steps.get(step, {}).get("clean")

    def draft(self, step: str) -> dict[str, Any]:
        return self.steps.get(step, {}).get("draft") or {}

    def set_step(self, step: str, *, clean: dict[str, Any] | None, draft: dict[str, Any]) -> None:
        self.steps[step] = {"clean": clean, "draft": draft}

    def set_draft(self, step: str, draft: dict[str, Any]) -> None:
        self.steps.setdefault(step, {"clean": None})["draft"] = draft

    def first_incomplete(self) -> str:
        for step in STEPS[:-1]:
            if self.clean(step) is None:
                return step
        return STEPS[-1]

    def credentials(self) -> dict[str, Any]:
        return unseal(self.sealed_credentials)

    def set_credentials(self, creds: dict[str, Any]) -> None:
        self.sealed_credentials = seal(creds) if creds else ""

    @property
    def info(self) -> ProviderInfo:
        return provider_info(self.kind)

    def account_settings(self) -> dict[str, Any]:
        return dict((self.clean("credentials") or {}).get("settings") or {})


class WizardStore:
    """The session-backed home of a user's wizards (at most a few, each for a day)."""

    def __init__(self, request: HttpRequest):
        self.session = request.session

    def _all(self) -> dict[str, dict[str, Any]]:
        now = time.time()
        entries = {k: v for k, v in self.session.get(SESSION_KEY, {}).items()
                   if now - float(v.get("created", 0)) < WIZARD_TTL_SECONDS}
        return entries

    def create(self, tenant: Tenant) -> WizardState:
        state = WizardState(id=secrets.token_urlsafe(9), tenant_id=str(tenant.pk), created=time.time())
        self.save(state)
        return state

    def get(self, wizard_id: str, tenant: Tenant) -> WizardState | None:
        raw = self._all().get(wizard_id)
        if raw is None or raw.get("tenant_id") != str(tenant.pk):
            return None
        return WizardState(**raw)

    def save(self, state: WizardState) -> None:
        entries = self._all()
        entries[state.id] = asdict(state)
        # keep the newest few: an abandoned wizard must not grow the session forever
        newest = sorted(entries.items(), key=lambda kv: kv[1]["created"], reverse=True)[:MAX_WIZARDS_PER_SESSION]
        self.session[SESSION_KEY] = dict(newest)
        self.session.modified = True

    def drop(self, wizard_id: str) -> None:
        entries = self._all()
        entries.pop(wizard_id, None)
        self.session[SESSION_KEY] = entries
        self.session.modified = True


# --- provider cards (step 1) ----------------------------------------------------------------


def registered_infos() -> list[ProviderInfo]:
    """Every registered provider, the Sandbox first. An adapter whose module fails to import
    is left out rather than breaking the wizard."""
    infos = []
    for kind in ADAPTERS:
        try:
            infos.append(provider_info(kind))
        except Exception:  # noqa: BLE001 - optional SDK missing, module mid-edit, ...
            continue
    return sorted(infos, key=lambda i: (i.kind != "sandbox", i.label.lower()))


def billing_note(info: ProviderInfo) -> str:
    """How the provider bills, in words, from billing's rule table (the one source)."""
    from billing.rules import rule_for

    rule = rule_for(info.kind)
    inc = rule.increment_seconds
    if rule.monthly_cap:
        note = "Billed per started hour, never more than the monthly price in a month, plus a setup fee"
    elif inc <= 1:
        note = "Billed per second"
    elif inc < 3600:
        note = f"Billed per {inc // 60 or 1} min" + (" (whole minutes only)" if rule.rounding == "down" else "")
    else:
        note = f"Billed per {inc // 3600} h"
    if rule.minimum_charge_seconds >= 60 and not rule.monthly_cap:
        minimum = rule.minimum_charge_seconds
        note += f", minimum {minimum // 3600} h" if minimum >= 3600 else f", minimum {minimum // 60} min"
    if info.slow_delivery:
        note += "; delivery takes hours to days (fine for long services, poor for short jobs)"
    if info.kind == "sandbox":
        note = "Free: simulated capacity and prices"
    return note


@dataclass(frozen=True)
class ProviderCard:
    info: ProviderInfo
    billing: str
    recommended: bool
    needs: tuple[str, ...]  # labels of the required credential fields


def starts_with_sandbox(tenant: Tenant) -> bool:
    """An organization with no real provider connected yet starts with the Sandbox (the README's
    first step): it needs no credentials, so that tile is chosen for it and says why."""
    return not ProviderAccount.objects.for_tenant(tenant).exclude(kind="sandbox").exists()


def provider_cards(tenant: Tenant) -> tuple[list[ProviderCard], Recommendation | None]:
    infos = registered_infos()
    rec = recommend_provider(tenant=tenant, infos=infos)
    cards = [ProviderCard(info=i, billing=billing_note(i), recommended=rec is not None and rec.kind == i.kind,
                          needs=tuple(f.label for f in i.credential_fields if f.required)) for i in infos]
    # the Sandbox first (it needs nothing), then the recommended provider, then the rest
    cards.sort(key=lambda c: (c.info.kind != "sandbox", not c.recommended))
    return cards, rec


# --- live capacity ------------------------------------------------------------------------------


def summarize_offers(offers: list, rates: dict[str, Decimal]) -> dict[str, Any]:
    """JSON-safe summary of live offers: per class the cheapest on-demand/spot USD price (at
    ``rates``, the tenant's invoice rates) and countries, per country its regions. Kept in the
    wizard state for steps 4 and 5."""
    classes: dict[str, dict[str, Any]] = {}
    countries: dict[str, set[str]] = {}
    for o in offers:
        rate = rate_for(o.currency, rates)
        usd = (Decimal(o.price_per_hour) * rate) / max(1, o.gpu_count)
        c = classes.setdefault(o.gpu_class, {"min_usd_gpu_hour": None, "min_spot_usd_gpu_hour": None, "countries": set()})
        key = "min_spot_usd_gpu_hour" if o.spot else "min_usd_gpu_hour"
        if c[key] is None or usd < Decimal(c[key]):
            c[key] = str(usd.quantize(Decimal("0.0001")))
        c["countries"].add(o.country)
        countries.setdefault(o.country, set()).add(o.region)
    return {
        "count": len(offers),
        "fetched_at": time.time(),
        "classes": {k: dict(v, countries=sorted(v["countries"])) for k, v in classes.items()},
        "countries": {k: sorted(v) for k, v in sorted(countries.items())},
    }


def ensure_offer_summary(state: WizardState) -> str:
    """Fetch live offers with the verified credentials once and cache the summary. Returns
    an error message ("" when the summary is there)."""
    if state.offer_summary is not None:
        return ""
    try:
        offers = services.offers_fetch_live(kind=state.kind, credentials=state.credentials(),
                                            settings=state.account_settings())
    except ProviderError as exc:
        return f"Could not fetch {state.info.label}'s capacity: {exc.message or exc}"
    except Exception as exc:  # noqa: BLE001 - shown inline; the user can retry
        return f"Could not fetch {state.info.label}'s capacity: {type(exc).__name__}"
    state.offer_summary = summarize_offers(offers, usd_rates_for_tenant(state.tenant_id))
    return ""


def offered_classes(state: WizardState) -> tuple[list[str], bool]:
    """Classes this provider offers (in the chosen countries when it has any there).
    The flag is False when none is offered in the chosen countries (all are listed then)."""
    summary = state.offer_summary or {"classes": {}}
    allowed = set((state.clean("regions") or {}).get("allowed_countries") or [])
    classes = summary["classes"]
    if not allowed:
        return list(classes), True
    inside = [c for c, v in classes.items() if allowed & set(v["countries"])]
    return (inside, True) if inside else (list(classes), False)


# --- forms per step ---------------------------------------------------------------------------


def base_url_allowed(request: HttpRequest) -> bool:
    membership = getattr(request, "membership", None)
    return base_url_override_allowed() and membership is not None and membership.role in ("owner", "admin")


def default_name(tenant: Tenant, info: ProviderInfo) -> str:
    taken = set(ProviderAccount.objects.for_tenant(tenant).values_list("name", flat=True))
    name, n = info.label, 2
    while name in taken:
        name, n = f"{info.label} {n}", n + 1
    return name


def build_form(step: str, state: WizardState | None, request: HttpRequest, tenant: Tenant,
               data: Any = None, files: Any = None) -> forms.Form:
    """The step's form: bound to ``data`` on POST, else unbound with what was typed before."""
    initial: dict[str, Any] = dict(state.draft(step)) if state else {}
    if step == "provider":
        if state and state.kind:
            initial.setdefault("kind", state.kind)
        return ProviderChoiceForm(data, infos=registered_infos(), initial=initial)
    assert state is not None
    if step == "credentials":
        info = state.info
        initial.setdefault("name", default_name(tenant, info))
        base_settings = {"seed": str(tenant.pk)} if info.kind == "sandbox" else {}
        return CredentialsForm(data, files, info=info, tenant=tenant, stored=state.credentials(),
                               allow_base_url=base_url_allowed(request), base_settings=base_settings, initial=initial)
    if step == "cap":
        return SpendingCapForm(data, initial=initial)
    if step == "regions":
        return RegionsForm(data, initial=initial, saved=state.clean("regions"))
    if step == "gpu":
        ensure_offer_summary(state)  # the class list comes from live offers (cached after once)
        classes, _ = offered_classes(state)
        return GpuClassForm(data, classes=classes, initial=initial)
    raise ValueError(f"no form for step {step!r}")


def _draft_from(form: forms.Form, data: Any, secret_names: set[str]) -> dict[str, Any]:
    """The non-secret values as typed, to refill the form after Back or a failed check."""
    # a widening confirmation is asked afresh each time, never refilled
    return {name: data.get(name, "") for name in form.fields
            if name not in secret_names and name != "confirm_widen" and not isinstance(form.fields[name], forms.FileField)}


def secret_field_names(state: WizardState | None) -> set[str]:
    if state is None or not state.kind:
        return set()
    fields: tuple[CredentialField, ...] = state.info.credential_fields
    names = {cf.name for cf in fields if cf.secret or cf.file}
    return names | {cf.name + PASTE_SUFFIX for cf in fields if cf.file}


def save_draft(step: str, state: WizardState, form: forms.Form, data: Any) -> None:
    state.set_draft(step, _draft_from(form, data, secret_field_names(state)))


def apply_step(step: str, state: WizardState, form: forms.Form, data: Any) -> None:
    """Record a valid step. A changed provider or credentials invalidate what depends on them."""
    draft = _draft_from(form, data, secret_field_names(state))
    d = form.cleaned_data
    if step == "provider":
        if state.kind and state.kind != d["kind"]:
            state.steps, state.sealed_credentials, state.offer_summary = {}, "", None
        state.kind = d["kind"]
        state.set_step(step, clean={"kind": d["kind"]}, draft=draft)
    elif step == "credentials":
        assert isinstance(form, CredentialsForm)
        state.set_credentials(form.credentials)
        state.offer_summary = None  # other credentials may see other capacity
        state.set_step(step, clean={"name": d["name"], "settings": form.account_settings()}, draft=draft)
    elif step == "cap":
        state.set_step(step, clean={"spending_cap_usd": str(d["spending_cap_usd"]),
                                    "spending_cap_period": d["spending_cap_period"]}, draft=draft)
    elif step == "regions":
        state.set_step(step, clean={"preset": d["preset"], "allowed_countries": d["allowed_countries"],
                                    "allowed_regions": d["allowed_regions"]}, draft=draft)
    elif step == "gpu":
        state.set_step(step, clean={"default_gpu_class": d["default_gpu_class"]}, draft=draft)


def next_step(step: str) -> str:
    return STEPS[min(STEPS.index(step) + 1, len(STEPS) - 1)]


def previous_step(step: str) -> str | None:
    i = STEPS.index(step)
    return STEPS[i - 1] if i > 0 else None


# --- review and connect ---------------------------------------------------------------------


def review_offers(state: WizardState) -> tuple[list[Offer], str]:
    """Live capacity now, with the chosen regions applied (unsaved rows, for display)."""
    regions = state.clean("regions") or {}
    try:
        live = services.offers_fetch_live(kind=state.kind, credentials=state.credentials(),
                                          settings=state.account_settings())
    except ProviderError as exc:
        return [], f"Could not fetch live capacity from {state.info.label}: {exc.message or exc}"
    except Exception as exc:  # noqa: BLE001
        return [], f"Could not fetch live capacity from {state.info.label}: {type(exc).__name__}"
    rates = usd_rates_for_tenant(state.tenant_id)
    state.offer_summary = summarize_offers(live, rates)
    rows = services.offer_rows_preview(kind=state.kind, offers=live, rates=rates,
                                       allowed_countries=regions.get("allowed_countries"),
                                       allowed_regions=regions.get("allowed_regions"))
    rows.sort(key=lambda o: (list(GPU_CLASSES).index(o.gpu_class) if o.gpu_class in GPU_CLASSES else 99,
                             o.gpu_count, o.price_usd_per_hour))
    return rows, ""


class ConnectFailed(Exception):
    def __init__(self, step: str, message: str):
        super().__init__(message)
        self.step, self.message = step, message


def finish(state: WizardState, tenant: Tenant, user) -> ProviderAccount:
    """Create the account from the wizard's state and store its first capacity snapshot."""
    missing = state.first_incomplete()
    if missing != "review":
        raise ConnectFailed(missing, "This step is not complete yet.")
    creds, cap, regions = state.clean("credentials") or {}, state.clean("cap") or {}, state.clean("regions") or {}
    gpu = (state.clean("gpu") or {}).get("default_gpu_class", "")
    credentials = state.credentials()
    if state.info.credential_fields and not credentials:
        raise ConnectFailed("credentials", "The credentials expired from this wizard; enter them again.")
    try:
        account = services.provider_account_create(
            tenant=tenant, kind=state.kind, name=creds["name"], credentials=credentials,
            settings=creds.get("settings") or {}, spending_cap_usd=Decimal(cap["spending_cap_usd"]),
            spending_cap_period=cap["spending_cap_period"], allowed_countries=regions.get("allowed_countries") or [],
            allowed_regions=regions.get("allowed_regions") or [], default_gpu_class=gpu, created_by=user,
            verify=False,  # verified live at step 2, and the review step just listed its offers
        )
    except IntegrityError:
        raise ConnectFailed("credentials", "You already have a provider account with this name.") from None
    services.capacity_poll(accounts=[account])
    account.refresh_from_db()
    return account
