"""Google Cloud Compute Engine over its REST API (httpx; no Google SDK).

* Auth: the service-account key JSON signs a JWT (RS256, ``cryptography``) that the OAuth
  token endpoint exchanges for an access token, cached per key until shortly before expiry.
* Offers: ``aggregated/acceleratorTypes`` (which GPUs each zone has) and
  ``aggregated/machineTypes`` (the shapes to run them: N1 + attached T4/V100, or the
  accelerator-optimized G2/A2/A3 types with built-in GPUs), priced from the Cloud Billing
  Catalog SKUs of Compute Engine: GPU SKUs matched by description and region, plus the
  machine family's core and RAM SKUs, on-demand ("OnDemand") and Spot ("Preemptible").
  One offer per zone, because a VM is created in a zone.
* Pods: ``instances.insert`` (``requestId`` = pod UUID, label ``provisioner-pod`` = pod UUID,
  ``scheduling.provisioningModel`` SPOT/STANDARD), then the zone operation is polled briefly;
  ``external_id`` is ``"<zone>/<instance name>"``. Capacity and quota failures arrive in the
  operation's ``error.errors[].code``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from decimal import Decimal
from typing import Any

import httpx

from ..catalog import canonical_gpu_class, region_country
from .base import (
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_STOPPING,
    CapacityUnavailable,
    CredentialField,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    OfferData,
    PermanentError,
    ProviderError,
    ProviderInfo,
    QuotaExceeded,
    RemotePod,
    TransientError,
)
from .bootscript import container_script
from .gcp_auth import signed_jwt
from .gcp_pricing import index_skus
from .http import ApiClient, error_envelope, json_or_none
from .rest import BearerAuth, RestAdapter, tokens

COMPUTE_URL = "https://compute.googleapis.com/compute/v1"
BILLING_URL = "https://cloudbilling.googleapis.com/v1"
TOKEN_URI = "https://oauth2.googleapis.com/token"
COMPUTE_SERVICE_ID = "6F81-5844-456A"  # Compute Engine in the Cloud Billing Catalog
LABEL_KEY = "provisioner-pod"
# Every Instance.status of the Compute Engine v1 discovery document (schemas.Instance.properties.
# status.enum, revision 20261106) with its enumDescription's meaning. TERMINATED/STOPPED/SUSPENDED
# become "interrupted" for a preempted Spot VM (checked in _remote).
INSTANCE_STATES = {
    "PROVISIONING": REMOTE_PROVISIONING,  # resources are being allocated
    "STAGING": REMOTE_PROVISIONING,  # resources allocated, the instance is being started
    "PENDING": REMOTE_PROVISIONING,  # Flex Start: waiting for capacity from Dynamic Workload Scheduler
    "REPAIRING": REMOTE_PROVISIONING,  # in repair: not usable, comes back RUNNING
    "RUNNING": REMOTE_RUNNING,
    "PENDING_STOP": REMOTE_STOPPING,  # gracefully shutting down
    "STOPPING": REMOTE_STOPPING,  # being stopped, deleted or killed
    "SUSPENDING": REMOTE_STOPPING,
    "DEPROVISIONING": REMOTE_STOPPING,  # halted; network, quota, IPs and disks being torn down
    "STOPPED": REMOTE_STOPPED,
    "SUSPENDED": REMOTE_STOPPED,
    "TERMINATED": REMOTE_STOPPED,  # stopped, by explicit action or underlying failure
}
DEFAULT_REGIONS = ("us-central1", "europe-west4", "us-east1")
DEFAULT_IMAGE = "projects/deeplearning-platform-release/global/images/family/common-cu124-debian-11-py310"
_GCP_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")
# accelerators attached to an N1 VM (1, 2 or 4 of them) rather than built into the machine type
ATTACHED = {"nvidia-tesla-t4": 4, "nvidia-tesla-v100": 8, "nvidia-tesla-p4": 4, "nvidia-tesla-p100": 4}
N1_FOR_COUNT = {1: "n1-standard-4", 2: "n1-standard-8", 4: "n1-standard-16", 8: "n1-standard-32"}
# machine family (first part of the type name) -> the SKU description's family words
FAMILY_SKU = {"n1": "N1 Predefined", "g2": "G2", "a2": "A2", "a3": "A3", "e2": "E2", "n2": "N2"}
CAPACITY_CODES = {"ZONE_RESOURCE_POOL_EXHAUSTED", "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS", "RESOURCE_POOL_EXHAUSTED",
                  "RESOURCE_EXHAUSTED"}
QUOTA_CODES = {"QUOTA_EXCEEDED", "QUOTA_LIMIT"}
SKU_CACHE_SECONDS = 6 * 3600

_sku_cache: dict[str, tuple[float, dict[tuple[str, ...], Decimal]]] = {}
_cache_lock = threading.Lock()


def clear_caches() -> None:
    """Forget tokens and SKU prices (tests; a rotated key)."""
    tokens.clear()
    with _cache_lock:
        _sku_cache.clear()


def oauth_error(response: httpx.Response, body: Any) -> ProviderError | None:
    """The token endpoint: 429/5xx stay transient (generic mapping); any other refusal is the key's."""
    if response.status_code == 429 or response.status_code >= 500:
        return None
    body = body if isinstance(body, dict) else {}
    reason = body.get("error_description") or body.get("error") or response.status_code
    return InvalidCredentials(f"Google refused the service-account key: {reason}", status=response.status_code,
                              code=str(body.get("error", "")))


