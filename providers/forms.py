"""Forms of the connection wizard (one per step) and of the account pages.

Forms validate; they never write. The credentials forms verify live against the provider in
``clean()`` (server-side validation of the step), through ``services.verify_credentials``.
Secret values are never rendered back: password inputs do not render their value, secret
text areas render empty, files are never echoed, and error messages are scrubbed of them.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings as django_settings

from provisioner.inputs import MAX_REGION_LIST_CHARS, MAX_REGIONS, split_list
from provisioner.outbound import OutboundRefused, check_outbound_url

from .adapters.base import CredentialField, InvalidCredentials, ProviderError, ProviderInfo, SettingField, SettingsInvalid
from .adapters.registry import adapter_class, provider_info
from .catalog import COUNTRY_PRESETS, GPU_CLASSES, expand_countries, parse_country_pin
from .models import CapPeriod, ProviderAccount

logger = logging.getLogger(__name__)

MAX_CREDENTIAL_FILE_BYTES = 256 * 1024
PASTE_SUFFIX = "__paste"  # the text alternative of an uploaded credential file

# wizard step 4 presets (keys of catalog.COUNTRY_PRESETS plus "anywhere"/"custom")
REGION_PRESET_CHOICES = [
    ("any", "Anywhere"),
    ("EU", "EU only (the 27 member states)"),
    ("EEA", "EEA only (EU + Iceland, Liechtenstein, Norway)"),
    ("US", "US only"),
    ("NA", "US + Canada"),
    ("UK", "UK only"),
    ("custom", "Only these countries…"),
]


class SecretTextarea(forms.Textarea):
    """A text area for a secret (kubeconfig, JSON key) that never renders its value back."""

    def format_value(self, value: Any) -> None:
        return None


def _scrub(message: str, secrets: list[str]) -> str:
    """Remove any secret value an adapter's error message might quote back."""
    for s in secrets:
        if s and len(s) >= 4:
            message = message.replace(s, "••••")
    return message


def clean_base_url(url: str) -> str:
    """An admin's stand-in API URL: in production it is an outbound URL like any other (public
    https only, ``provisioner.outbound``); in development stand-ins run on 127.0.0.1."""
    if url and django_settings.PRODUCTION:
        try:
            check_outbound_url(url)
        except OutboundRefused as exc:
            raise forms.ValidationError(str(exc)) from None
    return url


def parse_countries(raw: str) -> list[str]:
    try:
        return expand_countries(parse_country_pin(raw))
    except ValueError as exc:
        raise forms.ValidationError(str(exc)) from None


def parse_regions(raw: str) -> list[str]:
    regions = list(dict.fromkeys(split_list(raw)))
    if len(regions) > MAX_REGIONS:
        raise forms.ValidationError(f"List at most {MAX_REGIONS} regions ({len(regions)} given).")
    return regions


# --- step 1 ------------------------------------------------------------------------------


class ProviderChoiceForm(forms.Form):
    kind = forms.ChoiceField(label="Provider", widget=forms.RadioSelect,
                             error_messages={"required": "Pick a provider to connect."})

    def __init__(self, *args: Any, infos: list[ProviderInfo], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [(i.kind, i.label) for i in infos]


# --- step 2 ------------------------------------------------------------------------------


def credential_form_field(cf: CredentialField, *, stored: bool) -> forms.Field:
    """The Django field for one of the provider's credential fields. ``stored``: a verified
    value is already held (encrypted) by the wizard, so leaving the field blank keeps it."""
    required = cf.required and not stored
    help_text = cf.help + (" A value is stored — leave blank to keep it." if stored and cf.secret else "")
    if cf.file:
        # required-ness is checked in collect_credentials: a pasted text (PASTE_SUFFIX) may stand in
        return forms.FileField(label=cf.label, required=required and not cf.multiline, help_text=help_text)
    if cf.multiline:
        widget: forms.Widget = SecretTextarea(attrs={"rows": 6, "autocomplete": "off", "spellcheck": "false"}) \
            if cf.secret else forms.Textarea(attrs={"rows": 6})
        return forms.CharField(label=cf.label, required=required, help_text=help_text, widget=widget, strip=False)
    if cf.secret:
        return forms.CharField(label=cf.label, required=required, help_text=help_text,
                               widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}))
    return forms.CharField(label=cf.label, required=required, help_text=help_text)


