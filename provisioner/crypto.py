"""Key management for the encrypted model fields (django-cryptography).

Why this exists: django-cryptography signs every value with Django's raw ``SECRET_KEY`` (even
when ``CRYPTOGRAPHY_KEY`` is set) and has no key list, so rotating either key makes every
encrypted column unreadable (see shared/reference/stack-notes.md §2). We keep the library's
cipher and signer (``FernetBytes`` + ``FernetSigner``: AES-CBC + HMAC-SHA256) and only change
where the keys come from:

- both the AES key and the HMAC key are derived from ``CRYPTOGRAPHY_KEY`` (never ``SECRET_KEY``),
  so the two secrets are independent;
- values are written with the current key and read with it or any of
  ``CRYPTOGRAPHY_KEY_FALLBACKS``, which is what ``manage.py rotate_encryption_key`` needs to
  re-encrypt every row and retire the old key.

The library builds each field's cipher as ``FernetBytes(key)`` at field creation time, looking the
name up in ``django_cryptography.fields``; ``install()`` points that name at ``KeyRing`` before any
model module is imported (it runs from ``provisioner/__init__.py``).
"""

from __future__ import annotations

import functools
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from django.conf import settings
from django.utils.encoding import force_bytes

_ITERATIONS = 100_000


@functools.lru_cache(maxsize=16)
def _derive(raw_key: str, purpose: str) -> bytes:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=f"ai-cloud-provisioner/{purpose}".encode(),
                     iterations=_ITERATIONS)
    return kdf.derive(force_bytes(raw_key))


def _cipher(raw_key: str):
    from django_cryptography.core.signing import FernetSigner
    from django_cryptography.utils.crypto import FernetBytes

    return FernetBytes(key=_derive(raw_key, "aes"), signer=FernetSigner(key=_derive(raw_key, "hmac")))


def current_key() -> str:
    return settings.ENCRYPTION_KEY


def fallback_keys() -> list[str]:
    return list(settings.ENCRYPTION_KEY_FALLBACKS)


class KeyRing:
    """Drop-in for the library's per-field ``FernetBytes``: encrypt with the current key,
    decrypt with the current key or a fallback."""

    def __init__(self, key: Any = None, signer: Any = None) -> None:
        # A per-field key (encrypt(field, key=...)) is not used in this project.
        if key is not None:
            raise ValueError("per-field keys are not supported; use CRYPTOGRAPHY_KEY")

    def encrypt(self, data: bytes | str) -> bytes:
        return _cipher(current_key()).encrypt(data)

    def decrypt(self, data: bytes, ttl: int | None = None) -> bytes:
        from django.core.signing import BadSignature
        from django_cryptography.utils.crypto import InvalidToken

        last: Exception | None = None
        for raw in [current_key(), *fallback_keys()]:
            try:
                return _cipher(raw).decrypt(data, ttl)
            except (BadSignature, InvalidToken) as exc:
                last = exc
        assert last is not None
        raise last

    def decrypts_with_current_key(self, data: bytes) -> bool:
        from django.core.signing import BadSignature
        from django_cryptography.utils.crypto import InvalidToken

        try:
            _cipher(current_key()).decrypt(data, None)
            return True
        except (BadSignature, InvalidToken):
            return False


def install() -> None:
    import django_cryptography.fields as fields

    fields.FernetBytes = KeyRing  # type: ignore[misc]
