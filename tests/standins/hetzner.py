"""Hetzner Robot stand-in (dedicated GPU servers).

There is no published spec for Robot; shapes, error codes and limits follow the Robot
webservice documentation (https://robot.hetzner.com/doc/webservice/en.html, the section named
next to each behaviour; tests/contract/robot_shapes.py records the source per field): every
object is wrapped in a key naming its type, request bodies are form-encoded, auth is HTTP Basic
with the webservice user. ``api_keys`` holds ``"user:password"`` strings.

Endpoints: ``GET /order/server/product[/{id}]``, ``GET /order/server_market/product[/{id}]``,
``GET|POST /order/server/transaction``, ``GET /order/server/transaction/{id}`` (and the
``server_market`` twins), ``GET /server``, ``GET /server/{n}``, ``POST /server/{n}/cancellation``.

Orders are delivered ``boot_seconds`` after they were placed (``in process`` -> ``ready`` with a
server). Knobs beyond the shared faults (``tests.standins.base``):

* ``out_of_stock`` -- set of (product_id, location) that cannot be ordered
  (``PRODUCT_NOT_AVAILABLE``, see the adapter's note on that code);
* ``rate_limit`` faults answer ``RATE_LIMIT_EXCEEDED`` with ``max_request``/``interval``;
* ``server_ip`` -- the IPv4 address delivered servers get (tests point it at 127.0.0.1, where
  a real sshd waits) and ``host_keys`` -- the MD5 fingerprints orders list as ``host_key``;
* three failed logins lock every caller out for 10 minutes (``failed_logins``, ``locked_until``);
* ``reservation_possible`` -- cancellations then need ``reserve_location`` (doc "POST
  /server/{server-number}/cancellation").

Rejected like Robot rejects them ("POST /order/server/transaction"): a ``dist`` or ``addon[]``
the product does not list, a ``location`` on a market order, a field the doc does not name.
Delivered without the ``primary_ipv4`` addon a server is IPv6-only (``server_ip`` null, doc
"Server ordering / Notes").
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .base import Ctx, Fault, StandIn, json_response

# "GET /order/server/product", orderable_addons: the one addon the bootstrap needs
IPV4: dict[str, Any] = {"id": "primary_ipv4", "name": "Primary IPv4", "min": 0, "max": 1, "prices": [
    {"location": loc, "price": {"net": "1.7000", "gross": "2.0230", "hourly_net": "0.0027", "hourly_gross": "0.0032"},
     "price_setup": {"net": "0.0000", "gross": "0.0000"}} for loc in ("FSN1", "NBG1", "HEL1")]}

PRODUCTS: list[dict[str, Any]] = [
    {"id": "GEX44", "name": "Dedicated Server GEX44",
     "description": ["Intel Core i5-13500", "64 GB DDR4", "2 x 1.92 TB NVMe SSD", "NVIDIA RTX 4000 SFF Ada Generation"],
     "traffic": "unlimited", "dist": ["Rescue system", "Ubuntu 22.04.2 LTS base", "Ubuntu 24.04 LTS base"],
     "lang": ["en"], "location": ["FSN1"], "prices": [{"location": "FSN1", "price": {"net": "184.0000", "gross": "218.9600",
                                                                      "hourly_net": "0.2950", "hourly_gross": "0.3511"},
                                       "price_setup": {"net": "79.0000", "gross": "94.0100"}}],
     "orderable_addons": [IPV4]},
    {"id": "GEX130", "name": "Dedicated Server GEX130",
     "description": ["Intel Xeon Gold 5412U", "128 GB DDR5 ECC", "2 x 1.92 TB NVMe SSD", "NVIDIA RTX 6000 Ada Generation"],
     "traffic": "unlimited", "dist": ["Rescue system", "Ubuntu 24.04 LTS base"], "lang": ["en"],
     "location": ["FSN1", "NBG1"],
     "prices": [{"location": loc, "price": {"net": "813.0000", "gross": "967.4700", "hourly_net": "1.3030",
                                            "hourly_gross": "1.5506"},
                 "price_setup": {"net": "0.0000", "gross": "0.0000"}} for loc in ("FSN1", "NBG1")],
     "orderable_addons": [IPV4]},
    {"id": "EX44", "name": "Dedicated Server EX44", "description": ["Intel Core i5-13500", "64 GB DDR4", "2 x 512 GB NVMe SSD"],
     "traffic": "unlimited", "dist": ["Rescue system"], "lang": ["en"], "location": ["FSN1", "HEL1"],
     "prices": [{"location": loc, "price": {"net": "44.0000", "gross": "52.3600", "hourly_net": "0.0705", "hourly_gross": "0.0839"},
                 "price_setup": {"net": "39.0000", "gross": "46.4100"}} for loc in ("FSN1", "HEL1")],
     "orderable_addons": [IPV4]},
]

def _market(id_: int, name: str, description: list[str], dist: list[str], datacenter: str, price: str,
            hourly: str | None) -> dict[str, Any]:
    """A server-auction product with every field of "GET /order/server_market/product"."""
    return {"id": id_, "name": name, "description": description, "traffic": "unlimited", "dist": dist,
            "@deprecated arch": [64], "lang": ["en"], "cpu": description[0], "cpu_benchmark": 13000, "memory_size": 64,
            "hdd_size": 1920, "hdd_text": "NVMe", "hdd_count": 2, "datacenter": datacenter, "network_speed": "1 Gbit/s",
            "price": price, "price_hourly": hourly, "price_setup": "0.0000", "price_vat": price,
            "price_hourly_vat": hourly, "price_setup_vat": "0.0000", "fixed_price": False, "next_reduce": 3600,
            "next_reduce_date": "2026-11-28 10:00:00", "orderable_addons": [IPV4]}


MARKET: list[dict[str, Any]] = [
    _market(2466012, "SB GPU", ["Intel Core i7-8700", "64 GB", "NVIDIA RTX 6000 Ada Generation"],
            ["Rescue system", "Ubuntu 24.04 LTS base"], "HEL1-DC2", "399.0000", None),
    _market(2466013, "SB", ["AMD Ryzen 7 3700X", "64 GB"], ["Rescue system"], "FSN1-DC14", "39.0000", "0.0625"),
    # a GPU auction server that can only be ordered with the rescue system: nothing of ours runs on it
    _market(2466014, "SB GPU rescue-only", ["Intel Core i9-9900K", "64 GB", "NVIDIA RTX 6000 Ada Generation"],
            ["Rescue system"], "FSN1-DC1", "299.0000", None),
]


# "POST /order/server/transaction", Input (the deprecated "arch" left out)
ORDER_FIELDS = frozenset({"product_id", "authorized_key[]", "password", "location", "dist", "lang", "comment",
                          "addon[]", "test"})


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


class HetznerRobotStandIn(StandIn):
    name = "hetzner"

    def __init__(self, *, api_keys: tuple[str, ...] = ("robot-user:robot-pass",), **kw: Any):
        super().__init__(api_keys=api_keys, **kw)
        self.out_of_stock: set[tuple[str, str]] = set()
        self.transactions: dict[str, dict[str, Any]] = {}
        self.servers: dict[int, dict[str, Any]] = {}
        self.server_ip: str | None = None  # None: 203.0.113.x
        self.host_keys: list[str] = []
        self.reservation_possible = False
        self.failed_logins = 0
        self.locked_until = 0.0
        self._seq = 0
        self.route("GET", "/order/server/product", self.products, op="offers")
        self.route("GET", "/order/server_market/product", self.market_products, op="offers")
        self.route("GET", "/order/server/product/{id}", lambda c: self.product(c, False), op="offers")
        self.route("GET", "/order/server_market/product/{id}", lambda c: self.product(c, True), op="offers")
        self.route("GET", "/order/server/transaction", lambda c: self.list_tx(c, False), op="list")
        self.route("GET", "/order/server_market/transaction", lambda c: self.list_tx(c, True), op="list")
        self.route("POST", "/order/server/transaction", lambda c: self.order(c, False), op="launch")
        self.route("POST", "/order/server_market/transaction", lambda c: self.order(c, True), op="launch")
        self.route("GET", "/order/server/transaction/{id}", lambda c: self.get_tx(c, False), op="get")
        self.route("GET", "/order/server_market/transaction/{id}", lambda c: self.get_tx(c, True), op="get")
        self.route("GET", "/server", self.list_servers, op="list")
        self.route("GET", "/server/{n}", self.get_server, op="get")
        self.route("POST", "/server/{n}/cancellation", self.cancel, op="terminate")

    # --- auth and errors --------------------------------------------------------------------
    def authorized(self, request: httpx.Request) -> bool:
        # doc "Preface / Errors / Authentication error": the caller's IP is blocked for 10
        # minutes after 3 failed login attempts -- every request, good credentials too
        if self.now() < self.locked_until:
            return False
        creds = self.basic_credentials(request)
        if creds is not None and f"{creds[0]}:{creds[1]}" in self.valid_keys:
            return True
        self.failed_logins += 1
        if self.failed_logins % 3 == 0:
            self.locked_until = self.now() + 600
        return False

    def error(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
              **extra: Any) -> httpx.Response:
        return json_response(status, {"error": {"status": status, "code": code, "message": message, **extra}}, headers=headers)

    def unauthorized(self) -> httpx.Response:
        return self.error(401, "UNAUTHORIZED", "Unauthorized")

    def rate_limited(self, fault: Fault) -> httpx.Response:
        interval = int(fault.retry_after if fault.retry_after is not None else 3600)
        return self.error(403, "RATE_LIMIT_EXCEEDED", "Rate limit exceeded", max_request=200, interval=interval)

    def fault_response(self, fault: Fault, ctx: Ctx) -> httpx.Response | None:
        if fault.kind == "server_error":
            return self.error(fault.status, "INTERNAL_ERROR", "Internal error")
        return super().fault_response(fault, ctx)

    # --- catalogue --------------------------------------------------------------------------
    def products(self, ctx: Ctx) -> httpx.Response:
        return json_response(200, [{"product": p} for p in PRODUCTS])

    def market_products(self, ctx: Ctx) -> httpx.Response:
        return json_response(200, [{"product": p} for p in MARKET])

    def product(self, ctx: Ctx, market: bool) -> httpx.Response:
        found = {str(p["id"]): p for p in (MARKET if market else PRODUCTS)}.get(ctx.params["id"])
        if found is None:
            return self.error(404, "NOT_FOUND", "Product not found")
        return json_response(200, {"product": found})

    # --- orders -----------------------------------------------------------------------------
    def _deliver(self, tx: dict[str, Any]) -> None:
        if tx["status"] != "in process" or self.now() - tx["_created"] < self.boot_seconds:
            return
        self._seq += 1
        number = 2_000_000 + self._seq
        # without the primary_ipv4 addon Robot delivers an IPv6-only server
        ip = (self.server_ip or f"203.0.113.{100 + self._seq % 150}") if "primary_ipv4" in tx["addons"] else None
        tx.update(status="ready", server_number=number, server_ip=ip,
                  host_key=[{"key": {"fingerprint": k, "type": "ED25519", "size": 256}} for k in self.host_keys])
        location = tx["product"]["location"] or "FSN1"
        self.servers[number] = {
            "server_ip": ip, "server_ipv6_net": f"2a01:4f8:{self._seq:x}::", "server_number": number,
            "server_name": "", "product": tx["product"]["id"], "dc": f"{location}-DC{14 + self._seq % 4}",
            "traffic": "unlimited", "status": "ready", "cancelled": False,
            "paid_until": (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%d"),
            "ip": [ip] if ip else [], "subnet": [{"ip": f"2a01:4f8:{self._seq:x}::", "mask": "64"}],
        }

    def render_tx(self, tx: dict[str, Any]) -> dict[str, Any]:
        self._deliver(tx)
        return {"transaction": {k: v for k, v in tx.items() if not k.startswith("_")}}

    def order(self, ctx: Ctx, market: bool) -> httpx.Response:
        form = ctx.body if isinstance(ctx.body, dict) else {}
        first = {k: v[0] for k, v in form.items() if v}
        missing = [k for k in ("product_id",) if not first.get(k)]
        if not market and not first.get("location"):
            missing.append("location")
        if not form.get("authorized_key[]") and not first.get("password"):
            missing.append("authorized_key")
        if missing:
            return self.error(400, "INVALID_INPUT", "invalid input", missing=missing, invalid=[])
        allowed = ORDER_FIELDS - ({"location"} if market else set())
        unknown = sorted(set(form) - allowed)
        if unknown:  # e.g. "location" on a market order, "addons[]" for "addon[]"
            return self.error(400, "INVALID_INPUT", "invalid input", missing=[], invalid=unknown)
        products = {str(p["id"]): p for p in (MARKET if market else PRODUCTS)}
        product = products.get(first["product_id"])
        if product is None:
            return self.error(400, "INVALID_INPUT", "invalid input", missing=[], invalid=["product_id"])
        location = first.get("location") or str(product.get("datacenter", "")).split("-")[0]
        invalid = []
        if not market and location not in product["location"]:
            invalid.append("location")
        if "dist" in first and first["dist"] not in product["dist"]:
            invalid.append("dist")
        addons = form.get("addon[]", [])
        if any(a not in {x["id"] for x in product["orderable_addons"]} for a in addons):
            invalid.append("addon")
        if invalid:
            return self.error(400, "INVALID_INPUT", "invalid input", missing=[], invalid=invalid)
        if (ctx.fault and ctx.fault.kind == "capacity") or (first["product_id"], location) in self.out_of_stock:
            return self.error(409, "PRODUCT_NOT_AVAILABLE", "The product is currently not available")
        if ctx.fault and ctx.fault.kind == "quota":
            return self.error(403, "ORDER_LIMIT_EXCEEDED", "Order limit exceeded for this account")
        now = self.now()
        tx_id = f"B{datetime.fromtimestamp(now, UTC):%Y%m%d}-{700000 + len(self.transactions)}-{251478 + len(self.transactions)}"
        keys = form.get("authorized_key[]", [])
        tx = {
            "id": tx_id, "date": _iso(now), "status": "cancelled" if first.get("test") == "true" else "in process",
            "server_number": None, "server_ip": None,
            "authorized_key": [{"key": {"name": "key", "fingerprint": k, "type": "ED25519", "size": 256}} for k in keys],
            "host_key": [], "comment": first.get("comment"),
            "product": {"id": str(product["id"]), "name": product["name"], "description": product["description"],
                        "traffic": product["traffic"], "dist": first.get("dist", "Rescue system"),
                        "lang": first.get("lang", "en"), "location": location},
            "addons": list(addons), "_created": now, "_market": market,
        }
        self.transactions[tx_id] = tx
        return json_response(201, self.render_tx(tx))

    def list_tx(self, ctx: Ctx, market: bool) -> httpx.Response:
        items = [self.render_tx(t) for t in self.transactions.values() if t["_market"] == market]
        if not items:
            return self.error(404, "NOT_FOUND", "No transactions found")
        return json_response(200, items)

    def get_tx(self, ctx: Ctx, market: bool) -> httpx.Response:
        tx = self.transactions.get(ctx.params["id"])
        if tx is None or tx["_market"] != market:
            return self.error(404, "NOT_FOUND", "Transaction not found")
        return json_response(200, self.render_tx(tx))

    # --- servers ----------------------------------------------------------------------------
    def list_servers(self, ctx: Ctx) -> httpx.Response:
        for tx in self.transactions.values():
            self._deliver(tx)
        if not self.servers:
            return self.error(404, "SERVER_NOT_FOUND", "No server found")
        return json_response(200, [{"server": s} for s in self.servers.values()])

    def get_server(self, ctx: Ctx) -> httpx.Response:
        server = self.servers.get(int(ctx.params["n"])) if ctx.params["n"].isdigit() else None
        if server is None:
            return self.error(404, "SERVER_NOT_FOUND", "Server not found")
        return json_response(200, {"server": server})

    def cancel(self, ctx: Ctx) -> httpx.Response:
        server = self.servers.get(int(ctx.params["n"])) if ctx.params["n"].isdigit() else None
        if server is None:
            return self.error(404, "SERVER_NOT_FOUND", "Server not found")
        form = ctx.body if isinstance(ctx.body, dict) else {}
        date = (form.get("cancellation_date") or [""])[0]
        if not date:
            return self.error(400, "INVALID_INPUT", "invalid input", missing=["cancellation_date"], invalid=[])
        reserve = (form.get("reserve_location") or [""])[0]
        if self.reservation_possible and reserve not in ("true", "false"):
            return self.error(400, "INVALID_INPUT", "invalid input", missing=["reserve_location"], invalid=[])
        if not self.reservation_possible and reserve not in ("", "false"):
            return self.error(409, "SERVER_CANCELLATION_RESERVE_LOCATION_FALSE_ONLY",
                              "It is not possible to reserve the location")
        if server["cancelled"]:
            return self.error(409, "CONFLICT", "The server is already cancelled")
        server["cancelled"] = True
        today = datetime.now(UTC).strftime("%Y-%m-%d")
        return json_response(200, {"cancellation": {
            "server_ip": server["server_ip"], "server_ipv6_net": server["server_ipv6_net"],
            "server_number": server["server_number"], "server_name": server["server_name"],
            "earliest_cancellation_date": today, "cancelled": True, "reservation_possible": False, "reserved": False,
            "cancellation_date": today if date == "now" else date, "cancellation_reason": None}})
