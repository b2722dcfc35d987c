"""Shared HTTP plumbing for the REST adapters: timeouts, retries, Retry-After, rate limits.

Every HTTP adapter talks to its API through :class:`ApiClient` (built by
:class:`providers.adapters.rest.RestAdapter`), so that they all behave the same way under failure:

* each request has its own timeout (``settings["timeout"]``, default 15 s);
* ``TransientError`` conditions (429, 5xx, timeouts, connection errors) are retried with
  exponential backoff plus jitter, honouring ``Retry-After`` (seconds or an HTTP date);
* non-idempotent requests (a create) are only retried when the provider certainly did not
  act on them (429, or the connection was never made) -- a 5xx or a read timeout after a
  create is surfaced, and the adapter reconciles by its idempotency tag instead of blindly
  creating twice; a call passes ``idempotent=True`` where a name or key makes a repeat harmless;
* documented client-side rate limits are kept with a per-account token bucket shared by all
  adapter instances in the process (adapters are short-lived, the limits are not);
* HTTP failures become the typed errors of :mod:`providers.adapters.base`; each adapter can
  map its provider-specific error codes first.

Tests inject an ``httpx.MockTransport`` (or any transport) and a fake ``sleep`` so that
retries and rate limits cost no wall time.
"""

from __future__ import annotations

import email.utils
import random
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from .base import (
    InvalidCredentials,
    LaunchTimeout,
    NotFound,
    PermanentError,
    ProviderError,
    TransientError,
)

DEFAULT_TIMEOUT = 15.0
DEFAULT_RETRIES = 3
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
# A Retry-After longer than this is not slept through: the caller gets a TransientError
# carrying ``retry_after`` and decides (failover, or try again on the next cycle).
MAX_RETRY_AFTER = 30.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})

Sleep = Callable[[float], None]
ErrorMapper = Callable[[httpx.Response, Any], "ProviderError | None"]


def default_sleep(seconds: float) -> None:
    time.sleep(seconds)


# --- rate limiting --------------------------------------------------------------------------


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved up. Thread-safe.

    ``acquire`` reserves a slot under the lock and sleeps outside it, so concurrent callers
    queue up in order instead of all waking at once.
    """

    def __init__(self, rate: float, burst: int = 1, *, clock: Callable[[], float] = time.monotonic):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1, burst)
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = float(self.burst)
        self._last = clock()

    def reserve(self) -> float:
        """Take one token; returns how long the caller must wait before using it."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            self._tokens -= 1.0
            if self._tokens >= 0:
                return 0.0
            return -self._tokens / self.rate

    def acquire(self, sleep: Sleep = default_sleep) -> float:
        wait = self.reserve()
        if wait > 0:
            sleep(wait)
        return wait


_tls_lock = threading.Lock()
_tls_context: ssl.SSLContext | None = None


def shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every provider client: loading the CA bundle costs tens of
    milliseconds of CPU, paid once instead of per account per poll."""
    global _tls_context
    if _tls_context is None:
        with _tls_lock:
            if _tls_context is None:
                import certifi

                _tls_context = ssl.create_default_context(cafile=certifi.where())
    return _tls_context


_limiters: dict[tuple[str, ...], RateLimiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(key: tuple[str, ...], rate: float, burst: int = 1) -> RateLimiter:
    """The process-wide limiter for ``key`` (provider, account, bucket)."""
    with _limiters_lock:
        limiter = _limiters.get(key)
        if limiter is None or limiter.rate != rate or limiter.burst != burst:
            limiter = _limiters[key] = RateLimiter(rate, burst)
        return limiter


def reset_limiters() -> None:
    """Forget every limiter (tests)."""
    with _limiters_lock:
        _limiters.clear()


# --- Retry-After and backoff ----------------------------------------------------------------


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def backoff_delay(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
                  rng: random.Random | None = None) -> float:
    """Exponential backoff with "full jitter" on the upper half: base*2^n/2 .. base*2^n."""
    ceiling = min(cap, base * (2 ** attempt))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


# --- error mapping --------------------------------------------------------------------------


def json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_envelope(body: Any) -> tuple[dict[str, Any], str, str] | None:
    """``{"error": {"code", "message", ...}}``, the envelope Lambda, Hetzner Robot and Google APIs
    answer with: (the error object, its code, its message or else the code), or None."""
    err = body.get("error") if isinstance(body, dict) else None
    if not isinstance(err, dict):
        return None
    code = str(err.get("code", ""))
    return err, code, str(err.get("message", "")) or code


def default_error(response: httpx.Response, body: Any = None) -> ProviderError:
    """Generic status-code mapping, used when the adapter's own mapper has no opinion."""
    status = response.status_code
    text = _message(body) or response.text[:300] or response.reason_phrase
    if status in (401, 403):
        return InvalidCredentials(text, status=status)
    if status == 404:
        return NotFound(text, status=status)
    if status == 429 or status >= 500 or status == 408:
        return TransientError(text, status=status, retry_after=parse_retry_after(response.headers.get("Retry-After")))
    return PermanentError(text, status=status)


def _message(body: Any) -> str:
    if isinstance(body, dict):
        for key in ("detail", "message", "msg", "error", "title"):
            v = body.get(key)
            if isinstance(v, str) and v:
                return v
            if isinstance(v, dict):
                inner = _message(v)
                if inner:
                    return inner
    return ""


