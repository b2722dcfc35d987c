"""Lambda Cloud stand-in (API v1.10), built from ``lambda-cloud.openapi.json``.

Speaks ``/api/v1/instance-types``, ``/instance-operations/launch|terminate``, ``/instances``
and ``/instances/{id}`` with the ``{"data": ...}`` / ``{"error": {code, message,
suggestion}}`` envelopes, bearer or basic auth. Instances boot (``booting`` -> ``active``)
after ``boot_seconds``.

Knobs beyond the shared faults (``tests.standins.base``):

* ``capacity`` -- ``{type name: [region, ...]}`` with capacity (edit to remove capacity);
* ``ssh_keys`` -- names a launch may use (default ``{"default"}``);
* ``instance_quota`` -- at most this many live instances (then ``global/quota-exceeded``);
* ``enforce_rate_limits = True`` -- answer 429 to a launch within 12 s of the previous one
  (the spec documents the limit but no 429 body; this renders the usual error envelope).
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from .base import Ctx, Fault, StandIn, json_response

REGIONS = {
    "us-west-1": "California, USA", "us-east-1": "Virginia, USA", "us-south-1": "Texas, USA",
    "europe-central-1": "Germany", "asia-northeast-1": "Tokyo, Japan",
}

INSTANCE_TYPES: dict[str, dict[str, Any]] = {
    "gpu_1x_a10": {"description": "1x A10 (24 GB PCIe)", "gpu_description": "A10 (24 GB PCIe)", "price_cents_per_hour": 75,
                   "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 1400, "gpus": 1}},
    "gpu_1x_a100_sxm4": {"description": "1x A100 (40 GB SXM4)", "gpu_description": "A100 (40 GB SXM4)",
                         "price_cents_per_hour": 129, "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 512, "gpus": 1}},
    "gpu_8x_a100_80gb_sxm4": {"description": "8x A100 (80 GB SXM4)", "gpu_description": "A100 (80 GB SXM4)",
                              "price_cents_per_hour": 1432, "specs": {"vcpus": 240, "memory_gib": 1800, "storage_gib": 20000, "gpus": 8}},
    "gpu_1x_h100_pcie": {"description": "1x H100 (80 GB PCIe)", "gpu_description": "H100 (80 GB PCIe)",
                         "price_cents_per_hour": 249, "specs": {"vcpus": 26, "memory_gib": 200, "storage_gib": 1000, "gpus": 1}},
    "gpu_8x_h100_sxm5": {"description": "8x H100 (80 GB SXM5)", "gpu_description": "H100 (80 GB SXM5)",
                         "price_cents_per_hour": 2392, "specs": {"vcpus": 208, "memory_gib": 1800, "storage_gib": 22000, "gpus": 8}},
}

DEFAULT_CAPACITY = {
    "gpu_1x_a10": ["us-west-1", "us-east-1"],
    "gpu_1x_a100_sxm4": ["us-west-1", "europe-central-1"],
    "gpu_8x_a100_80gb_sxm4": ["us-south-1"],
    "gpu_1x_h100_pcie": ["us-east-1", "asia-northeast-1"],
    "gpu_8x_h100_sxm5": [],
}

MESSAGES = {
    "global/invalid-api-key": ("API key was invalid, expired, or deleted.", "Check your API key or create a new one, then try again."),
    "global/quota-exceeded": ("Quota exceeded.", "Contact Support to increase your quota."),
    "instance-operations/launch/insufficient-capacity": ("Not enough capacity to fulfill launch request.", None),
    "global/object-does-not-exist": ("Specified instance does not exist.", None),
    "global/invalid-parameters": ("Invalid request data.", None),
}


class LambdaStandIn(StandIn):
    name = "lambda"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.capacity: dict[str, list[str]] = {k: list(v) for k, v in DEFAULT_CAPACITY.items()}
        self.ssh_keys = {"default"}
        self.instances: dict[str, dict[str, Any]] = {}
        self.instance_quota: int | None = None
        self.enforce_rate_limits = False
        self._last_launch: float | None = None
        self.route("GET", "/api/v1/instance-types", self.instance_types, op="offers")
        self.route("POST", "/api/v1/instance-operations/launch", self.launch, op="launch")
        self.route("POST", "/api/v1/instance-operations/terminate", self.terminate, op="terminate")
        self.route("GET", "/api/v1/instances", self.list_instances, op="list")
        self.route("GET", "/api/v1/instances/{id}", self.get_instance, op="get")

    # --- auth and errors --------------------------------------------------------------------
    def authorized(self, request: httpx.Request) -> bool:
        creds = self.basic_credentials(request)
        if creds is not None:  # "Basic base64(key:)"
            return creds[0] in self.valid_keys
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic ") and header[6:].strip() in self.valid_keys:  # "Basic <key>"
            return True
        return super().authorized(request)

    def error(self, status: int, code: str, message: str = "", *, headers: dict[str, str] | None = None) -> httpx.Response:
        default_msg, suggestion = MESSAGES.get(code, (message, None))
        err: dict[str, Any] = {"code": code, "message": message or default_msg}
        if suggestion:
            err["suggestion"] = suggestion
        return json_response(status, {"error": err}, headers=headers)

    def unauthorized(self) -> httpx.Response:
        return self.error(401, "global/invalid-api-key")

    def rate_limited(self, fault: Fault) -> httpx.Response:
        headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else {}
        return self.error(429, "global/rate-limited", "Too many requests.", headers=headers)

    def fault_response(self, fault: Fault, ctx: Ctx) -> httpx.Response | None:
        if fault.kind == "server_error":
            return self.error(fault.status, "provider/internal-unavailable", "Provider unavailable")
        return super().fault_response(fault, ctx)

    # --- endpoints --------------------------------------------------------------------------
    def instance_types(self, ctx: Ctx) -> httpx.Response:
        data = {
            name: {"instance_type": {"name": name, **spec},
                   "regions_with_capacity_available": [{"name": r, "description": REGIONS[r]} for r in self.capacity.get(name, [])]}
            for name, spec in INSTANCE_TYPES.items()
        }
        return json_response(200, {"data": data})

    def status(self, inst: dict[str, Any]) -> str:
        if inst["_state"] != "alive":
            return inst["_state"]
        return "booting" if self.now() - inst["_created"] < self.boot_seconds else "active"

    def render(self, inst: dict[str, Any]) -> dict[str, Any]:
        status = self.status(inst)
        blocked = {"available": False, "reason_code": "vm-has-not-launched", "reason_description": "The instance is booting."}
        ok = {"available": True}
        act = ok if status == "active" else blocked
        out = {k: v for k, v in inst.items() if not k.startswith("_")}
        out.update({
            "status": status,
            "actions": {"migrate": blocked, "rebuild": act, "restart": act, "cold_reboot": act,
                        "terminate": ok if status in ("booting", "active", "unhealthy") else blocked},
        })
        if status == "active":
            out["ip"] = inst["_ip"]
            out["private_ip"] = "10.19.0." + inst["_ip"].rsplit(".", 1)[1]
            out["jupyter_url"] = f"https://jupyter-{inst['id'][:8]}.lambdaspaces.com/?token={inst['_token']}"
            out["jupyter_token"] = inst["_token"]
        return out

    def launch(self, ctx: Ctx) -> httpx.Response:
        body = ctx.body
        required = ("region_name", "instance_type_name", "ssh_key_names")
        known = {*required, "file_system_names", "file_system_mounts", "hostname", "name", "image", "user_data",
                 "tags", "firewall_rulesets"}
        if not isinstance(body, dict) or any(k not in body for k in required) or set(body) - known:
            return self.error(400, "global/invalid-parameters")
        if len(body["ssh_key_names"]) != 1:
            return self.error(400, "global/invalid-parameters", "Exactly one SSH key name must be given.")
        if body["instance_type_name"] not in INSTANCE_TYPES:
            return self.error(404, "global/object-does-not-exist", "Instance type not found.")
        if body["ssh_key_names"][0] not in self.ssh_keys:
            return json_response(404, {"error": {"code": "global/object-does-not-exist", "message": "SSH key not found.",
                                                 "suggestion": "Add the SSH key in the dashboard first."}})
        now = self.now()
        if self.enforce_rate_limits and self._last_launch is not None and now - self._last_launch < 12:
            return self.rate_limited(Fault("rate_limit", retry_after=12 - (now - self._last_launch)))
        self._last_launch = now
        live = [i for i in self.instances.values() if i["_state"] == "alive"]
        if (ctx.fault and ctx.fault.kind == "quota") or (self.instance_quota is not None and len(live) >= self.instance_quota):
            return self.error(400, "global/quota-exceeded")
        if (ctx.fault and ctx.fault.kind == "capacity") or body["region_name"] not in self.capacity.get(body["instance_type_name"], []):
            return self.error(400, "instance-operations/launch/insufficient-capacity")
        iid = secrets.token_hex(16)
        itype = body["instance_type_name"]
        self.instances[iid] = {
            "id": iid, "name": body.get("name", ""), "ssh_key_names": list(body["ssh_key_names"]),
            "file_system_names": list(body.get("file_system_names", [])),
            "region": {"name": body["region_name"], "description": REGIONS.get(body["region_name"], body["region_name"])},
            "instance_type": {"name": itype, **INSTANCE_TYPES[itype]}, "hostname": f"{iid[:8]}.cloud.lambda.ai",
            "tags": [{"key": t["key"], "value": t["value"]} for t in body.get("tags", [])],
            "_state": "alive", "_created": now, "_ip": f"198.51.100.{len(self.instances) % 250 + 2}",
            "_token": secrets.token_hex(8), "_user_data": body.get("user_data", ""),
        }
        return json_response(200, {"data": {"instance_ids": [iid]}})

    def terminate(self, ctx: Ctx) -> httpx.Response:
        ids = (ctx.body or {}).get("instance_ids") if isinstance(ctx.body, dict) else None
        if not isinstance(ids, list):
            return self.error(400, "global/invalid-parameters")
        found = [self.instances.get(i) for i in ids]
        if any(i is None or i["_state"] == "terminated" for i in found):
            return self.error(404, "global/object-does-not-exist")
        for inst in found:
            inst["_state"] = "terminated"
        return json_response(200, {"data": {"terminated_instances": [self.render(i) for i in found]}})

    def list_instances(self, ctx: Ctx) -> httpx.Response:
        return json_response(200, {"data": [self.render(i) for i in self.instances.values() if i["_state"] != "terminated"]})

    def get_instance(self, ctx: Ctx) -> httpx.Response:
        inst = self.instances.get(ctx.params["id"])
        if inst is None:
            return self.error(404, "global/object-does-not-exist")
        return json_response(200, {"data": self.render(inst)})

    # --- knobs ------------------------------------------------------------------------------
    def preempt(self, instance_id: str) -> None:
        with self.lock:
            self.instances[instance_id]["_state"] = "preempted"
