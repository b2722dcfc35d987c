"""A stateful stand-in for the three Azure hosts the adapter talks to, in their real shapes.

- Entra ID: ``POST /{tenant}/oauth2/v2.0/token`` (client credentials)
- ARM: subscription GET; ``Microsoft.Compute/skus`` (2021-07-01); network interfaces, public IP
  addresses and network security groups PUT/GET/DELETE (bodies judged by azure-mgmt-network's
  models; Standard-SKU addresses must be Static, rule priorities 100-4096 and unique per direction,
  nothing still referenced can be deleted); virtual machines PUT/GET(+``$expand=instanceView``)/DELETE/list and ``instanceView``;
  long-running operations (``Azure-AsyncOperation`` on create, ``Location`` on delete, each
  completing after ``lro_polls`` polls); the Activity Log (``eventtypes/management/values``)
- Retail Prices: ``GET /api/retail/prices`` with an OData ``$filter`` and ``NextPageLink`` paging

Fault knobs: ``capacity`` {(sku, location): code} with ``capacity_async`` (the LRO fails, as
AllocationFailed does in Azure) or synchronous (409, as SkuNotAvailable does); ``quota``;
``throttle`` (429 + Retry-After); ``evict`` (Spot eviction, Delete or Deallocate policy).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx

from provisioner import clock

from ._loopback import serve
from .azure_models import nic_errors, nsg_errors, public_ip_errors, vm_errors

SUB = "00000000-0000-0000-0000-0000000000aa"
TENANT = "11111111-1111-1111-1111-111111111111"
CLIENT_ID = "22222222-2222-2222-2222-222222222222"
SECRET = "test-secret~value"
RG = "gpu-rg"
SUBNET = f"/subscriptions/{SUB}/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet1/subnets/default"

# sku -> (family, vCPUs, MemoryGB, GPUs, {location: (on-demand, spot)}); spot None = not offered
CATALOG: dict[str, tuple[str, int, int, int, dict[str, tuple[float, float | None]]]] = {
    "Standard_NC24ads_A100_v4": ("StandardNCADSA100v4Family", 24, 220, 1,
                                 {"eastus": (3.673, 0.8437), "westeurope": (4.041, 0.9281), "swedencentral": (3.857, 0.8859)}),
    "Standard_NC48ads_A100_v4": ("StandardNCADSA100v4Family", 48, 440, 2, {"eastus": (7.346, 1.6874)}),
    "Standard_ND96isr_H100_v5": ("StandardNDSH100v5Family", 96, 1900, 8, {"eastus": (98.32, 29.496), "westeurope": (108.15, None)}),
    "Standard_NC4as_T4_v3": ("StandardNCASv3_T4Family", 4, 28, 1, {"eastus": (0.526, 0.0526), "westeurope": (0.58, 0.058)}),
    "Standard_NV6ads_A10_v5": ("StandardNVADSA10v5Family", 6, 55, 1, {"eastus": (0.454, 0.0908)}),
    "Standard_D4s_v5": ("standardDSv5Family", 4, 16, 0, {"eastus": (0.192, 0.0384)}),
}
ZONES = {"eastus": ["1", "2", "3"], "westeurope": ["1", "2", "3"], "swedencentral": ["1", "2", "3"]}


def _ts() -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def arm_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message}}, headers=headers)


def invalid_content(check, body: Any) -> httpx.Response | None:
    """ARM refuses a body with a member its model lacks: 400 InvalidRequestContent ("Could not find
    member 'x' on object of type 'VirtualMachineProperties'"), judged by Microsoft's SDK models."""
    if not isinstance(body, dict):
        return arm_error(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
    problems = check(body)
    if not problems:
        return None
    return arm_error(400, "InvalidRequestContent", f"The request content was invalid and could not be deserialized: {problems[0]}")


# --- a tiny OData $filter evaluator (eq / and / or / parentheses), enough for Retail Prices ----
_TOKEN = re.compile(r"\s*(?:(\()|(\))|'((?:[^']|'')*)'|(\w+))")


def odata_filter(expr: str):
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        if not m:
            raise ValueError(f"bad $filter near {expr[pos:pos + 20]!r}")
        pos = m.end()
        if m.group(1):
            tokens.append(("(", "("))
        elif m.group(2):
            tokens.append((")", ")"))
        elif m.group(3) is not None:
            tokens.append(("str", m.group(3).replace("''", "'")))
        else:
            tokens.append(("word", m.group(4)))
    it = iter(tokens + [("end", "")])
    cur = [next(it)]

    def take() -> tuple[str, str]:
        tok = cur[0]
        cur[0] = next(it)
        return tok

    def atom():
        if cur[0][0] == "(":
            take()
            inner = disj()
            if take()[0] != ")":
                raise ValueError("missing )")
            return inner
        field, op, value = take(), take(), take()
        if op[1].lower() != "eq" or value[0] != "str":
            raise ValueError(f"unsupported clause {field[1]} {op[1]}")
        # the API filters on priceType but returns the field as "type"
        name, want = {"priceType": "type"}.get(field[1], field[1]), value[1].lower()
        return lambda item: str(item.get(name, "")).lower() == want

    def conj():
        parts = [atom()]
        while cur[0] == ("word", "and"):
            take()
            parts.append(atom())
        return lambda item: all(p(item) for p in parts)

    def disj():
        parts = [conj()]
        while cur[0] == ("word", "or"):
            take()
            parts.append(conj())
        return lambda item: any(p(item) for p in parts)

    result = disj()
    if cur[0][0] != "end":
        raise ValueError("trailing input in $filter")
    return result


class FakeAzure:
    def __init__(self, *, page_size: int = 3, lro_polls: int = 1) -> None:
        self.lock = threading.RLock()
        self.page_size = page_size
        self.lro_polls = lro_polls
        self.base = "https://management.azure.com"  # rewritten to the served URL by serve()
        self.tokens: set[str] = set()
        self.token_requests = 0
        self.vms: dict[str, dict[str, Any]] = {}
        self.nics: dict[str, dict[str, Any]] = {}
        self.public_ips: dict[str, dict[str, Any]] = {}
        self.nsgs: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.activity: list[dict[str, Any]] = []
        self.restrictions: dict[str, list[dict[str, Any]]] = {}  # sku -> restrictions
        self.capacity: dict[tuple[str, str], str] = {}  # (sku, location) -> error code
        self.capacity_async = True
        self.quota = False
        self.requests: list[dict[str, Any]] = []
        self.responses: list[tuple[str, str, Any]] = []
        self._throttle: list[int] = []
        self._ip = itertools.count(4)
        self._public_ip = itertools.count(10)

    # --- knobs ------------------------------------------------------------------------------------
    def throttle(self, times: int = 1, retry_after: int = 17) -> None:
        self._throttle.extend([retry_after] * times)

    def restrict(self, sku: str, location: str, zones: list[str] | None = None) -> None:
        info: dict[str, Any] = {"locations": [location]}
        if zones:
            info["zones"] = zones
        self.restrictions.setdefault(sku, []).append({"type": "Zone" if zones else "Location", "values": [location],
                                                      "restrictionInfo": info, "reasonCode": "NotAvailableForSubscription"})

    def evict(self, name: str) -> None:
        """Spot eviction: deleted (evictionPolicy Delete) or deallocated (Deallocate)."""
        with self.lock:
            vm = self.vms[name]
            self.activity.append(self._event(vm, "Microsoft.Compute/virtualMachines/evictSpotVM/action", "Evict Spot Virtual Machine"))
            if vm["properties"].get("evictionPolicy") == "Deallocate":
                vm["_power"] = "deallocated"
            else:
                self._remove_vm(name)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serve(self.handle) as url:
            self.base = url
            yield url

    # --- HTTP -----------------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            path = request.url.path
            q = {k: v[-1] for k, v in parse_qs(request.url.query.decode(), keep_blank_values=True).items()}
            ctype = request.headers.get("content-type", "")
            body: Any = None
            if request.content:
                body = dict(parse_qs(request.content.decode())) if "form" in ctype else json.loads(request.content)
            self.requests.append({"method": request.method, "path": path, "query": q, "body": body})
            # like ARM, links (nextLink, operation URLs) point back at the host that was asked
            self.base = f"{request.url.scheme}://{request.url.netloc.decode()}"
            response = self._route(request.method, path, q, body, request)
            if response.headers.get("content-type", "").startswith("application/json") and response.content:
                self.responses.append((request.method, path, json.loads(response.content)))
            return response

    def _route(self, method: str, path: str, q: dict[str, str], body: Any, request: httpx.Request) -> httpx.Response:
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/token", path)
        if m and method == "POST":
            return self._token(m.group(1), {k: v[-1] for k, v in (body or {}).items()})
        if path == "/api/retail/prices":
            return self._prices(q)
        if self._throttle:
            retry = self._throttle.pop(0)
            return arm_error(429, "SubscriptionRequestsThrottled", f"Number of 'read' requests for subscription '{SUB}' "
                             f"exceeded. Please try again after '{retry}' seconds.", headers={"Retry-After": str(retry)})
        if request.headers.get("authorization", "").removeprefix("Bearer ") not in self.tokens:
            return arm_error(401, "InvalidAuthenticationToken", "The access token is invalid.")
        if "api-version" not in q:
            return arm_error(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        sub = f"/subscriptions/{SUB}"
        if path == sub:
            return httpx.Response(200, json={"id": sub, "authorizationSource": "RoleBased", "subscriptionId": SUB, "tenantId": TENANT,
                                             "displayName": "GPU research", "state": "Enabled",
                                             "subscriptionPolicies": {"locationPlacementId": "Public_2014-09-01",
                                                                      "quotaId": "PayAsYouGo_2014-09-01", "spendingLimit": "Off"}})
        if path == f"{sub}/providers/Microsoft.Compute/skus":
            return self._skus(q)
        m = re.fullmatch(rf"{sub}/providers/Microsoft\.Compute/locations/([^/]+)/operations/([^/]+)", path)
        if m:
            return self._operation(m.group(2))
        if path == f"{sub}/providers/Microsoft.Insights/eventtypes/management/values":
            uri = re.search(r"resourceUri eq '([^']+)'", q.get("$filter", ""))
            events = [e for e in self.activity if not uri or e["resourceId"].lower() == uri.group(1).lower()]
            return httpx.Response(200, json={"value": events})
        rg = f"{sub}/resourceGroups/{RG}"
        if path == rg and method == "GET":
            return httpx.Response(200, json={"id": rg, "name": RG, "type": "Microsoft.Resources/resourceGroups", "location": "eastus",
                                             "properties": {"provisioningState": "Succeeded"}})
        if path == SUBNET and method == "GET":
            return httpx.Response(200, json={"id": SUBNET, "name": "default", "etag": 'W/"0d2f1a"', "type": "Microsoft.Network/virtualNetworks/subnets",
                                             "properties": {"provisioningState": "Succeeded", "addressPrefix": "10.1.0.0/24",
                                                            "privateEndpointNetworkPolicies": "Disabled",
                                                            "privateLinkServiceNetworkPolicies": "Enabled"}})
        m = re.fullmatch(rf"{rg}/providers/Microsoft\.Network/networkInterfaces/([^/]+)", path)
        if m:
            return self._nic(method, m.group(1), body)
        m = re.fullmatch(rf"{rg}/providers/Microsoft\.Network/publicIPAddresses/([^/]+)", path)
        if m:
            return self._public_ip_resource(method, m.group(1), body)
        m = re.fullmatch(rf"{rg}/providers/Microsoft\.Network/networkSecurityGroups/([^/]+)", path)
        if m:
            return self._nsg(method, m.group(1), body)
        if path == f"{rg}/providers/Microsoft.Compute/virtualMachines" and method == "GET":
            return self._page([self._vm_view(v, False) for v in self.vms.values()], q, path)
        m = re.fullmatch(rf"{rg}/providers/Microsoft\.Compute/virtualMachines/([^/]+)(/instanceView)?", path)
        if m:
            return self._vm(method, m.group(1), bool(m.group(2)), q, body)
        return arm_error(404, "ResourceNotFound" if "/resourceGroups/" in path else "InvalidResourceType", f"The resource '{path}' was not found.")

    def _token(self, tenant: str, form: dict[str, str]) -> httpx.Response:
        self.token_requests += 1
        if (tenant != TENANT or form.get("client_id") != CLIENT_ID or form.get("client_secret") != SECRET
                or form.get("grant_type") != "client_credentials"):
            return httpx.Response(401, json={
                "error": "invalid_client", "error_description": f"AADSTS7000215: Invalid client secret provided. Ensure the secret being "
                f"sent in the request is the client secret value, not the client secret ID, for a secret added to app '{CLIENT_ID}'.",
                "error_codes": [7000215], "timestamp": _ts(), "trace_id": str(uuid.uuid4()), "correlation_id": str(uuid.uuid4()),
                "error_uri": "https://login.microsoftonline.com/error?code=7000215"})
        token = f"eyJ0eXAiOiJKV1Qi.{uuid.uuid4().hex}"
        self.tokens.add(token)
        return httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token})

    def _page(self, items: list[dict[str, Any]], q: dict[str, str], path: str, *, key: str = "value", link: str = "nextLink") -> httpx.Response:
        skip = int(q.get("$skiptoken", "0") or 0)
        page = items[skip: skip + self.page_size]
        body: dict[str, Any] = {key: page}
        if skip + self.page_size < len(items):
            body[link] = f"{self.base}{path}?{urlencode({**q, '$skiptoken': skip + self.page_size})}"
        return httpx.Response(200, json=body)

    def _skus(self, q: dict[str, str]) -> httpx.Response:
        loc_filter = re.fullmatch(r"location eq '([^']+)'", q.get("$filter", ""))
        items = []
        for name, (family, vcpus, mem, gpus, prices) in CATALOG.items():
            for loc in prices:
                if loc_filter and loc != loc_filter.group(1):
                    continue
                caps = [{"name": "MaxResourceVolumeMB", "value": "65536"}, {"name": "OSVhdSizeMB", "value": "1047552"},
                        {"name": "vCPUs", "value": str(vcpus)}, {"name": "MemoryGB", "value": str(mem)},
                        {"name": "HyperVGenerations", "value": "V1,V2"}, {"name": "LowPriorityCapable", "value": "True"},
                        {"name": "PremiumIO", "value": "True"}, {"name": "vCPUsAvailable", "value": str(vcpus)}]
                if gpus:
                    caps.append({"name": "GPUs", "value": str(gpus)})
                items.append({"resourceType": "virtualMachines", "name": name, "tier": "Standard", "size": name.removeprefix("Standard_"),
                              "family": family, "locations": [loc],
                              "locationInfo": [{"location": loc, "zones": ZONES.get(loc, []), "zoneDetails": []}],
                              "capabilities": caps,
                              "restrictions": [r for r in self.restrictions.get(name, []) if loc in r["values"]]})
        items.append({"resourceType": "disks", "name": "Premium_LRS", "tier": "Premium", "size": "P1", "family": "PremiumFamily",
                      "locations": ["eastus"], "locationInfo": [{"location": "eastus", "zones": [], "zoneDetails": []}],
                      "capabilities": [{"name": "MaxSizeGiB", "value": "4"}], "restrictions": []})
        return self._page(items, q, f"/subscriptions/{SUB}/providers/Microsoft.Compute/skus")

    def _prices(self, q: dict[str, str]) -> httpx.Response:
        try:
            predicate = odata_filter(q.get("$filter", "")) if q.get("$filter") else (lambda item: True)
        except ValueError as exc:
            return httpx.Response(400, json={"Error": {"Code": "InvalidQueryFilter", "Message": str(exc)}})
        items = []
        for sku, (family, _, _, _, prices) in CATALOG.items():
            short = sku.removeprefix("Standard_").replace("_", " ")
            series = family.removeprefix("Standard").removesuffix("Family") + " Series"
            for loc, (od, spot) in prices.items():
                for suffix, price, product in (("", od, series), (" Spot", spot, series), (" Low Priority", od * 0.2, series),
                                               ("", od * 1.4, f"{series} Windows")):
                    if price is None:
                        continue
                    items.append({"currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": round(price, 4),
                                  "unitPrice": round(price, 4), "armRegionName": loc, "location": loc, "effectiveStartDate": "2025-06-01T00:00:00Z",
                                  "meterId": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{sku}{loc}{suffix}{product}")),
                                  "meterName": f"{short}{suffix}", "productId": "DZH318Z0BQ4W", "skuId": "DZH318Z0BQ4W/00TG",
                                  "productName": f"Virtual Machines {product}", "skuName": f"{short}{suffix}",
                                  "serviceName": "Virtual Machines", "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
                                  "unitOfMeasure": "1 Hour", "type": "Consumption", "isPrimaryMeterRegion": True, "armSkuName": sku})
        items = [i for i in items if predicate(i)]
        skip = int(q.get("$skip", "0") or 0)
        page = items[skip: skip + self.page_size]
        more = skip + self.page_size < len(items)
        next_link = f"{self.base}/api/retail/prices?{urlencode({**q, '$skip': skip + self.page_size})}" if more else None
        return httpx.Response(200, json={"BillingCurrency": "USD", "CustomerEntityId": "Default", "CustomerEntityType": "Retail",
                                         "Items": page, "NextPageLink": next_link, "Count": len(page)})

    # --- operations -----------------------------------------------------------------------------------
    def _start_operation(self, location: str, on_done, *, error: dict[str, Any] | None = None, polls: int | None = None) -> str:
        op_id = str(uuid.uuid4())
        self.operations[op_id] = {"polls": 0, "on_done": on_done, "error": error, "start": _ts(),
                                  "needed": self.lro_polls if polls is None else polls}
        return f"{self.base}/subscriptions/{SUB}/providers/Microsoft.Compute/locations/{location}/operations/{op_id}?api-version=2024-07-01"

    def _operation(self, op_id: str) -> httpx.Response:
        op = self.operations.get(op_id)
        if op is None:
            return arm_error(404, "ResourceNotFound", f"operation {op_id} not found")
        op["polls"] += 1
        body: dict[str, Any] = {"startTime": op["start"], "status": "InProgress", "name": op_id}
        if op["polls"] >= op["needed"]:
            if op.get("on_done"):
                op.pop("on_done")()
            body.update({"status": "Failed" if op["error"] else "Succeeded", "endTime": _ts()})
            if op["error"]:
                body["error"] = op["error"]
            if op.get("location_style"):
                return httpx.Response(200, json=body)
        elif op.get("location_style"):
            return httpx.Response(202, headers={"Retry-After": "0", "Location": op["url"]})
        return httpx.Response(200, json=body, headers={"Retry-After": "0"})

    # --- network interfaces -----------------------------------------------------------------------------
    def _nic(self, method: str, name: str, body: Any) -> httpx.Response:
        nic_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkInterfaces/{name}"
        if method == "PUT":
            invalid = invalid_content(nic_errors, body)
            if invalid is not None:
                return invalid
            configs = ((body or {}).get("properties") or {}).get("ipConfigurations") or []
            subnet = ((configs[0].get("properties") or {}).get("subnet") or {}).get("id", "") if configs else ""
            if subnet != SUBNET:
                return arm_error(400, "InvalidResourceReference", f"Resource {subnet} referenced by resource {nic_id} was not found.")
            pip_ref = (((configs[0].get("properties") or {}).get("publicIPAddress") or {}).get("id", ""))
            nsg_ref = ((body.get("properties") or {}).get("networkSecurityGroup") or {}).get("id", "")
            for ref, known in ((pip_ref, self.public_ips), (nsg_ref, self.nsgs)):
                if ref and (ref.rsplit("/", 1)[-1] not in known or known[ref.rsplit("/", 1)[-1]]["id"] != ref):
                    return arm_error(400, "InvalidResourceReference", f"Resource {ref} referenced by resource {nic_id} was not found.")
            if pip_ref and any(self._nic_public_ip(n) == pip_ref for k, n in self.nics.items() if k != name):
                return arm_error(400, "PublicIPAddressInUse", f"Resource {pip_ref} is already in use by another network interface.")
            nic = {"name": name, "id": nic_id, "etag": f'W/"{uuid.uuid4()}"', "type": "Microsoft.Network/networkInterfaces",
                   "location": body["location"], "tags": body.get("tags", {}),
                   "properties": {"provisioningState": "Succeeded", "resourceGuid": str(uuid.uuid4()),
                                  "ipConfigurations": [{"name": configs[0]["name"], "id": f"{nic_id}/ipConfigurations/{configs[0]['name']}",
                                                        "etag": f'W/"{uuid.uuid4()}"', "type": "Microsoft.Network/networkInterfaces/ipConfigurations",
                                                        "properties": {"provisioningState": "Succeeded", "privateIPAddress": f"10.1.0.{next(self._ip)}",
                                                                       "privateIPAllocationMethod": "Dynamic", "subnet": {"id": subnet},
                                                                       "primary": True, "privateIPAddressVersion": "IPv4",
                                                                       **({"publicIPAddress": {"id": pip_ref}} if pip_ref else {})}}],
                                  "dnsSettings": {"dnsServers": [], "appliedDnsServers": []}, "enableAcceleratedNetworking": False,
                                  "enableIPForwarding": False, "disableTcpStateTracking": False, "nicType": "Standard",
                                  "vnetEncryptionSupported": False,
                                  **({"networkSecurityGroup": {"id": nsg_ref}} if nsg_ref else {})}}
            self.nics[name] = nic
            url = self._start_operation(body["location"], None, polls=1)  # NICs are quick
            return httpx.Response(201, json=nic, headers={"Azure-AsyncOperation": url, "Retry-After": "0"})
        nic = self.nics.get(name)
        if nic is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/networkInterfaces/{name}' under resource group '{RG}' was not found.")
        if method == "GET":
            return httpx.Response(200, json=nic)
        if method == "DELETE":
            if any(v["properties"]["networkProfile"]["networkInterfaces"][0]["id"] == nic_id for v in self.vms.values()):
                return arm_error(400, "NicInUse", f"Network Interface {nic_id} is used by existing resource.")
            del self.nics[name]
            return httpx.Response(200)
        return arm_error(405, "MethodNotAllowed", method)

    @staticmethod
    def _nic_public_ip(nic: dict[str, Any]) -> str:
        return ((nic["properties"]["ipConfigurations"][0]["properties"].get("publicIPAddress")) or {}).get("id", "")

    # --- public IP addresses (Microsoft.Network/publicIPAddresses) -----------------------------------------
    def _public_ip_resource(self, method: str, name: str, body: Any) -> httpx.Response:
        pip_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/publicIPAddresses/{name}"
        if method == "PUT":
            invalid = invalid_content(public_ip_errors, body)
            if invalid is not None:
                return invalid
            sku = (body.get("sku") or {}).get("name", "Basic")
            props = body.get("properties") or {}
            if sku == "Standard" and props.get("publicIPAllocationMethod", "Dynamic") != "Static":
                # ARM's answer, e.g. MicrosoftDocs/azure-docs issue 42889: 400 StandardSkuPublicIPAddressesMustBeStatic
                return arm_error(400, "StandardSkuPublicIPAddressesMustBeStatic",
                                 f"Standard sku publicIp {pip_id} must have AllocationMethod set to Static.")
            old = self.public_ips.get(name)
            address = old["properties"]["ipAddress"] if old else f"20.81.7.{next(self._public_ip)}"
            pip = {"name": name, "id": pip_id, "etag": f'W/"{uuid.uuid4()}"', "type": "Microsoft.Network/publicIPAddresses",
                   "location": body["location"], "tags": body.get("tags", {}), "sku": {"name": sku, "tier": "Regional"},
                   **({"zones": body["zones"]} if body.get("zones") else {}),
                   "properties": {"provisioningState": "Succeeded", "resourceGuid": str(uuid.uuid4()), "ipAddress": address,
                                  "publicIPAddressVersion": props.get("publicIPAddressVersion", "IPv4"),
                                  "publicIPAllocationMethod": "Static", "idleTimeoutInMinutes": 4, "ipTags": [],
                                  "ddosSettings": {"protectionMode": "VirtualNetworkInherited"}}}
            self.public_ips[name] = pip
            url = self._start_operation(body["location"], None, polls=1)
            return httpx.Response(200 if old else 201, json=pip, headers={"Azure-AsyncOperation": url, "Retry-After": "0"})
        pip = self.public_ips.get(name)
        if pip is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/publicIPAddresses/{name}' under resource group '{RG}' was not found.")
        if method == "GET":
            return httpx.Response(200, json=pip)
        if method == "DELETE":
            holder = next((n for n in self.nics.values() if self._nic_public_ip(n) == pip_id), None)
            if holder is not None:  # e.g. ernestio/ernest issue 514: ARM's 400 for an address still on a NIC
                return arm_error(400, "PublicIPAddressCannotBeDeleted", f"Public IP address {pip_id} can not be deleted since it is "
                                 f"still allocated to resource {holder['id']}/ipConfigurations/ipconfig1. In order to delete the "
                                 f"public IP, disassociate/detach the Public IP address from the resource.  To learn how to do "
                                 f"this, see aka.ms/deletepublicip.")
            del self.public_ips[name]
            return httpx.Response(200)
        return arm_error(405, "MethodNotAllowed", method)

    # --- network security groups (Microsoft.Network/networkSecurityGroups) ---------------------------------
    def _nsg(self, method: str, name: str, body: Any) -> httpx.Response:
        nsg_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Network/networkSecurityGroups/{name}"
        if method == "PUT":
            invalid = invalid_content(nsg_errors, body)
            if invalid is not None:
                return invalid
            rules = (body.get("properties") or {}).get("securityRules") or []
            seen: dict[tuple[str, int], str] = {}
            for rule in rules:
                props = rule.get("properties") or {}
                priority, direction = props.get("priority"), props.get("direction")
                if not isinstance(priority, int) or not 100 <= priority <= 4096:
                    # the range is documented ("Network security groups", Security rules: "a number between
                    # 100 and 4096"); the error code name here is not verified against a real answer
                    return arm_error(400, "SecurityRuleInvalidPriority", f"Security rule {rule.get('name')} has invalid "
                                     f"Priority. Value provided: {priority} Allowed range 100-4096.")
                other = seen.get((direction, priority))
                if other:  # e.g. Azure/aks-engine issue 2106, hashicorp/terraform-provider-azurerm issue 11137
                    return arm_error(400, "SecurityRuleConflict", f"Security rule {rule.get('name')} conflicts with rule {other}. "
                                     "Rules cannot have the same Priority and Direction. To learn more, see aka.ms/nsgrules.")
                seen[(direction, priority)] = str(rule.get("name"))
            stored = {"name": name, "id": nsg_id, "etag": f'W/"{uuid.uuid4()}"', "type": "Microsoft.Network/networkSecurityGroups",
                      "location": body["location"], "tags": body.get("tags", {}),
                      "properties": {"provisioningState": "Succeeded", "resourceGuid": str(uuid.uuid4()),
                                     "securityRules": [{"name": r["name"], "id": f"{nsg_id}/securityRules/{r['name']}",
                                                        "etag": f'W/"{uuid.uuid4()}"', "type": "Microsoft.Network/networkSecurityGroups/securityRules",
                                                        "properties": {"provisioningState": "Succeeded", **r["properties"]}}
                                                       for r in rules],
                                     "defaultSecurityRules": []}}
            created = name not in self.nsgs
            self.nsgs[name] = stored
            url = self._start_operation(body["location"], None, polls=1)
            return httpx.Response(201 if created else 200, json=stored, headers={"Azure-AsyncOperation": url, "Retry-After": "0"})
        nsg = self.nsgs.get(name)
        if nsg is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Network/networkSecurityGroups/{name}' under resource group '{RG}' was not found.")
        if method == "GET":
            return httpx.Response(200, json=nsg)
        if method == "DELETE":
            holder = next((n for n in self.nics.values()
                           if (n["properties"].get("networkSecurityGroup") or {}).get("id") == nsg_id), None)
            if holder is not None:
                return arm_error(400, "InUseNetworkSecurityGroupCannotBeDeleted", f"Network security group {nsg_id} cannot be "
                                 f"deleted because it is in use by the following resources: {holder['id']}.")
            del self.nsgs[name]
            return httpx.Response(200)
        return arm_error(405, "MethodNotAllowed", method)

    # --- virtual machines ---------------------------------------------------------------------------------
    def _vm_view(self, vm: dict[str, Any], expand: bool) -> dict[str, Any]:
        out = {k: v for k, v in vm.items() if not k.startswith("_")}
        out["properties"] = {k: v for k, v in vm["properties"].items()}
        out["properties"]["osProfile"] = {k: v for k, v in vm["properties"]["osProfile"].items() if k != "customData"}
        if expand:
            out["properties"]["instanceView"] = self._instance_view(vm)
        return out

    def _instance_view(self, vm: dict[str, Any]) -> dict[str, Any]:
        prov = vm["properties"]["provisioningState"]
        statuses = [{"code": f"ProvisioningState/{prov.lower()}", "level": "Error" if prov == "Failed" else "Info",
                     "displayStatus": f"Provisioning {prov.lower()}", "time": vm["properties"]["timeCreated"]}]
        if prov == "Failed" and vm.get("_error"):  # Azure appends the error code: ProvisioningState/failed/AllocationFailed
            statuses[0]["code"] = f"ProvisioningState/failed/{vm['_error']['code']}"
            statuses[0]["message"] = vm["_error"]["message"]
        if vm.get("_power"):
            statuses.append({"code": f"PowerState/{vm['_power']}", "level": "Info", "displayStatus": f"VM {vm['_power']}"})
        return {"computerName": vm["properties"]["osProfile"]["computerName"], "osName": "ubuntu", "osVersion": "22.04",
                "hyperVGeneration": "V2", "statuses": statuses}

    def _remove_vm(self, name: str) -> None:
        vm = self.vms.pop(name, None)
        if vm is None:
            return
        for ref in vm["properties"]["networkProfile"]["networkInterfaces"]:
            if (ref.get("properties") or {}).get("deleteOption") == "Delete":
                self.nics.pop(ref["id"].rsplit("/", 1)[1], None)

    def _vm(self, method: str, name: str, instance_view: bool, q: dict[str, str], body: Any) -> httpx.Response:
        if method == "PUT" and not instance_view:
            return self._create_vm(name, body)
        vm = self.vms.get(name)
        if vm is None:
            return arm_error(404, "ResourceNotFound", f"The Resource 'Microsoft.Compute/virtualMachines/{name}' under resource group '{RG}' was not found.")
        if method == "GET":
            if instance_view:
                return httpx.Response(200, json=self._instance_view(vm))
            return httpx.Response(200, json=self._vm_view(vm, q.get("$expand") == "instanceView"))
        if method == "DELETE":
            vm["properties"]["provisioningState"] = "Deleting"
            url = self._start_operation(vm["location"], lambda: self._remove_vm(name))
            self.operations[url.split("/operations/")[1].split("?")[0]].update(location_style=True, url=url)
            return httpx.Response(202, headers={"Location": url, "Retry-After": "0"})
        return arm_error(405, "MethodNotAllowed", method)

    def _create_vm(self, name: str, body: Any) -> httpx.Response:
        invalid = invalid_content(vm_errors, body)
        if invalid is not None:
            return invalid
        props = (body or {}).get("properties") or {}
        size = (props.get("hardwareProfile") or {}).get("vmSize", "")
        loc = (body or {}).get("location", "")
        if size not in CATALOG or loc not in CATALOG[size][4] or any(r["type"] == "Location" for r in self.restrictions.get(size, [])
                                                                      if loc in r["values"]):
            return arm_error(409, "SkuNotAvailable", f"The requested VM size for resource 'Following SKUs have failed for Capacity "
                             f"Restrictions: {size}' is currently not available in location '{loc}'. Please try another size or deploy "
                             f"to a different location or different zone. See https://aka.ms/azureskunotavailable for details.")
        if self.quota:
            family = CATALOG[size][0]
            return arm_error(409, "OperationNotAllowed", f"Operation could not be completed as it results in exceeding approved "
                             f"{family} Cores quota. Additional details - Deployment Model: Resource Manager, Location: {loc}, "
                             f"Current Limit: 0, Current Usage: 0, Additional Required: {CATALOG[size][1]}, (Minimum) New Limit Required: "
                             f"{CATALOG[size][1]}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP")
        nic_ref = ((props.get("networkProfile") or {}).get("networkInterfaces") or [{}])[0].get("id", "")
        if nic_ref.rsplit("/", 1)[-1] not in self.nics:
            return arm_error(400, "InvalidResourceReference", f"Resource {nic_ref} referenced by resource {name} was not found.")
        code = self.capacity.get((size, loc))
        if code and not self.capacity_async:
            return arm_error(409, code, "Allocation failed. We do not have sufficient capacity for the requested VM size in this region.")
        vm_id = f"/subscriptions/{SUB}/resourceGroups/{RG}/providers/Microsoft.Compute/virtualMachines/{name}"
        stored = json.loads(json.dumps(body))
        stored.update({"name": name, "id": vm_id, "type": "Microsoft.Compute/virtualMachines"})
        stored["properties"].update({"vmId": str(uuid.uuid4()), "provisioningState": "Creating", "timeCreated": _ts()})
        os_disk = stored["properties"]["storageProfile"]["osDisk"]
        os_disk.update({"osType": "Linux", "name": f"{name}_OsDisk_1_{uuid.uuid4().hex}", "caching": "ReadWrite"})
        os_disk["managedDisk"]["id"] = f"/subscriptions/{SUB}/resourceGroups/{RG.upper()}/providers/Microsoft.Compute/disks/{os_disk['name']}"
        self.vms[name] = stored
        error = None
        if code:
            error = {"code": code, "message": "Allocation failed. We do not have sufficient capacity for the requested VM size in this "
                     "region. Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"}

        def done() -> None:
            vm = self.vms.get(name)
            if vm is None:
                return
            if error:
                vm["properties"]["provisioningState"] = "Failed"
                vm["_error"] = error
            else:
                vm["properties"]["provisioningState"] = "Succeeded"
                vm["_power"] = "running"

        url = self._start_operation(loc, done, error=error)
        return httpx.Response(201, json=self._vm_view(stored, False), headers={"Azure-AsyncOperation": url, "Retry-After": "0"})

    def _event(self, vm: dict[str, Any], op: str, label: str) -> dict[str, Any]:
        return {"authorization": {"action": op, "scope": vm["id"]}, "caller": "Microsoft.Compute", "channels": "Operation",
                "correlationId": str(uuid.uuid4()), "description": "", "eventDataId": str(uuid.uuid4()),
                "eventName": {"value": "EndRequest", "localizedValue": "End request"},
                "category": {"value": "Administrative", "localizedValue": "Administrative"}, "eventTimestamp": _ts(),
                "id": f"{vm['id']}/events/{uuid.uuid4()}", "level": "Informational", "operationId": str(uuid.uuid4()),
                "operationName": {"value": op, "localizedValue": label}, "resourceGroupName": RG,
                "resourceProviderName": {"value": "Microsoft.Compute", "localizedValue": "Microsoft.Compute"},
                "resourceType": {"value": "Microsoft.Compute/virtualMachines", "localizedValue": "Microsoft.Compute/virtualMachines"},
                "resourceId": vm["id"], "status": {"value": "Succeeded", "localizedValue": "Succeeded"},
                "subStatus": {"value": "", "localizedValue": ""}, "submissionTimestamp": _ts(), "subscriptionId": SUB, "tenantId": TENANT}


def credentials() -> dict[str, str]:
    return {"tenant_id": TENANT, "client_id": CLIENT_ID, "client_secret": SECRET, "subscription_id": SUB}


def account_settings(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": base_url, "resource_group": RG, "subnet_id": SUBNET, "locations": ["eastus", "westeurope", "swedencentral"],
            "ssh_public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAOhB7/zzhC+HXDdGOdLwJln5NYwm6UNXx3chmQSVTG4 provisioner", "poll_interval_seconds": 0.01,
            **extra}
