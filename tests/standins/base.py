"""Common machinery of the provider stand-ins: routing, auth, fault injection, recording.

A stand-in is a stateful fake of one provider API. The same object can be used

* in-process: ``httpx.MockTransport(standin.handle)`` (or ``standin.transport()``), passed to
  an adapter as ``transport=``;
* served on 127.0.0.1: ``tests.standins.server.serve(standin)`` runs it as a WSGI app in a
  thread, so an account can point at it through ``settings["base_url"]``.

Every exchange is recorded in ``standin.exchanges`` (``httpx.Request``/``httpx.Response``
pairs) so that contract tests can validate both directions against the provider's spec.

Fault injection (shared by every stand-in; provider modules render each fault in their own
error shape)::

    standin.fail_next("capacity", op="launch")          # the next launch reports no capacity
    standin.fail_next("quota", op="launch")
    standin.fail_next("rate_limit", retry_after=2)      # 429 (+ Retry-After where the API sends one)
    standin.fail_next("server_error", times=3)          # 5xx, three times in a row
    standin.fail_next("timeout_after_create", op="launch")  # create the resource, then never answer
    standin.fail_next("timeout")                        # never answer (nothing is created)
    standin.fail_next("invalid_key")                    # 401 whatever the key
    standin.valid_keys = {"other"}                      # revoke the key for good
    standin.latency = 0.3                               # every answer takes 300 ms

``op`` is the stand-in's name for an operation: ``offers``, ``launch``, ``get``, ``list``,
``terminate``, ``stop``, ``telemetry`` (or None: any request). A "timeout" raises
``httpx.ReadTimeout`` in-process; served, the answer is held back ``timeout_seconds``
(default 3 s) so that a client with a shorter timeout gives up.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

FAULTS = ("capacity", "quota", "rate_limit", "server_error", "timeout_after_create", "timeout", "invalid_key")


@dataclass
class Fault:
    kind: str
    op: str | None = None
    times: int = 1
    retry_after: float | None = None
    status: int = 503


@dataclass
class Exchange:
    request: httpx.Request
    response: httpx.Response | None
    op: str = ""


class HoldBack(Exception):
    """Raised by a handler to simulate a timeout; carries the response it would have sent."""

    def __init__(self, response: httpx.Response | None = None):
        super().__init__("held back")
        self.response = response


@dataclass
class Route:
    method: str
    pattern: re.Pattern[str]
    handler: Callable[..., httpx.Response]
    op: str = ""
    auth: bool = True


@dataclass
class Ctx:
    """What a handler gets: the request, its path params, parsed body and the pending fault."""

    request: httpx.Request
    params: dict[str, str]
    fault: Fault | None = None
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)


def json_response(status: int, body: Any, *, content_type: str = "application/json",
                  headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers={"Content-Type": content_type, **(headers or {})})


def new_id(n: int = 12) -> str:
    return secrets.token_hex(n // 2 + 1)[:n]


class StandIn:
    """Base class. Subclasses set ``name``, build ``self.routes`` and render errors."""

    name = "standin"

    def __init__(self, *, api_keys: tuple[str, ...] = ("test-key",), boot_seconds: float = 0.0,
                 clock: Callable[[], float] = time.time):
        self.lock = threading.RLock()
        self.valid_keys: set[str] = set(api_keys)
        self.boot_seconds = boot_seconds
        self.clock = clock
        self.faults: list[Fault] = []
        self.exchanges: list[Exchange] = []
        self.latency = 0.0
        self.timeout_seconds = 3.0
        self.routes: list[Route] = []

    # --- configuration ---------------------------------------------------------------------
    def route(self, method: str, path: str, handler: Callable[..., httpx.Response], op: str = "", auth: bool = True) -> None:
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", path) + "/?$"
        self.routes.append(Route(method.upper(), re.compile(regex), handler, op, auth))

    def fail_next(self, kind: str, *, op: str | None = None, times: int = 1, retry_after: float | None = None,
                  status: int = 503) -> None:
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {FAULTS}")
        with self.lock:
            self.faults.append(Fault(kind, op, times, retry_after, status))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    # --- auth (override per provider) --------------------------------------------------------
    def authorized(self, request: httpx.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return header[7:].strip() in self.valid_keys
        return False

    @staticmethod
    def basic_credentials(request: httpx.Request) -> tuple[str, str] | None:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user, password

    # --- error rendering (override per provider) ---------------------------------------------
    def error(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return json_response(status, {"error": code, "message": message}, headers=headers)

    def unauthorized(self) -> httpx.Response:
        return self.error(401, "unauthorized", "invalid API key")

    def fault_response(self, fault: Fault, ctx: Ctx) -> httpx.Response | None:
        """Render a fault that the handler does not deal with itself."""
        if fault.kind == "invalid_key":
            return self.unauthorized()
        if fault.kind == "rate_limit":
            return self.rate_limited(fault)
        if fault.kind == "server_error":
            return self.error(fault.status, "internal_error", "the service is temporarily unavailable")
        if fault.kind == "timeout":
            raise HoldBack(None)
        return None  # capacity / quota / timeout_after_create: the handler decides

    def rate_limited(self, fault: Fault) -> httpx.Response:
        headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {}
        return self.error(429, "rate_limited", "too many requests", headers=headers)

    # --- dispatch --------------------------------------------------------------------------
    def _take_fault(self, op: str) -> Fault | None:
        for fault in self.faults:
            if fault.op is None or fault.op == op:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def dispatch(self, request: httpx.Request) -> tuple[httpx.Response | None, str]:
        """The provider's answer (None = held back, i.e. a timeout) and the op name."""
        path = request.url.path
        for route in self.routes:
            if route.method != request.method:
                continue
            m = route.pattern.match(path)
            if not m:
                continue
            with self.lock:
                fault = self._take_fault(route.op)
                ctx = Ctx(request=request, params=m.groupdict(), fault=fault,
                          query={k: v for k, v in request.url.params.multi_items()})
                try:
                    if route.auth and not self.authorized(request):
                        return self.unauthorized(), route.op
                    if fault is not None:
                        rendered = self.fault_response(fault, ctx)
                        if rendered is not None:
                            return rendered, route.op
                    ctx.body = self.parse_body(request)
                    response = route.handler(ctx)
                    if fault is not None and fault.kind == "timeout_after_create":
                        raise HoldBack(response)
                    return response, route.op
                except HoldBack:
                    return None, route.op
        return self.error(404, "not_found", f"no route for {request.method} {path}"), ""

    @staticmethod
    def parse_body(request: httpx.Request) -> Any:
        raw = request.content
        if not raw:
            return None
        ctype = request.headers.get("Content-Type", "")
        if "json" in ctype:
            try:
                return json.loads(raw)
            except ValueError:
                return None
        if "x-www-form-urlencoded" in ctype:
            from urllib.parse import parse_qs

            return parse_qs(raw.decode(), keep_blank_values=True)
        return raw

    def handle(self, request: httpx.Request) -> httpx.Response:
        """httpx transport entry point (in-process)."""
        request.read()
        if self.latency:
            time.sleep(self.latency)
        response, op = self.dispatch(request)
        self.exchanges.append(Exchange(request, response, op))
        if response is None:
            raise httpx.ReadTimeout("stand-in held the answer back", request=request)
        response.request = request
        return response

    def requests(self, op: str | None = None) -> list[httpx.Request]:
        return [e.request for e in self.exchanges if op is None or e.op == op]

    # --- helpers for subclasses ---------------------------------------------------------------
    def now(self) -> float:
        return self.clock()
