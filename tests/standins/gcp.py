"""A stateful stand-in for the three Google hosts the GCP adapter talks to, in their real shapes.

- OAuth 2.0 token endpoint ``POST /token`` (JWT-bearer grant): the assertion's RS256
  signature is verified with the service account's public key, and iss/aud/iat/exp/scope
  are checked as Google does.
- Compute Engine v1 under ``/compute/v1/projects/{project}``: ``projects.get``,
  ``acceleratorTypes.aggregatedList``, ``machineTypes.aggregatedList`` (paged with
  ``nextPageToken``), ``instances.insert/get/delete/stop/start/aggregatedList`` (with the
  ``filter`` forms the adapter uses), ``zoneOperations.get/list``. Inserts are validated the
  way the API does (unknown fields, machine/accelerator type in the zone, GPUs need
  ``onHostMaintenance: TERMINATE``, SPOT needs ``automaticRestart: false``, label syntax), and
  ``requestId`` makes them idempotent.
- Cloud Billing Catalog ``GET /v1/services/6F81-5844-456A/skus`` (paged).

Shapes follow the Compute API discovery document (see providers.md section 7); the contract
tests in tests/contract/test_gcp_contract.py pin them.

Fault knobs: ``exhaust[zone] = "ZONE_RESOURCE_POOL_EXHAUSTED"`` (or ``..._WITH_DETAILS``,
``QUOTA_EXCEEDED``): the insert operation ends DONE with that error, as Compute reports it;
``throttle(n)``: the next n requests get 429 rateLimitExceeded; ``preempt(zone, name)``: a
Spot VM is preempted (TERMINATED + a ``compute.instances.preempted`` operation, or gone when
its termination action is DELETE); ``op_polls``: how many GETs an operation stays RUNNING.
"""

from __future__ import annotations

import base64
import itertools
import json
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qs

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from provisioner import clock

from ._loopback import serve

PROJECT = "gpu-lab-4711"
SA_EMAIL = f"provisioner@{PROJECT}.iam.gserviceaccount.com"
COMPUTE_SERVICE = "6F81-5844-456A"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
SCOPES = {"https://www.googleapis.com/auth/cloud-platform", "https://www.googleapis.com/auth/compute"}
API = "https://www.googleapis.com/compute/v1"

