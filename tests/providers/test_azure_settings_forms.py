"""Azure's per-account network settings (issue 13 §1 Azure): public address, who may reach SSH and
the SSH key, entered in the wizard and on the account edit page, validated before anything is saved."""

from __future__ import annotations

import pytest
from django.urls import reverse

from providers.models import ProviderAccount
from providers.services import provider_account_create
from tests.standins.azure import RG, SUBNET, FakeAzure, account_settings, credentials

from .test_wizard import start, walk_to_review

KEY = account_settings("x")["ssh_public_key"]


@pytest.fixture
def served_azure():
    az = FakeAzure()
    with az.serve() as url:
        yield url


def wizard_fields(url: str, **extra) -> dict[str, str]:
    return {**credentials(), "resource_group": RG, "subnet_id": SUBNET, "locations": "eastus", "base_url": url, **extra}


@pytest.mark.django_db
def test_wizard_takes_validated_network_settings(owner_client, tenant, served_azure):
    creds_url = start(owner_client, "azure")
    page = owner_client.get(creds_url).content.decode()
    assert "Public address" in page and "SSH allowed from" in page and "SSH public key" in page
    assert 'name="public_ip"' in page and "checked" in page[page.index('name="public_ip"') - 200:page.index('name="public_ip"') + 200]
    body = owner_client.post(creds_url, {"name": "Azure", **wizard_fields(
        served_azure, public_ip="on", ssh_source_cidrs="203.0.113.300/32", ssh_public_key="ssh-rsa AAAA nope")}).content.decode()
    assert "203.0.113.300" in body and "not an IP address or CIDR" in body and "not an OpenSSH public key" in body
    assert not ProviderAccount.objects.exists()
    review = walk_to_review(owner_client, "azure", creds=wizard_fields(
        served_azure, public_ip="on", ssh_source_cidrs="203.0.113.7, 198.51.100.0/24", ssh_public_key=KEY))
    owner_client.post(review, {"_nav": "next"})
    account = ProviderAccount.objects.get(tenant=tenant)
    assert account.settings["public_ip"] is True and account.settings["ssh_public_key"] == KEY
    assert account.settings["ssh_source_cidrs"] == ["203.0.113.7/32", "198.51.100.0/24"]
    assert "ssh_public_key" not in account.credentials  # a setting, not a secret


@pytest.mark.django_db
def test_account_edit_changes_network_settings_and_keeps_the_rest(owner_client, tenant, served_azure):
    account = provider_account_create(tenant=tenant, kind="azure", name="Azure", credentials=credentials(),
                                      settings=account_settings(served_azure))
    url = reverse("providers:edit", args=[account.pk])
    page = owner_client.get(url).content.decode()
    assert "SSH allowed from" in page and KEY in page
    form = {"name": "Azure", "spending_cap_period": "month", "preference_rank": "1", "enabled": "on",
            "base_url": served_azure}
    body = owner_client.post(url, {**form, "ssh_source_cidrs": "10.0.0.0/33"}).content.decode()
    assert "not an IP address or CIDR" in body
    account.refresh_from_db()
    assert "ssh_source_cidrs" not in account.settings  # nothing half-saved
    response = owner_client.post(url, {**form, "ssh_source_cidrs": "203.0.113.7/32", "ssh_public_key": KEY})  # public_ip unticked
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.settings["ssh_source_cidrs"] == ["203.0.113.7/32"] and account.settings["public_ip"] is False
    assert account.settings["resource_group"] == RG and account.settings["base_url"] == served_azure


@pytest.mark.django_db
def test_other_providers_show_no_azure_fields(owner_client):
    page = owner_client.get(start(owner_client, "runpod")).content.decode()
    assert "SSH allowed from" not in page and 'name="public_ip"' not in page
