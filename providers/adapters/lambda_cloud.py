"""Lambda Cloud adapter (API v1.10): instance types with per-region capacity, launch, terminate.

Facts (lambda-cloud.openapi.json, providers.md §2): base ``https://cloud.lambda.ai/api/v1``,
bearer key; success ``{"data": ...}``, errors ``{"error": {"code", "message", "suggestion"?}}``
-- we rely on ``code`` only. Limits: 1 request/s overall, ``/instance-operations/launch`` 1 per
12 s; both are kept client-side per account.

On-demand only (no spot). A type name carries its GPU count (``gpu_8x_h100_sxm5``); its price is
``price_cents_per_hour`` per instance, the same in every region; capacity is membership of
``regions_with_capacity_available``.

Instances are VMs, not containers: the workload's image is started by a cloud-init
``user_data`` script (``docker run --gpus all ...``). Idempotency: ``tags`` carries
``provisioner-pod=<uuid>`` and the name ends with the UUID's first 8 characters; a launch
first lists instances and returns the one with the tag. Launch needs an SSH key registered
at Lambda: ``credentials["ssh_key_name"]``.
"""

from __future__ import annotations

import re
import shlex
from decimal import Decimal
from typing import Any

import httpx

from providers.catalog import canonical_gpu_class, region_country

from .base import (
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_TERMINATED,
    CapacityUnavailable,
    CredentialField,
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
    TransientError,
)
from .http import TAG_KEY, error_envelope
from .image_registry import docker_login_line, registry_login
from .rest import RestAdapter

LIMITS = {"default": (1.0, 1), "launch": (1.0 / 12.0, 1)}

_STATE = {
    "booting": REMOTE_PROVISIONING,
    "active": REMOTE_RUNNING,
    "unhealthy": REMOTE_RUNNING,  # reachable problems are reported, not treated as gone
    "terminating": REMOTE_TERMINATED,
    "terminated": REMOTE_TERMINATED,
    "preempted": REMOTE_INTERRUPTED,  # in the v1.10 enum, undocumented; never sold as spot
}

_CODES: dict[str, type[ProviderError]] = {
    "global/invalid-api-key": InvalidCredentials,
    "global/account-inactive": InvalidCredentials,
    "global/forbidden": InvalidCredentials,
    "global/invalid-address": QuotaExceeded,  # billing address blocks launches: try elsewhere
    "global/quota-exceeded": QuotaExceeded,
    "instance-operations/launch/insufficient-capacity": CapacityUnavailable,
    "global/object-does-not-exist": NotFound,
    "global/not-found": NotFound,
    "global/invalid-parameters": PermanentError,
    "instance-operations/launch/file-system-in-wrong-region": PermanentError,
    "global/duplicate": PermanentError,
    "global/conflict": PermanentError,
    "global/internal-error": TransientError,
}


def map_error(response: httpx.Response, body: Any) -> ProviderError | None:
    envelope = error_envelope(body)
    if envelope is None:
        return None
    _, code, message = envelope
    if code.startswith("provider/"):  # upstream outages: temporary by nature
        return TransientError(message, status=response.status_code, code=code)
    cls = _CODES.get(code)
    return cls(message, status=response.status_code, code=code) if cls else None


_COUNT = re.compile(r"gpu_(\d+)x_")
_MEMORY = re.compile(r"(\d+)\s*GB", re.I)


def gpu_count_of(type_name: str, specs: dict[str, Any] | None = None) -> int:
    m = _COUNT.match(type_name)
    if m:
        return int(m.group(1))
    return int((specs or {}).get("gpus") or 1)