def setting_form_field(sf: SettingField) -> forms.Field:
    """The Django field for one of the provider's per-account settings (never secret)."""
    if sf.kind == "bool":
        return forms.BooleanField(label=sf.label, required=False, help_text=sf.help)
    widget = forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}) if sf.kind == "multiline" else None
    return forms.CharField(label=sf.label, required=False, help_text=sf.help, widget=widget, max_length=4000)


def add_setting_fields(form: forms.Form, info: ProviderInfo, saved: dict[str, Any]) -> None:
    """The provider's own settings fields (``info.setting_fields``), shown with the saved values."""
    for sf in info.setting_fields:
        form.fields[sf.name] = setting_form_field(sf)
        value = saved.get(sf.name, sf.default)
        form.initial.setdefault(sf.name, ", ".join(value) if isinstance(value, list) else value)


def clean_setting_fields(form: forms.Form, info: ProviderInfo) -> dict[str, Any]:
    """The adapter's normalized settings from the cleaned fields; errors go on the fields."""
    if not info.setting_fields:
        return {}
    try:
        return adapter_class(info.kind).clean_settings({sf.name: form.cleaned_data.get(sf.name)
                                                        for sf in info.setting_fields})
    except SettingsInvalid as exc:
        for name, message in exc.errors.items():
            form.add_error(name if name in form.fields else None, message)
        return {}


class CredentialsMixin:
    """Builds the provider's own credential fields and verifies them live in ``clean()``."""

    info: ProviderInfo
    stored: dict[str, Any]
    verify_settings: dict[str, Any]
    credentials: dict[str, Any]

    def add_credential_fields(self) -> None:
        for cf in self.info.credential_fields:
            self.fields[cf.name] = credential_form_field(cf, stored=cf.name in self.stored)  # type: ignore[attr-defined]
            if cf.file and cf.multiline:  # a kubeconfig or JSON key: upload it, or paste it
                self.fields[cf.name + PASTE_SUFFIX] = forms.CharField(  # type: ignore[attr-defined]
                    label=f"…or paste the {cf.label.lower()}", required=False, strip=False,
                    widget=SecretTextarea(attrs={"rows": 5, "autocomplete": "off", "spellcheck": "false"})
                    if cf.secret else forms.Textarea(attrs={"rows": 5}))

    def collect_credentials(self, cleaned: dict[str, Any]) -> dict[str, Any]:
        creds: dict[str, Any] = {}
        for cf in self.info.credential_fields:
            value = cleaned.get(cf.name)
            if cf.file and value:
                if value.size > MAX_CREDENTIAL_FILE_BYTES:
                    self.add_error(cf.name, "That file is too large for a credential file.")  # type: ignore[attr-defined]
                    continue
                try:
                    value = value.read().decode("utf-8")
                except UnicodeDecodeError:
                    self.add_error(cf.name, "Upload the text file (UTF-8) the provider gave you.")  # type: ignore[attr-defined]
                    continue
            if value in (None, "") and cf.file and cf.multiline:
                value = cleaned.get(cf.name + PASTE_SUFFIX) or ""
            if value in (None, "") and cf.name in self.stored:
                value = self.stored[cf.name]
            if value not in (None, ""):
                creds[cf.name] = value
            elif cf.required:
                self.add_error(cf.name, "Upload the file or paste its content." if cf.file  # type: ignore[attr-defined]
                               else "This field is required.")
        return creds

    def verify_live(self, creds: dict[str, Any], settings: dict[str, Any]) -> None:
        from . import services

        secrets = [str(v) for k, v in creds.items() if any(cf.name == k and cf.secret for cf in self.info.credential_fields)]
        try:
            services.verify_credentials(kind=self.info.kind, credentials=creds, settings=settings)
        except InvalidCredentials as exc:
            raise forms.ValidationError(
                _scrub(f"{self.info.label} refused these credentials: {exc.message or exc}", secrets),
                code="invalid_credentials") from None
        except ProviderError as exc:
            raise forms.ValidationError(
                _scrub(f"Could not verify with {self.info.label}: {exc.message or exc}", secrets),
                code="provider_error") from None
        except Exception as exc:  # network errors the adapter did not type; never a 500 page
            logger.warning("credential check for %s failed: %s", self.info.kind, type(exc).__name__)
            raise forms.ValidationError(
                _scrub(f"Could not reach {self.info.label}: {type(exc).__name__}: {exc}", secrets),
                code="unreachable") from None


