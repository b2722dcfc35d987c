"""Forms of the in-app budgets and invoice-rates pages (finance, owners and admins)."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from providers.services import InvoiceRateInvalid, invoice_rate_validate
from provisioner.inputs import MAX_URL_CHARS, split_list
from provisioner.outbound import OutboundRefused, check_outbound_url
from tenants.access import project_scope
from tenants.models import Project
from tenants.permissions import MANAGE_BUDGETS
from tenants.selectors import projects_for

from .budgets import MAX_USD_THRESHOLD
from .models import Budget, SpendDigest


class BudgetForm(forms.Form):
    name = forms.CharField(max_length=120)
    project = forms.ModelChoiceField(queryset=Project.objects.none(), required=False,
                                     empty_label="Whole organization", label="Scope")
    period = forms.ChoiceField(choices=Budget.Period.choices, initial=Budget.Period.MONTH)
    # a Decimal bound: the float 0.01 is 0.01000000000000000020816..., which refused a budget of 0.01
    amount_usd = forms.DecimalField(min_value=Decimal("0.01"), max_digits=12, decimal_places=2, label="Amount (USD)")
    soft_thresholds = forms.CharField(initial="50, 80, 100", required=False, label="Alert at (% of amount)",
                                      help_text="Comma-separated percentages; each alerts once per period")
    soft_thresholds_usd = forms.CharField(required=False, label="Alert at ($ spent)",
                                          help_text="Comma-separated whole dollars, e.g. 500, 1000; each alerts once "
                                                    "per period")
    forecast_alert = forms.BooleanField(required=False, initial=True,
                                        label="Also alert when the forecast to the period's end exceeds the amount",
                                        help_text="Spend so far extrapolated at its average rate, from a fifth of "
                                                  "the period on; once per period")
    hard_limit = forms.BooleanField(required=False, initial=True,
                                    label="Hard limit: refuse new launches once the budget is used up")
    stop_running_pods = forms.BooleanField(required=False, label="Also stop running pods at the hard limit")
    email_alerts = forms.BooleanField(required=False, initial=True, label="Email owners, admins and finance")
    webhook_url = forms.URLField(required=False, label="Webhook URL (optional)", assume_scheme="https",
                                 max_length=MAX_URL_CHARS)
    webhook_secret = forms.CharField(required=False, max_length=200, label="Webhook signing secret",
                                     widget=forms.PasswordInput(render_value=False),
                                     help_text="Requests carry X-Provisioner-Signature: sha256=HMAC(secret, body). "
                                               "Leave empty to keep the current secret.")

    def __init__(self, *args, membership=None, **kwargs):
        super().__init__(*args, **kwargs)
        # restricted dropdown: the projects whose budgets the member manages; "Whole organization"
        # only for who manages budgets on every project (``tenants.access.project_scope``)
        self.fields["project"].queryset = projects_for(membership, MANAGE_BUDGETS)
        self.org_wide_allowed = project_scope(membership, MANAGE_BUDGETS)[1]
        self.fields["project"].required = not self.org_wide_allowed
        if not self.org_wide_allowed:
            self.fields["project"].empty_label = None

    def clean_webhook_url(self) -> str:
        url = self.cleaned_data.get("webhook_url") or ""
        if url:
            try:  # refused here with the reason, and checked again at each send (DNS may change)
                check_outbound_url(url)
            except OutboundRefused as exc:
                raise forms.ValidationError(str(exc)) from None
        return url

    def clean_soft_thresholds(self) -> list[int]:
        raw = self.cleaned_data.get("soft_thresholds") or ""
        try:
            values = sorted({int(x.rstrip("%")) for x in split_list(raw)})
        except ValueError:
            raise forms.ValidationError("Use whole percentages separated by commas, e.g. 50, 80, 100") from None
        if any(v <= 0 or v > 1000 for v in values):
            raise forms.ValidationError("Percentages must be between 1 and 1000")
        return values

    def clean_soft_thresholds_usd(self) -> list[int]:
        raw = self.cleaned_data.get("soft_thresholds_usd") or ""
        try:
            values = sorted({int(x.lstrip("$")) for x in split_list(raw)})
        except ValueError:
            raise forms.ValidationError("Use whole dollars separated by commas, e.g. 500, 1000") from None
        if any(v <= 0 or v > MAX_USD_THRESHOLD for v in values):
            raise forms.ValidationError(f"Dollar thresholds must be between 1 and {MAX_USD_THRESHOLD:,}")
        return values

    @classmethod
    def initial_for(cls, budget: Budget) -> dict:
        return {"name": budget.name, "project": budget.project_id, "period": budget.period,
                "amount_usd": budget.amount_usd, "soft_thresholds": ", ".join(str(t) for t in budget.soft_thresholds),
                "soft_thresholds_usd": ", ".join(str(t) for t in budget.soft_thresholds_usd),
                "forecast_alert": budget.forecast_alert,
                "hard_limit": budget.hard_limit, "stop_running_pods": budget.stop_running_pods,
                "email_alerts": budget.email_alerts, "webhook_url": budget.webhook_url}


class InvoiceRateForm(forms.Form):
    """Set the organization's own invoice rate for one currency (its override of the platform
    rate). The rules are the service's (``invoice_rate_validate``), so page and service agree."""

    currency = forms.CharField(max_length=3, min_length=3, label="Currency",
                               help_text="ISO 4217 code of the currency a provider invoices you in, e.g. EUR")
    usd_per_unit = forms.DecimalField(max_digits=12, decimal_places=6, label="USD per unit",
                                      help_text="What one unit costs you in USD, e.g. your bank's rate")

    def clean_currency(self) -> str:
        return (self.cleaned_data.get("currency") or "").strip().upper()

    def clean(self) -> dict:
        data = super().clean()
        if "currency" in data and "usd_per_unit" in data:
            try:
                invoice_rate_validate(currency=data["currency"], usd_per_unit=data["usd_per_unit"])
            except InvoiceRateInvalid as exc:
                self.add_error(exc.field, str(exc))  # inline, next to the field it is about
        return data


class DigestForm(forms.Form):
    """The member's own recurring spend e-mail (billing/digest.py)."""

    frequency = forms.ChoiceField(label="Spend digest", widget=forms.RadioSelect,
                                  choices=[("off", "Off"), *SpendDigest.Frequency.choices])
