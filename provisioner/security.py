"""Cross-cutting security pieces: login throttling and response headers (log redaction lives in
``provisioner.logfilter``, which must import before Django's apps are ready)."""

from __future__ import annotations

import codecs

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.core.exceptions import BadRequest, RequestDataTooBig, TooManyFieldsSent
from django.http import HttpResponse

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
    username) for a few minutes."""

    def post(self, request, *args, **kwargs):
        keys = _login_keys(request)
        if any((cache.get(k) or 0) >= LOGIN_MAX_FAILURES for k in keys):
            return HttpResponse("Too many failed logins. Try again in a few minutes.", status=429,
                                headers={"Retry-After": str(LOGIN_WINDOW_SECONDS)})
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        for k in _login_keys(self.request):
            try:
                cache.incr(k)
            except ValueError:
                cache.set(k, 1, LOGIN_WINDOW_SECONDS)
        return super().form_invalid(form)

    def form_valid(self, form):
        cache.delete_many(_login_keys(self.request))
        return super().form_valid(form)


# --- response headers ----------------------------------------------------------------------------------


class SecurityHeadersMiddleware:
    """Content-Security-Policy and friends. Everything (htmx, plotly) is served from our origin."""

    CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' 'unsafe-eval'; style-src 'self' 'unsafe-inline'; "
           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'self'; form-action 'self'")

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.CSP)
        response.headers.setdefault("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
        response.headers.setdefault("Cross-Origin-Opener-Policy", "same-origin")
        if getattr(settings, "PRODUCTION", False) and request.user.is_authenticated:
            response.headers.setdefault("Cache-Control", "no-store")  # pages of one user stay out of shared caches
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
