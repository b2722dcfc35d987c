from django import forms

from .models import ServiceEndpoint


class CutoverForm(forms.ModelForm):
    """A workload's readiness check and drain (empty path: TCP connect to the first HTTP port)."""

    ready_path = forms.RegexField(regex=r"^/[\x21-\x7e]*$", max_length=200, required=False,
                                  error_messages={"invalid": "A path starting with /, without spaces."})
    ready_status = forms.IntegerField(min_value=100, max_value=599)
    ready_timeout_seconds = forms.FloatField(min_value=0.1, max_value=60)
    ready_deadline_seconds = forms.IntegerField(min_value=10, max_value=3600)
    drain_seconds = forms.IntegerField(min_value=0, max_value=3600)

    class Meta:
        model = ServiceEndpoint
        fields = ["ready_path", "ready_status", "ready_timeout_seconds", "ready_deadline_seconds", "drain_seconds"]
