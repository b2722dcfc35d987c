"""Cross-cutting security pieces: login throttling and response headers (log redaction lives in
``provisioner.logfilter``, which must import before Django's apps are ready)."""

from __future__ import annotations

import codecs

from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent
from django.http import HttpResponse
from django.utils.cache import patch_cache_control

from .logfilter import RedactSecretsFilter, redact, register_secret  # noqa: F401  (re-exported)

# --- login throttling --------------------------------------------------------------------------------

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECONDS = 300


def _login_keys(request) -> list[str]:
    ip = request.META.get("REMOTE_ADDR", "?")
    username = (request.POST.get("username") or "").lower()[:150]
    return [f"login-fail:ip:{ip}", f"login-fail:user:{username}"]


class ThrottledLoginView(LoginView):
    """Django's LoginView, refusing further attempts after repeated failures (per IP and per
    username) for a few minutes.

    Reserve, then check: every attempt first takes a slot with the cache's atomic ``add`` +
    ``incr`` (one Redis INCR each when CACHE_URL is Redis), and only an attempt whose slot is
    within the limit reaches the password check; a success clears the counters. A "check the
    count, then increment on failure" throttle lets parallel requests all read the same count
    (20 parallel failures let 9 through against a limit of 5).
    """

    def post(self, request, *args, **kwargs):
        if any(_take_slot(k) > LOGIN_MAX_FAILURES for k in _login_keys(request)):
            return HttpResponse("Too many failed logins. Try again in a few minutes.", status=429,
                                headers={"Retry-After": str(LOGIN_WINDOW_SECONDS)})
        return super().post(request, *args, **kwargs)

    def form_valid(self, form):
        cache.delete_many(_login_keys(self.request))
        return super().form_valid(form)


def _take_slot(key: str) -> int:
    """Count one attempt atomically; the window starts with the first attempt."""
    cache.add(key, 0, LOGIN_WINDOW_SECONDS)
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, LOGIN_WINDOW_SECONDS)
        return 1


# --- response headers ----------------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Content-Security-Policy and friends. Everything (htmx, plotly, static/js/app.js) is served
    from our origin, and scripts only from there: no inline script or handler, no eval (charts
    are JSON drawn by app.js; plotly.js 4 basic bundle (bar, scatter, pie) needs no eval, the
    WebGL traces that would are not used). Styles keep 'unsafe-inline' (plotly and htmx set
    inline styles); an injected style cannot run code."""

    CSP = ("default-src 'self'; script-src 'self'; object-src 'none'; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.CSP)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        user = getattr(request, "user", None)  # absent on responses WhiteNoise answered itself
        if user is not None and user.is_authenticated:
            # every signed-in page may show credentials (masked), connection tokens or money: no copy
            # in any cache, shared or the browser's (back button after logout); OWASP ASVS 8.2.1
            patch_cache_control(response, no_store=True, private=True)
        return response


def _ascii_compatible(charset: str) -> bool:
    """Can Django decode a form body declared in ``charset``? Form bodies are percent-encoded
    ASCII, so the charset must exist and encode ASCII as itself (utf-16/utf-32 do not)."""
    try:
        codec = codecs.lookup(charset)
        return codec.encode("name=value&x")[0] == b"name=value&x"
    except (LookupError, UnicodeError, TypeError):
        return False


class RejectNulBytesMiddleware:
    """Runs before CSRF. A request body in a charset we cannot decode is a 400. A NUL character is never valid input here, and PostgreSQL refuses it in text columns and
    query parameters (a DataError, i.e. a 500, wherever a view forgot to validate). Refuse any
    query string or form field carrying one with a 400, before any view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        # Before CSRF, which reads request.POST: a charset Python cannot decode a form with is
        # Django's BadRequest re-raised in the CSRF path (a 500 with an empty body), even on /login/.
        charset = (request.content_params or {}).get("charset") if request.method not in ("GET", "HEAD") else None
        if charset and not _ascii_compatible(charset):
            return HttpResponse("Unsupported request charset: send the body as UTF-8.", status=400,
                                content_type="text/plain")
        try:
            request.GET, request.POST if request.method == "POST" else None  # noqa: B018  (parse now)
        except (UnicodeDecodeError, BadRequest, RequestDataTooBig, TooManyFieldsSent):
            return HttpResponse("Malformed or too large request body.", status=400, content_type="text/plain")
        for data in (request.GET, request.POST if request.method == "POST" else None):
            if data is None:
                continue
            for key, values in data.lists():
                if "\x00" in key or any("\x00" in v for v in values):
                    return HttpResponse("Invalid input: NUL characters are not allowed.", status=400,
                                        content_type="text/plain")
        return self.get_response(request)
