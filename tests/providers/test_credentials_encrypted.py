from __future__ import annotations

import pytest
from django.db import connection

from providers.models import ProviderAccount


@pytest.mark.django_db
def test_credentials_column_holds_no_plaintext(tenant):
    secret = "rpa_SUPERSECRET_KEY_1234567890"
    acct = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="rp", credentials={"api_key": secret})
    with connection.cursor() as cur:
        cur.execute("SELECT credentials FROM providers_provideraccount WHERE id = %s",
                    [acct.pk.hex if connection.vendor == "sqlite" else acct.pk])
        (raw,) = cur.fetchone()
    raw_bytes = bytes(raw)
    assert secret.encode() not in raw_bytes
    assert b"api_key" not in raw_bytes
    assert ProviderAccount.objects.get(pk=acct.pk).credentials == {"api_key": secret}


@pytest.mark.django_db
def test_provider_page_never_renders_credentials(owner_client, tenant):
    secret = "rpa_NEVER_SHOWN_987654321"
    acct = ProviderAccount.objects.create(tenant=tenant, kind="sandbox", name="s", credentials={"api_key": secret})
    body = owner_client.get(f"/providers/{acct.pk}/").content.decode()
    assert secret not in body
    assert "••••" in body
