"""Small, loud helpers for reading settings from the environment."""

from __future__ import annotations

import os
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None) -> str:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"environment variable {name} is required")
        return default
    return value


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use 1/0, true/false)")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer") from exc


def env_decimal(name: str, default: str, *, minimum: str | None = None) -> Decimal:
    value = os.environ.get(name, default)
    try:
        number = Decimal(value.strip())
    except (InvalidOperation, AttributeError) as exc:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from exc
    if not number.is_finite() or (minimum is not None and number < Decimal(minimum)):
        raise ImproperlyConfigured(f"{name}={value!r} must be a number >= {minimum}")
    return number


def env_list(name: str, default: str = "") -> list[str]:
    return [x.strip() for x in env_str(name, default).split(",") if x.strip()]


def env_float(name: str, default: str, *, minimum: str | None = None) -> float:
    return float(env_decimal(name, default, minimum=minimum))


def env_int_map(name: str, default: str = "") -> dict[str, int]:
    """``"aws=60, hetzner=120"`` -> {"aws": 60, "hetzner": 120}."""
    out: dict[str, int] = {}
    for item in env_list(name, default):
        key, sep, value = item.partition("=")
        try:
            if not sep or not key.strip():
                raise ValueError(item)
            out[key.strip()] = int(value)
        except ValueError as exc:
            raise ImproperlyConfigured(f"{name}: {item!r} is not key=integer") from exc
    return out


def public_base_url(name: str, *, production: bool) -> str:
    """The URL pods reach this app at. Production refuses a missing or loopback value: pods on a
    provider's machines cannot reach 127.0.0.1, so the heartbeat and the agent would silently fail."""
    value = env_str(name, "" if production else "http://127.0.0.1:8000").rstrip("/")
    if production:
        parsed = urlparse(value)
        host = (parsed.hostname or "").lower()
        if parsed.scheme not in ("http", "https") or not host or host == "localhost" or host.startswith("127.") \
                or host in ("::1", "0.0.0.0"):
            raise ImproperlyConfigured(f"production needs {name}: the public http(s) URL pods reach this app at "
                                       f"(got {value!r})")
    return value


def database_from_url(url: str) -> dict:
    """Parse postgres://user:pass@host:port/name?opt=v into a Django DATABASES entry."""
    parsed = urlparse(url)
    if parsed.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (use postgres://)")
    options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parsed.path.lstrip("/")),
        "USER": unquote(parsed.username or ""),
        "PASSWORD": unquote(parsed.password or ""),
        "HOST": parsed.hostname or "",
        "PORT": str(parsed.port or ""),
        "OPTIONS": options,
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
    }
