from __future__ import annotations

from django import forms

from providers.catalog import GPU_CLASS_CHOICES
from tenants.models import Project
from tenants.selectors import projects_for_tenant

from .models import Lifecycle


class LaunchForm(forms.Form):
    """The foundation's raw-image launch form."""

    name = forms.CharField(max_length=120, initial="my-job")
    project = forms.ModelChoiceField(queryset=Project.objects.none())
    image = forms.CharField(max_length=300, initial="nvcr.io/nvidia/pytorch:24.08-py3",
                            help_text="Docker image, nvcr.io/... NGC entry or a curated base image")
    gpu_class = forms.ChoiceField(choices=GPU_CLASS_CHOICES, initial="A100-80", label="GPU class")
    gpu_count = forms.IntegerField(min_value=1, max_value=8, initial=1, label="GPU count")
    lifecycle = forms.ChoiceField(choices=Lifecycle.choices[:2], initial=Lifecycle.JOB)
    interruption_tolerant = forms.BooleanField(required=False, label="Can tolerate interruption (allow spot)")

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["project"].queryset = projects_for_tenant(tenant)  # restricted dropdown
        first = self.fields["project"].queryset.first()
        if first is not None and not self.is_bound:
            self.initial.setdefault("project", first.pk)
