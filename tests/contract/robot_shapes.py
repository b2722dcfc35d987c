"""Hetzner Robot shapes, pinned to the Robot webservice documentation.

Robot publishes no OpenAPI spec. The source is Hetzner's own reference,
https://robot.hetzner.com/doc/webservice/en.html ("the doc" below; found through the search
tool, read 2026-12-02); every schema names the doc section its fields come from (the "Output" /
"Input" tables of that section). Where the doc's example JSON and its field table differ, the
schema allows both and says so. ``additionalProperties: false`` everywhere: a field the doc does
not name fails, in our requests and in the stand-in's answers alike. Cross-checked against an
independent client, MathiasPius/hrobot-rs (src/api/ordering/models.rs: Product, ProductTransaction,
MarketTransaction, Addon): it agrees on the ordering fields (its one difference, a nullable addon
location, is taken below).

Request bodies are form-encoded (doc "Preface / General": POST parameters are
application/x-www-form-urlencoded); ``OPERATIONS`` lists the form fields each operation may send.
"""

from __future__ import annotations

from typing import Any


def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props) if required is None else required,
            "additionalProperties": False}


def wrapped(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return obj({key: schema})


STR = {"type": "string"}
STRS = {"type": "array", "items": STR}
NULLABLE_STR = {"type": ["string", "null"]}
NUM_STR = {"type": ["string", "number"]}  # the doc types prices "(String)"; numbers tolerated
NULLABLE_NUM_STR = {"type": ["string", "number", "null"]}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
# "@deprecated arch": the doc's examples carry the key literally so; its tables say
# "@deprecated arch (Array)" -- optional wherever it appears
ARCH = {"@deprecated arch": {"type": ["array", "string", "integer"]}}

# doc "GET /order/server/product", Output: price (Object) net, gross, hourly_net, hourly_gross
# ("Hourly price in euros, if the product is billed hourly, null otherwise"); price_setup net, gross
PRICE = obj({"net": NUM_STR, "gross": NUM_STR, "hourly_net": NULLABLE_NUM_STR, "hourly_gross": NULLABLE_NUM_STR})
SETUP = obj({"net": NUM_STR, "gross": NUM_STR})
LOCATION_PRICE = obj({"location": STR, "price": PRICE, "price_setup": SETUP})
# same section: orderable_addons (Array)(Object) id, name, location, min, max, prices (the examples
# carry no "location" at this level: optional; hrobot-rs, src/api/ordering/models.rs ``Addon``,
# reads it as Option<Location>, "None is everywhere": nullable)
ADDON = obj({"id": STR, "name": STR, "location": NULLABLE_STR, "min": INT, "max": INT,
             "prices": {"type": "array", "items": LOCATION_PRICE}}, ["id", "name", "min", "max", "prices"])

# doc "GET /order/server/product" and "GET /order/server/product/{product-id}", Output
PRODUCT = obj({
    "id": STR, "name": STR, "description": STRS, "traffic": STR, "dist": STRS, **ARCH, "lang": STRS,
    "location": STRS, "prices": {"type": "array", "items": LOCATION_PRICE},
    "orderable_addons": {"type": "array", "items": ADDON},
}, ["id", "name", "description", "traffic", "dist", "lang", "location", "prices", "orderable_addons"])

# doc "GET /order/server_market/product", Output (price_hourly*: null when not billed hourly)
MARKET_PRODUCT = obj({
    "id": INT, "name": STR, "description": STRS, "traffic": STR, "dist": STRS, **ARCH, "lang": STRS,
    "cpu": STR, "cpu_benchmark": INT, "memory_size": {"type": "number"}, "hdd_size": {"type": "number"},
    "hdd_text": STR, "hdd_count": INT, "datacenter": NULLABLE_STR, "network_speed": STR, "price": NUM_STR,
    "price_hourly": NULLABLE_NUM_STR, "price_setup": NUM_STR, "price_vat": NUM_STR, "price_hourly_vat": NULLABLE_NUM_STR,
    "price_setup_vat": NUM_STR, "fixed_price": BOOL, "next_reduce": INT, "next_reduce_date": STR,
    "orderable_addons": {"type": "array", "items": ADDON},
}, ["id", "name", "description", "traffic", "dist", "lang", "cpu", "cpu_benchmark", "memory_size", "hdd_size",
    "hdd_text", "hdd_count", "datacenter", "price", "price_setup", "price_vat", "price_setup_vat", "fixed_price",
    "next_reduce", "next_reduce_date", "orderable_addons"])

# doc "GET /order/server/transaction", Output: authorized_key "Array with supplied public SSH
# keys" (examples: {"key": {name, fingerprint, type, size}}), host_key "Array with servers public
# host keys" (examples: {"key": {fingerprint, type, size}}, no name)
AUTHORIZED_KEY = wrapped("key", obj({"name": STR, "fingerprint": STR, "type": STR, "size": INT}))
HOST_KEY = wrapped("key", obj({"fingerprint": STR, "type": STR, "size": INT}))

# transaction.product: doc "POST /order/server/transaction" (id String, location) and
# "POST /order/server_market/transaction" (id Integer, cpu ... network_speed), Output tables
TX_PRODUCT = obj({
    "id": {"type": ["string", "integer"]}, "name": STR, "description": STRS, "traffic": STR, "dist": STR, **ARCH,
    "lang": STR, "location": NULLABLE_STR, "cpu": STR, "cpu_benchmark": INT, "memory_size": {"type": "number"},
    "hdd_size": {"type": "number"}, "hdd_text": STR, "hdd_count": INT, "datacenter": NULLABLE_STR,
    "network_speed": STR, "fixed_price": BOOL, "next_reduce": INT, "next_reduce_date": STR,
}, ["id", "name", "description", "traffic", "dist", "lang"])

# doc "GET /order/server/transaction/{id}", Output: status "ready", "in process" or "cancelled";
# server_number / server_ip only when ready, null otherwise
TRANSACTION = obj({
    "id": STR, "date": STR, "status": {"enum": ["ready", "in process", "cancelled"]},
    "server_number": {"type": ["integer", "null"]}, "server_ip": NULLABLE_STR,
    "authorized_key": {"type": "array", "items": AUTHORIZED_KEY}, "host_key": {"type": "array", "items": HOST_KEY},
    "comment": NULLABLE_STR, "product": TX_PRODUCT, "addons": STRS,
})

# doc "GET /server" (list) and "GET /server/{server-number}" (adds reset ... linked_storagebox);
# status "ready" or "in process"; subnet "Array of assigned subnets" (null in the list example)
_SERVER = {
    "server_ip": NULLABLE_STR, "server_ipv6_net": NULLABLE_STR, "server_number": INT, "server_name": STR,
    "product": STR, "dc": STR, "traffic": STR, "status": {"enum": ["ready", "in process"]}, "cancelled": BOOL,
    "paid_until": STR, "ip": STRS, "subnet": {"type": ["array", "null"], "items": obj({"ip": STR, "mask": STR})},
}
SERVER = obj({**_SERVER, "reset": BOOL, "rescue": BOOL, "vnc": BOOL, "windows": BOOL, "plesk": BOOL,
              "cpanel": BOOL, "wol": BOOL, "hot_swap": BOOL, "linked_storagebox": {"type": ["integer", "null"]}},
             list(_SERVER))

# doc "POST /server/{server-number}/cancellation", Output
CANCELLATION = obj({
    "server_ip": NULLABLE_STR, "server_ipv6_net": NULLABLE_STR, "server_number": INT, "server_name": STR,
    "earliest_cancellation_date": STR, "cancelled": BOOL, "reservation_possible": BOOL, "reserved": BOOL,
    "cancellation_date": STR, "cancellation_reason": NULLABLE_STR,
})

# doc "Preface / Errors": error status, code, message; "Error format invalid input" adds
# missing/invalid ("Array ... or null"); "Error format request limit" adds max_request/interval
ERROR = wrapped("error", obj({
    "status": INT, "code": STR, "message": STR, "missing": {"type": ["array", "null"], "items": STR},
    "invalid": {"type": ["array", "null"], "items": STR}, "max_request": INT, "interval": INT,
}, ["status", "code", "message"]))

# (method, path regex) -> (form fields allowed, success schema)
OPERATIONS: list[tuple[str, str, frozenset[str], dict[str, Any]]] = [
    ("GET", r"/order/server/product", frozenset(), {"type": "array", "items": wrapped("product", PRODUCT)}),
    ("GET", r"/order/server/product/[^/]+", frozenset(), wrapped("product", PRODUCT)),
    ("GET", r"/order/server_market/product", frozenset(), {"type": "array", "items": wrapped("product", MARKET_PRODUCT)}),
    ("GET", r"/order/server_market/product/\d+", frozenset(), wrapped("product", MARKET_PRODUCT)),
    ("GET", r"/order/server(_market)?/transaction", frozenset(), {"type": "array", "items": wrapped("transaction", TRANSACTION)}),
    # doc "POST /order/server/transaction", Input (the deprecated "arch" is never sent)
    ("POST", r"/order/server/transaction",
     frozenset({"product_id", "authorized_key[]", "password", "location", "dist", "lang", "addon[]", "comment", "test"}),
     wrapped("transaction", TRANSACTION)),
    # doc "POST /order/server_market/transaction", Input: no location (the product is one machine)
    ("POST", r"/order/server_market/transaction",
     frozenset({"product_id", "authorized_key[]", "password", "dist", "lang", "addon[]", "comment", "test"}),
     wrapped("transaction", TRANSACTION)),
    ("GET", r"/order/server(_market)?/transaction/[^/]+", frozenset(), wrapped("transaction", TRANSACTION)),
    ("GET", r"/server", frozenset(), {"type": "array", "items": wrapped("server", obj(_SERVER))}),
    ("GET", r"/server/\d+", frozenset(), wrapped("server", SERVER)),
    # doc "POST /server/{server-number}/cancellation", Input
    ("POST", r"/server/\d+/cancellation", frozenset({"cancellation_date", "cancellation_reason", "reserve_location"}),
     wrapped("cancellation", CANCELLATION)),
]
