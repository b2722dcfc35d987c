"""Contract of the GCP adapter and its stand-in: JSON Schemas of every request and response they
exchange, written from the Compute Engine v1 discovery document, the Cloud Billing Catalog API
and Google's OAuth 2.0 service-account flow (facts in providers.md section 7).

The schemas are strict (``additionalProperties: false`` everywhere), so a field that the API
does not define fails -- on the adapter's side (a request) as on the stand-in's (a response).
Enums are pinned (``provisioningModel``, ``instanceTerminationAction``, ``onHostMaintenance``,
``status``...), and int64 fields are strings, as Google's JSON encodes them.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

import jsonschema
import pytest

from providers.adapters import gcp as gcp_module
from providers.adapters.base import LaunchRequest
from providers.adapters.gcp import GcpAdapter, signed_jwt
from tests.standins import gcp as standin


def obj(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


STR = {"type": "string"}
INT64 = {"type": "string", "pattern": r"^-?\d+$"}  # int64/uint64 travel as strings
BOOL = {"type": "boolean"}
TIMESTAMP = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?([+-]\d\d:\d\d|Z)$"}
ZONE_RE = r"[a-z]+-[a-z]+\d+-[a-z]"
NAME = {"type": "string", "pattern": r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"}
UUID = {"type": "string", "pattern": r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"}
URL = {"type": "string", "pattern": r"^https://www\.googleapis\.com/compute/v1/projects/"}


def partial_url(kind: str) -> dict[str, Any]:
    return {"type": "string", "pattern": rf"^(https://www\.googleapis\.com/compute/v1/projects/[^/]+/)?zones/{ZONE_RE}/{kind}/[a-z0-9-]+$"}


SCHEDULING = obj({
    "onHostMaintenance": {"enum": ["MIGRATE", "TERMINATE"]},
    "automaticRestart": BOOL,
    "preemptible": BOOL,
    "provisioningModel": {"enum": ["STANDARD", "SPOT"]},
    "instanceTerminationAction": {"enum": ["STOP", "DELETE"]},
})
LABELS = {"type": "object", "propertyNames": {"pattern": r"^[a-z][a-z0-9_-]{0,62}$"},
          "additionalProperties": {"type": "string", "pattern": r"^[a-z0-9_-]{0,63}$"}}
METADATA_ITEMS = {"type": "array", "items": obj({"key": {"type": "string", "pattern": r"^[a-zA-Z0-9-_]{1,128}$"},
                                                 "value": {"type": "string", "maxLength": 262144}}, ("key",))}
ACCESS_CONFIG_REQ = obj({"type": {"enum": ["ONE_TO_ONE_NAT", "DIRECT_IPV6"]}, "name": STR,
                         "networkTier": {"enum": ["PREMIUM", "STANDARD"]}}, ("type",))

INSERT_BODY = obj({
    "name": NAME,
    "machineType": partial_url("machineTypes"),
    "guestAccelerators": {"type": "array", "items": obj({
        "acceleratorType": partial_url("acceleratorTypes"),
        "acceleratorCount": {"type": "integer", "minimum": 1, "maximum": 16}}, ("acceleratorType", "acceleratorCount"))},
    "scheduling": SCHEDULING,
    "disks": {"type": "array", "minItems": 1, "items": obj({
        "boot": BOOL, "autoDelete": BOOL, "type": {"enum": ["PERSISTENT", "SCRATCH"]}, "mode": {"enum": ["READ_WRITE", "READ_ONLY"]},
        "initializeParams": obj({"sourceImage": {"type": "string", "pattern": r"^(https://www\.googleapis\.com/compute/v1/)?projects/[^/]+/global/images/"},
                                 "diskSizeGb": INT64, "diskType": partial_url("diskTypes")}, ("sourceImage",))})},
    "networkInterfaces": {"type": "array", "minItems": 1, "items": obj({
        "network": {"type": "string", "pattern": r"^(https://www\.googleapis\.com/compute/v1/)?(projects/[^/]+/)?global/networks/"},
        "subnetwork": STR, "accessConfigs": {"type": "array", "items": ACCESS_CONFIG_REQ}})},
    "metadata": obj({"items": METADATA_ITEMS}),
    "labels": LABELS,
    "tags": obj({"items": {"type": "array", "items": {"type": "string", "pattern": r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$"}}}),
}, ("name", "machineType", "disks", "networkInterfaces"))

INSERT_QUERY = obj({"requestId": UUID}, ("requestId",))

WARNING = obj({"code": {"enum": ["NO_RESULTS_ON_PAGE", "UNREACHABLE", "DEPRECATED_RESOURCE_USED", "PARTIAL_SUCCESS"]},
               "message": STR, "data": {"type": "array", "items": obj({"key": STR, "value": STR})}})
OPERATION = obj({
    "kind": {"const": "compute#operation"}, "id": INT64, "name": {"type": "string", "pattern": r"^operation-"},
    "zone": URL, "operationType": {"enum": ["insert", "delete", "stop", "start", "compute.instances.preempted"]},
    "targetLink": URL, "targetId": INT64, "status": {"enum": ["PENDING", "RUNNING", "DONE"]}, "statusMessage": STR,
    "user": STR, "progress": {"type": "integer", "minimum": 0, "maximum": 100}, "insertTime": TIMESTAMP,
    "startTime": TIMESTAMP, "endTime": TIMESTAMP, "selfLink": URL,
    "error": obj({"errors": {"type": "array", "items": obj({"code": STR, "message": STR, "location": STR})}}),
    "httpErrorStatusCode": {"type": "integer"}, "httpErrorMessage": STR,
}, ("kind", "id", "name", "operationType", "status", "targetLink", "selfLink"))

INSTANCE = obj({
    "kind": {"const": "compute#instance"}, "id": INT64, "creationTimestamp": TIMESTAMP, "name": NAME,
    "machineType": URL, "status": {"enum": ["PROVISIONING", "STAGING", "RUNNING", "STOPPING", "STOPPED", "SUSPENDING",
                                            "SUSPENDED", "REPAIRING", "TERMINATED"]},
    "statusMessage": STR, "zone": URL,
    "networkInterfaces": {"type": "array", "items": obj({
        "kind": {"const": "compute#networkInterface"}, "name": STR, "network": URL, "networkIP": STR, "fingerprint": STR,
        "stackType": {"enum": ["IPV4_ONLY", "IPV4_IPV6"]},
        "accessConfigs": {"type": "array", "items": obj({"kind": {"const": "compute#accessConfig"}, "type": {"enum": ["ONE_TO_ONE_NAT"]},
                                                          "name": STR, "natIP": STR, "networkTier": {"enum": ["PREMIUM", "STANDARD"]}})}})},
    "disks": {"type": "array", "items": obj({
        "kind": {"const": "compute#attachedDisk"}, "type": {"enum": ["PERSISTENT", "SCRATCH"]}, "mode": {"enum": ["READ_WRITE", "READ_ONLY"]},
        "source": URL, "deviceName": STR, "index": {"type": "integer"}, "boot": BOOL, "autoDelete": BOOL,
        "interface": {"enum": ["SCSI", "NVME"]}, "diskSizeGb": INT64, "architecture": {"enum": ["X86_64", "ARM64"]}})},
    "guestAccelerators": {"type": "array", "items": obj({"acceleratorType": URL, "acceleratorCount": {"type": "integer"}})},
    "metadata": obj({"kind": {"const": "compute#metadata"}, "fingerprint": STR, "items": METADATA_ITEMS}),
    "tags": obj({"items": {"type": "array", "items": STR}, "fingerprint": STR}),
    "scheduling": SCHEDULING, "cpuPlatform": STR, "labels": LABELS, "labelFingerprint": STR, "startRestricted": BOOL,
    "deletionProtection": BOOL, "selfLink": URL, "lastStartTimestamp": TIMESTAMP, "lastStopTimestamp": TIMESTAMP,
    "fingerprint": STR,
}, ("kind", "id", "name", "status", "zone", "machineType", "selfLink"))

ACCELERATOR_TYPE = obj({"kind": {"const": "compute#acceleratorType"}, "id": INT64, "creationTimestamp": TIMESTAMP,
                        "name": STR, "description": STR, "zone": URL, "selfLink": URL,
                        "maximumCardsPerInstance": {"type": "integer", "minimum": 1}},
                       ("kind", "name", "zone", "maximumCardsPerInstance"))
MACHINE_TYPE = obj({"kind": {"const": "compute#machineType"}, "id": INT64, "creationTimestamp": TIMESTAMP, "name": STR,
                    "description": STR, "guestCpus": {"type": "integer"}, "memoryMb": {"type": "integer"},
                    "maximumPersistentDisks": {"type": "integer"}, "maximumPersistentDisksSizeGb": INT64, "zone": STR,
                    "selfLink": URL, "isSharedCpu": BOOL, "architecture": {"enum": ["X86_64", "ARM64"]},
                    "accelerators": {"type": "array", "items": obj({"guestAcceleratorType": STR,
                                                                   "guestAcceleratorCount": {"type": "integer"}})}},
                   ("kind", "name", "guestCpus", "memoryMb", "zone"))


def aggregated(kind: str, key: str, item: dict[str, Any]) -> dict[str, Any]:
    scoped = obj({key: {"type": "array", "items": item}, "warning": WARNING})
    return obj({"kind": {"const": kind}, "id": STR, "selfLink": URL, "nextPageToken": STR,
                "items": {"type": "object", "patternProperties": {rf"^zones/{ZONE_RE}$": scoped}, "additionalProperties": False},
                "unreachables": {"type": "array", "items": STR}}, ("kind", "items"))


MONEY = obj({"currencyCode": {"const": "USD"}, "units": INT64, "nanos": {"type": "integer", "minimum": 0, "maximum": 999999999}},
            ("currencyCode",))
SKU = obj({
    "name": {"type": "string", "pattern": r"^services/6F81-5844-456A/skus/[0-9A-F-]+$"}, "skuId": STR, "description": STR,
    "category": obj({"serviceDisplayName": STR, "resourceFamily": STR, "resourceGroup": STR,
                     "usageType": {"enum": ["OnDemand", "Preemptible", "Commit1Yr", "Commit3Yr"]}},
                    ("resourceFamily", "usageType")),
    "serviceRegions": {"type": "array", "items": STR},
    "pricingInfo": {"type": "array", "items": obj({
        "summary": STR, "effectiveTime": TIMESTAMP, "currencyConversionRate": {"type": "number"},
        "pricingExpression": obj({"usageUnit": STR, "displayQuantity": {"type": "number"}, "usageUnitDescription": STR,
                                  "baseUnit": STR, "baseUnitDescription": STR, "baseUnitConversionFactor": {"type": "number"},
                                  "tieredRates": {"type": "array", "items": obj({"startUsageAmount": {"type": "number"},
                                                                                 "unitPrice": MONEY})}},
                                 ("usageUnit", "tieredRates"))})},
    "serviceProviderName": STR,
    "geoTaxonomy": obj({"type": {"enum": ["GLOBAL", "REGIONAL", "MULTI_REGIONAL"]}, "regions": {"type": "array", "items": STR}}),
}, ("name", "skuId", "description", "category", "serviceRegions", "pricingInfo"))

SCHEMAS = {
    "token_request": obj({"grant_type": {"const": "urn:ietf:params:oauth:grant-type:jwt-bearer"},
                          "assertion": {"type": "string", "pattern": r"^[\w-]+\.[\w-]+\.[\w-]+$"}}, ("grant_type", "assertion")),
    "token_response": obj({"access_token": STR, "expires_in": {"type": "integer"}, "token_type": {"const": "Bearer"}},
                          ("access_token", "expires_in", "token_type")),
    "token_error": obj({"error": {"enum": ["invalid_grant", "invalid_scope", "unsupported_grant_type", "invalid_client"]},
                        "error_description": STR}, ("error",)),
    "jwt_header": obj({"alg": {"const": "RS256"}, "typ": {"const": "JWT"}, "kid": STR}, ("alg",)),
    "jwt_claims": obj({"iss": {"type": "string", "format": "email"}, "scope": STR, "aud": STR, "iat": {"type": "integer"},
                       "exp": {"type": "integer"}, "sub": STR}, ("iss", "scope", "aud", "iat", "exp")),
    "project": obj({"kind": {"const": "compute#project"}, "id": INT64, "name": STR, "creationTimestamp": TIMESTAMP,
                    "selfLink": URL, "defaultServiceAccount": STR, "xpnProjectStatus": STR,
                    "defaultNetworkTier": {"enum": ["PREMIUM", "STANDARD"]}}, ("kind", "name")),
    "accelerator_types": aggregated("compute#acceleratorTypeAggregatedList", "acceleratorTypes", ACCELERATOR_TYPE),
    "machine_types": aggregated("compute#machineTypeAggregatedList", "machineTypes", MACHINE_TYPE),
    "instances": aggregated("compute#instanceAggregatedList", "instances", INSTANCE),
    "aggregated_query": obj({"maxResults": {"type": "string", "pattern": r"^\d+$"}, "pageToken": STR,
                             "returnPartialSuccess": {"enum": ["true", "false"]}, "filter": STR}),
    "insert_body": INSERT_BODY,
    "insert_query": INSERT_QUERY,
    "operation": OPERATION,
    "operation_list": obj({"kind": {"const": "compute#operationList"}, "id": STR, "items": {"type": "array", "items": OPERATION},
                           "selfLink": URL, "nextPageToken": STR}, ("kind",)),
    "operation_list_query": obj({"filter": {"type": "string", "pattern": r'operationType = "compute\.instances\.preempted"'}}, ("filter",)),
    "instance": INSTANCE,
    "skus": obj({"skus": {"type": "array", "items": SKU}, "nextPageToken": STR}, ("skus",)),
    "skus_query": obj({"currencyCode": {"const": "USD"}, "pageSize": {"type": "string", "pattern": r"^\d+$"}, "pageToken": STR}),
    "error": obj({"error": obj({"code": {"type": "integer"}, "message": STR, "status": STR,
                                "errors": {"type": "array", "items": obj({"message": STR, "domain": STR, "reason": STR})}},
                               ("code", "message"))}, ("error",)),
}

P = r"/compute/v1/projects/[^/]+"
# (method, path regex) -> (request body schema, query schema, response schema)
ROUTES: list[tuple[str, str, str | None, str | None, str]] = [
    ("POST", r"/token", "token_request", None, "token_response"),
    ("GET", rf"{P}", None, None, "project"),
    ("GET", rf"{P}/aggregated/acceleratorTypes", None, "aggregated_query", "accelerator_types"),
    ("GET", rf"{P}/aggregated/machineTypes", None, "aggregated_query", "machine_types"),
    ("GET", rf"{P}/aggregated/instances", None, "aggregated_query", "instances"),
    ("POST", rf"{P}/zones/{ZONE_RE}/instances", "insert_body", "insert_query", "operation"),
    ("GET", rf"{P}/zones/{ZONE_RE}/instances/[a-z0-9-]+", None, None, "instance"),
    ("DELETE", rf"{P}/zones/{ZONE_RE}/instances/[a-z0-9-]+", None, None, "operation"),
    ("POST", rf"{P}/zones/{ZONE_RE}/instances/[a-z0-9-]+/(stop|start)", None, None, "operation"),
    ("GET", rf"{P}/zones/{ZONE_RE}/operations/operation-[a-z0-9-]+", None, None, "operation"),
    ("GET", rf"{P}/zones/{ZONE_RE}/operations", None, "operation_list_query", "operation_list"),
    ("GET", r"/v1/services/6F81-5844-456A/skus", None, "skus_query", "skus"),
]


def validate(name: str, value: Any) -> None:
    jsonschema.Draft202012Validator(SCHEMAS[name], format_checker=jsonschema.FormatChecker()).validate(value)


def check_exchange(request, response) -> str:
    """Validate one recorded exchange; returns the route's response schema name."""
    path = request.url.path
    for method, pattern, body_schema, query_schema, response_schema in ROUTES:
        if request.method == method and re.fullmatch(pattern, path):
            query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
            if query_schema:
                validate(query_schema, query)
            else:
                assert not query, f"{method} {path} takes no query parameters, got {query}"
            if body_schema == "token_request":
                form = {k: v[-1] for k, v in parse_qs(request.content.decode()).items()}
                validate("token_request", form)
                head, claims, _ = form["assertion"].split(".")
                validate("jwt_header", json.loads(standin._b64url_decode(head)))
                validate("jwt_claims", json.loads(standin._b64url_decode(claims)))
            elif body_schema:
                validate(body_schema, json.loads(request.content))
            else:
                assert not request.content, f"{method} {path} takes no body"
            payload = response.json()
            if response.status_code >= 400:
                validate("token_error" if path == "/token" else "error", payload)
            else:
                validate(response_schema, payload)
            return response_schema
    raise AssertionError(f"no contract route for {request.method} {path}")


