"""Vast.ai stand-in, built from ``vastai.openapi.yaml``.

Speaks ``POST /api/v0/bundles`` (operator-object filters, ``type`` on-demand/ondemand/bid),
``PUT /api/v0/asks/{id}`` (create; ``price`` = bid), ``GET/PUT/DELETE /api/v0/instances/{id}``
and ``GET /api/v1/instances`` (keyset pages, ``select_filters``). Errors follow the spec:
``{"success": false, "error", "msg"}``; 429 is ``{"detail": "API requests too frequent ..."}``
without ``Retry-After``.

State: ``self.machines`` (offers; a rented machine leaves the search) and
``self.instances``. Knobs beyond the shared faults (``tests.standins.base``):

* ``outbid(instance_id)`` -- an interruptible instance loses its bid: paused
  (``actual_status`` "exited", ``intended_status`` still "running", ``status_msg`` outbid);
* ``resume(instance_id)`` -- it wins again and runs;
* ``exit(instance_id)`` -- the container finishes on its own;
* ``set_util(instance_id, pct)`` -- ``gpu_util``, a percent (0..100) as the official CLI prints it;
* ``take_offer(ask_id)`` -- someone else rents the machine (creating on it then answers 404).
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime
from typing import Any

import httpx

from .base import Ctx, Fault, StandIn, json_response

MACHINES: list[dict[str, Any]] = [
    # ask id, gpu, count, gpu_ram MB, $/h on-demand, min bid, geolocation, reliability
    {"id": 4100101, "gpu_name": "RTX 4090", "num_gpus": 1, "gpu_ram": 24564, "dph": 0.35, "min_bid": 0.18, "geo": "Texas, US", "rel": 0.995},
    {"id": 4100102, "gpu_name": "RTX 4090", "num_gpus": 1, "gpu_ram": 24564, "dph": 0.39, "min_bid": 0.2, "geo": "Quebec, CA", "rel": 0.99},
    {"id": 4100103, "gpu_name": "RTX 4090", "num_gpus": 2, "gpu_ram": 24564, "dph": 0.72, "min_bid": 0.36, "geo": "Sweden, SE", "rel": 0.998},
    {"id": 4100201, "gpu_name": "A100 SXM4", "num_gpus": 1, "gpu_ram": 81920, "dph": 1.05, "min_bid": 0.55, "geo": "Oregon, US", "rel": 0.997},
    {"id": 4100202, "gpu_name": "A100 SXM4", "num_gpus": 1, "gpu_ram": 81920, "dph": 1.12, "min_bid": 0.6, "geo": "Germany, DE", "rel": 0.993},
    {"id": 4100203, "gpu_name": "A100 PCIE", "num_gpus": 1, "gpu_ram": 40960, "dph": 0.79, "min_bid": 0.4, "geo": "Norway, NO", "rel": 0.99},
    {"id": 4100301, "gpu_name": "H100 SXM", "num_gpus": 8, "gpu_ram": 81559, "dph": 17.6, "min_bid": 9.5, "geo": "Virginia, US", "rel": 0.999},
    {"id": 4100302, "gpu_name": "H100 SXM", "num_gpus": 1, "gpu_ram": 81559, "dph": 2.2, "min_bid": 1.2, "geo": "Finland, FI", "rel": 0.996},
    {"id": 4100401, "gpu_name": "Tesla T4", "num_gpus": 1, "gpu_ram": 15360, "dph": 0.12, "min_bid": 0.05, "geo": "Japan, JP", "rel": 0.98},
    {"id": 4100501, "gpu_name": "GTX 1080 Ti", "num_gpus": 1, "gpu_ram": 11264, "dph": 0.08, "min_bid": 0.03, "geo": "Poland, PL", "rel": 0.97},
]


SEARCH_TYPES = {"ondemand", "on-demand", "bid", "reserved"}
RUNTYPES = {"ssh", "jupyter", "args", "ssh_proxy", "ssh_direct", "jupyter_proxy", "jupyter_direct"}


class VastStandIn(StandIn):
    name = "vast"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.machines = {m["id"]: dict(m, rented=False) for m in MACHINES}
        self.instances: dict[int, dict[str, Any]] = {}
        self._next_id = 27000001
        self.route("POST", "/api/v0/bundles", self.search, op="offers")
        self.route("PUT", "/api/v0/asks/{id}", self.create, op="launch")
        self.route("GET", "/api/v0/instances/{id}", self.show, op="get")
        self.route("PUT", "/api/v0/instances/{id}", self.manage, op="stop")
        self.route("DELETE", "/api/v0/instances/{id}", self.destroy, op="terminate")
        self.route("GET", "/api/v1/instances", self.show_all, op="list")
        self.charges: dict[tuple[str, str], dict[str, float]] = {}  # (source, UTC day) -> per charge type
        self.route("GET", "/api/v0/charges", self.show_charges, op="billing")

    # --- errors -----------------------------------------------------------------------------
    def error(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        return json_response(status, {"success": False, "error": code, "msg": message}, headers=headers)

    def unauthorized(self) -> httpx.Response:
        return self.error(401, "invalid_api_key", "Invalid or missing API key")

    def rate_limited(self, fault: Fault) -> httpx.Response:
        return json_response(429, {"detail": "API requests too frequent endpoint threshold=2.0"})

    def dispatch(self, request: httpx.Request):
        response, op = super().dispatch(request)
        # the spec documents a refused key on search as 404 (not 401)
        if response is not None and op == "offers" and response.status_code == 401:
            response = json_response(404, {"error": "invalid_api_key", "msg": "Unauthorized - invalid or missing API key"})
        return response, op

    # --- search -----------------------------------------------------------------------------
    @staticmethod
    def _match(value: Any, cond: Any) -> bool:
        if not isinstance(cond, dict):
            return value == cond
        ops = {"eq": lambda a, b: a == b, "neq": lambda a, b: a != b, "gt": lambda a, b: a > b,
               "gte": lambda a, b: a >= b, "lt": lambda a, b: a < b, "lte": lambda a, b: a <= b,
               "in": lambda a, b: a in b, "notin": lambda a, b: a not in b}
        return all(ops[k](value, v) for k, v in cond.items() if k in ops)

    def offer(self, m: dict[str, Any], bid: bool) -> dict[str, Any]:
        price = m["min_bid"] if bid else m["dph"]
        return {
            "id": m["id"], "ask_contract_id": m["id"], "machine_id": m["id"] - 4000000, "host_id": 9000 + m["id"] % 100,
            "gpu_name": m["gpu_name"], "num_gpus": m["num_gpus"], "gpu_ram": m["gpu_ram"],
            "gpu_total_ram": m["gpu_ram"] * m["num_gpus"], "cpu_cores_effective": 8.0 * m["num_gpus"],
            "cpu_ram": 64000 * m["num_gpus"], "disk_space": 500.0, "dph_base": round(price * 0.9, 4),
            "dph_total": price, "min_bid": m["min_bid"], "is_bid": bid, "storage_cost": 0.15,
            "inet_up_cost": 0.002, "inet_down_cost": 0.002, "geolocation": m["geo"], "hosting_type": 1,
            "reliability2": m["rel"], "cuda_max_good": 12.8, "driver_version": "570.86.10", "verification": "verified",
            "rentable": not m["rented"], "rented": m["rented"], "duration": 2592000.0, "end_date": None,
            "public_ipaddr": f"192.0.2.{m['id'] % 250}", "direct_port_count": 20, "static_ip": True,
        }

    def search(self, ctx: Ctx) -> httpx.Response:
        q = ctx.body if isinstance(ctx.body, dict) else {}
        # "ondemand" is the spec's enum, "on-demand" what the official SDK sends: both are Vast's own
        if q.get("type", "on-demand") not in SEARCH_TYPES:
            return self.error(400, "invalid_args", f"type must be one of {sorted(SEARCH_TYPES)}")
        if "allocated_storage" in q and not isinstance(q["allocated_storage"], int | float):
            return self.error(400, "invalid_args", "allocated_storage must be a number (GB)")
        bid = q.get("type") == "bid"
        offers = []
        for m in self.machines.values():
            o = self.offer(m, bid)
            fields = {"verified": True, "rentable": o["rentable"], "rented": o["rented"], "gpu_name": m["gpu_name"].replace(" ", "_"),
                      "num_gpus": m["num_gpus"], "dph_total": o["dph_total"], "reliability": m["rel"],
                      "geolocation": m["geo"].rsplit(", ", 1)[-1], "gpu_ram": m["gpu_ram"]}
            defaults = {"verified": {"eq": True}, "rentable": {"eq": True}, "rented": {"eq": False}}
            conds = {**defaults, **{k: v for k, v in q.items() if k in fields}}
            if all(self._match(fields[k], c) for k, c in conds.items()):
                offers.append(o)
        offers.sort(key=lambda o: o["dph_total"])
        return json_response(200, {"offers": offers[: int(q.get("limit") or 64)]})

    # --- instances --------------------------------------------------------------------------
    def create(self, ctx: Ctx) -> httpx.Response:
        ask = int(ctx.params["id"])
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if not body.get("image"):
            return self.error(400, "invalid_args", "image is required")
        refused = self._refused_create(body)
        if refused:
            return self.error(400, "invalid_args", refused)
        m = self.machines.get(ask)
        if ctx.fault and ctx.fault.kind == "capacity":
            return self.error(410, "offer_unavailable", "Offer is no longer available", )
        if ctx.fault and ctx.fault.kind == "quota":
            return self.error(403, "insufficient_credit", "Your credit balance is too low to rent this machine")
        if m is None or m["rented"]:
            return json_response(404, {"success": False, "error": "no_such_ask", "msg": f"Offer {ask} is no longer available",
                                       "ask_id": ask})
        price = body.get("price")
        if price is not None and float(price) < m["min_bid"]:
            return json_response(400, {"success": False, "error": "invalid_price",
                                       "msg": f"bid {price} is below the minimum {m['min_bid']}", "ask_id": ask})
        m["rented"] = True
        iid = self._next_id
        self._next_id += 1
        self.instances[iid] = {
            "_ask": ask, "_created": self.now(), "_state": "running", "_intended": body.get("target_state", "running"),
            "_bid": price is not None, "_price": float(price) if price is not None else m["dph"], "_util": 83.0,
            "_label": body.get("label"), "_image": body["image"], "_env": body.get("env", ""), "_msg": "",
            "_port": random.randint(30000, 40000), "_image_login": body.get("image_login"),
        }
        return json_response(200, {"success": True, "new_contract": iid})

    @staticmethod
    def _refused_create(body: dict[str, Any]) -> str:
        """What PUT /api/v0/asks/{id} refuses (vastai.openapi.yaml request schema; ``env`` also as
        the object the official SDK sends)."""
        env = body.get("env")
        if env is not None and not isinstance(env, str | dict):
            return "env must be a string of Docker flags or an object"
        if isinstance(env, dict) and not all(isinstance(v, str) for v in env.values()):
            return "env values must be strings"
        if body.get("runtype") is not None and body["runtype"] not in RUNTYPES:
            return f"runtype must be one of {sorted(RUNTYPES)}"
        if body.get("target_state") is not None and body["target_state"] not in ("running", "stopped"):
            return "target_state must be running or stopped"
        price = body.get("price")
        if price is not None and not (isinstance(price, int | float) and 0.001 <= price <= 128.0):
            return "price must be a number between 0.001 and 128"
        if body.get("args") is not None and not (isinstance(body["args"], list) and all(isinstance(a, str) for a in body["args"])):
            return "args must be a list of strings"
        return ""

    def render(self, iid: int) -> dict[str, Any]:
        inst = self.instances[iid]
        m = self.machines[inst["_ask"]]
        booting = self.now() - inst["_created"] < self.boot_seconds
        if inst["_intended"] == "stopped" and inst["_state"] == "running":
            actual = "exited"
        elif inst["_state"] == "running":
            actual = "loading" if booting else "running"
        else:
            actual = inst["_state"]
        running = actual == "running"
        return {
            "id": iid, "actual_status": actual, "intended_status": inst["_intended"],
            "cur_state": "running" if running else "stopped", "next_state": inst["_intended"],
            "label": inst["_label"], "image_uuid": inst["_image"], "status_msg": inst["_msg"] or None,
            "ssh_host": f"ssh{iid % 9}.vast.ai", "ssh_port": inst["_port"], "machine_id": m["id"] - 4000000,
            "public_ipaddr": f"192.0.2.{m['id'] % 250}", "geolocation": m["geo"], "num_gpus": m["num_gpus"],
            "gpu_name": m["gpu_name"], "gpu_ram": m["gpu_ram"], "gpu_totalram": m["gpu_ram"] * m["num_gpus"],
            "gpu_util": inst["_util"] if running else None, "gpu_temp": 61.0 if running else None,
            "cpu_util": 0.2 if running else 0.0, "is_bid": inst["_bid"], "min_bid": m["min_bid"],
            "dph_total": inst["_price"], "dph_base": round(inst["_price"] * 0.9, 4), "storage_cost": 0.15,
            "start_date": inst["_created"], "duration": 2592000.0, "uptime_mins": None if booting else 1.0,
            "verification": "verified", "rentable": False, "host_id": 9000 + m["id"] % 100,
        }

    def _inst(self, ctx: Ctx) -> int | None:
        try:
            iid = int(ctx.params["id"])
        except ValueError:
            return None
        return iid if iid in self.instances else None

    def show(self, ctx: Ctx) -> httpx.Response:
        iid = self._inst(ctx)
        if iid is None:
            return self.error(400, "no_such_instance", "Instance not found or not owned by you")
        return json_response(200, {"instances": self.render(iid)})

    def manage(self, ctx: Ctx) -> httpx.Response:
        iid = self._inst(ctx)
        if iid is None:
            return self.error(404, "no_such_instance", "Instance not found")
        body = ctx.body if isinstance(ctx.body, dict) else {}
        if body.get("state") in ("stopped", "running"):
            self.instances[iid]["_intended"] = body["state"]
        if "label" in body:
            self.instances[iid]["_label"] = body["label"]
        return json_response(200, {"success": True})

    def destroy(self, ctx: Ctx) -> httpx.Response:
        iid = self._inst(ctx)
        if iid is None:
            return json_response(404, {"success": False, "error": "no_such_instance", "msg": "Instance not found"})
        inst = self.instances.pop(iid)
        self.machines[inst["_ask"]]["rented"] = False
        return json_response(200, {"success": True, "msg": "destroying instance"})

    def show_all(self, ctx: Ctx) -> httpx.Response:
        try:
            filters = json.loads(ctx.query.get("select_filters") or "{}")
        except ValueError:
            return self.error(400, "invalid_request", "select_filters is not JSON")
        limit = max(1, min(25, int(ctx.query.get("limit") or 25)))
        after = int(ctx.query.get("after_token") or 0)
        rows = [self.render(i) for i in sorted(self.instances) if i > after]
        rows = [r for r in rows if all(self._match(r.get(k), c) for k, c in filters.items())]
        page = rows[:limit]
        more = len(rows) > limit
        labels: dict[str, int] = {}
        for r in rows:
            labels[r["label"] or ""] = labels.get(r["label"] or "", 0) + 1
        return json_response(200, {"success": True, "instances_found": len(page), "total_instances": len(rows),
                                   "label_counts": labels, "next_token": str(page[-1]["id"]) if more else None,
                                   "instances": page})

    # --- knobs ------------------------------------------------------------------------------
    def outbid(self, iid: int | str) -> None:
        inst = self.instances[int(iid)]
        inst["_state"], inst["_msg"] = "exited", "Instance paused: outbid by a higher bid"

    def resume(self, iid: int | str) -> None:
        inst = self.instances[int(iid)]
        inst["_state"], inst["_msg"] = "running", ""

    def exit(self, iid: int | str) -> None:
        inst = self.instances[int(iid)]
        inst["_state"], inst["_msg"] = "exited", "container exited with code 0"

    def set_util(self, iid: int | str, pct: float) -> None:
        self.instances[int(iid)]["_util"] = pct

    def take_offer(self, ask: int | str) -> None:
        self.machines[int(ask)]["rented"] = True

    # --- charges (GET /api/v0/charges, showCharges) -------------------------------------------
    def charge(self, source: str, day: str, *, gpu: float = 0.0, disk: float = 0.0, bwd: float = 0.0,
               bwu: float = 0.0) -> None:
        """What the charges endpoint reports for contract ``source`` (``instance-<id>``,
        ``volume-<id>``) on that UTC day."""
        self.charges[(source, day)] = {"gpu": gpu, "disk": disk, "bwd": bwd, "bwu": bwu}

    def show_charges(self, ctx: Ctx) -> httpx.Response:
        try:
            filters = json.loads(ctx.query.get("select_filters") or "{}")
            gte, lte = int(filters["day"]["gte"]), int(filters["day"]["lte"])
        except (ValueError, KeyError, TypeError):
            return self.error(400, "", "Must provide both 'day' gte and lte filters for instance charges")
        types = (filters.get("type") or {}).get("in")
        limit = max(1, min(500, int(ctx.query.get("limit") or 100)))
        try:
            offset = int(base64.b64decode(ctx.query["after_token"]).decode()) if ctx.query.get("after_token") else 0
        except ValueError:
            return json_response(400, {"success": False, "error": "invalid_token", "msg": "Invalid pagination token"})
        contracts: dict[str, list[tuple[int, dict[str, float]]]] = {}
        for (source, day), amounts in self.charges.items():
            t0 = int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp())
            kind = source.split("-", 1)[0]
            if gte <= t0 <= lte and (not types or kind in types):
                contracts.setdefault(source, []).append((t0, amounts))
        rows = []
        for source in sorted(contracts):
            days = sorted(contracts[source], key=lambda d: d[0])
            start, end = days[0][0], days[-1][0] + 86400
            items = []
            for kind in ("gpu", "disk", "bwd", "bwu"):
                amount = round(sum(a[kind] for _, a in days), 3)
                if amount:
                    items.append({"start": start, "end": end, "type": kind, "source": None,
                                  "description": f"{kind} charges", "amount": amount, "metadata": {}, "items": []})
            hours = (end - start) // 3600
            rows.append({"start": start, "end": end, "type": source.split("-", 1)[0], "source": source,
                         "description": f"{source.split('-', 1)[1]} Charges - {hours // 24} days",
                         "amount": round(sum(i["amount"] for i in items), 3), "metadata": {}, "items": items})
        page = rows[offset:offset + limit]
        more = offset + limit < len(rows)
        return json_response(200, {"success": True, "count": len(page), "total": len(rows),
                                   "next_token": base64.b64encode(str(offset + limit).encode()).decode() if more else None,
                                   "results": page})
