"""Google service-account auth without the Google SDK: an RS256-signed JWT (RFC 7523) exchanged
at the OAuth token endpoint for an access token (cached and sent by ``rest.tokens`` / ``rest.BearerAuth``)."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from .base import InvalidCredentials

SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def signed_jwt(key_info: dict[str, Any], audience: str, *, now: float | None = None, lifetime: int = 3600) -> str:
    """The RS256-signed assertion of the JWT-bearer grant (RFC 7523) for ``key_info``."""
    now = time.time() if now is None else now
    header = {"alg": "RS256", "typ": "JWT", "kid": key_info.get("private_key_id", "")}
    claims = {"iss": key_info["client_email"], "scope": SCOPE, "aud": audience, "iat": int(now), "exp": int(now) + lifetime}
    signing_input = f"{_b64url(json.dumps(header, separators=(',', ':')).encode())}." \
                    f"{_b64url(json.dumps(claims, separators=(',', ':')).encode())}"
    try:
        key = serialization.load_pem_private_key(key_info["private_key"].encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise InvalidCredentials(f"the service-account key's private_key is not a PEM RSA key: {exc}") from exc
    signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{_b64url(signature)}"