def map_error(response: httpx.Response, body: Any) -> ProviderError | None:
    envelope = error_envelope(body)
    if envelope is None:
        return None
    err, _, message = envelope
    reasons = {str(e.get("reason", "")) for e in err.get("errors") or [] if isinstance(e, dict)}
    status = response.status_code
    if status == 429 or reasons & {"rateLimitExceeded", "userRateLimitExceeded"}:
        return TransientError(message, status=status, code="rateLimitExceeded")
    if reasons & {"quotaExceeded"} or any(c in message for c in QUOTA_CODES):
        return QuotaExceeded(message, status=status, code="QUOTA_EXCEEDED")
    if any(c in message for c in CAPACITY_CODES) or reasons & {"resourcePoolExhausted"}:
        return CapacityUnavailable(message, status=status, code="ZONE_RESOURCE_POOL_EXHAUSTED")
    return None


def operation_error(op: dict[str, Any]) -> ProviderError | None:
    """The typed error of a DONE operation, or None when it succeeded."""
    errors = ((op.get("error") or {}).get("errors")) or []
    if not errors:
        return None
    code = str(errors[0].get("code", ""))
    message = "; ".join(str(e.get("message", "")) for e in errors) or code
    status = op.get("httpErrorStatusCode")
    if code in CAPACITY_CODES:
        return CapacityUnavailable(message, status=status, code=code)
    if code in QUOTA_CODES:
        return QuotaExceeded(message, status=status, code=code)
    return PermanentError(f"{code}: {message}", status=status, code=code)


