"""RunPod adapter: REST v2 for pods and the GPU catalog, GraphQL only where v2 has no answer.

* REST v2 (``https://api.runpod.io/v2/...``, bearer key) serves the GPU catalog with
  availability per data centre (``GET /v2/catalog/gpus?include=AVAILABILITY&product=POD``),
  and pod create/get/list/delete/action. REST v1 was retired on 2026-11-15 and is not used.
* GraphQL (``POST {base}/graphql``) is used only for what v2 cannot do: interruptible (spot)
  pods -- ``podRentInterruptable`` with ``bidPerGpu`` -- and their spot prices. GPU telemetry
  comes from v2: ``Pod.runtime.gpus[].util`` (schema ``PodGpuUtilization``, an integer percent,
  runpod-rest-v2.openapi.json), on the same ``GET /v2/pods/{id}`` as the pod's status.

Idempotency: the pod UUID goes into the pod's env (``PROVISIONER_POD``) and its name; a
launch first lists the account's pods and returns the one already carrying the tag. v2 pods
have no interruptible flag, so spot pods also carry ``PROVISIONER_MARKET=spot``: a spot pod in
``EXITED`` was reclaimed (RunPod stops it with a 5 s SIGTERM warning), an on-demand one was
stopped.

Prices in the catalog are per single GPU (USD/h); offers quote per pod-hour (x count).
Errors arrive as ``application/problem+json`` ``{title, status, detail, errors?}``. On create,
the v2 spec (POST /v2/pods, "Which failures are worth retrying") says: 422 = fix the request,
never retry; 400 = "try your next candidate" (a cross-field rule or no capacity: capacity has no
code of its own); 402 = stop; 403 = skip this candidate; 429 = back off; 5xx = retry.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import shlex
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from providers.catalog import canonical_gpu_class, region_country

from .base import (
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_TERMINATED,
    CapacityUnavailable,
    CredentialField,
    GpuSample,
    InvalidCredentials,
    LaunchRequest,
    LaunchTimeout,
    NotFound,
    OfferData,
    PermanentError,
    ProviderError,
    ProviderInfo,
    QuotaExceeded,
    RemotePod,
    StopNotPossible,
    TransientError,
)
from .http import run_concurrently
from .image_registry import registry_login
from .rest import RestAdapter

logger = logging.getLogger(__name__)

TAG_ENV = "PROVISIONER_POD"
MARKET_ENV = "PROVISIONER_MARKET"
DEFAULT_COUNTS = (1, 2, 4, 8)
DEFAULT_CLOUDS = ("SECURE", "COMMUNITY")
CENT = Decimal("0.000001")
# RunPod's capacity message has no code; these fragments identify it in ``detail``.
CAPACITY_HINTS = ("no longer any instances available", "not enough", "no capacity", "insufficient capacity",
                  "no available", "out of stock")

_STATE = {
    "PROVISIONING": REMOTE_PROVISIONING,
    "STARTING": REMOTE_PROVISIONING,
    "RUNNING": REMOTE_RUNNING,
    "ERROR": REMOTE_FAILED,
    "TERMINATED": REMOTE_TERMINATED,
}

SPOT_PRICES_QUERY = "query SpotPrices { gpuTypes { id secureSpotPrice communitySpotPrice } }"
RENT_INTERRUPTABLE = (
    "mutation RentInterruptable($input: PodRentInterruptableInput!) "
    "{ podRentInterruptable(input: $input) { id imageName env machineId machine { podHostId } } }"
)


def _is_capacity(text: str) -> bool:
    low = text.lower()
    return any(h in low for h in CAPACITY_HINTS)


class CandidateRejected(ProviderError):
    """A create answered 400 for a reason other than recognised capacity words: the v2 spec says
    to try the next candidate; the detail is kept so the launch path shows why."""

    failover = True


def map_error(response: httpx.Response, body: Any) -> ProviderError | None:
    """Map a v2 problem+json error to a typed error."""
    detail = ""
    if isinstance(body, dict):
        detail = str(body.get("detail") or body.get("title") or "")
    status = response.status_code
    creating = response.request.method == "POST" and response.request.url.path.endswith("/v2/pods")
    if status == 400 and _is_capacity(detail):
        return CapacityUnavailable(detail, status=status)
    if status == 400 and creating:
        # POST /v2/pods, "Which failures are worth retrying": 400 -> "Try your next candidate."
        return CandidateRejected(detail or "request rejected for this GPU and data centre", status=status)
    if status == 402:
        return QuotaExceeded(detail or "insufficient balance", status=status)
    if status == 403 and creating:
        # the key is fine but this account cannot use the pool: skip the candidate
        return QuotaExceeded(detail or "no access to this GPU pool", status=status)
    if status in (400, 409, 422):
        return PermanentError(detail or response.reason_phrase, status=status)
    return None


class RunPodAdapter(RestAdapter):
    default_base_url = "https://api.runpod.io"
    error_mapper = staticmethod(map_error)

    info = ProviderInfo(
        kind="runpod",
        label="RunPod",
        description="GPU pods in 30+ data centres (secure and community cloud), per-second billing, "
                    "interruptible (spot) pods by bid, live GPU telemetry.",
        supports_spot=True,
        private_registry=True,  # a RunPod registry credential named by the pod
        spot_bids=True,  # podRentInterruptable bidPerGpu; the listed spot price is the floor
        can_stop=True,
        credential_fields=(
            CredentialField("api_key", "API key", help="RunPod console → Settings → API Keys. "
                            "Needs read/write access to pods."),
        ),
        regions_hint="US, CA, EU (RO, SE, IS, NL, CZ, NO), AP",
    )

    # --- plumbing (the base's client: the API key as a bearer token) --------------------------
    def graphql(self, query: str, variables: dict[str, Any] | None = None, *, idempotent: bool = True) -> dict[str, Any]:
        """POST {base}/graphql; GraphQL reports errors with HTTP 200 and an ``errors`` list."""
        payload: dict[str, Any] = {"query": query}
        if variables is not None:
            payload["variables"] = variables
        body = self.client.post_json("/graphql", json=payload, idempotent=idempotent) or {}
        errors = body.get("errors") or []
        if errors:
            message = "; ".join(str(e.get("message", e)) for e in errors if isinstance(e, dict)) or str(errors)
            low = message.lower()
            if _is_capacity(message):
                raise CapacityUnavailable(message)
            if "unauthorized" in low or "api key" in low or "not authorized" in low:
                raise InvalidCredentials(message)
            if "quota" in low or "balance" in low:
                raise QuotaExceeded(message)
            raise PermanentError(message)
        return body.get("data") or {}

    # --- interface --------------------------------------------------------------------------
    def verify(self) -> None:
        if not self.api_key:
            raise InvalidCredentials("an API key is required")
        self.client.request("GET", "/v2/pods")

    def list_offers(self) -> list[OfferData]:
        counts = tuple(int(c) for c in self.settings.get("gpu_counts", DEFAULT_COUNTS))
        clouds = tuple(self.settings.get("clouds", DEFAULT_CLOUDS))
        combos = [(cloud, count) for cloud in clouds for count in counts]
        # availability depends on cloud and count: one catalogue read each, side by side
        calls: list = [functools.partial(self._catalog, cloud, count) for cloud, count in combos]
        want_spot = bool(self.settings.get("spot", True))
        if want_spot:
            calls.append(self._spot_prices)
        results = run_concurrently(calls)
        offers: list[OfferData] = []
        for (cloud, count), gpus in zip(combos, results, strict=False):
            for gpu in gpus:
                offers.extend(self._gpu_offers(gpu, cloud, count))
        if want_spot:
            offers.extend(self._spot_offers(offers, results[-1]))
        return offers

    def _catalog(self, cloud: str, count: int) -> list[dict[str, Any]]:
        body = self.client.get_json("/v2/catalog/gpus", params={
            "include": "AVAILABILITY", "product": "POD", "count": count, "cloud": cloud})
        return list((body or {}).get("gpus", []))

    def _gpu_offers(self, gpu: dict[str, Any], cloud: str, count: int) -> list[OfferData]:
        key = cloud.lower()
        if not gpu.get(key) or count > int((gpu.get("maxCount") or {}).get(key) or 0):
            return []
        gpu_class = canonical_gpu_class(str(gpu.get("id", "")), gpu.get("memory")) or \
            canonical_gpu_class(str(gpu.get("name", "")), gpu.get("memory"))
        per_gpu = (gpu.get("price") or {}).get(key)
        if gpu_class is None or not per_gpu:
            return []
        price = (Decimal(str(per_gpu)) * count).quantize(CENT, ROUND_HALF_UP)
        out = []
        for dc in gpu.get("dataCenters") or []:
            level = str(dc.get("availability", ""))
            out.append(OfferData(
                gpu_class=gpu_class, gpu_count=count, region=str(dc["id"]), country=region_country(str(dc["id"])),
                price_per_hour=price, currency="USD", spot=False, available=0 if level == "NONE" else None,
                availability=level, instance_type=f"{cloud}:{gpu['id']}", gpu_memory_gb=gpu.get("memory"),
                supports_volumes=("ephemeral", "persistent", "network"),
                extra={"cloud": cloud, "gpu_type_id": gpu["id"], "data_center": dc.get("name", "")},
            ))
        return out

    def _spot_prices(self) -> dict[str, dict[str, Any]]:
        """Spot prices exist only in GraphQL; a failure there costs the spot offers, not the poll."""
        try:
            data = self.graphql(SPOT_PRICES_QUERY)
        except ProviderError as exc:
            logger.warning("runpod spot prices unavailable: %s", exc)
            return {}
        return {g["id"]: g for g in data.get("gpuTypes") or [] if isinstance(g, dict) and g.get("id")}

    def _spot_offers(self, on_demand: list[OfferData], spot: dict[str, dict[str, Any]]) -> list[OfferData]:
        out = []
        for o in on_demand:
            prices = spot.get(o.extra["gpu_type_id"])
            per_gpu = prices and prices.get("secureSpotPrice" if o.extra["cloud"] == "SECURE" else "communitySpotPrice")
            if not per_gpu:
                continue
            price = (Decimal(str(per_gpu)) * o.gpu_count).quantize(CENT, ROUND_HALF_UP)
            out.append(OfferData(
                gpu_class=o.gpu_class, gpu_count=o.gpu_count, region=o.region, country=o.country,
                price_per_hour=price, currency="USD", spot=True, available=o.available, availability=o.availability,
                instance_type=o.instance_type, gpu_memory_gb=o.gpu_memory_gb, supports_volumes=o.supports_volumes,
                extra={**o.extra, "bid_per_gpu": str(per_gpu)},
            ))
        return out

    def launch(self, request: LaunchRequest) -> RemotePod:
        existing = self._find_by_tag(request.tag)
        if existing is not None:
            return existing
        cloud, _, gpu_id = request.instance_type.partition(":")
        if not gpu_id:
            raise PermanentError(f"RunPod needs a GPU type id (instance_type), got {request.instance_type!r}")
        registry_id = self._registry_id(request)
        try:
            if request.spot:
                return self._launch_spot(request, cloud, gpu_id, registry_id)
            pod = self.client.post_json("/v2/pods", json=self._create_body(request, cloud, gpu_id, registry_id),
                                        idempotent=False)
            return self._remote(pod)
        except (LaunchTimeout, TransientError) as exc:
            # A timeout or 5xx after the create may still have created the pod: look by tag.
            try:
                found = self._find_by_tag(request.tag)
            except ProviderError:
                found = None
            if found is not None:
                return found
            raise exc

    def _registry_id(self, request: LaunchRequest) -> str | None:
        """The RunPod registry credential for a private image: reused by name, created once.

        RunPod keeps registry logins as account objects (REST v2 ``GET/POST /v2/registries``,
        ``CreateRegistryRequest`` {name, username, password}, write-only; v1 calls them
        ``containerregistryauth`` and says "The name must be unique") and pulls the image from
        its own reference's host with them, so the pod names the credential, not the host. The
        name carries a digest of host + login: a rotated key gets a new credential."""
        login = registry_login(request)
        if login is None:
            return None
        digest = hashlib.sha256(f"{login.host}\0{login.username}\0{login.password}".encode()).hexdigest()[:12]
        name = f"provisioner-{login.host}-{digest}"[:120]

        def find() -> str | None:
            listed = self.client.get_json("/v2/registries") or {}
            return next((str(r["id"]) for r in listed.get("registries") or [] if r.get("name") == name and r.get("id")), None)

        found = find()
        if found:
            return found
        try:
            created = self.client.post_json("/v2/registries", json={"name": name, "username": login.username,
                                                                     "password": login.password}, idempotent=False)
        except PermanentError:
            found = find()  # a concurrent launch created it first (the name is unique)
            if found:
                return found
            raise
        return str((created or {}).get("id") or "") or None

    def _env(self, request: LaunchRequest) -> dict[str, str]:
        env = {str(k): str(v) for k, v in request.env.items()}
        env[TAG_ENV] = request.tag
        if request.spot:
            env[MARKET_ENV] = "spot"
        return env

    @staticmethod
    def _ports(request: LaunchRequest) -> list[str]:
        return [f"{int(p['port'])}/{'http' if p.get('protocol', 'http') == 'http' else 'tcp'}" for p in request.ports]

    @staticmethod
    def _args(request: LaunchRequest) -> str:
        return shlex.join([*request.command, *request.args]) if (request.command or request.args) else ""

    def _persistent(self, request: LaunchRequest) -> dict[str, Any] | None:
        for v in request.volumes:
            if v.get("kind") == "persistent":
                return {"size": max(10, int(v.get("size_gb", 20))), "path": str(v.get("mount_path", "/workspace"))}
        return None

    def _create_body(self, request: LaunchRequest, cloud: str, gpu_id: str, registry_id: str | None = None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self._name(request), "image": request.image, "cloud": cloud or "SECURE",
            "gpu": {"id": gpu_id, "count": request.gpu_count}, "dataCenterIds": [request.region] if request.region else [],
            "disk": int(request.disk_gb), "env": self._env(request), "startSsh": True,
        }
        ports = self._ports(request)
        if ports:
            body["ports"] = ports
        args = self._args(request)
        if args:
            body["args"] = args
        persistent = self._persistent(request)
        if persistent:
            body["mounts"] = {"persistent": persistent}
        if registry_id:
            body["registry"] = registry_id  # v2 ContainerConfig.registry: "Container registry credential ID"
        return body

    @staticmethod
    def _name(request: LaunchRequest) -> str:
        return f"{request.name}-{request.tag[:8]}" if request.tag[:8] not in request.name else request.name

    def _launch_spot(self, request: LaunchRequest, cloud: str, gpu_id: str, registry_id: str | None = None) -> RemotePod:
        bid = request.bid_price_per_hour
        if bid is None:
            raise PermanentError("an interruptible RunPod pod needs a bid price")
        bid_per_gpu = float((Decimal(bid) / max(1, request.gpu_count)).quantize(Decimal("0.0001"), ROUND_HALF_UP))
        persistent = self._persistent(request)
        pod_input: dict[str, Any] = {
            "bidPerGpu": bid_per_gpu, "cloudType": cloud or "SECURE", "gpuCount": request.gpu_count,
            "gpuTypeId": gpu_id, "name": self._name(request), "imageName": request.image,
            "containerDiskInGb": int(request.disk_gb), "volumeInGb": persistent["size"] if persistent else 0,
            "env": [{"key": k, "value": v} for k, v in self._env(request).items()], "startSsh": True,
        }
        if persistent:
            pod_input["volumeMountPath"] = persistent["path"]
        if request.region:
            pod_input["dataCenterId"] = request.region
        ports = self._ports(request)
        if ports:
            pod_input["ports"] = ",".join(ports)
        args = self._args(request)
        if args:
            pod_input["dockerArgs"] = args
        if registry_id:
            # PodRentInterruptableInput.containerRegistryAuthId (graphql-spec.runpod.io; the same
            # field as REST v1 PodCreateInput.containerRegistryAuthId, "Registry credentials ID")
            pod_input["containerRegistryAuthId"] = registry_id
        data = self.graphql(RENT_INTERRUPTABLE, {"input": pod_input}, idempotent=False)
        created = data.get("podRentInterruptable") or {}
        if not created.get("id"):
            raise CapacityUnavailable("RunPod returned no pod for the interruptible request")
        return self.get(str(created["id"]))

    def _find_by_tag(self, tag: str) -> RemotePod | None:
        for pod in self._pods():
            if (pod.get("env") or {}).get(TAG_ENV) == tag and pod.get("status") != "TERMINATED":
                return self._remote(pod)
        return None

    def _pods(self) -> list[dict[str, Any]]:
        return list((self.client.get_json("/v2/pods") or {}).get("pods", []))

    def _remote(self, pod: dict[str, Any]) -> RemotePod:
        status = str(pod.get("status", ""))
        env = pod.get("env") or {}
        spot = env.get(MARKET_ENV) == "spot"
        if status == "EXITED":
            state = REMOTE_INTERRUPTED if spot else REMOTE_STOPPED
        else:
            state = _STATE.get(status, REMOTE_PROVISIONING)
        connection: dict[str, Any] = {}
        if state == REMOTE_RUNNING:
            ssh = pod.get("ssh") or {}
            endpoint = ssh.get("direct") or ssh.get("proxy")
            if endpoint:
                connection["host"] = endpoint.get("host", "")
                connection["ssh"] = endpoint.get("command", "")
            urls = {}
            for port in pod.get("ports") or []:
                number, _, proto = str(port).partition("/")
                if proto == "http":
                    urls[number] = f"https://{pod['id']}-{number}.proxy.runpod.net"
            if urls:
                connection["urls"] = urls
        cost = pod.get("cost")
        return RemotePod(
            external_id=str(pod["id"]), state=state, tag=str(env.get(TAG_ENV, "")), region=str(pod.get("dataCenterId") or ""),
            connection=connection, price_per_hour=Decimal(str(cost)) if cost else None,
            message=f"RunPod status {status}" + (" (spot pod reclaimed)" if state == REMOTE_INTERRUPTED else ""),
            raw={"status": status, "spot": spot, "gpu": pod.get("gpu"), "cloud": pod.get("cloud")},
        )

    def get(self, external_id: str) -> RemotePod:
        return self._remote(self.client.get_json(f"/v2/pods/{external_id}"))

    def terminate(self, external_id: str) -> None:
        try:
            self.client.request("DELETE", f"/v2/pods/{external_id}")
        except NotFound:
            return

    def stop(self, external_id: str) -> None:
        pod = self.get(external_id)
        if pod.raw.get("spot"):
            # a stopped spot pod would read as reclaimed, and resuming it needs a new bid
            raise StopNotPossible("interruptible RunPod pods are terminated, not stopped")
        self.client.request("POST", f"/v2/pods/{external_id}/action", json={"action": "stop"}, idempotent=True)

    def list_pods(self) -> list[RemotePod]:
        return [self._remote(p) for p in self._pods() if (p.get("env") or {}).get(TAG_ENV)]

    def gpu_utilization(self, external_id: str) -> list[GpuSample] | None:
        """``runtime.gpus[].util`` of ``GET /v2/pods/{id}`` (null unless the pod is RUNNING)."""
        pod = self.client.get_json(f"/v2/pods/{external_id}") or {}
        gpus = (pod.get("runtime") or {}).get("gpus") or []
        if not gpus:
            return None
        return [GpuSample(gpu_index=i, util_pct=float(g.get("util") or 0)) for i, g in enumerate(gpus)]
