"""Hetzner Robot shapes, written down from ../shared/reference/providers.md §5.

Robot publishes no OpenAPI spec (none in ../shared/specs), so these JSON Schemas are the
contract: field names exactly as providers.md lists them, plus the type-named wrapping
(``{"product": {...}}``) and the server fields of the reference client providers.md names
(hrobot-rs). ``additionalProperties: false`` everywhere: a field not documented there fails.
Request bodies are form-encoded; ``FORMS`` lists the fields each operation may send.
"""

from __future__ import annotations

from typing import Any


def obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required or list(props), "additionalProperties": False}


def wrapped(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return obj({key: schema})


STR = {"type": "string"}
STRS = {"type": "array", "items": STR}
NULLABLE_STR = {"type": ["string", "null"]}
NUM_STR = {"type": ["string", "number"]}
PRICE = obj({"net": NUM_STR, "gross": NUM_STR, "hourly_net": NUM_STR, "hourly_gross": NUM_STR}, ["net", "gross"])
SETUP = obj({"net": NUM_STR, "gross": NUM_STR})

PRODUCT = obj({
    "id": STR, "name": STR, "description": STRS, "traffic": STR, "dist": STRS, "lang": STRS, "location": STRS,
    "prices": {"type": "array", "items": obj({"location": STR, "price": PRICE, "price_setup": SETUP})},
    "orderable_addons": {"type": "array"},
})

MARKET_PRODUCT = obj({
    "id": {"type": "integer"}, "name": STR, "description": STRS, "traffic": STR, "dist": STRS, "lang": STRS,
    "datacenter": NULLABLE_STR, "cpu": STR, "cpu_benchmark": {"type": "integer"}, "memory_size": {"type": "number"},
    "hdd_size": {"type": "number"}, "hdd_text": STR, "hdd_count": {"type": "integer"}, "price": NUM_STR,
    "price_vat": NUM_STR, "price_setup": NUM_STR, "price_setup_vat": NUM_STR, "fixed_price": {"type": "boolean"},
    "next_reduce": {"type": "integer"}, "next_reduce_date": STR, "orderable_addons": {"type": "array"},
})

KEY = wrapped("key", obj({"name": STR, "fingerprint": STR, "type": STR, "size": {"type": "integer"}}))

TRANSACTION = obj({
    "id": STR, "date": STR, "status": {"enum": ["ready", "in process", "cancelled"]},
    "server_number": {"type": ["integer", "null"]}, "server_ip": NULLABLE_STR,
    "authorized_key": {"type": "array", "items": KEY}, "host_key": {"type": "array", "items": KEY},
    "comment": NULLABLE_STR,
    "product": obj({"id": STR, "name": STR, "description": STRS, "traffic": STR, "dist": STR, "lang": STR,
                    "location": NULLABLE_STR}),
    "addons": STRS,
})

SERVER = obj({
    "server_ip": NULLABLE_STR, "server_ipv6_net": NULLABLE_STR, "server_number": {"type": "integer"},
    "server_name": STR, "product": STR, "dc": STR, "traffic": STR, "status": {"enum": ["ready", "in process"]},
    "cancelled": {"type": "boolean"}, "paid_until": STR, "ip": STRS,
    "subnet": {"type": "array", "items": obj({"ip": STR, "mask": STR})},
})

CANCELLATION = obj({
    "server_ip": NULLABLE_STR, "server_ipv6_net": NULLABLE_STR, "server_number": {"type": "integer"},
    "server_name": STR, "earliest_cancellation_date": STR, "cancelled": {"type": "boolean"},
    "reservation_possible": {"type": "boolean"}, "reserved": {"type": "boolean"}, "cancellation_date": STR,
    "cancellation_reason": NULLABLE_STR,
})

ERROR = wrapped("error", {
    "type": "object", "required": ["status", "code", "message"], "additionalProperties": False,
    "properties": {"status": {"type": "integer"}, "code": STR, "message": STR,
                   # INVALID_INPUT adds missing/invalid, RATE_LIMIT_EXCEEDED max_request/interval
                   "missing": STRS, "invalid": STRS, "max_request": {"type": "integer"}, "interval": {"type": "integer"}},
})

# (method, path regex) -> (form fields allowed, success schema)
OPERATIONS: list[tuple[str, str, frozenset[str], dict[str, Any]]] = [
    ("GET", r"/order/server/product", frozenset(), {"type": "array", "items": wrapped("product", PRODUCT)}),
    ("GET", r"/order/server_market/product", frozenset(), {"type": "array", "items": wrapped("product", MARKET_PRODUCT)}),
    ("GET", r"/order/server(_market)?/transaction", frozenset(), {"type": "array", "items": wrapped("transaction", TRANSACTION)}),
    ("POST", r"/order/server/transaction",
     frozenset({"product_id", "authorized_key[]", "password", "location", "dist", "lang", "addon[]", "comment", "test"}),
     wrapped("transaction", TRANSACTION)),
    ("POST", r"/order/server_market/transaction",
     frozenset({"product_id", "authorized_key[]", "password", "dist", "lang", "addon[]", "comment", "test"}),
     wrapped("transaction", TRANSACTION)),
    ("GET", r"/order/server(_market)?/transaction/[^/]+", frozenset(), wrapped("transaction", TRANSACTION)),
    ("GET", r"/server", frozenset(), {"type": "array", "items": wrapped("server", SERVER)}),
    ("GET", r"/server/\d+", frozenset(), wrapped("server", SERVER)),
    ("POST", r"/server/\d+/cancellation", frozenset({"cancellation_date", "cancellation_reason", "reserve_location"}),
     wrapped("cancellation", CANCELLATION)),
]