class GcpAdapter(RestAdapter):
    info = ProviderInfo(
        kind="gcp",
        label="Google Cloud",
        description="Compute Engine GPU VMs (T4 on N1, L4 on G2, A100 on A2, H100 on A3), standard or Spot, in the regions you allow.",
        supports_spot=True,
        private_registry=True,  # startup-script: docker login to the image's registry
        can_stop=True,
        credential_fields=(
            CredentialField("service_account_json", "Service-account key (JSON)",
                            "A key of a service account with Compute Instance Admin (v1) on the project; "
                            "the project is read from the key.", multiline=True, file=True),
        ),
        regions_hint="us-central1, europe-west4, us-east1 unless you pick regions",
    )

    error_mapper = staticmethod(map_error)

    def __init__(self, credentials: dict[str, Any], settings: dict[str, Any] | None = None, **kw: Any):
        super().__init__(credentials, settings, **kw)
        self._key: dict[str, Any] | None = None

    # --- configuration --------------------------------------------------------------------------
    @property
    def key_info(self) -> dict[str, Any]:
        if self._key is None:
            raw = self.credentials.get("service_account_json") or ""
            try:
                info = json.loads(raw) if isinstance(raw, str) else dict(raw)
            except ValueError as exc:
                raise InvalidCredentials("the service-account key is not valid JSON") from exc
            missing = [k for k in ("client_email", "private_key", "project_id") if not info.get(k)]
            if missing:
                raise InvalidCredentials(f"the service-account key lacks {', '.join(missing)}")
            self._key = info
        return self._key

    @property
    def project(self) -> str:
        return str(self.settings.get("project") or self.key_info["project_id"])

    @property
    def token_uri(self) -> str:
        return self.endpoint(str(self.key_info.get("token_uri") or TOKEN_URI), path="/token")

    @property
    def regions(self) -> list[str]:
        wanted = [r for r in (self.settings.get("regions") or self.settings.get("allowed_regions") or [])
                  if _GCP_REGION.match(str(r))]
        return wanted or list(DEFAULT_REGIONS)

    # --- auth ----------------------------------------------------------------------------------
    def access_token(self, refresh: bool = False) -> str:
        info = self.key_info

        def fetch() -> tuple[str, float]:
            # exchanging a signed JWT changes nothing at Google: safe to retry
            body = self.api("token").post_json(self.token_uri, idempotent=True, data={
                "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "assertion": signed_jwt(info, self.token_uri)}) or {}
            if not body.get("access_token"):
                raise InvalidCredentials("Google answered without an access token")
            return str(body["access_token"]), float(body.get("expires_in", 3600))

        key = tokens.key(info["client_email"], self.token_uri, str(info.get("private_key_id", "")))
        return tokens.get(key, fetch, refresh=refresh)

    def rate_limits(self) -> dict[str, tuple[float, int]]:
        # Compute's default API rate quota is 20 req/s per project
        return {"default": (float(self.settings.get("requests_per_second", 20)), 20)}

    def make_client(self, name: str) -> ApiClient:
        """``compute`` and ``billing`` with the OAuth token; ``token``, the OAuth endpoint itself."""
        secret = self.key_info["client_email"]
        if name == "token":
            return self.new_client(self.token_uri, secret=secret, limits={}, error_mapper=oauth_error)
        url = self.endpoint(COMPUTE_URL, path="/compute/v1") if name == "compute" else self.endpoint(BILLING_URL, path="/v1")
        return self.new_client(url, secret=secret, auth=BearerAuth(self.access_token))

    def _p(self, rest: str) -> str:
        return f"/projects/{self.project}{rest}"

    def _aggregated(self, resource: str, **params: Any) -> dict[str, list[dict[str, Any]]]:
        """zone -> items of an aggregatedList, following ``nextPageToken``."""
        out: dict[str, list[dict[str, Any]]] = {}
        token = ""
        while True:
            # only parameters the discovery document declares for aggregatedList (revision 20261106
            # has no returnPartialSuccess; Google refuses an undeclared query parameter with a 400)
            q = {"maxResults": 500, **params}
            if token:
                q["pageToken"] = token
            page = self.api("compute").get_json(self._p(f"/aggregated/{resource}"), params=q) or {}
            for scope, group in (page.get("items") or {}).items():
                if scope.startswith("zones/") and group.get(resource):
                    out.setdefault(scope[len("zones/"):], []).extend(group[resource])
            token = page.get("nextPageToken") or ""
            if not token:
                return out

    # --- verify and offers -------------------------------------------------------------------------
    def verify(self) -> None:
        self.api("compute").get_json(self._p(""))

    def sku_prices(self) -> dict[tuple[str, ...], Decimal]:
        cache_key = self.endpoint(BILLING_URL, path="/v1")
        with _cache_lock:
            hit = _sku_cache.get(cache_key)
        if hit and hit[0] > self.clock():
            return hit[1]
        skus: list[dict[str, Any]] = []
        token = ""
        while True:
            q: dict[str, Any] = {"currencyCode": "USD", "pageSize": 5000}
            if token:
                q["pageToken"] = token
            page = self.api("billing").get_json(f"/services/{COMPUTE_SERVICE_ID}/skus", params=q) or {}
            skus.extend(page.get("skus") or [])
            token = page.get("nextPageToken") or ""
            if not token:
                break
        index = index_skus(skus)
        with _cache_lock:
            _sku_cache[cache_key] = (self.clock() + SKU_CACHE_SECONDS, index)
        return index

    def list_offers(self) -> list[OfferData]:
        regions = set(self.regions)

        def wanted(zone: str) -> bool:
            return zone.rsplit("-", 1)[0] in regions

        accelerators = {z: v for z, v in self._aggregated("acceleratorTypes").items() if wanted(z)}
        machines = {z: {m["name"]: m for m in v} for z, v in self._aggregated("machineTypes").items() if wanted(z)}
        prices = self.sku_prices()
        offers: list[OfferData] = []
        for zone in sorted(accelerators):
            region = zone.rsplit("-", 1)[0]
            for acc in accelerators[zone]:
                name = acc["name"]
                if name.endswith("-vws"):  # virtual-workstation licences: not for compute pods
                    continue
                cls = canonical_gpu_class(name, 80 if "80gb" in name else None)
                if cls is None:
                    continue
                for machine, count, instance_type in self._shapes(name, int(acc.get("maximumCardsPerInstance") or 1),
                                                                  machines.get(zone, {})):
                    for spot in (False, True):
                        quote = self._price(prices, cls, count, machine, region, spot)
                        if quote is None:
                            continue
                        price, basis = quote
                        offers.append(OfferData(
                            gpu_class=cls, gpu_count=count, region=region, country=region_country(region, ""),
                            price_per_hour=price, currency="USD", spot=spot, zone=zone, instance_type=instance_type,
                            gpu_memory_gb=_gpu_memory(cls), supports_volumes=("ephemeral", "persistent"),
                            extra={"accelerator": name, "machine_type": machine["name"], "vcpus": machine.get("guestCpus"),
                                   "memory_gb": round((machine.get("memoryMb") or 0) / 1024), "price_basis": basis}))
        return offers

    @staticmethod
    def _shapes(accelerator: str, max_cards: int, machines: dict[str, dict[str, Any]]):
        """(machine type record, GPU count, instance_type id) that can run ``accelerator``."""
        if accelerator in ATTACHED:
            for count, mt in N1_FOR_COUNT.items():
                if count <= max_cards and mt in machines:
                    yield machines[mt], count, f"{mt}+{accelerator}"
            return
        for mt in machines.values():
            for acc in mt.get("accelerators") or []:
                if acc.get("guestAcceleratorType") == accelerator:
                    yield mt, int(acc.get("guestAcceleratorCount") or 1), mt["name"]

    @staticmethod
    def _price(prices, cls: str, count: int, machine: dict[str, Any], region: str, spot: bool) -> tuple[Decimal, str] | None:
        flag = "1" if spot else "0"
        gpu = prices.get(("gpu", cls, region, flag))
        if gpu is None:
            return None
        family = FAMILY_SKU.get(machine["name"].split("-")[0], "")
        core = prices.get(("core", family, region, flag))
        ram = prices.get(("ram", family, region, flag))
        if core is None or ram is None:
            # the VM part is unknown: quote the GPUs and say so, rather than hide the offer
            return (gpu * count).quantize(Decimal("0.000001")), "gpu-only"
        total = gpu * count + core * int(machine.get("guestCpus") or 0) + ram * Decimal(int(machine.get("memoryMb") or 0)) / 1024
        return total.quantize(Decimal("0.000001")), "gpu+vm"

    # --- pods ------------------------------------------------------------------------------------
    @staticmethod
    def instance_name(tag: str) -> str:
        name = "pod-" + re.sub(r"[^a-z0-9-]", "-", tag.lower())
        if len(name) > 63 or not re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name):
            name = "pod-" + hashlib.sha256(tag.encode()).hexdigest()[:40]
        return name

    @staticmethod
    def request_id(tag: str, zone: str, instance_type: str, spot: bool) -> str:
        """The insert's ``requestId``: a UUID derived from the pod UUID and the placement.

        Google answers a repeated requestId with the original operation for at least an hour,
        even when that operation failed. So a retry of the same attempt (a timeout) reuses it,
        while failing over to another zone or shape for the same pod must not: the pod UUID
        alone would replay the first zone's ZONE_RESOURCE_POOL_EXHAUSTED everywhere.
        """
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ai-cloud-provisioner:{tag}/{zone}/{instance_type}/{int(spot)}"))

    def launch(self, request: LaunchRequest) -> RemotePod:
        zone = request.zone or f"{request.region}-a"
        machine, _, accelerator = (request.instance_type or "").partition("+")
        if not machine:
            raise PermanentError("a GCP launch needs a machine type")
        name = self.instance_name(request.tag)
        body = self.instance_body(request, zone=zone, name=name, machine=machine, accelerator=accelerator)
        compute = self.api("compute")
        # requestId makes the insert idempotent at Google, so it may be retried like a GET
        response = compute.request("POST", self._p(f"/zones/{zone}/instances"), json=body,
                                   params={"requestId": self.request_id(request.tag, zone, request.instance_type, request.spot)}, idempotent=True, ok=(409,))
        if response.status_code == 409:  # launched before under this tag: the same pod
            return self.get(f"{zone}/{name}")
        op = self._wait(zone, json_or_none(response) or {})
        if op.get("status") == "DONE":
            error = operation_error(op)
            if error is not None:
                raise error
        try:
            return self.get(f"{zone}/{name}")
        except NotFound:  # still being created: the next refresh sees it
            return RemotePod(external_id=f"{zone}/{name}", state=REMOTE_PROVISIONING, tag=request.tag, region=request.region)

    def instance_body(self, request: LaunchRequest, *, zone: str, name: str, machine: str, accelerator: str) -> dict[str, Any]:
        scheduling: dict[str, Any] = {"onHostMaintenance": "TERMINATE"}  # required with GPUs
        if request.spot:
            # STOP (not DELETE) keeps the VM visible as TERMINATED, so the preemption is seen
            scheduling.update(provisioningModel="SPOT", automaticRestart=False, instanceTerminationAction="STOP")
        else:
            scheduling.update(provisioningModel="STANDARD", automaticRestart=True)
        body: dict[str, Any] = {
            "name": name,
            "machineType": f"zones/{zone}/machineTypes/{machine}",
            "scheduling": scheduling,
            "disks": [{"boot": True, "autoDelete": True, "initializeParams": {
                "sourceImage": str(self.settings.get("source_image") or DEFAULT_IMAGE),
                "diskSizeGb": str(max(int(request.disk_gb), 50)), "diskType": f"zones/{zone}/diskTypes/pd-balanced"}}],
            "networkInterfaces": [{"network": str(self.settings.get("network") or "global/networks/default"),
                                   **({"accessConfigs": [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]}
                                      if request.public_ingress else {})}],
            "metadata": {"items": [{"key": "install-nvidia-driver", "value": "True"},
                                   {"key": "startup-script", "value": container_script(request)}]},
            "labels": {LABEL_KEY: request.tag.lower()[:63]},
            "tags": {"items": list(self.settings.get("network_tags") or ["provisioner-pods"])},
        }
        if self.settings.get("subnetwork"):
            body["networkInterfaces"][0]["subnetwork"] = str(self.settings["subnetwork"])
        if accelerator:
            body["guestAccelerators"] = [{"acceleratorType": f"zones/{zone}/acceleratorTypes/{accelerator}",
                                          "acceleratorCount": int(request.gpu_count)}]
        return body

    def _wait(self, zone: str, op: dict[str, Any]) -> dict[str, Any]:
        """Poll a zone operation until DONE or a short deadline (the refresh loop does the rest)."""
        expired = self.deadline(float(self.settings.get("operation_timeout_seconds", 20)))
        interval = self.poll_interval
        while op.get("status") != "DONE" and op.get("name") and not expired():
            self.sleep(interval)
            op = self.api("compute").get_json(self._p(f"/zones/{zone}/operations/{op['name']}")) or {}
        return op

    def _split(self, external_id: str) -> tuple[str, str]:
        return self.split_external_id(external_id, "GCP pod")  # "<zone>/<instance name>"

    def get(self, external_id: str) -> RemotePod:
        zone, name = self._split(external_id)
        inst = self.api("compute").get_json(self._p(f"/zones/{zone}/instances/{name}")) or {}
        return self._remote(zone, inst)

    def _preempted(self, zone: str, inst: dict[str, Any]) -> bool:
        flt = f'(operationType = "compute.instances.preempted") AND (targetId = "{inst.get("id", "")}")'
        ops = self.api("compute").get_json(self._p(f"/zones/{zone}/operations"), params={"filter": flt}) or {}
        return bool(ops.get("items"))

    def _remote(self, zone: str, inst: dict[str, Any]) -> RemotePod:
        status = inst.get("status", "")
        scheduling = inst.get("scheduling") or {}
        spot = scheduling.get("provisioningModel") == "SPOT" or bool(scheduling.get("preemptible"))
        connection: dict[str, Any] = {}
        if status == "RUNNING":
            state = REMOTE_RUNNING
            nic = (inst.get("networkInterfaces") or [{}])[0]
            host = next((a.get("natIP") for a in nic.get("accessConfigs") or [] if a.get("natIP")), "") or nic.get("networkIP", "")
            if host:
                connection = {"host": host, "ssh": f"ssh {host}", "private_ip": nic.get("networkIP", "")}
        elif INSTANCE_STATES.get(status) == REMOTE_STOPPED:
            state = REMOTE_INTERRUPTED if spot and self._preempted(zone, inst) else REMOTE_STOPPED
        else:
            state = INSTANCE_STATES.get(status, REMOTE_PROVISIONING)
        if state == REMOTE_INTERRUPTED:
            # A preempted Spot VM is of no further use to the pod (it is re-placed), but its
            # boot disk keeps billing: delete it now.
            try:
                self.terminate(f"{zone}/{inst['name']}", wait=False)
            except ProviderError:
                pass
        return RemotePod(external_id=f"{zone}/{inst.get('name', '')}", state=state,
                         tag=(inst.get("labels") or {}).get(LABEL_KEY, ""), region=zone.rsplit("-", 1)[0],
                         connection=connection, message=inst.get("statusMessage", "") or "",
                         raw={"status": status, "spot": spot, "zone": zone,
                              "machine_type": str(inst.get("machineType", "")).rsplit("/", 1)[-1]})

    def terminate(self, external_id: str, *, wait: bool = True) -> None:
        zone, name = self._split(external_id)
        try:
            op = self.api("compute").request("DELETE", self._p(f"/zones/{zone}/instances/{name}"))
        except NotFound:
            return
        if wait:
            self._wait(zone, json_or_none(op) or {})

    def stop(self, external_id: str) -> None:
        zone, name = self._split(external_id)
        op = self.api("compute").post_json(self._p(f"/zones/{zone}/instances/{name}/stop"), idempotent=True)
        self._wait(zone, op or {})

    def start(self, external_id: str) -> None:
        zone, name = self._split(external_id)
        op = self.api("compute").post_json(self._p(f"/zones/{zone}/instances/{name}/start"), idempotent=True)
        self._wait(zone, op or {})

    def list_pods(self) -> list[RemotePod]:
        found = self._aggregated("instances", filter=f"labels.{LABEL_KEY}:*")
        return [self._remote(zone, inst) for zone, items in sorted(found.items()) for inst in items]


def _gpu_memory(cls: str) -> int | None:
    from ..catalog import GPU_CLASSES

    return GPU_CLASSES.get(cls, ("", None))[1]