@pytest.fixture(autouse=True)
def _fresh_caches():
    gcp_module.clear_caches()
    yield
    gcp_module.clear_caches()


def _adapter(fake, **settings) -> GcpAdapter:
    return GcpAdapter(standin.credentials(), {**standin.account_settings("http://gcp.standin"),
                                              "allowed_regions": ["us-central1", "europe-west4"], **settings},
                      transport=fake.transport(), sleep=lambda s: None)


def test_every_exchange_of_a_full_session_matches_the_contract():
    fake = standin.FakeGcp(op_polls=2)
    a = _adapter(fake)
    a.verify()
    offers = a.list_offers()
    assert offers
    base = dict(name="x", image="ghcr.io/acme/train:1", gpu_class="T4", gpu_count=2, region="us-central1",
                zone="us-central1-a", instance_type="n1-standard-8+nvidia-tesla-t4", env={"A": "1"}, ports=[{"port": 8888}])
    std = a.launch(LaunchRequest(tag="0f6a1e2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", **base))
    spot = a.launch(LaunchRequest(tag="1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", spot=True, **base))
    l4 = a.launch(LaunchRequest(tag="2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e", name="y", image="busybox", gpu_class="L4",
                                gpu_count=1, region="us-central1", zone="us-central1-b", instance_type="g2-standard-4"))
    a.stop(std.external_id)
    a.start(std.external_id)
    fake.preempt(*spot.external_id.split("/"))
    a.get(spot.external_id)
    a.list_pods()
    for pod in (std, l4):
        a.terminate(pod.external_id)
    fake.exhaust["us-central1-b"] = "ZONE_RESOURCE_POOL_EXHAUSTED"
    with pytest.raises(Exception):  # noqa: B017 - the typed error is tested in the adapter tests
        a.launch(LaunchRequest(tag="3c4d5e6f-7a8b-4c9d-8e0f-2a3b4c5d6e7f", name="z", image="busybox", gpu_class="L4",
                               gpu_count=1, region="us-central1", zone="us-central1-b", instance_type="g2-standard-4"))
    with pytest.raises(Exception):  # noqa: B017
        a.get("us-central1-a/pod-gone")

    seen = {check_exchange(req, resp) for req, resp in fake.exchanges}
    assert seen >= {"token_response", "project", "accelerator_types", "machine_types", "instances", "operation",
                    "operation_list", "instance", "skus"}
    errors = [resp for _, resp in fake.exchanges if resp.status_code >= 400]
    assert errors  # the 404 was checked against the error schema too