class CredentialsForm(CredentialsMixin, forms.Form):
    """Wizard step 2: account name, the provider's own fields, optional base-URL override."""

    name = forms.CharField(label="Account name", max_length=120,
                           help_text="How this account is called in the app, e.g. “RunPod research”.")

    def __init__(self, *args: Any, info: ProviderInfo, tenant, stored: dict[str, Any] | None = None,
                 allow_base_url: bool = False, base_settings: dict[str, Any] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.info, self.tenant, self.stored = info, tenant, dict(stored or {})
        self.base_settings = dict(base_settings or {})
        self.credentials = {}
        self.add_credential_fields()
        add_setting_fields(self, info, self.base_settings)
        if allow_base_url and info.kind != "sandbox":
            self.fields["base_url"] = forms.URLField(
                label="API base URL (advanced)", required=False, assume_scheme="https",
                help_text="Admins only: point this account at a stand-in of the provider's API "
                          "(demos, tests). Leave empty for the real API.")

    def clean_base_url(self) -> str:
        return clean_base_url(self.cleaned_data.get("base_url") or "")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if ProviderAccount.objects.for_tenant(self.tenant).filter(name=name).exists():
            raise forms.ValidationError("You already have a provider account with this name.")
        return name

    def account_settings(self) -> dict[str, Any]:
        settings = dict(self.base_settings)
        if self.cleaned_data.get("base_url"):
            settings["base_url"] = self.cleaned_data["base_url"].rstrip("/")
        return settings

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:  # a missing field: no point asking the provider
            return cleaned
        creds = self.collect_credentials(cleaned)
        self.base_settings.update(clean_setting_fields(self, self.info))
        if self.errors:
            return cleaned
        self.verify_live(creds, self.account_settings())
        self.credentials = creds
        return cleaned


# --- step 3 ------------------------------------------------------------------------------


class SpendingCapForm(forms.Form):
    spending_cap_usd = forms.DecimalField(
        label="Spending cap (USD)", min_value=Decimal("0"), max_digits=12, decimal_places=2, initial=500,
        help_text="Hard ceiling: no new pod starts on this account once its spend in the period reaches it.")
    spending_cap_period = forms.ChoiceField(label="Per", choices=CapPeriod.choices, initial=CapPeriod.MONTH)


# --- step 4 ------------------------------------------------------------------------------


class RegionsForm(forms.Form):
    preset = forms.ChoiceField(label="Where may pods run?", choices=REGION_PRESET_CHOICES, initial="any",
                               widget=forms.RadioSelect)
    countries = forms.CharField(label="Countries", required=False, max_length=MAX_REGION_LIST_CHARS,
                                help_text="ISO codes or presets (" + ", ".join(COUNTRY_PRESETS) + "), comma-separated.")
    regions = forms.CharField(label="Only these provider regions (optional)", required=False,
                              max_length=MAX_REGION_LIST_CHARS,
                              help_text="The provider's own region ids, comma-separated; empty for all.")

    confirm_widen = forms.BooleanField(label="Yes, widen where pods may run", required=False)

    def __init__(self, *args: Any, saved: dict[str, Any] | None = None, **kwargs: Any):
        """``saved``: the step's values as last saved. A choice narrower than "anywhere" is never
        widened silently (a stale page, browser Back): widening needs ``confirm_widen`` ticked."""
        super().__init__(*args, **kwargs)
        self.saved = saved or {}
        if not (self.saved.get("allowed_countries") or self.saved.get("allowed_regions")):
            del self.fields["confirm_widen"]

    def _widens(self, countries: list[str], regions: list[str]) -> str:
        """How the new choice widens the saved one, in words ("" when it does not)."""
        old_c, old_r = self.saved.get("allowed_countries") or [], self.saved.get("allowed_regions") or []
        if old_c and (not countries or set(countries) - set(old_c)):
            added = sorted(set(countries) - set(old_c))
            return "anywhere" if not countries else "also " + ", ".join(added)
        if old_r and (not regions or set(regions) - set(old_r)):
            return "every region" if not regions else "also regions " + ", ".join(sorted(set(regions) - set(old_r)))
        return ""

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        preset = cleaned.get("preset")
        try:
            extra = parse_countries(cleaned.get("countries", ""))
        except forms.ValidationError as exc:
            self.add_error("countries", exc)
            return cleaned
        if preset == "custom" and not extra:
            self.add_error("countries", "List at least one country, or pick a preset.")
            return cleaned
        base = [] if preset in (None, "any", "custom") else list(COUNTRY_PRESETS[preset])
        if preset == "any" and extra:
            self.add_error("countries", "“Anywhere” takes no country list; pick “Only these countries…”.")
            return cleaned
        cleaned["allowed_countries"] = expand_countries(base + extra)
        try:
            cleaned["allowed_regions"] = parse_regions(cleaned.get("regions", ""))
        except forms.ValidationError as exc:
            self.add_error("regions", exc)
            return cleaned
        widened = self._widens(cleaned["allowed_countries"], cleaned["allowed_regions"])
        if widened and not cleaned.get("confirm_widen"):
            was = ", ".join(self.saved.get("allowed_countries") or []) or "regions " + ", ".join(self.saved["allowed_regions"])
            self.add_error("confirm_widen", f"This widens where pods may run (saved: {was}; now: {widened}). "
                                            "Tick to confirm, or pick the saved choice again.")
        return cleaned


# --- step 5 ------------------------------------------------------------------------------


class GpuClassForm(forms.Form):
    default_gpu_class = forms.ChoiceField(label="Default GPU class", widget=forms.RadioSelect,
                                          error_messages={"required": "Pick the default GPU class."})

    def __init__(self, *args: Any, classes: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        order = list(GPU_CLASSES)
        ordered = sorted(classes, key=lambda c: order.index(c) if c in order else len(order))
        self.fields["default_gpu_class"].choices = [(c, GPU_CLASSES.get(c, (c,))[0]) for c in ordered]


# --- account pages -------------------------------------------------------------------------


class AccountEditForm(forms.Form):
    """Edit an account's cap, regions, default class, preference rank, enabled flag."""

    name = forms.CharField(max_length=120)
    spending_cap_usd = forms.DecimalField(label="Spending cap (USD)", min_value=Decimal("0"), max_digits=12,
                                          decimal_places=2, required=False, help_text="Empty for no cap.")
    spending_cap_period = forms.ChoiceField(label="Per", choices=CapPeriod.choices)
    countries = forms.CharField(required=False, max_length=MAX_REGION_LIST_CHARS,
                                help_text="ISO codes or presets (" + ", ".join(COUNTRY_PRESETS)
                                + "), comma-separated; empty for anywhere.")
    regions = forms.CharField(label="Provider regions", required=False, max_length=MAX_REGION_LIST_CHARS,
                              help_text="Region ids, comma-separated; empty for all.")
    default_gpu_class = forms.ChoiceField(label="Default GPU class", required=False)
    preference_rank = forms.IntegerField(min_value=0, max_value=100000, help_text="Lower is tried first by placement.")
    enabled = forms.BooleanField(required=False, help_text="Disabled accounts are neither polled nor used for placement.")

    def __init__(self, *args: Any, account: ProviderAccount, allow_base_url: bool = False, **kwargs: Any):
        self.account = account
        initial = {
            "name": account.name, "spending_cap_usd": account.spending_cap_usd,
            "spending_cap_period": account.spending_cap_period,
            "countries": ", ".join(account.allowed_countries or []), "regions": ", ".join(account.allowed_regions or []),
            "default_gpu_class": account.default_gpu_class, "preference_rank": account.preference_rank,
            "enabled": account.enabled, "base_url": (account.settings or {}).get("base_url", ""),
            "spot_bid_margin_pct": account.spot_bid_margin_pct,
        }
        super().__init__(*args, initial=initial, **kwargs)
        if provider_info(account.kind).spot_bids:  # Vast.ai, RunPod: spot is rented by bid
            self.fields["spot_bid_margin_pct"] = forms.IntegerField(
                label="Spot bid above the floor (%)", min_value=0, max_value=300, required=False,
                help_text="For workloads that set none. A bid at the floor loses the GPU to the next bid a cent "
                          "higher; workloads' price ceilings still cap the bid. Empty: the platform default.")
        offered = sorted(set(account.offers.values_list("gpu_class", flat=True)))
        classes = offered or list(GPU_CLASSES)
        if account.default_gpu_class and account.default_gpu_class not in classes:
            classes.append(account.default_gpu_class)
        self.fields["default_gpu_class"].choices = [("", "—")] + [(c, GPU_CLASSES.get(c, (c,))[0]) for c in classes]
        if allow_base_url and account.kind != "sandbox":
            self.fields["base_url"] = forms.URLField(label="API base URL (advanced)", required=False, assume_scheme="https",
                                                     help_text="Admins only: a stand-in of the provider's API.")
        add_setting_fields(self, provider_info(account.kind), account.settings or {})

    def clean_base_url(self) -> str:
        return clean_base_url(self.cleaned_data.get("base_url") or "")

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = ProviderAccount.objects.for_tenant(self.account.tenant).filter(name=name).exclude(pk=self.account.pk)
        if taken.exists():
            raise forms.ValidationError("You already have a provider account with this name.")
        return name

    def clean_countries(self) -> list[str]:
        return parse_countries(self.cleaned_data.get("countries", ""))

    def clean_regions(self) -> list[str]:
        return parse_regions(self.cleaned_data.get("regions", ""))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        self.provider_settings = clean_setting_fields(self, provider_info(self.account.kind))
        return cleaned

    def changes(self) -> dict[str, Any]:
        d = self.cleaned_data
        settings = {**(self.account.settings or {}), **self.provider_settings}
        if "base_url" in self.fields:
            if d.get("base_url"):
                settings["base_url"] = d["base_url"].rstrip("/")
            else:
                settings.pop("base_url", None)
        changes = {
            "name": d["name"], "spending_cap_usd": d["spending_cap_usd"], "spending_cap_period": d["spending_cap_period"],
            "allowed_countries": d["countries"], "allowed_regions": d["regions"],
            "default_gpu_class": d["default_gpu_class"], "preference_rank": d["preference_rank"],
            "enabled": d["enabled"], "settings": settings,
        }
        if "spot_bid_margin_pct" in self.fields:
            changes["spot_bid_margin_pct"] = d.get("spot_bid_margin_pct")
        return changes


class CredentialsReplaceForm(CredentialsMixin, forms.Form):
    """Replace-only: the stored values are never shown; every field starts empty."""

    def __init__(self, *args: Any, account: ProviderAccount, info: ProviderInfo, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.account, self.info, self.stored = account, info, {}
        self.credentials = {}
        self.add_credential_fields()

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if self.errors:
            return cleaned
        creds = self.collect_credentials(cleaned)
        if self.errors:
            return cleaned
        settings = dict(self.account.settings or {}, account_id=str(self.account.pk))
        self.verify_live(creds, settings)
        self.credentials = creds
        return cleaned
