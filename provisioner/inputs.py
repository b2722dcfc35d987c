"""Input limits and the checks every form, JSON body and header goes through (issue 16 §3).

One place for the rules, so that pages, JSON endpoints and services refuse the same things with
a clear message instead of a 500: text that a database cannot store (NUL, lone surrogates),
numbers that are not finite, JSON nested deeper than anyone writes by hand, and sizes that
would otherwise be unbounded. The limits are documented in the README ("Security: input limits
and hardening").
"""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any

# --- documented limits ---------------------------------------------------------------------------
# Linux caps one argv/env string at MAX_ARG_STRLEN = 32 pages (128 KiB) and argv+env together at a
# quarter of the stack limit (2 MiB by default) — execve(2), "Limits on size of arguments and
# environment". Our limits stay well inside both, leaving room for the command and the agent's env.
MAX_ENV_VALUE_CHARS = 32 * 1024
MAX_ENV_VARS = 200
MAX_REGION_LIST_CHARS = 2000  # the wizard's "only these regions" list: ~100 region ids
MAX_REGIONS = 100
MAX_JSON_DEPTH = 20  # a recipe's parameter schema is 3 levels deep; nobody writes 20 by hand
MAX_URL_CHARS = 2000  # webhook and other outbound URLs (also the model fields' max_length)
REQUEST_ID_MAX = 64  # AuditEvent.request_id
_REQUEST_ID_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,64}$")


# The one reader of a typed list (countries, regions, GPU classes, account locations): commas,
# semicolons and any whitespace (newlines too) separate items, so "DE; FR", "DE,FR", "DE FR" and
# one code per line are the same list whichever form it was typed into.
_LIST_SEPARATORS = re.compile(r"[,;\s]+")


def split_list(text: str | None) -> list[str]:
    """The items of a typed list, trimmed, empty ones dropped, in the order typed."""
    return [item for item in _LIST_SEPARATORS.split(text or "") if item]


def bad_text_reason(value: str) -> str | None:
    """Why ``value`` cannot be stored as text, or None. PostgreSQL refuses NUL in text, and a
    lone surrogate (``"\\ud800"`` from JSON) cannot be encoded as UTF-8 by any database driver."""
    if "\x00" in value:
        return "NUL characters are not allowed"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "invalid Unicode (a lone surrogate)"
    return None


def finite_decimal(raw: Any) -> Decimal | None:
    """``raw`` as a finite Decimal, or None. ``Decimal()`` itself accepts NaN, sNaN, Infinity and
    1e999999 (which overflows any column and every quantize)."""
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not value.is_finite() or abs(value.adjusted()) > 30:
        return None
    return value


class JsonTooDeep(ValueError):
    pass


def json_depth(data: Any) -> int:
    """Nesting depth of a decoded JSON value, computed without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def json_loads_bounded(raw: str, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that never raises RecursionError and refuses non-finite constants
    (NaN/Infinity) and nesting deeper than ``max_depth``: raises ValueError (JSONDecodeError or
    JsonTooDeep) with a message fit for a user."""
    # cheap pre-check: the decoder recurses once per bracket, so count the deepest bracket run
    depth = best = 0
    in_string = escaped = False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            best = max(best, depth)
        elif ch in "]}":
            depth -= 1
    if best > max_depth:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    try:
        data = json.loads(raw, parse_constant=_refuse_constant)
    except RecursionError:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels") from None
    if json_depth(data) > max_depth:
        raise JsonTooDeep(f"nested deeper than {max_depth} levels")
    return data


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def request_id_from_header(value: str | None) -> str:
    """The client's X-Request-ID when it is a short token of safe characters, else a fresh one
    (the id lands in the audit log's 64-character column and in log lines)."""
    if value and _REQUEST_ID_OK.match(value):
        return value
    return uuid.uuid4().hex
