from __future__ import annotations

from django import forms

from .catalog import COUNTRY_PRESETS, GPU_CLASS_CHOICES, expand_countries
from .models import CapPeriod


class ConnectSandboxForm(forms.Form):
    """The foundation's connect form (the full wizard replaces it for real providers)."""

    name = forms.CharField(max_length=120, initial="Sandbox")
    spending_cap_usd = forms.DecimalField(label="Spending cap (USD)", min_value=0, max_digits=12, decimal_places=2,
                                          required=False, initial=500, help_text="Hard ceiling per period; empty for none")
    spending_cap_period = forms.ChoiceField(choices=CapPeriod.choices, initial=CapPeriod.MONTH)
    countries = forms.CharField(required=False, help_text="ISO codes or presets (" + ", ".join(COUNTRY_PRESETS) + "), comma-separated; empty for anywhere")
    default_gpu_class = forms.ChoiceField(choices=GPU_CLASS_CHOICES, initial="A100-80")

    def clean_countries(self) -> list[str]:
        raw = [c for c in self.cleaned_data["countries"].replace(" ", ",").split(",") if c]
        codes = expand_countries(raw)
        bad = [c for c in codes if len(c) != 2 or not c.isalpha()]
        if bad:
            raise forms.ValidationError(f"Not an ISO country code or preset: {', '.join(bad)}")
        return codes
