"""One reader of typed lists and one way to a placement spec (issue 17 §2).

Before, "DE; FR" was refused by the launch form ("DE;" is no country), "de fr" became one
country "DE FR" in the live preview and the move page, and the provider's residency form kept
a newline inside a code: each form split lists its own way.
"""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from django.http import QueryDict

from providers.forms import parse_countries, parse_regions
from provisioner.inputs import split_list
from tests.factories import WorkloadFactory
from workloads.placement.engine import spec_for_workload
from workloads.placement.move import target_from_params
from workloads.placement.views import spec_from_params
from workloads.recipes.forms import WorkloadForm

TYPED = ["DE; FR", "DE,FR", "de fr", "DE;\nFR", " DE ,  FR ;", "DE\tFR"]


@pytest.mark.parametrize("typed", ["a, b", "a; b", "a b", "a\nb", " a ;; , b ", "a,\r\nb"])
def test_split_list_takes_commas_semicolons_and_whitespace(typed):
    assert split_list(typed) == ["a", "b"]


def test_split_list_of_nothing_is_empty():
    assert split_list(None) == [] and split_list(" ;, \n") == []


@pytest.mark.django_db
@pytest.mark.parametrize("typed", TYPED)
def test_every_form_reads_a_typed_country_list_alike(typed, tenant):
    params = QueryDict(urlencode({"countries": typed, "regions": typed.replace("DE", "eu-central-1").replace("de", "eu-central-1")
                                  .replace("FR", "eu-west-3").replace("fr", "eu-west-3")}))
    form = WorkloadForm(params, tenant=tenant)
    form.is_valid()
    assert "countries" not in form.errors and "regions" not in form.errors
    assert form.cleaned_data["countries"] == ["DE", "FR"]
    assert form.cleaned_data["regions"] == ["eu-central-1", "eu-west-3"]
    preview = spec_from_params(params)
    assert (preview.countries, preview.regions) == (("DE", "FR"), ("eu-central-1", "eu-west-3"))
    move = target_from_params(params)
    assert (move.countries, move.regions) == (["DE", "FR"], ["eu-central-1", "eu-west-3"])
    assert parse_countries(typed) == ["DE", "FR"]
    assert parse_regions(params["regions"]) == ["eu-central-1", "eu-west-3"]


@pytest.mark.django_db
def test_the_launch_form_refuses_what_is_no_country_with_the_same_message_as_the_residency_form(tenant):
    form = WorkloadForm({"countries": "DE; Germany"}, tenant=tenant)
    form.is_valid()
    assert form.errors["countries"] == ["Not ISO country codes or presets: GERMANY"]
    with pytest.raises(Exception, match="Not ISO country codes or presets: GERMANY"):
        parse_countries("DE; Germany")


@pytest.mark.django_db
def test_the_preview_and_the_stored_workload_place_the_same_spec(tenant, project, owner):
    """The live preview's parameters and the workload declared from them give one spec."""
    workload = WorkloadFactory(tenant=tenant, project=project, owner=owner, gpu_class="A100-80",
                               acceptable_gpu_classes=["H100"], countries=["EU", "CH"], regions=["eu-west-3"],
                               interruption_tolerant=True, max_duration_minutes=90)
    params = QueryDict(urlencode({"gpu_class": "A100-80", "acceptable_gpu_classes": "H100", "countries": "eu; ch",
                                  "regions": "eu-west-3", "interruption_tolerant": "on", "gpu_count": "1",
                                  "max_duration_minutes": "90", "lifecycle": workload.lifecycle}))
    preview = spec_from_params(params)
    assert preview == spec_for_workload(workload)
    assert preview.pin_label == "EU, CH" and "DE" in preview.countries and "CH" in preview.countries