# zone -> {accelerator type: maximumCardsPerInstance}
ZONES: dict[str, dict[str, int]] = {
    "us-central1-a": {"nvidia-tesla-t4": 4, "nvidia-l4": 8, "nvidia-tesla-a100": 16, "nvidia-h100-80gb": 8},
    "us-central1-b": {"nvidia-tesla-t4": 4, "nvidia-l4": 8},
    "europe-west4-a": {"nvidia-tesla-t4": 4, "nvidia-l4": 8, "nvidia-a100-80gb": 8, "nvidia-h100-80gb": 8},
    "europe-west4-b": {"nvidia-tesla-t4": 4, "nvidia-tesla-t4-vws": 4},
    "asia-northeast1-a": {"nvidia-tesla-t4": 4},
}
ACCELERATOR_DESCRIPTIONS = {
    "nvidia-tesla-t4": "NVIDIA T4", "nvidia-tesla-t4-vws": "NVIDIA Tesla T4 Virtual Workstation",
    "nvidia-l4": "NVIDIA L4", "nvidia-tesla-a100": "NVIDIA A100 40GB", "nvidia-a100-80gb": "NVIDIA A100 80GB",
    "nvidia-h100-80gb": "NVIDIA H100 80GB",
}
# machine type -> (vCPUs, memory MB, built-in accelerator or None, count)
MACHINE_TYPES: dict[str, tuple[int, int, str | None, int]] = {
    "e2-standard-4": (4, 16384, None, 0),
    "n1-standard-4": (4, 15360, None, 0),
    "n1-standard-8": (8, 30720, None, 0),
    "n1-standard-16": (16, 61440, None, 0),
    "n1-standard-32": (32, 122880, None, 0),
    "g2-standard-4": (4, 16384, "nvidia-l4", 1),
    "g2-standard-24": (24, 98304, "nvidia-l4", 2),
    "g2-standard-48": (48, 196608, "nvidia-l4", 4),
    "a2-highgpu-1g": (12, 87040, "nvidia-tesla-a100", 1),
    "a2-highgpu-8g": (96, 696320, "nvidia-tesla-a100", 8),
    "a2-ultragpu-1g": (12, 174080, "nvidia-a100-80gb", 1),
    "a2-ultragpu-8g": (96, 1392640, "nvidia-a100-80gb", 8),
    "a3-highgpu-8g": (208, 1916928, "nvidia-h100-80gb", 8),
}
# (description, usageType, regions, USD per unit, unit): the shape of real Compute SKUs
SKUS: list[tuple[str, str, list[str], str, str]] = [
    ("Nvidia Tesla T4 GPU running in Americas", "OnDemand", ["us-central1", "us-east1"], "0.35", "h"),
    ("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", ["us-central1", "us-east1"], "0.14", "h"),
    ("Nvidia Tesla T4 GPU running in Netherlands", "OnDemand", ["europe-west4"], "0.41", "h"),
    ("Nvidia Tesla T4 GPU attached to Spot Preemptible VMs running in Netherlands", "Preemptible", ["europe-west4"], "0.165", "h"),
    ("Commitment v1: Nvidia Tesla T4 GPU running in Americas for 1 Year", "Commit1Yr", ["us-central1"], "0.22", "h"),
    ("Nvidia L4 GPU running in Americas", "OnDemand", ["us-central1"], "0.5600", "h"),
    ("Nvidia L4 GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", ["us-central1"], "0.2240", "h"),
    ("Nvidia L4 GPU running in Netherlands", "OnDemand", ["europe-west4"], "0.6165", "h"),
    ("Nvidia Tesla A100 GPU running in Americas", "OnDemand", ["us-central1"], "2.933908", "h"),
    ("Nvidia Tesla A100 GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", ["us-central1"], "1.1736", "h"),
    ("Nvidia Tesla A100 80GB GPU running in Netherlands", "OnDemand", ["europe-west4"], "4.3245", "h"),
    ("Nvidia H100 80GB GPU running in Americas", "OnDemand", ["us-central1"], "9.79655", "h"),
    ("Nvidia H100 80GB GPU attached to Spot Preemptible VMs running in Americas", "Preemptible", ["us-central1"], "3.9186", "h"),
    ("Nvidia H100 80GB GPU running in Netherlands", "OnDemand", ["europe-west4"], "10.7762", "h"),
    ("N1 Predefined Instance Core running in Americas", "OnDemand", ["us-central1", "us-east1"], "0.031611", "h"),
    ("N1 Predefined Instance Ram running in Americas", "OnDemand", ["us-central1", "us-east1"], "0.004237", "GiBy.h"),
    ("Spot Preemptible N1 Predefined Instance Core running in Americas", "Preemptible", ["us-central1", "us-east1"], "0.006655", "h"),
    ("Spot Preemptible N1 Predefined Instance Ram running in Americas", "Preemptible", ["us-central1", "us-east1"], "0.000892", "GiBy.h"),
    ("N1 Predefined Instance Core running in Netherlands", "OnDemand", ["europe-west4"], "0.034806", "h"),
    ("N1 Predefined Instance Ram running in Netherlands", "OnDemand", ["europe-west4"], "0.004664", "GiBy.h"),
    ("Spot Preemptible N1 Predefined Instance Core running in Netherlands", "Preemptible", ["europe-west4"], "0.00733", "h"),
    ("Spot Preemptible N1 Predefined Instance Ram running in Netherlands", "Preemptible", ["europe-west4"], "0.000982", "GiBy.h"),
    ("G2 Instance Core running in Americas", "OnDemand", ["us-central1"], "0.024988", "h"),
    ("G2 Instance Ram running in Americas", "OnDemand", ["us-central1"], "0.002928", "GiBy.h"),
    ("Spot Preemptible G2 Instance Core running in Americas", "Preemptible", ["us-central1"], "0.009995", "h"),
    ("Spot Preemptible G2 Instance Ram running in Americas", "Preemptible", ["us-central1"], "0.001171", "GiBy.h"),
    ("G2 Instance Core running in Netherlands", "OnDemand", ["europe-west4"], "0.027512", "h"),
    ("G2 Instance Ram running in Netherlands", "OnDemand", ["europe-west4"], "0.003224", "GiBy.h"),
    ("A2 Instance Core running in Americas", "OnDemand", ["us-central1"], "0.031611", "h"),
    ("A2 Instance Ram running in Americas", "OnDemand", ["us-central1"], "0.004237", "GiBy.h"),
    ("Spot Preemptible A2 Instance Core running in Americas", "Preemptible", ["us-central1"], "0.012644", "h"),
    ("Spot Preemptible A2 Instance Ram running in Americas", "Preemptible", ["us-central1"], "0.001695", "GiBy.h"),
    ("A2 Instance Core running in Netherlands", "OnDemand", ["europe-west4"], "0.034806", "h"),
    ("A2 Instance Ram running in Netherlands", "OnDemand", ["europe-west4"], "0.004664", "GiBy.h"),
    ("A3 Instance Core running in Americas", "OnDemand", ["us-central1"], "0.029563", "h"),
    ("A3 Instance Ram running in Americas", "OnDemand", ["us-central1"], "0.002519", "GiBy.h"),
    ("Spot Preemptible A3 Instance Core running in Americas", "Preemptible", ["us-central1"], "0.011825", "h"),
    ("Spot Preemptible A3 Instance Ram running in Americas", "Preemptible", ["us-central1"], "0.001008", "GiBy.h"),
    ("A3 Instance Core running in Netherlands", "OnDemand", ["europe-west4"], "0.032519", "h"),
    ("A3 Instance Ram running in Netherlands", "OnDemand", ["europe-west4"], "0.002771", "GiBy.h"),
    ("E2 Instance Core running in Americas", "OnDemand", ["us-central1"], "0.021811", "h"),
]