class LambdaAdapter(RestAdapter):
    default_base_url = "https://cloud.lambda.ai"
    error_mapper = staticmethod(map_error)

    info = ProviderInfo(
        kind="lambda",
        label="Lambda Cloud",
        description="On-demand GPU VMs (1-8x A10, A100, H100, GH200) in US, EU and APAC regions, "
                    "billed per minute. No spot market.",
        supports_spot=False,
        private_registry=True,  # user_data: docker login to the image's registry
        can_stop=False,
        credential_fields=(
            CredentialField("api_key", "API key", help="Lambda Cloud dashboard → API keys."),
            CredentialField("ssh_key_name", "SSH key name", secret=False,
                            help="Name of an SSH key already added in Lambda Cloud; every instance gets it."),
        ),
        regions_hint="US (west, east, south, midwest), DE, JP, KR, IN, IL, AU",
    )

    def rate_limits(self) -> dict[str, tuple[float, int]]:
        return LIMITS if self.settings.get("rate_limit", True) else {}

    def _data(self, response: httpx.Response) -> Any:
        return (response.json() or {}).get("data")

    # --- interface --------------------------------------------------------------------------
    def verify(self) -> None:
        if not self.api_key:
            raise InvalidCredentials("an API key is required")
        self.client.request("GET", "/api/v1/instances")

    def list_offers(self) -> list[OfferData]:
        types = self._data(self.client.request("GET", "/api/v1/instance-types")) or {}
        offers: list[OfferData] = []
        for name, item in types.items():
            it = item.get("instance_type") or {}
            desc = str(it.get("gpu_description", ""))
            m = _MEMORY.search(desc)
            memory = int(m.group(1)) if m else None
            gpu_class = canonical_gpu_class(desc, memory) or canonical_gpu_class(name, memory)
            if gpu_class is None:
                continue
            count = gpu_count_of(name, it.get("specs"))
            price = (Decimal(int(it.get("price_cents_per_hour", 0))) / 100).quantize(Decimal("0.01"))
            # lambda-cloud.openapi.json, InstanceTypesItem: "regions_with_capacity_available" -- "the
            # regions in which this instance type is available". Membership only: at least one
            # instance can launch there now, with no level and no count. "LOW" claims no more than
            # that (every region used to be shown HIGH); unlisted regions have no capacity.
            for region in item.get("regions_with_capacity_available") or []:
                offers.append(OfferData(
                    gpu_class=gpu_class, gpu_count=count, region=str(region["name"]),
                    country=region_country(str(region["name"])), price_per_hour=price, currency="USD", spot=False,
                    available=None, availability="LOW", instance_type=name, gpu_memory_gb=memory,
                    supports_volumes=("ephemeral", "network"),
                    extra={"description": it.get("description", ""), "region_description": region.get("description", "")},
                ))
        return offers

    def launch(self, request: LaunchRequest) -> RemotePod:
        existing = self._find_by_tag(request.tag)
        if existing is not None:
            return existing
        key_name = str(self.credentials.get("ssh_key_name", "")).strip()
        if not key_name:
            raise PermanentError("Lambda needs the name of an SSH key registered at Lambda (ssh_key_name)")
        body = {
            "region_name": request.region, "instance_type_name": request.instance_type,
            "ssh_key_names": [key_name], "name": self._name(request)[:64],
            "user_data": self.user_data(request),
            "tags": [{"key": TAG_KEY, "value": request.tag}],
        }
        try:
            data = self._data(self.client.request("POST", "/api/v1/instance-operations/launch", json=body,
                                                  buckets=("launch",), idempotent=False))
        except (LaunchTimeout, TransientError):
            found = self._safe_find(request.tag)
            if found is not None:
                return found
            raise
        ids = (data or {}).get("instance_ids") or []
        if not ids:
            raise PermanentError("Lambda accepted the launch but returned no instance id")
        try:
            return self.get(str(ids[0]))
        except NotFound:  # listed a moment later: report it as booting
            return RemotePod(external_id=str(ids[0]), state=REMOTE_PROVISIONING, tag=request.tag, region=request.region)

    def _safe_find(self, tag: str) -> RemotePod | None:
        try:
            return self._find_by_tag(tag)
        except ProviderError:
            return None

    @staticmethod
    def _name(request: LaunchRequest) -> str:
        return f"{request.name}-{request.tag[:8]}" if request.tag[:8] not in request.name else request.name

    @staticmethod
    def user_data(request: LaunchRequest) -> str:
        """cloud-init script: run the workload's container on the VM's GPUs."""
        lines = ["#!/bin/bash", "set -euo pipefail"]
        login = registry_login(request)
        if login:  # to the image's registry host: ``docker login ''`` would go to Docker Hub
            lines.append(docker_login_line(login))
        cmd = ["docker", "run", "-d", "--name", "workload", "--gpus", "all", "--restart", "no"]
        for k, v in request.env.items():
            cmd += ["-e", f"{k}={v}"]
        for p in request.ports:
            cmd += ["-p", f"{int(p['port'])}:{int(p['port'])}"]
        if request.command:
            cmd += ["--entrypoint", request.command[0]]
        cmd.append(request.image)
        cmd += [*request.command[1:], *request.args]
        lines.append(shlex.join(cmd))
        return "\n".join(lines) + "\n"

    def _instances(self) -> list[dict[str, Any]]:
        return list(self._data(self.client.request("GET", "/api/v1/instances")) or [])

    @staticmethod
    def _tag_of(inst: dict[str, Any]) -> str:
        for t in inst.get("tags") or []:
            if t.get("key") == TAG_KEY:
                return str(t.get("value", ""))
        return ""

    def _find_by_tag(self, tag: str) -> RemotePod | None:
        for inst in self._instances():
            if self._tag_of(inst) == tag and inst.get("status") not in ("terminated", "terminating"):
                return self._remote(inst)
        return None

    def _remote(self, inst: dict[str, Any]) -> RemotePod:
        status = str(inst.get("status", ""))
        state = _STATE.get(status, REMOTE_FAILED)
        connection: dict[str, Any] = {}
        if state == REMOTE_RUNNING and inst.get("ip"):
            connection = {"host": inst["ip"], "ssh": f"ssh ubuntu@{inst['ip']}"}
            if inst.get("jupyter_url"):
                connection["urls"] = {"jupyter": inst["jupyter_url"]}
        it = inst.get("instance_type") or {}
        cents = it.get("price_cents_per_hour")
        return RemotePod(
            external_id=str(inst["id"]), state=state, tag=self._tag_of(inst), region=str((inst.get("region") or {}).get("name", "")),
            connection=connection, price_per_hour=(Decimal(int(cents)) / 100) if cents is not None else None,
            message=f"Lambda status {status}", raw={"status": status, "instance_type": it.get("name")},
        )

    def get(self, external_id: str) -> RemotePod:
        return self._remote(self._data(self.client.request("GET", f"/api/v1/instances/{external_id}")))

    def terminate(self, external_id: str) -> None:
        try:
            self.client.request("POST", "/api/v1/instance-operations/terminate",
                                json={"instance_ids": [external_id]}, idempotent=True)
        except NotFound:
            return

    def list_pods(self) -> list[RemotePod]:
        return [self._remote(i) for i in self._instances() if self._tag_of(i)]
