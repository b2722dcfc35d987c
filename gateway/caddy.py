"""A typed client for Caddy's admin API (JSON config), the only way the app talks to the gateway.

Caddy docs, "API" (https://caddyserver.com/docs/api): ``POST /load`` replaces the whole config
(Caddy skips the reload when the new config equals the running one); ``/id/<id>`` addresses an
object carrying ``"@id"``; ``PATCH`` replaces an existing value, ``POST`` on an array appends,
``DELETE`` removes. Every change is applied gracefully: in-flight requests finish on the old
config while new ones use the new one ("Caddy's config is applied gracefully").

Our layout (``base_config``): one HTTP server whose routes are a ``services`` subroute holding one
route per workload (``"@id": "wl-<slug>"``) and, after it, a 404 for unknown paths. A workload's
route is written with :meth:`CaddyAdmin.put_route` (PATCH by id, or append when it is new), so
writing the same route twice changes nothing.
"""

from __future__ import annotations

from typing import Any

import httpx

SERVICES_ID = "services"
FALLBACK_ID = "fallback"
SERVER = "gateway"


class GatewayError(Exception):
    """The gateway's admin API refused a change or could not be reached."""


def base_config(listen: str, admin: str, origins: list[str] | None = None) -> dict[str, Any]:
    """The gateway's config with no services yet. Automatic HTTPS is off: TLS is the operator's
    (README "Service gateway": put it behind your load balancer or give Caddy your certificate).
    ``origins``: the Host names the admin API answers when it listens beyond loopback (compose)."""
    return {
        "admin": {"listen": admin, "config": {"persist": False}, **({"origins": origins} if origins else {})},
        "apps": {"http": {"servers": {SERVER: {
            "listen": [listen],
            "automatic_https": {"disable": True},
            "routes": [
                {"@id": SERVICES_ID, "handle": [{"handler": "subroute", "routes": []}]},
                {"@id": FALLBACK_ID, "handle": [{"handler": "static_response", "status_code": 404,
                                                 "body": "No such service.\n"}]},
            ],
        }}}},
    }


class CaddyAdmin:
    """Caddy's admin API at ``admin_url`` (e.g. ``http://127.0.0.1:2019``)."""

    def __init__(self, admin_url: str, *, timeout: float = 5.0, transport: httpx.BaseTransport | None = None):
        # Caddy refuses admin requests whose Origin/Host it does not expect only when origins are
        # enforced; a plain Host of the admin address is always accepted.
        self._http = httpx.Client(base_url=admin_url.rstrip("/"), timeout=timeout, transport=transport,
                                  headers={"Content-Type": "application/json"})

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> CaddyAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            return self._http.request(method, path, json=body) if body is not None else self._http.request(method, path)
        except httpx.HTTPError as exc:
            raise GatewayError(f"gateway admin API unreachable ({method} {path}): {exc}") from exc

    def _ok(self, response: httpx.Response, what: str) -> httpx.Response:
        if response.status_code >= 400:
            raise GatewayError(f"gateway refused {what}: HTTP {response.status_code} {response.text[:300]}")
        return response

    # --- whole config ---------------------------------------------------------------------------
    def config(self) -> dict[str, Any] | None:
        response = self._ok(self._request("GET", "/config/"), "reading the config")
        return response.json() if response.content.strip() else None

    def load(self, config: dict[str, Any]) -> None:
        """Replace the whole config (a no-op in Caddy when it equals the running one)."""
        self._ok(self._request("POST", "/load", config), "loading the config")

    def has_layout(self) -> bool:
        """True when the ``services`` subroute exists (a fresh or restarted Caddy has none)."""
        return self._request("GET", f"/id/{SERVICES_ID}").status_code == 200

    # --- one route per workload -----------------------------------------------------------------
    def get_route(self, route_id: str) -> dict[str, Any] | None:
        response = self._request("GET", f"/id/{route_id}")
        if response.status_code == 404:
            return None
        return self._ok(response, f"reading route {route_id}").json()

    def route_ids(self) -> list[str]:
        response = self._request("GET", f"/id/{SERVICES_ID}/handle/0/routes")
        if response.status_code == 404:
            return []
        return [r.get("@id", "") for r in (self._ok(response, "listing routes").json() or [])]

    def put_route(self, route: dict[str, Any]) -> bool:
        """Create or replace the route carrying ``route["@id"]``. Idempotent: an identical route
        is not written again (no reload). Returns True when the gateway changed."""
        route_id = route["@id"]
        current = self.get_route(route_id)
        if current == route:
            return False
        if current is None:
            self._ok(self._request("POST", f"/id/{SERVICES_ID}/handle/0/routes", route), f"adding route {route_id}")
        else:
            self._ok(self._request("PATCH", f"/id/{route_id}", route), f"replacing route {route_id}")
        return True

    def delete_route(self, route_id: str) -> bool:
        response = self._request("DELETE", f"/id/{route_id}")
        if response.status_code == 404:  # unknown id: already gone
            return False
        self._ok(response, f"removing route {route_id}")
        return True
