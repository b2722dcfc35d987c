"""Microsoft Azure: GPU virtual machines through the ARM REST API (httpx; no Azure SDK).

Credentials: an Entra ID app registration (tenant id, client id, client secret) and the
subscription. Settings: ``resource_group`` and ``subnet_id`` (a pre-existing subnet; each VM
gets one NIC there, with its own NSG and, unless ``public_ip`` is off, a Standard static public IP:
see azure_net), ``ssh_source_cidrs`` (who may reach SSH), ``locations`` (regions to offer), ``image``
(imageReference), ``admin_username``, ``ssh_public_key``, ``eviction_policy`` (``Delete``), ``spot_max_price``
(``"on-demand"``: maxPrice -1, or ``"bid"``: the offer's price), ``launch_wait_seconds``, and
``base_url`` (one URL for all three hosts, or ``{"login", "management", "prices"}``).

Offers come from resource SKUs (``GPUs`` capability, location/zone restrictions) priced by
the public Retail Prices API (Linux, consumption; "Spot" meters for spot).
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx

from provisioner import clock
from provisioner.inputs import split_list

from ..catalog import GPU_CLASSES, region_country
from . import azure_net, azure_vm
from .base import (
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_TERMINATED,
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
    SettingField,
    TransientError,
)
from .http import ApiClient, parse_retry_after
from .rest import BearerAuth, RestAdapter, tokens

COMPUTE_API = "2024-07-01"
SKUS_API = "2021-07-01"
NETWORK_API = "2024-05-01"
SUBSCRIPTION_API = "2022-12-01"
RESOURCE_GROUP_API = "2021-04-01"
ACTIVITY_API = "2015-04-01"
TAG = azure_vm.TAG
DEFAULT_LOCATIONS = ("eastus", "eastus2", "southcentralus", "westus2", "westus3", "westeurope", "northeurope",
                     "swedencentral", "uksouth", "francecentral", "germanywestcentral", "japaneast", "australiaeast")
CAPACITY_CODES = {"AllocationFailed", "SkuNotAvailable", "ZonalAllocationFailed", "OverconstrainedAllocationRequest",
                  "OverconstrainedZonalAllocationRequest"}
MAX_PAGES = 20
HOSTS = {"login": "https://login.microsoftonline.com", "management": "https://management.azure.com",
         "prices": "https://prices.azure.com"}

# SKU name -> canonical class. The SKU API gives a GPU count but not the model, so the series
# is the source of truth (learn.microsoft.com VM size pages).
_SKU_GPU: list[tuple[str, str]] = [
    (r"^Standard_NV(6|12|18)ads_A10_v5$", ""),  # fractional A10 (1/6..1/2 GPU): not a whole GPU
    (r"_H200_", "H200"),
    (r"_H100_", "H100"),
    (r"_MI300X_", "MI300X"),
    (r"_A100_v4$", "A100-80"),  # NC A100 v4, ND A100 v4 (amsr): 80 GB
    (r"^Standard_ND96asr_v4$", "A100-40"),
    (r"_A10_v5$", "A10"),
    (r"_T4_v3$", "T4"),
    (r"^Standard_NC\d+r?s_v3$", "V100"),
    (r"^Standard_ND40rs_v2$", "V100"),
]

def sku_gpu_class(name: str) -> str | None:
    for pattern, cls in _SKU_GPU:
        if re.search(pattern, name):
            return cls or None
    return None


def _capabilities(sku: dict[str, Any]) -> dict[str, str]:
    return {c.get("name", ""): str(c.get("value", "")) for c in sku.get("capabilities") or []}


def map_error(response: httpx.Response, body: Any) -> ProviderError:
    """Map an ARM error body ``{"error": {"code", "message", "details"}}`` to a typed error."""
    err = (body.get("error") if isinstance(body, dict) else None) or {}
    if isinstance(err, str):  # the token endpoint: {"error": "invalid_client", "error_description": ...}
        err = {"code": err, "message": body.get("error_description", "")}
    return error_from(err, response.status_code)


def prices_error(response: httpx.Response, body: Any) -> ProviderError:
    return error_from({"code": "RetailPrices", "message": response.text[:200]}, response.status_code)


def error_from(err: dict[str, Any], status: int | None = None, retry_after: float | None = None) -> ProviderError:
    codes = [str(err.get("code") or "")] + [str(d.get("code") or "") for d in err.get("details") or [] if isinstance(d, dict)]
    message = str(err.get("message") or "") or "; ".join(str(d.get("message", "")) for d in err.get("details") or [])
    code = next((c for c in codes if c in CAPACITY_CODES), codes[0])
    if code in CAPACITY_CODES:
        return CapacityUnavailable(f"{code}: {message}", status=status, code=code)
    if "QuotaExceeded" in codes or ("OperationNotAllowed" in codes and "quota" in message.lower()):
        return QuotaExceeded(message, status=status, code="QuotaExceeded")
    if status == 401 or code in ("InvalidAuthenticationToken", "ExpiredAuthenticationToken", "invalid_client",
                                 "unauthorized_client", "invalid_request", "AuthenticationFailed"):
        return InvalidCredentials(f"Azure refused the credentials: {message or code}", status=status, code=code)
    if status == 403 or code == "AuthorizationFailed":
        return InvalidCredentials(f"the app registration lacks a role: {message}", status=status, code=code)
    if status == 429 or (status or 0) >= 500:
        return TransientError(message or f"HTTP {status}", status=status, code=code, retry_after=retry_after)
    if status == 404 or code in ("ResourceNotFound", "NotFound", "ResourceGroupNotFound"):
        return NotFound(message, status=status, code=code)
    return PermanentError(f"{code}: {message}", status=status, code=code)


class AzureAdapter(RestAdapter):
    info = ProviderInfo(
        kind="azure",
        label="Microsoft Azure",
        description="GPU VMs (NC/ND/NV series) in your subscription, on-demand or Spot, priced by the Retail Prices API.",
        supports_spot=True,
        private_registry=True,  # boot script: docker login to the image's registry
        credential_fields=(
            CredentialField("tenant_id", "Directory (tenant) ID", secret=False),
            CredentialField("client_id", "Application (client) ID", secret=False),
            CredentialField("client_secret", "Client secret", help="Secret of the app registration; it needs the "
                            "Virtual Machine Contributor and Network Contributor roles on the resource group."),
            CredentialField("subscription_id", "Subscription ID", secret=False),
            CredentialField("resource_group", "Resource group", help="Where GPU VMs and their NICs are created.",
                            secret=False),
            CredentialField("subnet_id", "Subnet resource ID", help="An existing subnet for the VMs' NICs: "
                            "/subscriptions/…/virtualNetworks/…/subnets/…", secret=False),
            CredentialField("locations", "Regions", help="Optional, comma-separated (e.g. eastus, westeurope); "
                            "default: the main GPU regions.", secret=False, required=False),
        ),
        setting_fields=(
            SettingField("public_ip", "Public address", kind="bool", default=True,
                         help="Give each VM a Standard static public IPv4 address (billed by Azure per hour while "
                              "the VM exists; deleted with it). Off: reachable from the virtual network only."),
            SettingField("ssh_source_cidrs", "SSH allowed from",
                         help="IPv4 addresses or CIDRs, comma-separated (e.g. 203.0.113.7/32). Empty: port 22 stays "
                              "closed. The workload's service ports open to the Internet only for public workloads."),
            SettingField("ssh_public_key", "SSH public key", kind="multiline",
                         help="Installed for the VM's admin user (azureuser): one line of your id_ed25519.pub or "
                              "id_rsa.pub (RSA of 2048 bits or more). Empty: nobody can log in over SSH."),
        ),
        regions_hint="US, EU, UK, JP, AU (the locations you enable)",
    )

    @classmethod
    def clean_settings(cls, values: dict[str, Any]) -> dict[str, Any]:
        return azure_net.clean_settings(values)

    default_timeout = 30.0
    default_poll_interval = 5.0  # between operation-status polls, unless ARM's Retry-After asks for less
    error_mapper = staticmethod(map_error)

    # --- plumbing -----------------------------------------------------------------------------
    def _base(self, which: str) -> str:
        return self.endpoint(HOSTS[which], host=which)

    def make_client(self, name: str) -> ApiClient:
        """Three hosts: Entra ID (``login``), ARM (``management``, with the token), ``prices`` (public)."""
        if name == "management":
            return self.new_client(self._base(name), secret=self._cred("client_id"), auth=BearerAuth(self.token))
        return self.new_client(self._base(name), secret=self._cred("client_id"),
                               error_mapper=prices_error if name == "prices" else None)

    def _cred(self, key: str) -> str:
        value = str(self.credentials.get(key) or "").strip()
        if not value:
            raise InvalidCredentials(f"missing {key}")
        return value

    @property
    def subscription(self) -> str:
        return f"/subscriptions/{self._cred('subscription_id')}"

    def token(self, refresh: bool = False) -> str:
        """A client-credentials token for ARM, cached (per app and secret) until shortly before expiry."""
        tenant, client_id, secret = self._cred("tenant_id"), self._cred("client_id"), self._cred("client_secret")

        def fetch() -> tuple[str, float]:
            try:  # asking for a token changes nothing at Entra ID: safe to retry
                body = self.api("login").request("POST", f"/{tenant}/oauth2/v2.0/token", idempotent=True, data={
                    "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret,
                    "scope": "https://management.azure.com/.default"}).json()
            except (TransientError, InvalidCredentials):
                raise
            except ProviderError as err:
                if err.status in (400, 401):
                    raise InvalidCredentials(f"Azure refused the credentials: {err.message}", status=err.status,
                                             code=err.code) from err
                raise
            return body["access_token"], float(body.get("expires_in", 3599))

        return tokens.get(tokens.key(self._base("login"), tenant, client_id, secret), fetch, refresh=refresh)

    def _arm(self, method: str, path_or_url: str, *, api: str = COMPUTE_API, json: Any = None,
             params: dict[str, Any] | None = None) -> httpx.Response:
        url = path_or_url if path_or_url.startswith("http") else f"{self._base('management')}{path_or_url}"
        if not url.startswith(f"{self._base('management')}/"):  # nextLink/operation URLs: the token goes to ARM only
            raise PermanentError(f"refusing to send the ARM token to {httpx.URL(url).host}")
        query = dict(params or {})
        if "api-version=" not in url:
            query["api-version"] = api
        # ARM's PUT is create-or-update by name and DELETE is idempotent: the shared policy retries them
        return self.api("management").request(method, url, params=query or None, json=json)

    def _paged(self, path: str, *, api: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        items, url, query = [], path, params
        for _ in range(MAX_PAGES):  # bounded: a looping nextLink must not hang a poll
            body = self._arm("GET", url, api=api, params=query).json()
            items.extend(body.get("value") or [])
            url, query = body.get("nextLink"), None
            if not url:
                break
        return items

    def _wait(self, response: httpx.Response, timeout: float) -> dict[str, Any] | None:
        """Follow a long-running operation (Azure-AsyncOperation, else Location) for at most
        ``timeout`` seconds. Returns the final operation body, or None when still running."""
        url = response.headers.get("Azure-AsyncOperation") or response.headers.get("Location")
        if not url or response.status_code not in (201, 202):
            return {"status": "Succeeded"}
        expired = self.deadline(timeout)
        cap = self.poll_interval
        while True:
            r = self._arm("GET", url)
            if "Azure-AsyncOperation" in response.headers:
                body = r.json()
                if body.get("status") in ("Succeeded", "Failed", "Canceled"):
                    return body
            elif r.status_code != 202:  # Location: 202 while running, then 200/204
                return {"status": "Succeeded"}
            if expired():
                return None
            self.sleep(min(cap, parse_retry_after(r.headers.get("Retry-After")) or cap))

    # --- interface ----------------------------------------------------------------------------
    def verify(self) -> None:
        self._arm("GET", self.subscription, api=SUBSCRIPTION_API)
        # the places launches need: a typo here is caught at connect time, not at the first launch
        if self.opt("resource_group"):
            try:
                self._arm("GET", self._rg(), api=RESOURCE_GROUP_API)
            except NotFound:
                raise PermanentError(f"resource group {self.opt('resource_group')!r} not found in the subscription")
        if self.opt("subnet_id"):
            try:
                self._arm("GET", str(self.opt("subnet_id")), api=NETWORK_API)
            except NotFound:
                raise PermanentError("the subnet (subnet_id) was not found")

    def list_offers(self) -> list[OfferData]:
        # the admin's allowed regions narrow the query, so unwanted regions cost no calls
        locations = self.opt("locations")
        if isinstance(locations, str):
            locations = split_list(locations)
        wanted = [str(x).lower() for x in (locations or self.settings.get("allowed_regions") or DEFAULT_LOCATIONS)]
        params = {"$filter": f"location eq '{wanted[0]}'"} if len(wanted) == 1 else None
        shapes: dict[tuple[str, str], dict[str, Any]] = {}  # (sku, location) -> facts
        for sku in self._paged(f"{self.subscription}/providers/Microsoft.Compute/skus", api=SKUS_API, params=params):
            if sku.get("resourceType") != "virtualMachines":
                continue
            caps = _capabilities(sku)
            cls = sku_gpu_class(sku.get("name", ""))
            gpus = int(caps.get("GPUs") or 0) if (caps.get("GPUs") or "0").isdigit() else 0
            if cls is None or gpus < 1:
                continue
            for info in sku.get("locationInfo") or [{"location": loc, "zones": []} for loc in sku.get("locations") or []]:
                loc = str(info.get("location", "")).lower()
                if loc not in wanted:
                    continue
                zones = set(info.get("zones") or [])
                blocked = False
                for rest in sku.get("restrictions") or []:
                    where = [x.lower() for x in (rest.get("restrictionInfo") or {}).get("locations") or rest.get("values") or []]
                    if loc not in where:
                        continue
                    if rest.get("type") == "Location":
                        blocked = True
                    elif rest.get("type") == "Zone":
                        zones -= set((rest.get("restrictionInfo") or {}).get("zones") or [])
                        blocked = blocked or (bool(info.get("zones")) and not zones)
                if not blocked:
                    shapes[(sku["name"], loc)] = {"class": cls, "gpus": gpus, "zones": sorted(zones),
                                                  "spot_ok": caps.get("LowPriorityCapable", "False") == "True",
                                                  "vcpus": caps.get("vCPUs"), "memory_gb": caps.get("MemoryGB")}
        prices = self._retail_prices(sorted({loc for _, loc in shapes}), sorted({s for s, _ in shapes}))
        offers = []
        for (sku, loc), facts in sorted(shapes.items()):
            for spot in (False, True):
                price = prices.get((sku.lower(), loc, spot))
                if price is None or (spot and not facts["spot_ok"]):
                    continue
                offers.append(OfferData(
                    gpu_class=facts["class"], gpu_count=facts["gpus"], region=loc, country=region_country(loc),
                    price_per_hour=price, currency="USD", spot=spot, instance_type=sku,
                    gpu_memory_gb=GPU_CLASSES[facts["class"]][1], supports_volumes=("ephemeral", "persistent"),
                    extra={"zones": facts["zones"], "vcpus": facts["vcpus"], "memory_gb": facts["memory_gb"]},
                ))
        return offers

    def _retail_prices(self, locations: list[str], skus: list[str]) -> dict[tuple[str, str, bool], Decimal]:
        """(sku lower, location, spot) -> USD/hour, Linux consumption meters only."""
        out: dict[tuple[str, str, bool], Decimal] = {}
        for loc in locations:
            for i in range(0, len(skus), 10):  # a few SKUs per query keeps the URL short
                names = " or ".join(f"armSkuName eq '{s}'" for s in skus[i:i + 10])
                flt = (f"serviceName eq 'Virtual Machines' and priceType eq 'Consumption' and armRegionName eq '{loc}' "
                       f"and ({names})")
                url: str | None = f"{self._base('prices')}/api/retail/prices"
                params: dict[str, str] | None = {"currencyCode": "USD", "$filter": flt}
                for _ in range(MAX_PAGES):
                    body = self.api("prices").get_json(url, params=params) or {}
                    for item in body.get("Items") or []:
                        meter = f"{item.get('skuName', '')} {item.get('meterName', '')}"
                        if ("Windows" in item.get("productName", "") or "Low Priority" in meter
                                or item.get("type", "Consumption") != "Consumption" or item.get("unitOfMeasure") != "1 Hour"
                                or item.get("currencyCode", "USD") != "USD"):
                            continue
                        key = (str(item.get("armSkuName", "")).lower(), str(item.get("armRegionName", "")).lower(), "Spot" in meter)
                        price = Decimal(str(item.get("retailPrice")))
                        if price > 0 and (key not in out or price < out[key]):
                            out[key] = price
                    url, params = body.get("NextPageLink"), None
                    if not url:
                        break
        return out

    # --- launch -------------------------------------------------------------------------------
    @staticmethod
    def vm_name(tag: str) -> str:
        return f"prov-{tag.lower()}"[:64]

    def _rg(self) -> str:
        rg = str(self.opt("resource_group") or "")
        if not rg:
            raise PermanentError("set the account's resource_group before launching on Azure")
        return f"{self.subscription}/resourceGroups/{rg}"

    def _vm_path(self, name: str) -> str:
        return f"{self._rg()}/providers/Microsoft.Compute/virtualMachines/{name}"

    def _nic_path(self, name: str) -> str:
        return f"{self._rg()}/providers/Microsoft.Network/networkInterfaces/{name}-nic"

    def _pip_path(self, name: str) -> str:
        return f"{self._rg()}/providers/Microsoft.Network/publicIPAddresses/{name}-ip"

    def _nsg_path(self, name: str) -> str:
        return f"{self._rg()}/providers/Microsoft.Network/networkSecurityGroups/{name}-nsg"

    def vm_body(self, request: LaunchRequest, nic_id: str) -> dict[str, Any]:
        return azure_vm.vm_body(request, name=self.vm_name(request.tag), nic_id=nic_id, settings=self.settings)

    def launch(self, request: LaunchRequest) -> RemotePod:
        name = self.vm_name(request.tag)
        try:  # idempotent: a retried launch finds the VM it already created
            existing = self._remote(self._arm("GET", self._vm_path(name), params={"$expand": "instanceView"}).json())
        except NotFound:
            existing = None
        if existing is not None and existing.state != REMOTE_FAILED:
            return existing
        if existing is not None:  # an earlier attempt failed late (e.g. AllocationFailed): report it typed, leave nothing
            self._discard(name)
            code, _, message = existing.message.partition(": ")
            raise error_from({"code": code, "message": message or existing.message})
        subnet = str(self.opt("subnet_id") or "")
        if not subnet:
            raise PermanentError("set the account's subnet_id (an existing subnet) before launching on Azure")
        try:  # create-or-update PUTs by name: a retried launch reuses what the last attempt made
            nsg = self._arm("PUT", self._nsg_path(name), api=NETWORK_API, json=azure_net.nsg_body(request, self.settings))
            self._wait(nsg, 60)
            pip_id = None
            if azure_net.public_ip_enabled(self.settings):
                pip = self._arm("PUT", self._pip_path(name), api=NETWORK_API, json=azure_net.public_ip_body(request))
                self._wait(pip, 60)
                pip_id = pip.json()["id"]
            nic = self._arm("PUT", self._nic_path(name), api=NETWORK_API, json=azure_net.nic_body(
                request, self.settings, subnet=subnet, nsg_id=nsg.json()["id"], public_ip_id=pip_id))
            self._wait(nic, 60)
            r = self._arm("PUT", self._vm_path(name), json=self.vm_body(request, nic.json()["id"]))
            result = self._wait(r, float(self.settings.get("launch_wait_seconds", 60)))
            if result is not None and result.get("status") in ("Failed", "Canceled"):
                raise error_from(result.get("error") or {"code": "Failed", "message": "VM creation failed"})
        except ProviderError:
            self._discard(name)  # nothing half-created stays behind (and bills) after a refusal
            raise
        return self._remote(self._arm("GET", self._vm_path(name), params={"$expand": "instanceView"}).json())

    def _resources(self, name: str) -> list[tuple[str, str]]:
        """What a launch creates, in the order ARM lets it be deleted: the VM holds the NIC, the NIC
        holds the public IP (else 400 PublicIPAddressCannotBeDeleted) and the NSG."""
        return [(self._vm_path(name), COMPUTE_API), (self._nic_path(name), NETWORK_API),
                (self._pip_path(name), NETWORK_API), (self._nsg_path(name), NETWORK_API)]

    def _discard(self, name: str) -> None:
        for path, api in self._resources(name):
            try:
                self._wait(self._arm("DELETE", path, api=api), 30)
            except ProviderError:
                pass

    # --- state --------------------------------------------------------------------------------
    def _remote(self, vm: dict[str, Any]) -> RemotePod:
        props = vm.get("properties") or {}
        statuses = [s.get("code", "") for s in (props.get("instanceView") or {}).get("statuses") or []]
        power = next((c.split("/", 1)[1] for c in statuses if c.startswith("PowerState/")), "")
        provisioning = props.get("provisioningState", "")
        spot = props.get("priority") == "Spot"
        message = ""
        if provisioning == "Failed":
            state = REMOTE_FAILED
            failed = next((s for s in (props.get("instanceView") or {}).get("statuses") or []
                           if s.get("code", "").startswith("ProvisioningState/failed")), {})
            code = failed.get("code", "").removeprefix("ProvisioningState/failed").strip("/")
            message = f"{code}: {failed.get('message', '')}".strip(": ") or "provisioning failed"
        elif provisioning == "Deleting":
            state = REMOTE_TERMINATED
        elif power == "running":
            state = REMOTE_RUNNING
        elif power in ("stopped", "stopping", "deallocated", "deallocating"):
            # we never stop Azure VMs: a stopped Spot VM was evicted (evictionPolicy Deallocate)
            state = REMOTE_INTERRUPTED if spot else REMOTE_STOPPED
            message = f"PowerState/{power}"
        else:
            state = REMOTE_PROVISIONING
        connection: dict[str, Any] = {}
        if state == REMOTE_RUNNING:
            connection = self._connection(vm)
        return RemotePod(external_id=vm.get("name", ""), state=state, tag=(vm.get("tags") or {}).get(TAG, ""),
                         region=vm.get("location", ""), connection=connection, message=message,
                         raw={"vmSize": (props.get("hardwareProfile") or {}).get("vmSize"), "priority": props.get("priority")})

    def _connection(self, vm: dict[str, Any]) -> dict[str, Any]:
        nics = ((vm.get("properties") or {}).get("networkProfile") or {}).get("networkInterfaces") or []
        if not nics:
            return {}
        try:
            nic = self._arm("GET", nics[0]["id"], api=NETWORK_API).json()
        except NotFound:
            return {}
        configs = (nic.get("properties") or {}).get("ipConfigurations") or [{}]
        ip_props = configs[0].get("properties") or {}
        public = ""
        pip_ref = (ip_props.get("publicIPAddress") or {}).get("id")
        if pip_ref:
            try:
                public = str(((self._arm("GET", pip_ref, api=NETWORK_API).json().get("properties") or {})
                              .get("ipAddress")) or "")
            except NotFound:
                public = ""
        user = (((vm.get("properties") or {}).get("osProfile") or {}).get("adminUsername")) or "azureuser"
        return azure_net.connection(user=user, public_ip=public, private_ip=str(ip_props.get("privateIPAddress") or ""),
                                    nic_tags=nic.get("tags") or {})

    def _evicted(self, name: str) -> str:
        """With evictionPolicy Delete an evicted VM is simply gone; the Activity Log says why."""
        since = (clock.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        flt = f"eventTimestamp ge '{since}' and resourceUri eq '{self._vm_path(name)}'"
        try:
            events = self._paged(f"{self.subscription}/providers/Microsoft.Insights/eventtypes/management/values",
                                 api=ACTIVITY_API, params={"$filter": flt})
        except ProviderError:
            return ""
        for ev in events:
            op = ((ev.get("operationName") or {}).get("value") or "").lower()
            if "evict" in op:  # Microsoft.Compute/virtualMachines/evictSpotVM/action [K]
                return (ev.get("operationName") or {}).get("localizedValue") or op
        return ""

    def get(self, external_id: str) -> RemotePod:
        try:
            vm = self._arm("GET", self._vm_path(external_id), params={"$expand": "instanceView"}).json()
        except NotFound:
            self._sweep_network(external_id)  # evicted or deleted outside the app: its address must not bill on
            why = self._evicted(external_id)
            if why:
                return RemotePod(external_id=external_id, state=REMOTE_INTERRUPTED, message=why)
            raise NotFound(f"Azure VM {external_id} not found")
        remote = self._remote(vm)
        if remote.state == REMOTE_TERMINATED and remote.raw.get("priority") == "Spot":
            # a Spot VM being deleted by Azure (evictionPolicy Delete), not by us
            why = self._evicted(external_id)
            if why:
                return RemotePod(external_id=external_id, state=REMOTE_INTERRUPTED, tag=remote.tag, region=remote.region, message=why)
        return remote

    def terminate(self, external_id: str) -> None:
        try:
            r = self._arm("DELETE", self._vm_path(external_id))
            self._wait(r, float(self.settings.get("terminate_wait_seconds", 120)))
        except NotFound:
            pass  # gone already: a repeated terminate still sweeps what a slow delete left behind
        self._sweep_network(external_id)

    def _sweep_network(self, name: str) -> None:
        """Delete the VM's NIC, public IP and NSG once the VM is gone. The NIC normally goes with the
        VM (deleteOption Delete), also on a Spot eviction; the public IP and NSG never do, and a
        Standard static address bills by the hour until deleted."""
        for path, api in self._resources(name)[1:]:
            try:
                self._wait(self._arm("DELETE", path, api=api), 30)
            except (NotFound, PermanentError):
                pass  # 404: never made or already gone; 400 in use: the VM is still being deleted

    def list_pods(self) -> list[RemotePod]:
        vms = self._paged(f"{self._rg()}/providers/Microsoft.Compute/virtualMachines", api=COMPUTE_API)
        out = []
        for vm in vms:
            if (vm.get("tags") or {}).get(TAG):
                try:
                    out.append(self.get(vm["name"]))
                except NotFound:
                    continue
        return out
