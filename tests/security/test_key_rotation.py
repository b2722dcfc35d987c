"""Key rotation end to end: written under key A, rotated to key B, A no longer needed."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command
from django.core.signing import BadSignature
from django.db import connection

from providers.models import ProviderAccount

KEY_A = "key-A-0123456789-0123456789-0123456789"
KEY_B = "key-B-9876543210-9876543210-9876543210"


def _raw(acct):
    with connection.cursor() as cur:
        cur.execute("SELECT credentials FROM providers_provideraccount WHERE id = %s",
                    [acct.pk.hex if connection.vendor == "sqlite" else acct.pk])
        return bytes(cur.fetchone()[0])


@pytest.mark.django_db
def test_rotation_reencrypts_and_retires_old_key(settings, tenant):
    settings.ENCRYPTION_KEY = KEY_A
    settings.ENCRYPTION_KEY_FALLBACKS = []
    acct = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="rp", credentials={"api_key": "secret-1"})
    before = _raw(acct)

    # new key without the fallback: unreadable (proves the key matters)
    settings.ENCRYPTION_KEY = KEY_B
    with pytest.raises(BadSignature):
        ProviderAccount.objects.get(pk=acct.pk)

    # new key with the old one as fallback: readable, rotate, check
    settings.ENCRYPTION_KEY_FALLBACKS = [KEY_A]
    assert ProviderAccount.objects.get(pk=acct.pk).credentials == {"api_key": "secret-1"}
    with pytest.raises(CommandError):
        call_command("rotate_encryption_key", "--check")
    call_command("rotate_encryption_key")
    call_command("rotate_encryption_key")  # rerun after an interruption: harmless
    call_command("rotate_encryption_key", "--check")
    assert _raw(acct) != before

    # the old key is no longer needed
    settings.ENCRYPTION_KEY_FALLBACKS = []
    assert ProviderAccount.objects.get(pk=acct.pk).credentials == {"api_key": "secret-1"}


@pytest.mark.django_db
def test_secret_key_rotation_does_not_break_credentials(settings, tenant):
    """The library's caveat (HMAC keyed on SECRET_KEY) is handled: only CRYPTOGRAPHY_KEY matters."""
    acct = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="rp2", credentials={"api_key": "s2"})
    settings.SECRET_KEY = "a-completely-different-secret-key-0123456789-abcdefghijkl"
    assert ProviderAccount.objects.get(pk=acct.pk).credentials == {"api_key": "s2"}