# Instance resource fields the insert accepts (discovery doc ``Instance``); others are refused
# with "Unknown name", as Google's JSON APIs do.
INSTANCE_FIELDS = {
    "name", "description", "machineType", "disks", "networkInterfaces", "guestAccelerators", "scheduling",
    "metadata", "labels", "tags", "serviceAccounts", "minCpuPlatform", "canIpForward", "deletionProtection",
    "shieldedInstanceConfig", "reservationAffinity", "hostname", "displayDevice", "advancedMachineFeatures",
    "confidentialInstanceConfig", "resourcePolicies", "params", "keyRevocationActionType", "networkPerformanceConfig",
}
SCHEDULING_FIELDS = {"onHostMaintenance", "automaticRestart", "preemptible", "provisioningModel",
                     "instanceTerminationAction", "maxRunDuration", "terminationTime", "nodeAffinities",
                     "minNodeCpus", "localSsdRecoveryTimeout", "onInstanceStopAction", "availabilityDomain"}
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
LABEL_KEY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE_RE = re.compile(r"^[a-z0-9_-]{0,63}$")
CAPACITY_MESSAGES = {
    "ZONE_RESOURCE_POOL_EXHAUSTED": "The zone 'projects/{p}/zones/{z}' does not have enough resources available to fulfill the request. Try a different zone, or try again later.",
    "ZONE_RESOURCE_POOL_EXHAUSTED_WITH_DETAILS": "The zone 'projects/{p}/zones/{z}' does not have enough resources available to fulfill the request. '(resource type:compute)'.",
    "QUOTA_EXCEEDED": "Quota 'NVIDIA_T4_GPUS' exceeded.  Limit: 0.0 in region {r}.",
}


@lru_cache(maxsize=1)
def _private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def service_account_key(*, key: rsa.RSAPrivateKey | None = None, project: str = PROJECT, email: str = SA_EMAIL,
                        token_uri: str = GOOGLE_TOKEN_URI) -> dict[str, str]:
    """A service-account key file (the JSON the console downloads)."""
    key = key or _private_key()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return {
        "type": "service_account", "project_id": project, "private_key_id": "5f1c7e2a9b0d4e3f8a6b1c2d3e4f5a6b7c8d9e0f",
        "private_key": pem, "client_email": email, "client_id": "104857600000000000042",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth", "token_uri": token_uri,
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": f"https://www.googleapis.com/robot/v1/metadata/x509/{email.replace('@', '%40')}",
        "universe_domain": "googleapis.com",
    }


def credentials(**kw: Any) -> dict[str, str]:
    return {"service_account_json": json.dumps(service_account_key(**kw))}


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _ts(at=None) -> str:
    return (at or clock.now()).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "-00:00"


def google_error(status: int, message: str, reason: str, status_name: str = "", domain: str = "global") -> httpx.Response:
    body: dict[str, Any] = {"code": status, "message": message, "errors": [{"message": message, "domain": domain, "reason": reason}]}
    if status_name:
        body["status"] = status_name
    return httpx.Response(status, json={"error": body})


# Query parameters each method declares (gcp-compute.v1.discovery.json / gcp-cloudbilling.v1.
# discovery.json, location "query"), plus the standard ones every Google API takes. Google's front
# end refuses any other: 400 "Cannot bind query parameter".
STANDARD_QUERY = {"$.xgafv", "access_token", "alt", "callback", "fields", "key", "oauth_token", "prettyPrint",
                  "quotaUser", "uploadType", "upload_protocol", "userIp"}
DECLARED_QUERY: list[tuple[str, str, set[str]]] = [
    ("GET", r"/compute/v1/projects/[^/]+/aggregated/[A-Za-z]+",
     {"filter", "includeAllScopes", "maxResults", "orderBy", "pageToken", "serviceProjectNumber"}),
    ("POST", r"/compute/v1/projects/[^/]+/zones/[^/]+/instances", {"requestId", "sourceInstanceTemplate", "sourceMachineImage"}),
    ("DELETE", r"/compute/v1/projects/[^/]+/zones/[^/]+/instances/[^/]+", {"noGracefulShutdown", "requestId"}),
    ("POST", r"/compute/v1/projects/[^/]+/zones/[^/]+/instances/[^/]+/stop", {"discardLocalSsd", "noGracefulShutdown", "requestId"}),
    ("POST", r"/compute/v1/projects/[^/]+/zones/[^/]+/instances/[^/]+/start", {"requestId"}),
    ("GET", r"/compute/v1/projects/[^/]+/zones/[^/]+/operations", {"filter", "maxResults", "orderBy", "pageToken"}),
    ("GET", r"/v1/services/[^/]+/skus", {"currencyCode", "endTime", "pageSize", "pageToken", "startTime"}),
]


def undeclared_query(method: str, path: str, query: dict[str, Any]) -> str | None:
    declared: set[str] = set()
    for verb, pattern, names in DECLARED_QUERY:
        if verb == method and re.fullmatch(pattern, path):
            declared = names
    return next((k for k in query if k not in declared | STANDARD_QUERY), None)