# --- the client -----------------------------------------------------------------------------


class ApiClient:
    """A small synchronous JSON client for one provider account.

    ``limits`` maps a bucket name to (rate per second, burst); ``bucket`` on a request picks
    extra buckets on top of ``"default"`` (Lambda: every call takes "default", launches also
    take "launch").
    """

    def __init__(
        self,
        *,
        provider: str,
        base_url: str,
        account_key: str,
        headers: dict[str, str] | None = None,
        auth: httpx.Auth | tuple[str, str] | None = None,
        verify: Any = None,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        limits: dict[str, tuple[float, int]] | None = None,
        error_mapper: ErrorMapper | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Sleep | None = None,
        rng: random.Random | None = None,
    ):
        self.provider = provider
        self.base_url = base_url.rstrip("/")
        self.account_key = account_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.limits = limits or {}
        self.error_mapper = error_mapper
        self.sleep = sleep or default_sleep
        self.rng = rng
        self._client = httpx.Client(base_url=self.base_url, headers=headers or {}, auth=auth,
                                    timeout=timeout, transport=transport,
                                    verify=shared_tls_context() if verify is None else verify)

    def close(self) -> None:
        self._client.close()

    def _throttle(self, buckets: tuple[str, ...]) -> None:
        for name in ("default", *buckets):
            if name in self.limits:
                rate, burst = self.limits[name]
                limiter_for((self.provider, self.account_key, name), rate, burst).acquire(self.sleep)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        data: Any = None,
        content: bytes | str | None = None,
        params: Any = None,
        headers: dict[str, str] | None = None,
        buckets: tuple[str, ...] = (),
        idempotent: bool | None = None,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """Send one request with retries; returns the response on 2xx (or a status in ``ok``).

        Raises the typed ProviderError otherwise. ``idempotent=False`` (default for POST and
        PATCH) retries only what the provider certainly did not act on.
        """
        method = method.upper()
        safe = (method in IDEMPOTENT_METHODS) if idempotent is None else idempotent
        attempt = 0
        while True:
            self._throttle(buckets)
            try:
                response = self._client.request(method, path, json=json, data=data, content=content,
                                                params=params, headers=headers)
            except (httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                # never reached the provider: safe to retry whatever the method
                error = TransientError(f"{self.provider}: could not connect in time ({exc})")
            except httpx.TimeoutException as exc:
                # The provider may have acted on a create that timed out: never retry it.
                if not safe:
                    raise LaunchTimeout(f"{self.provider}: {method} {path} timed out: {exc}") from exc
                error: ProviderError = TransientError(f"{self.provider}: timed out ({exc})")
            except (httpx.ConnectError, httpx.RemoteProtocolError) as exc:
                if not safe and not isinstance(exc, httpx.ConnectError):
                    raise TransientError(f"{self.provider}: connection broke: {exc}") from exc
                error = TransientError(f"{self.provider}: connection failed ({exc})")
            except httpx.HTTPError as exc:
                raise TransientError(f"{self.provider}: {exc}") from exc
            else:
                if response.is_success or response.status_code in ok:
                    return response
                error = self.map_error(response)
                if isinstance(error, TransientError) and not safe and response.status_code != 429:
                    raise error  # a 5xx after a create: the adapter reconciles by tag
            if not isinstance(error, TransientError) or attempt >= self.retries:
                raise error
            retry_after = getattr(error, "retry_after", None)
            if retry_after is not None and retry_after > MAX_RETRY_AFTER:
                raise error
            delay = retry_after if retry_after is not None else backoff_delay(attempt, rng=self.rng)
            self.sleep(delay)
            attempt += 1

    def map_error(self, response: httpx.Response) -> ProviderError:
        body = json_or_none(response)
        mapped = self.error_mapper(response, body) if self.error_mapper else None
        error = mapped or default_error(response, body)
        if isinstance(error, TransientError) and error.retry_after is None:
            error.retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if error.status is None:
            error.status = response.status_code
        return error

    # JSON conveniences
    def get_json(self, path: str, **kw: Any) -> Any:
        return json_or_none(self.request("GET", path, **kw))

    def post_json(self, path: str, **kw: Any) -> Any:
        return json_or_none(self.request("POST", path, **kw))


def run_concurrently(calls: list[Callable[[], Any]], max_workers: int = 8) -> list[Any]:
    """Run independent read calls of one poll side by side; results in order, first error raised.

    A poll that needs several catalogue requests (RunPod: one per cloud and GPU count) then
    costs about one round trip instead of their sum.
    """
    if len(calls) <= 1:
        return [c() for c in calls]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(max_workers, len(calls)), thread_name_prefix="adapter") as pool:
        futures = [pool.submit(c) for c in calls]
        return [f.result() for f in futures]


def account_key(settings: dict[str, Any], secret: str) -> str:
    """Stable key for the account's rate-limit buckets: the account id, else a key digest."""
    if settings.get("account_id") and settings["account_id"] != "verify":
        return str(settings["account_id"])
    import hashlib

    return "k-" + hashlib.sha256(secret.encode()).hexdigest()[:16]


TAG_KEY = "provisioner-pod"  # the key/label/env name that carries our pod UUID