def test_the_schemas_are_strict():
    fake = standin.FakeGcp()
    a = _adapter(fake)
    req = LaunchRequest(tag="4d5e6f7a-8b9c-4d0e-9f1a-3b4c5d6e7f8a", name="x", image="busybox", gpu_class="T4", gpu_count=1,
                        region="us-central1", zone="us-central1-a", instance_type="n1-standard-4+nvidia-tesla-t4", spot=True)
    body = a.instance_body(req, zone="us-central1-a", name=a.instance_name(req.tag), machine="n1-standard-4",
                           accelerator="nvidia-tesla-t4")
    validate("insert_body", body)
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validate("insert_body", {**body, "gpuType": "t4"})
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validate("insert_body", {**body, "scheduling": {**body["scheduling"], "spot": True}})
    with pytest.raises(jsonschema.ValidationError):
        validate("insert_body", {**body, "scheduling": {**body["scheduling"], "provisioningModel": "PREEMPTIBLE"}})
    with pytest.raises(jsonschema.ValidationError):
        validate("insert_body", {**body, "labels": {"provisioner-pod": "Upper-Case"}})
    with pytest.raises(jsonschema.ValidationError):
        validate("insert_query", {"requestId": "not-a-uuid"})
    inst = fake._instance("us-central1-a", body)
    validate("instance", inst)
    with pytest.raises(jsonschema.ValidationError, match="Additional properties"):
        validate("instance", {**inst, "gpuUtilization": 0.5})
    with pytest.raises(jsonschema.ValidationError):
        validate("instance", {**inst, "status": "PREEMPTED"})  # not a Compute status


