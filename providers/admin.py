from django import forms
from django.contrib import admin

from .models import InvoiceRate, Offer, ProviderAccount


class ProviderAccountAdminForm(forms.ModelForm):
    """Credentials are replace-only: the current value is never rendered back."""

    new_credentials = forms.JSONField(required=False, widget=forms.PasswordInput(render_value=False),
                                      help_text="Paste a JSON object to replace the stored credentials; leave empty to keep them.")

    class Meta:
        model = ProviderAccount
        fields = ["tenant", "kind", "name", "new_credentials", "settings", "spending_cap_usd", "spending_cap_period",
                  "allowed_regions", "allowed_countries", "default_gpu_class", "preference_rank", "enabled"]

    def save(self, commit=True):
        obj = super().save(commit=False)
        if self.cleaned_data.get("new_credentials"):
            obj.credentials = self.cleaned_data["new_credentials"]
        if commit:
            obj.save()
        return obj


@admin.register(ProviderAccount)
class ProviderAccountAdmin(admin.ModelAdmin):
    form = ProviderAccountAdminForm
    list_display = ["name", "tenant", "kind", "health", "enabled", "preference_rank", "spending_cap_usd"]
    list_filter = ["kind", "health", "enabled", "tenant"]
    readonly_fields = ["health", "last_polled_at", "last_success_at", "last_error", "offer_count", "consecutive_failures"]


@admin.register(Offer)
class OfferAdmin(admin.ModelAdmin):
    list_display = ["provider_account", "gpu_class", "gpu_count", "region", "country", "spot", "price_usd_per_hour", "available"]
    list_filter = ["kind", "gpu_class", "spot", "country"]


class PlatformInvoiceRateForm(forms.ModelForm):
    """A platform rate (no tenant). The platform-wide uniqueness of a currency is a conditional
    constraint on ``tenant``, which this form leaves out, so Django would not check it here."""

    class Meta:
        model = InvoiceRate
        fields = ["currency", "usd_per_unit"]

    def clean_currency(self) -> str:
        currency = (self.cleaned_data.get("currency") or "").strip().upper()
        taken = InvoiceRate.objects.platform().filter(currency=currency).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"There is already a platform rate for {currency}.")
        return currency


@admin.register(InvoiceRate)
class InvoiceRateAdmin(admin.ModelAdmin):
    """The platform's rates. An organization's own rates are its finance setting: set in the
    app (Spend -> Invoice rates), through the audited service, so they are not listed here."""

    form = PlatformInvoiceRateForm
    list_display = ["currency", "usd_per_unit", "updated_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).platform()
