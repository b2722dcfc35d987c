"""After the wizard: the account edit page, replace-only credentials, removal."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.models import ProviderAccount
from tests.standins.fixtures import STANDIN_CREDENTIALS, served_runpod  # noqa: F401
from workloads.lifecycle import services as workload_services
from workloads.models import Pod


@pytest.mark.django_db
def test_edit_account(owner_client, sandbox, tenant):
    url = reverse("providers:edit", args=[sandbox.pk])
    body = owner_client.get(url).content.decode()
    assert sandbox.name in body and "Preference rank" in body
    response = owner_client.post(url, {
        "name": "Sandbox EU", "spending_cap_usd": "900", "spending_cap_period": "week", "countries": "EU, GB",
        "regions": "", "default_gpu_class": "H100", "preference_rank": "5", "enabled": "",
    })
    assert response.status_code == 302
    sandbox.refresh_from_db()
    assert sandbox.name == "Sandbox EU" and sandbox.spending_cap_usd == 900 and sandbox.spending_cap_period == "week"
    assert "DE" in sandbox.allowed_countries and "GB" in sandbox.allowed_countries
    assert sandbox.default_gpu_class == "H100" and sandbox.preference_rank == 5 and sandbox.enabled is False
    # the class list is limited to what the account offers
    body = owner_client.post(url, {"name": "x", "spending_cap_period": "week", "default_gpu_class": "B200",
                                   "preference_rank": "1"}).content.decode()
    assert "Select a valid choice" in body


@pytest.mark.django_db
def test_edit_needs_manage_providers(client, sandbox, developer, viewer, outsider):
    url = reverse("providers:edit", args=[sandbox.pk])
    for user, status in ((developer, 403), (viewer, 403), (outsider, 404)):
        client.force_login(user)
        assert client.get(url).status_code == status
        assert client.post(url, {"name": "hacked"}).status_code == status
    sandbox.refresh_from_db()
    assert sandbox.name != "hacked"


@pytest.mark.django_db
def test_credentials_are_replace_only_and_verified_live(owner_client, tenant, served_runpod):  # noqa: F811
    old_key = STANDIN_CREDENTIALS["runpod"]["api_key"]
    account = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="RP", credentials={"api_key": old_key},
                                             settings={"base_url": served_runpod.url})
    url = reverse("providers:credentials", args=[account.pk])
    body = owner_client.get(url).content.decode()
    assert old_key not in body and 'type="password"' in body
    # a key the provider refuses changes nothing
    body = owner_client.post(url, {"api_key": "rpa_bad_key_1234567"}).content.decode()
    assert "refused these credentials" in body and "rpa_bad_key_1234567" not in body
    account.refresh_from_db()
    assert account.credentials == {"api_key": old_key}
    # a working key replaces it
    served_runpod.standin.valid_keys.add("rpa_new_key_7654321")
    assert owner_client.post(url, {"api_key": "rpa_new_key_7654321"}).status_code == 302
    account.refresh_from_db()
    assert account.credentials == {"api_key": "rpa_new_key_7654321"}
    assert "rpa_new_key_7654321" not in owner_client.get(reverse("providers:detail", args=[account.pk])).content.decode()


@pytest.mark.django_db
def test_remove_refused_while_pods_live_then_archived_with_history(owner_client, sandbox, tenant, project, owner):
    w = workload_services.workload_create(tenant=tenant, project=project, owner=owner, name="j", image="busybox",
                                          gpu_class="T4")
    (pod,) = workload_services.workload_launch(workload=w, enqueue=False)
    workload_services.pod_provision(pod_id=str(pod.pk))
    pod.refresh_from_db()
    assert pod.provider_account_id == sandbox.pk and pod.ended_at is None
    url = reverse("providers:remove", args=[sandbox.pk])
    response = owner_client.post(url, follow=True)
    assert "still has live pods" in response.content.decode()
    assert ProviderAccount.objects.filter(pk=sandbox.pk, enabled=True).exists()
    workload_services.pod_terminate(pod_id=str(pod.pk), user=owner)
    response = owner_client.post(url, follow=True)
    assert "Removed" in response.content.decode()
    sandbox.refresh_from_db()  # kept for the pod's cost history, but disconnected
    assert not sandbox.enabled and sandbox.credentials == {} and not sandbox.offers.exists()
    assert "removed_at" in sandbox.settings
    assert Pod.objects.get(pk=pod.pk).provider_account_id == sandbox.pk
    assert sandbox.name not in owner_client.get(reverse("providers:list")).content.decode()


@pytest.mark.django_db
def test_remove_deletes_an_unused_account(owner_client, sandbox, developer):
    url = reverse("providers:remove", args=[sandbox.pk])
    other = owner_client.__class__()
    other.force_login(developer)
    assert other.post(url).status_code == 403
    assert owner_client.post(url).status_code == 302
    assert not ProviderAccount.objects.filter(pk=sandbox.pk).exists()
    # with no account left, the admin lands in the wizard again
    assert owner_client.get("/")["Location"] == reverse("providers:connect")
