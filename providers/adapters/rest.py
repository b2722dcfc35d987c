"""The one base every HTTP provider adapter derives from: :class:`RestAdapter`.

What is the same for every provider lives here, so that each adapter file holds only what is
specific to its provider (endpoints, field mapping, error mapping, billing facts):

* one HTTP client per host (:class:`~providers.adapters.http.ApiClient`): one timeout setting
  (``settings["timeout"]``), one retry/backoff policy that honours idempotency and
  ``Retry-After``, client-side rate limits, the shared TLS context;
* one injectable ``sleep`` and ``clock`` (monotonic seconds) for retries and for the bounded
  waits of long-running operations, so tests cost no wall time;
* one error-mapping hook: the class attribute ``error_mapper``, set to the adapter module's
  ``map_error(response, body)`` (``None``: the generic status mapping only);
* one token cache (:data:`tokens`) for providers that exchange credentials for an access
  token (Azure's Entra ID, Google's OAuth), and :class:`BearerAuth` that sends it and fetches
  a fresh one once on a 401;
* the base-URL override check (:func:`base_url_override`): ``settings["base_url"]`` points an
  account at a stand-in only where the deployment allows it (never in production by default).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Generator
from datetime import datetime, timedelta
from typing import Any, ClassVar

import httpx
from django.conf import settings as django_settings

from provisioner import clock as app_clock

from .base import ProviderAdapter
from .http import DEFAULT_RETRIES, DEFAULT_TIMEOUT, ApiClient, ErrorMapper, Sleep, account_key, default_sleep

Clock = Callable[[], float]
TOKEN_MARGIN_SECONDS = 120  # a cached token is replaced this long before it expires


# --- base-URL override ----------------------------------------------------------------------------


def base_url_override_allowed() -> bool:
    """Whether ``settings["base_url"]`` may redirect an account (stand-ins, staging)."""
    return bool(django_settings.PROVIDER_BASE_URL_OVERRIDE_ALLOWED)


def base_url_override(settings: dict[str, Any]) -> Any:
    """The account's ``base_url`` override (a URL, or a dict of URLs per host) where allowed, else None.

    The one place that decides: adapters (HTTP and AWS) and the wizard both ask here, so an
    account saved with an override in staging cannot send credentials elsewhere in production.
    """
    value = settings.get("base_url")
    return value if value and base_url_override_allowed() else None


# --- auth headers and the token cache --------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class TokenCache:
    """Access tokens by key until ``TOKEN_MARGIN_SECONDS`` before they expire, shared by every
    adapter instance in the process (adapters are short-lived, tokens live an hour).

    Expiry reads the app clock (``provisioner.clock``), so tests freeze and advance it.
    """

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, datetime]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(*parts: str) -> str:
        """A digest of what identifies the credential (the secret never stays in memory as a key)."""
        return hashlib.sha256("|".join(parts).encode()).hexdigest()

    def get(self, key: str, fetch: Callable[[], tuple[str, float]], *, refresh: bool = False) -> str:
        """The cached token for ``key``, else ``fetch()`` -> (token, lifetime in seconds)."""
        if not refresh:
            with self._lock:
                hit = self._items.get(key)
            if hit and hit[1] > app_clock.now():
                return hit[0]
        token, lifetime = fetch()
        expires = app_clock.now() + timedelta(seconds=max(0.0, float(lifetime) - TOKEN_MARGIN_SECONDS))
        with self._lock:
            self._items[key] = (token, expires)
        return token

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


tokens = TokenCache()


class BearerAuth(httpx.Auth):
    """Adds the cached access token; on a 401 fetches a fresh one and retries once (a revoked or
    rotated token), after which the 401 stands."""

    def __init__(self, token: Callable[[bool], str]):
        self._token = token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers.update(bearer(self._token(False)))
        response = yield request
        if response.status_code == 401:
            request.headers.update(bearer(self._token(True)))
            yield request


# --- the base ------------------------------------------------------------------------------------

_client_init_lock = threading.Lock()


class RestAdapter(ProviderAdapter):
    """Base of every adapter that speaks HTTP.

    Tests pass ``transport=`` (an ``httpx.MockTransport`` or a stand-in's), ``sleep=`` and
    ``clock=`` to the constructor. Subclasses set ``default_base_url`` and ``error_mapper`` and
    override :meth:`make_client` when they need more than one host or other auth than a bearer
    API key.
    """

    default_base_url: ClassVar[str] = ""
    default_timeout: ClassVar[float] = DEFAULT_TIMEOUT
    default_poll_interval: ClassVar[float] = 1.0
    error_mapper: ClassVar[ErrorMapper | None] = None

    def __init__(self, credentials: dict[str, Any], settings: dict[str, Any] | None = None, *,
                 transport: httpx.BaseTransport | None = None, sleep: Sleep | None = None,
                 clock: Clock | None = None):
        super().__init__(credentials, settings)
        self._transport = transport
        self.sleep: Sleep = sleep or default_sleep
        self.clock: Clock = clock or time.monotonic
        self._clients: dict[str, ApiClient] = {}

    # --- configuration ------------------------------------------------------------------------
    def endpoint(self, default: str, *, host: str = "", path: str = "") -> str:
        """``default``, or the allowed override (``path`` appended; ``host`` picks one URL of a dict)."""
        override = base_url_override(self.settings)
        if isinstance(override, dict):
            override = override.get(host)
        return f"{str(override).rstrip('/')}{path}" if override else default.rstrip("/")

    @property
    def base_url(self) -> str:
        return self.endpoint(self.default_base_url)

    @property
    def api_key(self) -> str:
        return str(self.credentials.get("api_key", "")).strip()

    def _number(self, key: str, default: float) -> float:
        """A numeric account setting; a malformed value falls back to the default."""
        try:
            return float(self.settings.get(key, default))
        except (TypeError, ValueError):
            return default

    @property
    def timeout(self) -> float:
        """``settings["timeout"]``: seconds per request, the one timeout name of every adapter."""
        return self._number("timeout", self.default_timeout)

    @property
    def poll_interval(self) -> float:
        """``settings["poll_interval_seconds"]``: the pause between polls of a long-running operation."""
        return self._number("poll_interval_seconds", self.default_poll_interval)

    def rate_limits(self) -> dict[str, tuple[float, int]]:
        """Documented client-side limits: bucket -> (requests per second, burst)."""
        return {}

    # --- clients ------------------------------------------------------------------------------
    def new_client(self, base_url: str, *, secret: str = "", headers: dict[str, str] | None = None,
                   auth: httpx.Auth | tuple[str, str] | None = None, verify: Any = None,
                   limits: dict[str, tuple[float, int]] | None = None,
                   error_mapper: ErrorMapper | None = None) -> ApiClient:
        """An :class:`ApiClient` for one host, with the adapter's policy filled in."""
        retries = int(self._number("retries", DEFAULT_RETRIES))
        return ApiClient(
            provider=self.info.kind, base_url=base_url, account_key=account_key(self.settings, secret or base_url),
            headers={"Accept": "application/json", "User-Agent": "ai-cloud-provisioner", **(headers or {})},
            auth=auth, verify=verify, timeout=self.timeout, retries=retries,
            limits=self.rate_limits() if limits is None else limits,
            error_mapper=error_mapper or self.error_mapper, transport=self._transport, sleep=self.sleep,
        )

    def make_client(self, name: str) -> ApiClient:
        """The client called ``name``. Default: one host, the account's API key as a bearer token."""
        return self.new_client(self.base_url, secret=self.api_key, headers=bearer(self.api_key))

    def api(self, name: str = "default") -> ApiClient:
        # polls fan out over threads (run_concurrently); without the lock each thread would
        # build its own httpx client on first use
        client = self._clients.get(name)
        if client is None:
            with _client_init_lock:
                client = self._clients.get(name)
                if client is None:
                    client = self._clients[name] = self.make_client(name)
        return client

    @property
    def client(self) -> ApiClient:
        return self.api()

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # --- bounded waits ------------------------------------------------------------------------
    def deadline(self, seconds: float) -> Callable[[], bool]:
        """A predicate that turns true once ``seconds`` have passed on the adapter's clock."""
        end = self.clock() + float(seconds)
        return lambda: self.clock() >= end
