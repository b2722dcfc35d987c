"""RunPod stand-in: REST v2 pods + catalog and the few GraphQL operations the adapter uses.

Built from ``runpod-rest-v2.openapi.json`` (paths, bodies, ``application/problem+json``
errors, ``Retry-After`` on 429) and providers.md §1 for GraphQL (``podRentInterruptable``,
``gpuTypes`` spot prices; errors as HTTP 200 with an ``errors`` list). GPU telemetry is v2's
``runtime.gpus[].util``.

State: ``self.pods`` (id -> dict). A pod is PROVISIONING for the first half of
``boot_seconds``, STARTING for the second, then RUNNING. Knobs beyond the shared faults (see
``tests.standins.base``):

* ``no_capacity`` -- set of ``(gpu_id, dc_id)`` (or ``dc_id``) with availability NONE; a create
  there answers 400 "no longer any instances available";
* ``interrupt(pod_id)`` -- reclaim a spot pod (status EXITED, cost 0, runtime null);
* ``set_util(pod_id, pct)`` -- GPU utilization in ``runtime.gpus[].util``;
* ``balance_exhausted = True`` -- creates answer 402;
* ``reject_creates_with = "detail"`` (or ``{dc_id: "detail"}``) -- creates (there) answer 400 with that
  detail (a cross-field rule);
* ``bill(pod_id, "2026-03-17", gpu=.., cpu=.., disk=..)`` -- what ``GET /v2/billing/pods``
  reports for that pod and UTC day (documented shape: one record per pod per day bucket).
"""

from __future__ import annotations

import random
import secrets
import string
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from .base import Ctx, Fault, StandIn, json_response

PROBLEM = "application/problem+json"
CAPACITY_DETAIL = "There are no longer any instances available with the requested specifications. Please refresh and try again."

# (id, name, pool, memory GB, secure?, community?, price secure, price community, max secure, max community,
#  spot secure, spot community, {dc: base availability})
GPU_TYPES: list[dict[str, Any]] = [
    {"id": "NVIDIA GeForce RTX 4090", "name": "RTX 4090", "pool": "ADA_24", "memory": 24, "secure": True,
     "community": True, "price": {"secure": 0.69, "community": 0.34, "serverless": 1.1},
     "maxCount": {"secure": 8, "community": 8}, "spot": (0.29, 0.2),
     "dcs": {"EU-RO-1": "HIGH", "US-TX-3": "MEDIUM", "CA-MTL-1": "LOW"}},
    {"id": "NVIDIA A100 80GB PCIe", "name": "A100 PCIe", "pool": "AMPERE_80", "memory": 80, "secure": True,
     "community": True, "price": {"secure": 1.64, "community": 1.19}, "maxCount": {"secure": 8, "community": 4},
     "spot": (0.82, 0.6), "dcs": {"US-KS-2": "HIGH", "EU-SE-1": "LOW"}},
    {"id": "NVIDIA A100-SXM4-80GB", "name": "A100 SXM", "pool": "AMPERE_80", "memory": 80, "secure": True,
     "community": True, "price": {"secure": 1.89, "community": 1.39}, "maxCount": {"secure": 8, "community": 8},
     "spot": (0.95, 0.7), "dcs": {"EU-RO-1": "MEDIUM", "US-TX-3": "HIGH"}},
    {"id": "NVIDIA H100 80GB HBM3", "name": "H100 SXM", "pool": "HOPPER_80", "memory": 80, "secure": True,
     "community": True, "price": {"secure": 2.99, "community": 2.69}, "maxCount": {"secure": 8, "community": 8},
     "spot": (1.75, 1.5), "dcs": {"US-TX-3": "LOW", "EUR-IS-1": "MEDIUM"}},
    {"id": "NVIDIA L4", "name": "L4", "pool": "ADA_24", "memory": 24, "secure": True, "community": False,
     "price": {"secure": 0.43, "community": 0.0}, "maxCount": {"secure": 8, "community": 0},
     "spot": (0.22, None), "dcs": {"US-GA-1": "HIGH", "EU-NL-1": "MEDIUM"}},
    {"id": "AMD Instinct MI300X OAM", "name": "MI300X", "pool": None, "memory": 192, "secure": True,
     "community": False, "price": {"secure": 2.49, "community": 0.0}, "maxCount": {"secure": 8, "community": 0},
     "spot": (None, None), "dcs": {"EU-RO-1": "LOW"}},
]
MANUFACTURER = {"AMD Instinct MI300X OAM": "AMD"}
DC_NAMES = {"EU-RO-1": "Europe Romania 1", "US-TX-3": "US Texas 3", "CA-MTL-1": "Canada Montreal 1",
            "US-KS-2": "US Kansas 2", "EU-SE-1": "Europe Sweden 1", "EUR-IS-1": "Europe Iceland 1",
            "US-GA-1": "US Georgia 1", "EU-NL-1": "Europe Netherlands 1"}
LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
# PodRentInterruptableInput: the fields the official SDK's deploy input builder emits (runpod 1.12.0,
# api/mutations/pods.py generate_pod_deployment_mutation) plus bidPerGpu (providers.md §1) and
# containerRegistryAuthId (graphql-spec.runpod.io; the SDK sends it in its template input, templates.py)
RENT_INPUT_FIELDS = {"name", "imageName", "cloudType", "startSsh", "gpuTypeId", "supportPublicIp", "gpuCount",
                     "volumeInGb", "minVcpuCount", "minMemoryInGb", "allowedCudaVersions", "dataCenterId", "dockerArgs",
                     "countryCode", "containerDiskInGb", "ports", "volumeMountPath", "env", "templateId",
                     "networkVolumeId", "minDownload", "minUpload", "bidPerGpu", "containerRegistryAuthId"}


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pod_id() -> str:
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(14))


class RunPodStandIn(StandIn):
    name = "runpod"

    def __init__(self, **kw: Any):
        super().__init__(**kw)
        self.pods: dict[str, dict[str, Any]] = {}
        self.no_capacity: set[Any] = set()
        self.utilization: dict[str, float] = {}
        self.balance_exhausted = False
        self.reject_creates_with: str | dict[str, str] | None = None
        self.registries: dict[str, dict[str, str]] = {}
        self.route("GET", "/v2/pods", self.list_pods, op="list")
        self.route("POST", "/v2/pods", self.create_pod, op="launch")
        self.route("GET", "/v2/pods/{id}", self.get_pod, op="get")
        self.route("DELETE", "/v2/pods/{id}", self.delete_pod, op="terminate")
        self.route("POST", "/v2/pods/{id}/action", self.pod_action, op="stop")
        self.route("GET", "/v2/catalog/gpus", self.list_gpus, op="offers")
        self.route("GET", "/v2/catalog/datacenters", self.list_dcs, op="offers")
        self.route("POST", "/graphql", self.graphql, op="graphql")
        self.billing: dict[tuple[str, str], dict[str, float]] = {}  # (pod id, UTC day) -> amounts
        self.route("GET", "/v2/billing/pods", self.pod_billing, op="billing")
        self.route("GET", "/v2/registries", self.list_registries, op="registries")
        self.route("POST", "/v2/registries", self.create_registry, op="registries")

    # --- auth and errors --------------------------------------------------------------------
    def authorized(self, request: httpx.Request) -> bool:
        if request.url.path.endswith("/graphql") and request.url.params.get("api_key") in self.valid_keys:
            return True
        return super().authorized(request)

    def error(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> httpx.Response:
        titles = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
                  404: "Not Found", 409: "Conflict", 422: "Unprocessable Entity", 429: "Too Many Requests",
                  500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}
        return json_response(status, {"title": titles.get(status, "Error"), "status": status, "detail": message},
                             content_type=PROBLEM, headers=headers)

    def unauthorized(self) -> httpx.Response:
        return self.error(401, "", "invalid or missing API key")

    def rate_limited(self, fault: Fault) -> httpx.Response:
        wait = int(fault.retry_after if fault.retry_after is not None else 1)
        return self.error(429, "", "rate limit exceeded for the minute window", headers={"Retry-After": str(wait)})

    # --- catalog ----------------------------------------------------------------------------
    def availability(self, gpu: dict[str, Any], dc: str, count: int, cloud: str) -> str:
        if dc in self.no_capacity or (gpu["id"], dc) in self.no_capacity:
            return "NONE"
        key = cloud.lower()
        if not gpu[key] or count > gpu["maxCount"][key]:
            return "NONE"
        level = LEVELS.index(gpu["dcs"][dc])
        if count >= 4:
            level -= 1
        if cloud == "COMMUNITY" and count >= 8:
            level -= 1
        return LEVELS[max(0, level)]

    def list_gpus(self, ctx: Ctx) -> httpx.Response:
        include = ctx.query.get("include", "")
        product = ctx.query.get("product", "")
        if bool(include) != bool(product):
            return self.error(400, "", "product is required with include=AVAILABILITY, and valid only with it")
        count = int(ctx.query.get("count", "1"))
        cloud = ctx.query.get("cloud", "SECURE")
        out = []
        for gpu in GPU_TYPES:
            item = {k: gpu[k] for k in ("id", "name", "pool", "memory", "secure", "community", "price", "maxCount")}
            item["manufacturer"] = MANUFACTURER.get(gpu["id"], "NVIDIA")
            if include:
                dcs = [{"id": dc, "name": DC_NAMES[dc], "availability": self.availability(gpu, dc, count, cloud)}
                       for dc in gpu["dcs"]]
                dcs = [d for d in dcs if d["availability"] != "NONE"]
                item["availability"] = max((d["availability"] for d in dcs), key=LEVELS.index, default="NONE")
                if dcs:
                    item["dataCenters"] = dcs
            out.append(item)
        return json_response(200, {"gpus": out})

    def list_dcs(self, ctx: Ctx) -> httpx.Response:
        dcs = []
        for dc, name in DC_NAMES.items():
            region = "EUROPE" if dc.startswith("EU") else "NORTH_AMERICA"
            entry: dict[str, Any] = {"id": dc, "name": name, "region": region, "globalNetwork": False,
                                     "networkVolumeTypes": ["STANDARD"], "compliance": []}
            if "GPU_AVAILABILITY" in ctx.query.get("include", ""):
                entry["gpuAvailability"] = [{"id": g["id"], "name": g["name"], "availability": self.availability(g, dc, 1, "SECURE")}
                                            for g in GPU_TYPES if dc in g["dcs"]]
            dcs.append(entry)
        return json_response(200, {"dataCenters": dcs})

    # --- registry credentials (v2 "Registries": write-only username/password, unique name) ---
    def list_registries(self, ctx: Ctx) -> httpx.Response:
        return json_response(200, {"registries": [{"id": r["id"], "name": r["name"]} for r in self.registries.values()]})

    def create_registry(self, ctx: Ctx) -> httpx.Response:
        body = ctx.body if isinstance(ctx.body, dict) else {}
        unknown = sorted(set(body) - {"name", "username", "password"})
        missing = [k for k in ("name", "username", "password") if not isinstance(body.get(k), str) or not body.get(k)]
        if unknown or missing:
            return self.error(422, "", f"invalid registry: unknown {unknown}, missing {missing}")
        if any(r["name"] == body["name"] for r in self.registries.values()):
            return self.error(400, "", "a registry credential with this name already exists")
        reg = {"id": f"reg_{len(self.registries) + 1:04d}", **{k: body[k] for k in ("name", "username", "password")}}
        self.registries[reg["id"]] = reg
        return json_response(201, {"id": reg["id"], "name": reg["name"]})

    def _registry_ok(self, reg_id: Any) -> bool:
        return reg_id in (None, "") or reg_id in self.registries

    # --- pods -------------------------------------------------------------------------------
    def _gpu(self, gpu_id: str) -> dict[str, Any] | None:
        return next((g for g in GPU_TYPES if g["id"] == gpu_id), None)

    def _place(self, gpu: dict[str, Any], count: int, cloud: str, dcs: list[str]) -> str | None:
        for dc in dcs or list(gpu["dcs"]):
            if dc in gpu["dcs"] and self.availability(gpu, dc, count, cloud) != "NONE":
                return dc
        return None

    def _new_pod(self, *, name: str, image: str, gpu: dict[str, Any], count: int, cloud: str, dc: str,
                 env: dict[str, str], ports: list[str], disk: int, args: str, spot_bid: float | None,
                 persistent: dict[str, Any] | None) -> dict[str, Any]:
        pod_id = _pod_id()
        per_gpu = gpu["price"][cloud.lower()] if spot_bid is None else spot_bid
        pod = {
            "id": pod_id, "name": name, "image": image, "args": args, "disk": disk, "ports": ports, "env": env,
            "registry": None, "gpu": {"id": gpu["id"], "count": count}, "cloud": cloud, "dataCenterId": dc,
            "cudaVersion": "12.8", "template": None, "locked": False, "globalNetworking": {"enabled": False},
            "mounts": {"persistent": persistent} if persistent else {},
            "_created": self.now(), "_cost": round(per_gpu * count, 4), "_spot": spot_bid is not None,
            "_state": "ALIVE", "_ip": f"203.0.113.{random.randint(2, 250)}", "_ssh_port": random.randint(20000, 40000),
        }
        self.pods[pod_id] = pod
        return pod

    def status(self, pod: dict[str, Any]) -> str:
        if pod["_state"] != "ALIVE":
            return pod["_state"]
        age = self.now() - pod["_created"]
        if age < self.boot_seconds / 2:
            return "PROVISIONING"
        if age < self.boot_seconds:
            return "STARTING"
        return "RUNNING"

    def render(self, pod: dict[str, Any]) -> dict[str, Any]:
        status = self.status(pod)
        actions = {"RUNNING": ["stop", "restart", "terminate"], "EXITED": ["start", "terminate"],
                   "ERROR": ["start", "terminate"]}.get(status, ["stop", "terminate"])
        proxy = {"host": "ssh.runpod.io", "port": 22, "username": f"{pod['id']}-64411eb2",
                 "command": f"ssh {pod['id']}-64411eb2@ssh.runpod.io"}
        direct = None
        runtime = None
        if status == "RUNNING":
            if "22/tcp" in pod["ports"]:
                direct = {"host": pod["_ip"], "port": pod["_ssh_port"], "username": "root",
                          "command": f"ssh root@{pod['_ip']} -p {pod['_ssh_port']}"}
            util = int(self.utilization.get(pod["id"], 87))
            runtime = {
                "uptime": int(max(0, self.now() - pod["_created"] - self.boot_seconds)),
                "gpus": [{"util": util, "memoryUtil": 61} for _ in range(pod["gpu"]["count"])],
                "cpu": {"util": 35}, "memory": {"util": 40},
                "ports": [{"private": 22, "public": pod["_ssh_port"], "type": "tcp", "ip": pod["_ip"]}]
                if "22/tcp" in pod["ports"] else [],
            }
        started = pod["_created"] + self.boot_seconds if status == "RUNNING" else None
        return {
            **{k: v for k, v in pod.items() if not k.startswith("_")},
            "status": status, "actions": actions, "ssh": {"proxy": proxy, "direct": direct},
            "cost": pod["_cost"] if status in ("RUNNING", "PROVISIONING", "STARTING") else 0.0,
            "runtime": runtime, "createdAt": _iso(pod["_created"]), "startedAt": _iso(started),
        }

    def create_pod(self, ctx: Ctx) -> httpx.Response:
        body = ctx.body
        if not isinstance(body, dict) or not body.get("name"):
            return self.error(422, "", "name is required")
        known = {"name", "image", "args", "disk", "env", "ports", "registry", "cloud", "cpu", "dataCenterIds",
                 "globalNetworking", "gpu", "mounts", "startJupyter", "startSsh", "templateId"}
        unknown = sorted(set(body) - known)
        if unknown:
            return json_response(422, {"title": "Unprocessable Entity", "status": 422, "detail": "request body is invalid",
                                       "errors": [f"$: additional properties '{u}' not allowed" for u in unknown]},
                                 content_type=PROBLEM)
        gpu = self._gpu((body.get("gpu") or {}).get("id", ""))
        if gpu is None:
            return self.error(400, "", "unknown GPU type")
        if not self._registry_ok(body.get("registry")):
            return self.error(400, "", "registry credential not found")
        if self.balance_exhausted:
            return self.error(402, "", "insufficient balance")
        reject = self.reject_creates_with
        if isinstance(reject, dict):  # per data centre: {dc_id: detail}
            reject = next((reject[dc] for dc in body.get("dataCenterIds") or [] if dc in reject), None)
        if reject:
            return self.error(400, "", reject)
        cloud = body.get("cloud", "SECURE")
        count = int(body["gpu"].get("count", 1))
        if ctx.fault and ctx.fault.kind == "capacity":
            return self.error(400, "", CAPACITY_DETAIL)
        if ctx.fault and ctx.fault.kind == "quota":
            return self.error(402, "", "insufficient balance to deploy this pod")
        dc = self._place(gpu, count, cloud, list(body.get("dataCenterIds") or []))
        if dc is None:
            return self.error(400, "", CAPACITY_DETAIL)
        pod = self._new_pod(name=body["name"], image=body.get("image", ""), gpu=gpu, count=count, cloud=cloud, dc=dc,
                            env=dict(body.get("env") or {}), ports=list(body.get("ports") or []),
                            disk=int(body.get("disk", 50)), args=body.get("args", ""), spot_bid=None,
                            persistent=(body.get("mounts") or {}).get("persistent"))
        pod["registry"] = body.get("registry")
        return json_response(201, self.render(pod))

    def _alive(self, ctx: Ctx) -> dict[str, Any] | None:
        pod = self.pods.get(ctx.params["id"])
        return pod if pod and pod["_state"] != "TERMINATED" else None

    def get_pod(self, ctx: Ctx) -> httpx.Response:
        pod = self._alive(ctx)
        if pod is None:
            return self.error(404, "", "pod not found")
        return json_response(200, self.render(pod))

    def list_pods(self, ctx: Ctx) -> httpx.Response:
        return json_response(200, {"pods": [self.render(p) for p in self.pods.values() if p["_state"] != "TERMINATED"]})

    def delete_pod(self, ctx: Ctx) -> httpx.Response:
        pod = self._alive(ctx)
        if pod is None:
            return self.error(404, "", "pod not found")
        pod["_state"] = "TERMINATED"
        return httpx.Response(204)

    def pod_action(self, ctx: Ctx) -> httpx.Response:
        pod = self._alive(ctx)
        if pod is None:
            return self.error(404, "", "pod not found")
        action = (ctx.body or {}).get("action")
        status = self.status(pod)
        allowed = self.render(pod)["actions"]
        if action not in ("start", "stop", "restart", "terminate"):
            return self.error(422, "", "action must be one of start, stop, restart, terminate")
        if action not in allowed:
            return self.error(409, "", f"cannot {action} a pod in status {status}")
        if action == "terminate":
            pod["_state"] = "TERMINATED"
            return httpx.Response(204)
        if action == "stop":
            pod["_state"] = "EXITED"
        elif action == "start":
            pod["_state"], pod["_created"] = "ALIVE", self.now()
        return json_response(200, self.render(pod))

    # --- knobs ------------------------------------------------------------------------------
    def interrupt(self, pod_id: str) -> None:
        with self.lock:
            self.pods[pod_id]["_state"] = "EXITED"

    def set_util(self, pod_id: str, pct: float) -> None:
        self.utilization[pod_id] = pct

    # --- GraphQL ----------------------------------------------------------------------------
    def graphql(self, ctx: Ctx) -> httpx.Response:
        body = ctx.body or {}
        query = str(body.get("query", ""))
        variables = body.get("variables") or {}
        if "podRentInterruptable" in query:
            return self._gql_rent(variables.get("input") or {}, ctx)
        if "gpuTypes" in query:
            return json_response(200, {"data": {"gpuTypes": [
                {"id": g["id"], "secureSpotPrice": g["spot"][0], "communitySpotPrice": g["spot"][1]} for g in GPU_TYPES]}})
        return json_response(200, {"errors": [{"message": "Cannot query: unsupported operation in stand-in"}]})

    def _gql_rent(self, data: dict[str, Any], ctx: Ctx) -> httpx.Response:
        unknown = sorted(set(data) - RENT_INPUT_FIELDS)
        if unknown:  # GraphQL validates input objects against their type
            return json_response(200, {"errors": [{"message": f'Field "{unknown[0]}" is not defined by type '
                                                              '"PodRentInterruptableInput".'}]})
        gpu = self._gpu(str(data.get("gpuTypeId", "")))
        if gpu is None:
            return json_response(200, {"errors": [{"message": "GPU type not found"}]})
        if ctx.fault and ctx.fault.kind == "capacity":
            return json_response(200, {"errors": [{"message": CAPACITY_DETAIL}]})
        cloud = str(data.get("cloudType", "SECURE"))
        count = int(data.get("gpuCount", 1))
        dc = self._place(gpu, count, cloud, [data["dataCenterId"]] if data.get("dataCenterId") else [])
        bid = float(data.get("bidPerGpu", 0))
        floor = gpu["spot"][0 if cloud == "SECURE" else 1]
        if dc is None or floor is None:
            return json_response(200, {"errors": [{"message": CAPACITY_DETAIL}]})
        if bid < floor:
            return json_response(200, {"errors": [{"message": f"Your bid is below the minimum bid price {floor}"}]})
        if not self._registry_ok(data.get("containerRegistryAuthId")):
            return json_response(200, {"errors": [{"message": "container registry auth not found"}]})
        env = {e["key"]: e["value"] for e in data.get("env") or []}
        ports = [p for p in str(data.get("ports", "")).split(",") if p]
        volume = int(data.get("volumeInGb") or 0)
        pod = self._new_pod(name=str(data.get("name", "")), image=str(data.get("imageName", "")), gpu=gpu, count=count,
                            cloud=cloud, dc=dc, env=env, ports=ports, disk=int(data.get("containerDiskInGb", 50)),
                            args=str(data.get("dockerArgs", "")), spot_bid=bid,
                            persistent={"size": volume, "path": data.get("volumeMountPath", "/workspace")} if volume else None)
        pod["registry"] = data.get("containerRegistryAuthId")
        return json_response(200, {"data": {"podRentInterruptable": {
            "id": pod["id"], "imageName": pod["image"], "env": [f"{k}={v}" for k, v in env.items()],
            "machineId": "m-" + pod["id"][:8], "machine": {"podHostId": f"{pod['id']}-64411eb2"}}}})

    # --- billing (GET /v2/billing/pods, listPodBilling) ---------------------------------------
    def bill(self, pod_id: str, day: str, *, gpu: float = 0.0, cpu: float = 0.0, disk: float = 0.0) -> None:
        self.billing[(pod_id, day)] = {"gpuAmount": gpu, "cpuAmount": cpu, "diskAmount": disk}

    def pod_billing(self, ctx: Ctx) -> httpx.Response:
        def when(name: str) -> datetime | None:
            raw = ctx.query.get(name)
            return datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None

        bucket = ctx.query.get("bucketSize", "day")
        if bucket != "day":
            return self.error(400, "", "the stand-in serves day buckets only")
        start, end = when("startTime"), when("endTime")
        if start is None or end is None or end <= start:
            return self.error(400, "", "startTime and endTime (exclusive) are required, startTime first")
        # the API snaps the window to whole buckets
        start = start.replace(hour=0, minute=0, second=0, microsecond=0)
        if end.time() != datetime.min.time():
            end = end.replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        want = ctx.query.get("podId")
        records, totals = [], {"totalAmount": 0.0, "gpuAmount": 0.0, "cpuAmount": 0.0, "diskAmount": 0.0}
        for (pod_id, day), amounts in sorted(self.billing.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            d0 = datetime.fromisoformat(day).replace(tzinfo=UTC)
            if not (start <= d0 < end) or (want and pod_id != want):
                continue
            total = round(sum(amounts.values()), 6)
            records.append({"startTime": _iso(d0.timestamp()), "endTime": _iso((d0 + timedelta(days=1)).timestamp()),
                            "podId": pod_id, "totalAmount": total, **amounts})
            totals["totalAmount"] += total
            for k, v in amounts.items():
                totals[k] += v
        query = {"startTime": _iso(start.timestamp()), "endTime": _iso(end.timestamp()), "bucketSize": bucket}
        if want:
            query["podId"] = want
        return json_response(200, {"records": records, "metadata": {
            "query": query, "recordCount": len(records), "uniquePodCount": len({r["podId"] for r in records}),
            "totals": {k: round(v, 6) for k, v in totals.items()}}})
