"""The gateway route of one workload, as Caddy JSON (pure: no database, no network).

Caddy docs, "JSON Config Structure" → ``apps/http/servers/routes``: a route's ``match`` sets are
OR-ed; the ``not`` matcher negates the OR of its sets; ``rewrite.strip_path_prefix`` removes the
service prefix before proxying; ``reverse_proxy.load_balancing.try_duration``/``try_interval``
retry another upstream when one cannot be dialled, and passive health checks
(``health_checks.passive.fail_duration``) keep a failed upstream out for a while.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

PREFIX = "/s/"
# a pod that dies unannounced (a spot interruption without notice) refuses connections until the
# sync sees it: the proxy tries the other upstreams for up to this long instead of failing
TRY_DURATION = "3s"
TRY_INTERVAL = "50ms"
FAIL_DURATION = "10s"


def route_id(slug: str) -> str:
    return f"wl-{slug}"


def path_prefix(slug: str) -> str:
    return f"{PREFIX}{slug}"


def upstream_dial(address: str) -> tuple[str, bool]:
    """``http://host:port`` → (``host:port``, tls?). A URL without a port gets its scheme's."""
    parts = urlsplit(address if "://" in address else f"http://{address}")
    tls = parts.scheme == "https"
    port = parts.port or (443 if tls else 80)
    return f"{parts.hostname}:{port}", tls


def _proxy(slug: str, upstreams: list[str]) -> list[dict[str, Any]]:
    if not upstreams:
        return [{"handler": "static_response", "status_code": 503, "headers": {"Retry-After": ["2"]},
                 "body": "No ready pod behind this service right now.\n"}]
    dials = [upstream_dial(u) for u in upstreams]
    proxy: dict[str, Any] = {
        "handler": "reverse_proxy",
        "upstreams": [{"dial": dial} for dial, _ in dials],
        "load_balancing": {"selection_policy": {"policy": "round_robin"},
                           "try_duration": TRY_DURATION, "try_interval": TRY_INTERVAL},
        "health_checks": {"passive": {"fail_duration": FAIL_DURATION, "max_fails": 1}},
        "headers": {"request": {"set": {"X-Forwarded-Prefix": [path_prefix(slug)]}}},
    }
    if any(tls for _, tls in dials):
        proxy["transport"] = {"protocol": "http", "tls": {}}
    return [{"handler": "rewrite", "strip_path_prefix": path_prefix(slug)}, proxy]


def build_route(slug: str, upstreams: list[str], token: str = "") -> dict[str, Any]:
    """The route of one workload: ``/s/<slug>`` and everything under it go to ``upstreams`` (the
    ready pods' addresses); with ``token`` (a private service) only requests carrying it as
    ``Authorization: Bearer <token>`` or ``?token=<token>`` pass, others get a 401."""
    prefix = path_prefix(slug)
    inner: list[dict[str, Any]] = []
    if token:
        inner.append({
            "match": [{"not": [{"header": {"Authorization": [f"Bearer {token}"]}}, {"query": {"token": [token]}}]}],
            "handle": [{"handler": "static_response", "status_code": 401,
                        "headers": {"Www-Authenticate": [f'Bearer realm="{slug}"']},
                        "body": "This service is private: send its token as 'Authorization: Bearer <token>'.\n"}],
        })
    inner.append({"handle": _proxy(slug, sorted(upstreams))})
    return {"@id": route_id(slug), "match": [{"path": [prefix, f"{prefix}/*"]}],
            "handle": [{"handler": "subroute", "routes": inner}], "terminal": True}