def test_the_standin_refuses_what_compute_refuses():
    fake = standin.FakeGcp()
    a = _adapter(fake)
    a.verify()
    req = LaunchRequest(tag="5e6f7a8b-9c0d-4e1f-8a2b-4c5d6e7f8a9b", name="x", image="busybox", gpu_class="T4", gpu_count=1,
                        region="us-central1", zone="us-central1-a", instance_type="n1-standard-4+nvidia-tesla-t4", spot=True)
    good = a.instance_body(req, zone="us-central1-a", name="pod-x", machine="n1-standard-4", accelerator="nvidia-tesla-t4")
    compute = a.api("compute")
    path = a._p("/zones/us-central1-a/instances")
    cases = [
        ({**good, "gpuType": "t4"}, 'Unknown name "gpuType"'),
        ({**good, "scheduling": {**good["scheduling"], "onHostMaintenance": "MIGRATE"}}, "do not support live migration"),
        ({**good, "scheduling": {**good["scheduling"], "automaticRestart": True}}, "cannot automatically restart"),
        ({**good, "machineType": "zones/us-central1-a/machineTypes/n9-huge"}, "does not exist in zone"),
        ({**good, "guestAccelerators": [{"acceleratorType": "zones/us-central1-a/acceleratorTypes/nvidia-tesla-t4",
                                         "acceleratorCount": 8}]}, "acceleratorCount"),
        ({**good, "machineType": "zones/us-central1-a/machineTypes/g2-standard-4"}, "built-in accelerators"),
    ]
    for body, message in cases:
        response = compute._client.post(path, json=body, params={"requestId": "6f7a8b9c-0d1e-4f2a-8b3c-5d6e7f8a9b0c"})
        assert response.status_code == 400, body
        validate("error", response.json())
        assert message in response.json()["error"]["message"]
    assert not fake.instances


def test_jwt_shape_and_token_error_shape():
    key = standin.service_account_key()
    jwt = signed_jwt(key, "http://gcp.standin/token")
    head, claims, _ = jwt.split(".")
    validate("jwt_header", json.loads(standin._b64url_decode(head)))
    validate("jwt_claims", json.loads(standin._b64url_decode(claims)))
    fake = standin.FakeGcp()
    tampered = jwt[:-4] + ("AAAA" if not jwt.endswith("AAAA") else "BBBB")
    import httpx

    with httpx.Client(transport=fake.transport()) as client:
        response = client.post("http://gcp.standin/token", data={
            "grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": tampered})
    assert response.status_code == 400
    validate("token_error", response.json())
    assert response.json()["error_description"] == "Invalid JWT Signature."
