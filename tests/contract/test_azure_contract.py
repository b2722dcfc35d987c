"""Pin the Azure stand-in's wire shapes (and what the adapter sends) with strict schemas.

Written from providers.md §8: Entra ID token responses, ARM errors, resource SKUs
(2021-07-01), Retail Prices items and paging, the VM create body (2024-07-01 field names),
the VM with its instanceView, network interfaces, public IP addresses and network security groups
(api-version 2024-05-01 field names), long-running operation status and Activity
Log events. Every object is closed (``additionalProperties: false``), so a field that either
the adapter or the stand-in invents fails.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from providers.adapters.azure import AzureAdapter
from providers.adapters.base import CapacityUnavailable, InvalidCredentials, LaunchRequest, QuotaExceeded, TransientError
from providers.adapters.rest import tokens
from tests.standins.azure import FakeAzure, account_settings, credentials

S, INT, B, N, NUL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}, {"type": "null"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}


def obj(*required: str, **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def enum(*values: Any) -> dict[str, Any]:
    return {"enum": list(values)}


LOCALIZED = obj("value", value=S, localizedValue=S)
TOKEN = obj("token_type", "expires_in", "access_token", token_type={"const": "Bearer"}, expires_in=INT, ext_expires_in=INT,
            access_token=S)
TOKEN_ERROR = obj("error", "error_description", error=S, error_description=S, error_codes=arr(INT), timestamp=S, trace_id=S,
                  correlation_id=S, error_uri=S)
ARM_ERROR = obj("error", error=obj("code", "message", code=S, message=S, target=S,
                                   details=arr(obj("code", "message", code=S, message=S, target=S))))
SUBSCRIPTION = obj("id", "subscriptionId", "state", id=S, authorizationSource=S, subscriptionId=S, tenantId=S, displayName=S,
                   state=enum("Enabled", "Warned", "PastDue", "Disabled", "Deleted"),
                   subscriptionPolicies=obj(locationPlacementId=S, quotaId=S, spendingLimit=enum("On", "Off", "CurrentPeriodOff")))
SKU = obj("resourceType", "name", "locations", "capabilities", "restrictions", resourceType=S, name=S, tier=S, size=S, family=S,
          locations=arr(S), locationInfo=arr(obj("location", location=S, zones=arr(S), zoneDetails=arr({"type": "object"}))),
          capabilities=arr(obj("name", "value", name=S, value=S)),
          restrictions=arr(obj("type", "values", type=enum("Location", "Zone"), values=arr(S),
                               restrictionInfo=obj(locations=arr(S), zones=arr(S)),
                               reasonCode=enum("QuotaId", "NotAvailableForSubscription"))))
SKU_LIST = obj("value", value=arr(SKU), nextLink=S)
PRICE_ITEM = obj("currencyCode", "retailPrice", "unitPrice", "armRegionName", "meterName", "productName", "skuName", "serviceName",
                 "unitOfMeasure", "type", "armSkuName",
                 currencyCode=S, tierMinimumUnits=N, retailPrice=N, unitPrice=N, armRegionName=S, location=S, effectiveStartDate=S,
                 meterId=S, meterName=S, productId=S, skuId=S, productName=S, skuName=S, serviceName=S, serviceId=S,
                 serviceFamily=S, unitOfMeasure=S, type=enum("Consumption", "DevTestConsumption", "Reservation"),
                 isPrimaryMeterRegion=B, armSkuName=S, reservationTerm=S, savingsPlan=arr({"type": "object"}))
PRICES = obj("Items", "NextPageLink", BillingCurrency=S, CustomerEntityId=S, CustomerEntityType=S, Items=arr(PRICE_ITEM),
             NextPageLink={"type": ["string", "null"]}, Count=INT)
MANAGED_DISK = obj(storageAccountType=enum("Standard_LRS", "Premium_LRS", "StandardSSD_LRS", "UltraSSD_LRS", "Premium_ZRS",
                                           "StandardSSD_ZRS", "PremiumV2_LRS"), id=S)
DELETE_OPTION = enum("Delete", "Detach")


def vm_properties(response: bool) -> dict[str, Any]:
    os_disk = dict(createOption=enum("FromImage", "Attach", "Empty"), diskSizeGB=INT, managedDisk=MANAGED_DISK,
                   deleteOption=DELETE_OPTION)
    if response:
        os_disk.update(osType=enum("Linux", "Windows"), name=S, caching=enum("None", "ReadOnly", "ReadWrite"))
    props: dict[str, Any] = dict(
        hardwareProfile=obj("vmSize", vmSize=S),
        storageProfile=obj("imageReference", "osDisk",
                           imageReference=obj("publisher", "offer", "sku", "version", publisher=S, offer=S, sku=S, version=S),
                           osDisk=obj("createOption", **os_disk),
                           dataDisks=arr(obj("lun", "createOption", lun=INT, createOption=enum("Empty", "Attach", "FromImage"),
                                             diskSizeGB=INT, managedDisk=MANAGED_DISK, deleteOption=DELETE_OPTION))),
        osProfile=obj("computerName", "adminUsername", computerName=S, adminUsername=S, customData=False if response else S,
                      linuxConfiguration=obj(disablePasswordAuthentication=B,
                                             ssh=obj(publicKeys=arr(obj("path", "keyData", path=S, keyData=S))))),
        networkProfile=obj("networkInterfaces", networkInterfaces=arr(obj("id", id=S, properties=obj(primary=B, deleteOption=DELETE_OPTION)))),
        priority=enum("Regular", "Low", "Spot"), evictionPolicy=enum("Deallocate", "Delete"),
        billingProfile=obj("maxPrice", maxPrice=N))
    if response:
        props.update(vmId=S, provisioningState=S, timeCreated=S,
                     instanceView=INSTANCE_VIEW)
    return obj("hardwareProfile", "storageProfile", "osProfile", "networkProfile", **props)


INSTANCE_VIEW = obj("statuses", computerName=S, osName=S, osVersion=S, hyperVGeneration=S,
                    statuses=arr(obj("code", code={"pattern": "^(ProvisioningState|PowerState)/"}, level=enum("Info", "Warning", "Error"),
                                     displayStatus=S, message=S, time=S)))
VM_CREATE = obj("location", "properties", location=S, zones=arr(S), tags=STR_MAP, properties=vm_properties(False))
VM = obj("name", "id", "type", "location", "properties", name=S, id=S, type={"const": "Microsoft.Compute/virtualMachines"},
         location=S, zones=arr(S), tags=STR_MAP, properties=vm_properties(True))
VM_LIST = obj("value", value=arr(VM), nextLink=S)
REF = obj("id", id=S)
IP_CONFIG_PROPS = dict(subnet=REF, privateIPAllocationMethod=enum("Dynamic", "Static"), publicIPAddress=REF)
NIC_CREATE = obj("location", "properties", location=S, tags=STR_MAP,
                 properties=obj("ipConfigurations", ipConfigurations=arr(obj("name", "properties", name=S,
                                                                             properties=obj("subnet", **IP_CONFIG_PROPS))),
                                networkSecurityGroup=REF))
PIP_SKU = obj("name", name=enum("Standard"), tier=enum("Regional", "Global"))
PUBLIC_IP_CREATE = obj("location", "sku", "properties", location=S, tags=STR_MAP, zones=arr(S), sku=PIP_SKU,
                       properties=obj("publicIPAllocationMethod", publicIPAllocationMethod={"const": "Static"},
                                      publicIPAddressVersion=enum("IPv4", "IPv6")))
PUBLIC_IP = obj("name", "id", "type", "location", "sku", "properties", name=S, id=S, etag=S,
                type={"const": "Microsoft.Network/publicIPAddresses"}, location=S, tags=STR_MAP, zones=arr(S), sku=PIP_SKU,
                properties=obj("ipAddress", "publicIPAllocationMethod", provisioningState=S, resourceGuid=S, ipAddress=S,
                               publicIPAddressVersion=enum("IPv4", "IPv6"), publicIPAllocationMethod={"const": "Static"},
                               idleTimeoutInMinutes=INT, ipTags=arr({"type": "object"}), ddosSettings=obj(protectionMode=S)))
RULE_PROPS = dict(protocol=enum("Tcp", "Udp", "Icmp", "Esp", "*", "Ah"), sourcePortRange=S, destinationPortRange=S,
                  sourceAddressPrefix=S, sourceAddressPrefixes=arr(S), destinationAddressPrefix=S, access=enum("Allow", "Deny"),
                  priority={"type": "integer", "minimum": 100, "maximum": 4096}, direction=enum("Inbound", "Outbound"))
RULE_REQUIRED = ("protocol", "sourcePortRange", "destinationPortRange", "destinationAddressPrefix", "access", "priority", "direction")
NSG_CREATE = obj("location", "properties", location=S, tags=STR_MAP,
                 properties=obj("securityRules", securityRules=arr(obj("name", "properties", name=S,
                                                                       properties=obj(*RULE_REQUIRED, **RULE_PROPS)))))
NSG = obj("name", "id", "type", "location", "properties", name=S, id=S, etag=S,
          type={"const": "Microsoft.Network/networkSecurityGroups"}, location=S, tags=STR_MAP,
          properties=obj("securityRules", provisioningState=S, resourceGuid=S, defaultSecurityRules=arr({"type": "object"}),
                         securityRules=arr(obj("name", "id", "properties", name=S, id=S, etag=S, type=S,
                                               properties=obj(*RULE_REQUIRED, provisioningState=S, **RULE_PROPS)))))
NIC = obj("name", "id", "type", "location", "properties", name=S, id=S, etag=S, type={"const": "Microsoft.Network/networkInterfaces"},
          location=S, tags=STR_MAP,
          properties=obj("ipConfigurations", provisioningState=S, resourceGuid=S,
                         ipConfigurations=arr(obj("name", "id", "properties", name=S, id=S, etag=S, type=S,
                                                  properties=obj("subnet", provisioningState=S, privateIPAddress=S, primary=B,
                                                                 privateIPAddressVersion=enum("IPv4", "IPv6"), **IP_CONFIG_PROPS))),
                         dnsSettings=obj(dnsServers=arr(S), appliedDnsServers=arr(S)), enableAcceleratedNetworking=B,
                         enableIPForwarding=B, disableTcpStateTracking=B, nicType=enum("Standard", "Elastic"),
                         vnetEncryptionSupported=B, networkSecurityGroup=REF))
OPERATION = obj("status", "name", status=enum("InProgress", "Succeeded", "Failed", "Canceled"), name=S, startTime=S, endTime=S,
                error=obj("code", "message", code=S, message=S, details=arr({"type": "object"})))
EVENT = obj("operationName", "resourceId", "eventTimestamp", "status",
            authorization=obj(action=S, scope=S), caller=S, channels=S, correlationId=S, description=S, eventDataId=S,
            eventName=LOCALIZED, category=LOCALIZED, eventTimestamp=S, id=S, level=S, operationId=S, operationName=LOCALIZED,
            resourceGroupName=S, resourceProviderName=LOCALIZED, resourceType=LOCALIZED, resourceId=S, status=LOCALIZED,
            subStatus=LOCALIZED, submissionTimestamp=S, subscriptionId=S, tenantId=S)
EVENTS = obj("value", value=arr(EVENT), nextLink=S)
RESOURCE_GROUP = obj("id", "name", "location", id=S, name=S, type={"const": "Microsoft.Resources/resourceGroups"}, location=S,
                     tags=STR_MAP, managedBy=S, properties=obj(provisioningState=S))
SUBNET = obj("id", "name", "properties", id=S, name=S, etag=S, type={"const": "Microsoft.Network/virtualNetworks/subnets"},
             properties=obj("addressPrefix", provisioningState=S, addressPrefix=S, privateEndpointNetworkPolicies=S,
                            privateLinkServiceNetworkPolicies=S))


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]


def response_schema(method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    if "/operations/" in path:  # a failed operation carries its error inside the status body
        return OPERATION
    if "error" in body:
        return TOKEN_ERROR if path.endswith("/token") else ARM_ERROR
    if path.endswith("/oauth2/v2.0/token"):
        return TOKEN
    if path == "/api/retail/prices":
        return PRICES
    if path.endswith("/providers/Microsoft.Compute/skus"):
        return SKU_LIST
    if path.endswith("/eventtypes/management/values"):
        return EVENTS
    if "/networkInterfaces/" in path:
        return NIC
    if "/publicIPAddresses/" in path:
        return PUBLIC_IP
    if "/networkSecurityGroups/" in path:
        return NSG
    if "/subnets/" in path:
        return SUBNET
    if path.rstrip("/").split("/")[-2] == "resourceGroups":
        return RESOURCE_GROUP
    if path.endswith("/virtualMachines"):
        return VM_LIST
    if path.endswith("/instanceView"):
        return INSTANCE_VIEW
    if "/virtualMachines/" in path:
        return VM
    return SUBSCRIPTION


@pytest.fixture
def scenario():
    tokens.clear()
    fa = FakeAzure()
    fa.restrict("Standard_NC4as_T4_v3", "westeurope")
    fa.restrict("Standard_NC4as_T4_v3", "eastus", zones=["3"])
    settings = account_settings("https://azure.invalid")
    a = AzureAdapter(credentials(), settings, transport=fa.transport(), sleep=lambda seconds: None)
    a.verify()
    a.list_offers()
    req = LaunchRequest(tag="aaaaaaaa-0000-4000-8000-000000000001", name="nb", image="jupyter/base-notebook", gpu_class="A100-80",
                        gpu_count=1, region="eastus", zone="1", instance_type="Standard_NC24ads_A100_v4", spot=True,
                        bid_price_per_hour=Decimal("0.9"), ports=[{"port": 8888}], env={"A": "1"},
                        volumes=[{"kind": "persistent", "size_gb": 64, "mount_path": "/data"}])
    vm = a.launch(req)
    a.launch(req)
    a.list_pods()
    fa.evict(vm.external_id)
    a.get(vm.external_id)
    on_demand = a.launch(LaunchRequest(tag="bbbbbbbb-0000-4000-8000-000000000001", name="svc", image="vllm/vllm-openai", gpu_class="T4",
                                       gpu_count=1, region="eastus", instance_type="Standard_NC4as_T4_v3"))
    a.terminate(on_demand.external_id)
    fa.capacity[("Standard_NC24ads_A100_v4", "eastus")] = "AllocationFailed"
    with pytest.raises(CapacityUnavailable):
        a.launch(LaunchRequest(tag="cccccccc-0000-4000-8000-000000000001", name="x", image="x", gpu_class="A100-80", gpu_count=1,
                               region="eastus", instance_type="Standard_NC24ads_A100_v4"))
    fa.quota = True
    with pytest.raises(QuotaExceeded):
        a.launch(LaunchRequest(tag="dddddddd-0000-4000-8000-000000000001", name="x", image="x", gpu_class="T4", gpu_count=1,
                               region="eastus", instance_type="Standard_NC4as_T4_v3"))
    fa.throttle(times=4)  # more than the shared retry policy absorbs
    with pytest.raises(TransientError):
        a.verify()
    with pytest.raises(InvalidCredentials):
        AzureAdapter({**credentials(), "client_secret": "bad"}, settings, transport=fa.transport()).verify()
    return fa


def test_every_response_matches_the_schemas(scenario):
    seen = set()
    for method, path, body in scenario.responses:
        schema = response_schema(method, path, body)
        assert not errors(schema, body), (method, path, errors(schema, body))
        seen.add(next(k for k, v in globals().items() if v is schema))
    assert {"TOKEN", "TOKEN_ERROR", "ARM_ERROR", "SUBSCRIPTION", "SKU_LIST", "PRICES", "OPERATION", "EVENTS", "NIC", "VM",
            "VM_LIST", "RESOURCE_GROUP", "SUBNET", "PUBLIC_IP", "NSG"} <= seen


def test_every_request_body_matches_the_schemas(scenario):
    bodies = [(r["path"], r["body"]) for r in scenario.requests if r["method"] == "PUT"]
    assert bodies
    for path, body in bodies:
        schema = next((v for k, v in (("/networkInterfaces/", NIC_CREATE), ("/publicIPAddresses/", PUBLIC_IP_CREATE),
                                      ("/networkSecurityGroups/", NSG_CREATE)) if k in path), VM_CREATE)
        assert not errors(schema, body), (path, errors(schema, body))
    token_forms = [r["body"] for r in scenario.requests if r["path"].endswith("/token")]
    assert all(set(f) == {"grant_type", "client_id", "client_secret", "scope"} for f in token_forms)
    assert all("api-version" in r["query"] for r in scenario.requests
               if r["path"].startswith("/subscriptions/") and not r["query"].get("$skiptoken"))


def test_retail_prices_queries_use_the_documented_filter_fields(scenario):
    filters = [r["query"]["$filter"] for r in scenario.requests if r["path"] == "/api/retail/prices" and "$filter" in r["query"]]
    assert filters
    for f in filters:
        assert "serviceName eq 'Virtual Machines'" in f and "armRegionName eq '" in f and "armSkuName eq '" in f
        assert "priceType eq 'Consumption'" in f


def test_an_invented_field_fails(scenario):
    vm = next(body for method, path, body in scenario.responses if method == "GET" and "/virtualMachines/" in path
              and "properties" in body)
    assert not errors(VM, vm)
    broken = {**vm, "gpuCount": 1, "properties": {**vm["properties"], "spot": True}}
    assert len(errors(VM, broken)) == 2