def simple_filter(expr: str):
    """The filter forms of the Compute list API the adapter uses: ``a.b:*`` (present),
    ``field = "value"`` / ``field eq value``, joined by AND (optionally parenthesised)."""
    clauses = []
    for part in re.split(r"\s+AND\s+", expr.strip(), flags=re.IGNORECASE):
        part = part.strip().strip("()").strip()
        if not part:
            continue
        m = re.fullmatch(r"([\w.-]+)\s*:\s*\*", part)
        if m:
            clauses.append((m.group(1), None))
            continue
        m = re.fullmatch(r'([\w.-]+)\s*(?:=|\beq\b)\s*"?([^"]*)"?', part)
        if not m:
            raise ValueError(f"Invalid list filter expression '{expr}'.")
        clauses.append((m.group(1), m.group(2)))

    def lookup(obj: Any, dotted: str) -> Any:
        for key in dotted.split("."):
            if not isinstance(obj, dict) or key not in obj:
                return None
            obj = obj[key]
        return obj

    def match(obj: dict[str, Any]) -> bool:
        for field, value in clauses:
            found = lookup(obj, field)
            if found is None or (value is not None and str(found) != value):
                return False
        return True

    return match


class FakeGcp:
    def __init__(self, *, project: str = PROJECT, page_size: int = 2, op_polls: int = 1) -> None:
        self.project = project
        self.page_size = page_size
        self.op_polls = op_polls
        self.public_keys: dict[str, rsa.RSAPublicKey] = {SA_EMAIL: _private_key().public_key()}
        self.tokens: dict[str, tuple[str, float]] = {}  # access token -> (email, expiry epoch)
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}  # (zone, name)
        self.operations: dict[tuple[str, str], dict[str, Any]] = {}  # (zone, op name)
        self.op_reads: dict[str, int] = {}
        self.request_ids: dict[str, tuple[str, str]] = {}  # requestId -> (zone, operation name)
        self.exhaust: dict[str, str] = {}  # zone -> error code
        self.throttled = 0
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []  # (method, path, query, json body)
        self.exchanges: list[tuple[httpx.Request, httpx.Response]] = []
        self._ids = itertools.count(4_611_686_018_427_387_904)
        self._lock = threading.RLock()

    # --- knobs ---------------------------------------------------------------------------
    def throttle(self, times: int = 1) -> None:
        self.throttled = times

    def preempt(self, zone: str, name: str) -> None:
        with self._lock:
            inst = self.instances[(zone, name)]
            now = clock.now()
            op = self._new_operation(zone, "compute.instances.preempted", inst, done=True,
                                     status_message="Instance was preempted.")
            op["user"] = "system"
            if inst["scheduling"].get("instanceTerminationAction") == "DELETE":
                del self.instances[(zone, name)]
            else:
                inst.update(status="TERMINATED", lastStopTimestamp=_ts(now))
                inst["networkInterfaces"][0].get("accessConfigs", [{}])[0].pop("natIP", None)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @contextmanager
    def serve(self) -> Iterator[str]:
        with serve(self.handle) as url:
            yield url

    # --- dispatch ---------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            response = self._handle(request)
        self.exchanges.append((request, response))
        return response

    def _handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        query = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        body: Any = None
        if request.content and request.headers.get("content-type", "").startswith("application/json"):
            try:
                body = json.loads(request.content)
            except ValueError:
                return google_error(400, "Invalid JSON payload received.", "parseError", "INVALID_ARGUMENT")
        self.requests.append((request.method, path, query, body))
        if request.method == "POST" and path == "/token":
            return self._token(request)
        if self.throttled:
            self.throttled -= 1
            return google_error(429, "Rate Limit Exceeded", "rateLimitExceeded", "RESOURCE_EXHAUSTED")
        email = self._authenticated(request)
        if email is None:
            return google_error(401, "Request is missing required authentication credential. Expected OAuth 2 access token, "
                                "login cookie or other valid authentication credential.", "required", "UNAUTHENTICATED")
        unknown = undeclared_query(request.method, path, query)
        if unknown:
            return google_error(400, f'Invalid JSON payload received. Unknown name "{unknown}": Cannot bind query parameter. '
                                f"Field '{unknown}' could not be found in request message.", "badRequest", "INVALID_ARGUMENT")
        if path == f"/v1/services/{COMPUTE_SERVICE}/skus" and request.method == "GET":
            return self._skus(query)
        m = re.fullmatch(r"/compute/v1/projects/([^/]+)(/.*)?", path)
        if not m:
            return google_error(404, f"The requested URL {path} was not found on this server.", "notFound")
        project, rest = m.group(1), m.group(2) or ""
        if project != self.project or not email.endswith(f"@{project}.iam.gserviceaccount.com"):
            return google_error(403, f"Required 'compute.projects.get' permission for 'projects/{project}'", "forbidden")
        return self._compute(request.method, rest, query, body)

    def _authenticated(self, request: httpx.Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return None
        hit = self.tokens.get(auth[7:])
        if hit is None or hit[1] < time.time():
            return None
        return hit[0]

    # --- OAuth ---------------------------------------------------------------------------------
    def _token(self, request: httpx.Request) -> httpx.Response:
        form = {k: v[-1] for k, v in parse_qs(request.content.decode()).items()}

        def bad(description: str, error: str = "invalid_grant") -> httpx.Response:
            return httpx.Response(400, json={"error": error, "error_description": description})

        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return bad("Invalid grant_type: " + form.get("grant_type", ""), "unsupported_grant_type")
        try:
            head_b64, claims_b64, sig_b64 = form.get("assertion", "").split(".")
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(sig_b64)
        except ValueError:
            return bad("Invalid JWT: Token must be a short-lived token and in a reasonable timeframe")
        if header.get("alg") != "RS256":
            return bad("Invalid JWT: unsupported algorithm")
        key = self.public_keys.get(claims.get("iss", ""))
        if key is None:
            return bad("Invalid JWT Signature.")  # Google says the same for an unknown account
        try:
            key.verify(signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return bad("Invalid JWT Signature.")
        now = time.time()
        expected_aud = {GOOGLE_TOKEN_URI, str(request.url.copy_with(query=None))}
        if claims.get("aud") not in expected_aud:
            return bad("Invalid JWT: Failed audience check.")
        iat, exp = claims.get("iat", 0), claims.get("exp", 0)
        if not (iat - 300 <= now <= exp + 300) or exp - iat > 3600:
            return bad("Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. "
                       "Check your iat and exp values in the JWT claim.")
        if not set(str(claims.get("scope", "")).split()) & SCOPES:
            return bad("Invalid OAuth scope or ID token audience provided.", "invalid_scope")
        token = "ya29.c." + secrets.token_urlsafe(48)
        self.tokens[token] = (claims["iss"], now + 3600)
        return httpx.Response(200, json={"access_token": token, "expires_in": 3599, "token_type": "Bearer"})

    # --- billing -------------------------------------------------------------------------------
    def _skus(self, query: dict[str, str]) -> httpx.Response:
        if query.get("currencyCode", "USD") != "USD":
            return google_error(400, "Currency code not supported in this stand-in.", "badRequest", "INVALID_ARGUMENT")
        skus = [self._sku(i, *row) for i, row in enumerate(SKUS)]
        size = min(int(query.get("pageSize", 5000)), 5000)
        return self._paged(skus, query, size, lambda page, token: {"skus": page, "nextPageToken": token})

    def _sku(self, i: int, description: str, usage: str, regions: list[str], usd: str, unit: str) -> dict[str, Any]:
        units, _, frac = usd.partition(".")
        nanos = int((frac + "000000000")[:9])
        group = "GPU" if "GPU" in description else ("RAM" if "Ram" in description else "CPU")
        sku_id = f"{0xA000 + i:04X}-{0xB000 + i * 7:04X}-{0xC000 + i * 13:04X}"
        return {
            "name": f"services/{COMPUTE_SERVICE}/skus/{sku_id}", "skuId": sku_id, "description": description,
            "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": "Compute", "resourceGroup": group,
                         "usageType": usage},
            "serviceRegions": regions,
            "pricingInfo": [{
                "summary": "", "effectiveTime": "2026-11-26T08:00:00.000Z", "currencyConversionRate": 1,
                "pricingExpression": {
                    "usageUnit": unit, "displayQuantity": 1, "usageUnitDescription": "hour" if unit == "h" else "gibibyte hour",
                    "baseUnit": "s" if unit == "h" else "By.s", "baseUnitDescription": "second" if unit == "h" else "byte second",
                    "baseUnitConversionFactor": 3600 if unit == "h" else 3865470566400,
                    "tieredRates": [{"startUsageAmount": 0, "unitPrice": {"currencyCode": "USD", "units": units, "nanos": nanos}}],
                },
            }],
            "serviceProviderName": "Google",
            "geoTaxonomy": {"type": "MULTI_REGIONAL" if len(regions) > 1 else "REGIONAL", "regions": regions},
        }

    def _paged(self, items: list[Any], query: dict[str, str], size: int, render) -> httpx.Response:
        start = int(query.get("pageToken") or 0)
        page = items[start:start + size]
        token = str(start + size) if start + size < len(items) else ""
        doc = render(page, token)
        if not token:
            doc.pop("nextPageToken", None)
        return httpx.Response(200, json=doc)

    # --- compute -------------------------------------------------------------------------------
    def _url(self, rest: str) -> str:
        return f"{API}/projects/{self.project}{rest}"

    def _compute(self, method: str, rest: str, query: dict[str, str], body: Any) -> httpx.Response:
        if rest == "" and method == "GET":
            return httpx.Response(200, json={"kind": "compute#project", "id": "8123456789012345678", "name": self.project,
                                             "creationTimestamp": "2025-03-04T05:06:07.000-08:00", "selfLink": self._url(""),
                                             "defaultServiceAccount": "1234567890-compute@developer.gserviceaccount.com",
                                             "xpnProjectStatus": "UNSPECIFIED_XPN_PROJECT_STATUS", "defaultNetworkTier": "PREMIUM"})
        if rest == "/aggregated/acceleratorTypes" and method == "GET":
            return self._aggregated("acceleratorTypes", {z: [self._accelerator(z, a, n) for a, n in accs.items()]
                                                         for z, accs in ZONES.items()}, query)
        if rest == "/aggregated/machineTypes" and method == "GET":
            return self._aggregated("machineTypes", {z: [self._machine_type(z, mt) for mt in self._zone_machine_types(z)]
                                                     for z in ZONES}, query)
        if rest == "/aggregated/instances" and method == "GET":
            try:
                match = simple_filter(query.get("filter", ""))
            except ValueError as exc:
                return google_error(400, str(exc), "invalid")
            by_zone = {z: [i for (iz, _), i in sorted(self.instances.items()) if iz == z and match(i)] for z in ZONES}
            return self._aggregated("instances", by_zone, query)
        m = re.fullmatch(r"/zones/([^/]+)/(instances|operations)(?:/([^/]+))?(?:/(stop|start))?", rest)
        if not m or m.group(1) not in ZONES:
            return google_error(404, f"The resource 'projects/{self.project}{rest}' was not found", "notFound")
        zone, kind, name, action = m.groups()
        if kind == "operations":
            if name is None and method == "GET":
                return self._list_operations(zone, query)
            if method == "GET" and name:
                return self._get_operation(zone, name)
        elif name is None and method == "POST":
            return self._insert(zone, query, body)
        elif name and action and method == "POST":
            return self._power(zone, name, action, query)
        elif name and method == "GET":
            inst = self.instances.get((zone, name))
            if inst is None:
                return self._not_found(f"/zones/{zone}/instances/{name}")
            return httpx.Response(200, json=inst)
        elif name and method == "DELETE":
            return self._delete(zone, name, query)
        return google_error(405, "Method not allowed", "methodNotAllowed")

    def _not_found(self, rest: str) -> httpx.Response:
        return google_error(404, f"The resource 'projects/{self.project}{rest}' was not found", "notFound")

    def _aggregated(self, key: str, by_zone: dict[str, list[dict[str, Any]]], query: dict[str, str]) -> httpx.Response:
        zones = sorted(by_zone)
        kind = {"acceleratorTypes": "compute#acceleratorTypeAggregatedList", "machineTypes": "compute#machineTypeAggregatedList",
                "instances": "compute#instanceAggregatedList"}[key]

        def render(page: list[str], token: str) -> dict[str, Any]:
            items: dict[str, Any] = {}
            for z in page:
                if by_zone[z]:
                    items[f"zones/{z}"] = {key: by_zone[z]}
                else:
                    items[f"zones/{z}"] = {"warning": {"code": "NO_RESULTS_ON_PAGE",
                                                       "message": f"There are no results for scope 'zones/{z}' on this page.",
                                                       "data": [{"key": "scope", "value": f"zones/{z}"}]}}
            return {"kind": kind, "id": f"projects/{self.project}/aggregated/{key}", "items": items,
                    "selfLink": self._url(f"/aggregated/{key}"), "nextPageToken": token}

        return self._paged(zones, query, self.page_size, render)

    def _accelerator(self, zone: str, name: str, max_cards: int) -> dict[str, Any]:
        return {"kind": "compute#acceleratorType", "id": str(10000 + sum(map(ord, name))),
                "creationTimestamp": "1969-12-31T16:00:00.000-08:00", "name": name,
                "description": ACCELERATOR_DESCRIPTIONS[name], "zone": self._url(f"/zones/{zone}"),
                "selfLink": self._url(f"/zones/{zone}/acceleratorTypes/{name}"), "maximumCardsPerInstance": max_cards}

    def _zone_machine_types(self, zone: str) -> list[str]:
        accs = ZONES[zone]
        return [mt for mt, (_, _, acc, _) in MACHINE_TYPES.items() if acc is None or acc in accs]

    def _machine_type(self, zone: str, name: str) -> dict[str, Any]:
        cpus, mem, acc, count = MACHINE_TYPES[name]
        doc: dict[str, Any] = {
            "kind": "compute#machineType", "id": str(900000 + sum(map(ord, name))), "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": name, "description": f"{cpus} vCPUs, {mem // 1024} GB RAM", "guestCpus": cpus, "memoryMb": mem,
            "maximumPersistentDisks": 128, "maximumPersistentDisksSizeGb": "263168", "zone": zone,
            "selfLink": self._url(f"/zones/{zone}/machineTypes/{name}"), "isSharedCpu": False,
            "architecture": "X86_64",
        }
        if acc:
            doc["accelerators"] = [{"guestAcceleratorType": acc, "guestAcceleratorCount": count}]
        return doc

    # --- operations ------------------------------------------------------------------------------
    def _new_operation(self, zone: str, op_type: str, inst: dict[str, Any], *, done: bool = False,
                       status_message: str = "") -> dict[str, Any]:
        now = _ts()
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        op = {"kind": "compute#operation", "id": str(next(self._ids)), "name": name, "zone": self._url(f"/zones/{zone}"),
              "operationType": op_type, "targetLink": inst["selfLink"], "targetId": inst["id"],
              "status": "DONE" if done else "RUNNING", "user": SA_EMAIL, "progress": 100 if done else 0,
              "insertTime": now, "startTime": now, "selfLink": self._url(f"/zones/{zone}/operations/{name}")}
        if done:
            op["endTime"] = now
        if status_message:
            op["statusMessage"] = status_message
        self.operations[(zone, name)] = op
        return op

    def _get_operation(self, zone: str, name: str) -> httpx.Response:
        op = self.operations.get((zone, name))
        if op is None:
            return self._not_found(f"/zones/{zone}/operations/{name}")
        if op["status"] != "DONE":
            self.op_reads[name] = self.op_reads.get(name, 0) + 1
            if self.op_reads[name] >= self.op_polls:
                self._finish(zone, op)
        return httpx.Response(200, json=self._public(op))

    def _finish(self, zone: str, op: dict[str, Any]) -> None:
        op.update(status="DONE", progress=100, endTime=_ts())
        pending = op.pop("_on_done", None)
        if pending:
            pending()

    def _list_operations(self, zone: str, query: dict[str, str]) -> httpx.Response:
        try:
            match = simple_filter(query.get("filter", ""))
        except ValueError as exc:
            return google_error(400, str(exc), "invalid")
        items = [op for (z, _), op in self.operations.items() if z == zone and match(op)]
        return httpx.Response(200, json={"kind": "compute#operationList", "id": f"projects/{self.project}/zones/{zone}/operations",
                                         "items": [{k: v for k, v in op.items() if not k.startswith("_")} for op in items],
                                         "selfLink": self._url(f"/zones/{zone}/operations")})

    # --- instances -------------------------------------------------------------------------------
    def _insert(self, zone: str, query: dict[str, str], body: Any) -> httpx.Response:
        request_id = query.get("requestId", "")
        if request_id and request_id in self.request_ids:
            # the same requestId again (Google keeps them for at least an hour, project-wide):
            # the original operation, whatever this request asks for
            return httpx.Response(200, json=self._public(self.operations[self.request_ids[request_id]]))
        problem = self._validate(zone, body)
        if problem:
            return google_error(400, problem, "invalid", "INVALID_ARGUMENT")
        if (zone, body["name"]) in self.instances:
            return google_error(409, f"The resource 'projects/{self.project}/zones/{zone}/instances/{body['name']}' already exists",
                                "alreadyExists")
        inst = self._instance(zone, body)
        op = self._new_operation(zone, "insert", inst)
        code = self.exhaust.get(zone)
        if code:
            def fail() -> None:
                op["error"] = {"errors": [{"code": code, "message": CAPACITY_MESSAGES[code].format(
                    p=self.project, z=zone, r=zone.rsplit("-", 1)[0])}]}
                op["httpErrorStatusCode"] = 403 if code == "QUOTA_EXCEEDED" else 503
                op["httpErrorMessage"] = "FORBIDDEN" if code == "QUOTA_EXCEEDED" else "SERVICE UNAVAILABLE"
            op["_on_done"] = fail
        else:
            self.instances[(zone, inst["name"])] = inst
        if request_id:
            self.request_ids[request_id] = (zone, op["name"])
        if self.op_polls <= 0:
            self._finish(zone, op)
        return httpx.Response(200, json=self._public(op))

    @staticmethod
    def _public(op: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _validate(self, zone: str, body: Any) -> str:
        if not isinstance(body, dict):
            return "Invalid JSON payload received."
        unknown = sorted(set(body) - INSTANCE_FIELDS)
        if unknown:
            return f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'resource\': Cannot find field.'
        for field in ("name", "machineType", "disks", "networkInterfaces"):
            if not body.get(field):
                return f"Invalid value for field 'resource.{field}': ''. Required field is missing."
        if not NAME_RE.match(str(body["name"])):
            return f"Invalid value for field 'resource.name': '{body['name']}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{{0,61}}[a-z0-9])?)'"
        mt = str(body["machineType"]).rsplit("/", 1)[-1]
        if not str(body["machineType"]).endswith(f"zones/{zone}/machineTypes/{mt}") or mt not in self._zone_machine_types(zone):
            return f"Invalid value for field 'resource.machineType': '{body['machineType']}'. Machine type with name '{mt}' does not exist in zone '{zone}'."
        built_in = MACHINE_TYPES[mt][2]
        gpus = 1 if built_in else 0
        for acc in body.get("guestAccelerators") or []:
            name = str(acc.get("acceleratorType", "")).rsplit("/", 1)[-1]
            if built_in:
                return f"Invalid value for field 'resource.guestAccelerators': machine type {mt} has built-in accelerators."
            if name not in ZONES[zone] or not str(acc.get("acceleratorType")).endswith(f"zones/{zone}/acceleratorTypes/{name}"):
                return f"Invalid value for field 'resource.guestAccelerators[0].acceleratorType': '{acc.get('acceleratorType')}'. Accelerator type does not exist in zone {zone}."
            if not 1 <= int(acc.get("acceleratorCount", 0)) <= ZONES[zone][name]:
                return "Invalid value for field 'resource.guestAccelerators[0].acceleratorCount'."
            gpus += 1
        scheduling = body.get("scheduling") or {}
        unknown = sorted(set(scheduling) - SCHEDULING_FIELDS)
        if unknown:
            return f'Invalid JSON payload received. Unknown name "{unknown[0]}" at \'resource.scheduling\': Cannot find field.'
        if gpus and scheduling.get("onHostMaintenance") != "TERMINATE":
            return "Instances with guest accelerators do not support live migration."
        model = scheduling.get("provisioningModel", "STANDARD")
        if model not in ("STANDARD", "SPOT"):
            return f"Invalid value for field 'resource.scheduling.provisioningModel': '{model}'."
        if model == "SPOT" and scheduling.get("automaticRestart", True):
            return "Invalid value for field 'resource.scheduling.automaticRestart': 'true'. Spot VMs cannot automatically restart."
        action = scheduling.get("instanceTerminationAction")
        if action is not None and (action not in ("STOP", "DELETE") or model != "SPOT"):
            return f"Invalid value for field 'resource.scheduling.instanceTerminationAction': '{action}'."
        for key, value in (body.get("labels") or {}).items():
            if not LABEL_KEY_RE.match(key) or not LABEL_VALUE_RE.match(str(value)):
                return f"Invalid value for field 'labels': '{key}'."
        boots = [d for d in body["disks"] if d.get("boot")]
        if len(boots) != 1 or not (boots[0].get("initializeParams") or {}).get("sourceImage"):
            return "Invalid value for field 'resource.disks': exactly one boot disk with a source image is required."
        return ""

    def _instance(self, zone: str, body: dict[str, Any]) -> dict[str, Any]:
        iid = str(next(self._ids))
        name = body["name"]
        nat = {"kind": "compute#accessConfig", "type": "ONE_TO_ONE_NAT", "name": "External NAT",
               "natIP": f"34.{int(iid) % 200 + 20}.{int(iid) // 7 % 250}.{int(iid) // 13 % 250 + 1}", "networkTier": "PREMIUM"}
        nic = {"kind": "compute#networkInterface", "name": "nic0", "network": self._url("/global/networks/default"),
               "networkIP": f"10.128.0.{int(iid) % 250 + 2}", "fingerprint": secrets.token_urlsafe(8), "stackType": "IPV4_ONLY"}
        if (body["networkInterfaces"][0] or {}).get("accessConfigs"):
            nic["accessConfigs"] = [nat]
        scheduling = {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False,
                      "provisioningModel": "STANDARD", **(body.get("scheduling") or {})}
        if scheduling["provisioningModel"] == "SPOT":
            scheduling["preemptible"] = True
        boot = next(d for d in body["disks"] if d.get("boot"))
        inst: dict[str, Any] = {
            "kind": "compute#instance", "id": iid, "creationTimestamp": _ts(), "name": name,
            "machineType": self._url(f"/zones/{zone}/machineTypes/{str(body['machineType']).rsplit('/', 1)[-1]}"),
            "status": "RUNNING", "zone": self._url(f"/zones/{zone}"), "networkInterfaces": [nic],
            "disks": [{"kind": "compute#attachedDisk", "type": "PERSISTENT", "mode": "READ_WRITE",
                       "source": self._url(f"/zones/{zone}/disks/{name}"), "deviceName": "persistent-disk-0", "index": 0,
                       "boot": True, "autoDelete": bool(boot.get("autoDelete", False)), "interface": "SCSI",
                       "diskSizeGb": str((boot.get("initializeParams") or {}).get("diskSizeGb", "10")), "architecture": "X86_64"}],
            "metadata": {"kind": "compute#metadata", "fingerprint": secrets.token_urlsafe(8),
                         "items": list((body.get("metadata") or {}).get("items", []))},
            "tags": {"items": list((body.get("tags") or {}).get("items", [])), "fingerprint": secrets.token_urlsafe(8)},
            "scheduling": scheduling, "cpuPlatform": "Intel Cascade Lake", "labels": dict(body.get("labels") or {}),
            "labelFingerprint": secrets.token_urlsafe(8), "startRestricted": False, "deletionProtection": False,
            "selfLink": self._url(f"/zones/{zone}/instances/{name}"), "lastStartTimestamp": _ts(),
            "fingerprint": secrets.token_urlsafe(8),
        }
        if body.get("guestAccelerators"):
            inst["guestAccelerators"] = [{"acceleratorType": self._url(f"/zones/{zone}/acceleratorTypes/{str(a['acceleratorType']).rsplit('/', 1)[-1]}"),
                                          "acceleratorCount": int(a["acceleratorCount"])} for a in body["guestAccelerators"]]
        return inst

    def _delete(self, zone: str, name: str, query: dict[str, str]) -> httpx.Response:
        inst = self.instances.get((zone, name))
        if inst is None:
            return self._not_found(f"/zones/{zone}/instances/{name}")
        inst["status"] = "STOPPING"
        op = self._new_operation(zone, "delete", inst)
        op["_on_done"] = lambda: self.instances.pop((zone, name), None)
        if self.op_polls <= 0:
            self._finish(zone, op)
        return httpx.Response(200, json=self._public(op))

    def _power(self, zone: str, name: str, action: str, query: dict[str, str]) -> httpx.Response:
        inst = self.instances.get((zone, name))
        if inst is None:
            return self._not_found(f"/zones/{zone}/instances/{name}")
        inst["status"] = "STOPPING" if action == "stop" else "STAGING"

        def done() -> None:
            if action == "stop":
                inst.update(status="TERMINATED", lastStopTimestamp=_ts())
            else:
                inst.update(status="RUNNING", lastStartTimestamp=_ts())

        op = self._new_operation(zone, action, inst)
        op["_on_done"] = done
        if self.op_polls <= 0:
            self._finish(zone, op)
        return httpx.Response(200, json=self._public(op))


def account_settings(base_url: str, **extra: Any) -> dict[str, Any]:
    return {"base_url": base_url, "poll_interval_seconds": 0.01, **extra}
