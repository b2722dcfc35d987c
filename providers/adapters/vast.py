"""Vast.ai adapter: offer search, rent an ask (on-demand or by bid), follow, stop, destroy.

Facts (vastai.openapi.yaml, providers.md §4): base ``https://console.vast.ai``, bearer key.
``POST /api/v0/bundles`` searches offers (each filter an operator object); an offer is one
host machine's bundle of ``num_gpus`` GPUs at ``dph_total`` USD/h -- already a pod-hour price.
``type: "bid"`` quotes interruptible prices (the minimum bid). ``PUT /api/v0/asks/{id}``
rents offer ``id`` (``price`` = bid per machine-hour makes it interruptible) and answers
``{"success": true, "new_contract": <instance id>}``. Instances: ``GET /api/v0/instances/{id}``
(``{"instances": {...}}``), ``GET /api/v1/instances`` (keyset pages of 25), ``PUT
/api/v0/instances/{id}`` ``{"state": "stopped"}``, ``DELETE /api/v0/instances/{id}``.

Interruption: an outbid interruptible instance is paused (``actual_status`` leaves
``running`` while ``intended_status`` stays ``running``) and resumes on its own when it wins
again; there is no notice. We report that as REMOTE_INTERRUPTED -- the pod is replaced, and
reconciliation destroys the paused contract if it comes back.

Request shapes where the spec and the official SDK disagree (evidence: tests/contract/
test_vast_sdk.py captures what ``vastai`` 1.9.1 sends; spec = vastai.openapi.yaml). We follow the
SDK, the code every CLI user runs against the real API:

* ``env`` of ``PUT /api/v0/asks/{id}``: the spec types it as a Docker-flag string ("-e K=V -p
  8000:8000"); the SDK sends an object (vastai/api/instances.py build_create_instance_payload, via
  vastai/utils.py parse_env: ``{"K": "V", "-p 8000:8000": "1"}``). We send the object: the string
  form cannot carry a value with a space (parse_env turns "-e 'K=a b'" into the key "'K").
* ``type`` of ``POST /api/v0/bundles``: spec enum "ondemand"/"bid"/"reserved"; the SDK sends
  "on-demand" (vastai/api/offers.py search_offers, default ``offer_type``) or "bid". We send the
  SDK's "on-demand".
* ``allocated_storage`` of the search: both send it (spec: "Storage allocation size in GB",
  default 8; SDK: ``storage``, "Amount of storage to use for pricing", default 5). An offer's
  ``dph_total`` includes its storage, so we price offers for the disk a launch gets by default
  (``settings["disk_gb"]``, 50 GB like LaunchRequest.disk_gb).

Rate limits are per endpoint and identity with no published numbers and no ``Retry-After``;
429 bodies are ``{"detail": "API requests too frequent ..."}`` (sometimes plain text). The
client backs off exponentially. Region pinning = picking an offer in that country.
Idempotency: the instance ``label`` is ``provisioner-pod-<uuid>``.
"""

from __future__ import annotations

import functools
import json
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx

from providers.catalog import canonical_gpu_class

from .base import (
    REMOTE_EXITED,
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
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
    TransientError,
)
from .http import TAG_KEY, run_concurrently
from .image_registry import registry_login, vast_image_login
from .rest import RestAdapter

LABEL_PREFIX = f"{TAG_KEY}-"
DEFAULT_COUNTS = (1, 2, 4, 8)
DEFAULT_DISK_GB = 50  # LaunchRequest.disk_gb's default: offers are priced for the disk launches get
SEARCH_LIMIT = 512
PAGE = 25


def map_error(response: httpx.Response, body: Any) -> ProviderError | None:
    status = response.status_code
    path = response.request.url.path
    err = body if isinstance(body, dict) else {}
    code = str(err.get("error", ""))
    msg = str(err.get("msg") or err.get("message") or err.get("detail") or response.text[:200])
    if status == 429:
        return TransientError(msg or "API requests too frequent", status=status)
    if status == 401 or code in ("invalid_api_key", "unauthorized"):
        return InvalidCredentials(msg, status=status, code=code)
    if "/asks/" in path:
        if status in (404, 410):  # the offer was rented by someone else / cannot start now
            return CapacityUnavailable(msg or "offer no longer available", status=status, code=code)
        if code == "invalid_price":
            return CapacityUnavailable(msg or "bid below the current minimum", status=status, code=code)
        if status == 403 and ("credit" in msg.lower() or "balance" in msg.lower()):
            return QuotaExceeded(msg, status=status, code=code)
    if "/bundles" in path and status == 404:  # the spec documents a bad key on search as 404
        return InvalidCredentials(msg or "invalid or missing API key", status=status, code=code)
    if "/instances/" in path and status in (400, 404) and response.request.method in ("GET", "DELETE", "PUT"):
        return NotFound(msg or "no such instance", status=status, code=code)
    return None


def country_of(geolocation: str | None) -> str:
    """Vast geolocation strings end in the ISO code ("Texas, US", "SE")."""
    tail = str(geolocation or "").rsplit(",", 1)[-1].strip().upper()
    return tail if len(tail) == 2 and tail.isalpha() else ""


class VastAdapter(RestAdapter):
    default_base_url = "https://console.vast.ai"
    error_mapper = staticmethod(map_error)

    info = ProviderInfo(
        kind="vast",
        label="Vast.ai",
        description="Marketplace of community and datacenter GPU hosts in 40+ countries; cheapest "
                    "prices, on-demand or interruptible by bid, per-second billing.",
        supports_spot=True,
        private_registry=True,  # image_login: '-u user -p pass host'
        spot_bids=True,  # interruptible: PUT /asks/{id} 'price' is the bid, min_bid the floor
        can_stop=True,
        credential_fields=(CredentialField("api_key", "API key", help="console.vast.ai → Account → API Keys."),),
        regions_hint="Worldwide marketplace (US, CA, EU, APAC)",
    )

    # --- interface --------------------------------------------------------------------------
    def verify(self) -> None:
        if not self.api_key:
            raise InvalidCredentials("an API key is required")
        self.client.request("GET", "/api/v1/instances", params={"limit": 1})

    def _search(self, kind: str) -> list[dict[str, Any]]:
        counts = [int(c) for c in self.settings.get("gpu_counts", DEFAULT_COUNTS)]
        body: dict[str, Any] = {
            "limit": int(self.settings.get("search_limit", SEARCH_LIMIT)), "type": kind,
            "verified": {"eq": True}, "rentable": {"eq": True}, "rented": {"eq": False},
            "num_gpus": {"in": counts}, "allocated_storage": float(self.settings.get("disk_gb", DEFAULT_DISK_GB)),
        }
        if self.settings.get("min_reliability"):
            body["reliability"] = {"gte": float(self.settings["min_reliability"])}
        # a search changes nothing: safe to retry although it is a POST
        return list((self.client.post_json("/api/v0/bundles", json=body, idempotent=True) or {}).get("offers") or [])

    def list_offers(self) -> list[OfferData]:
        offers: list[OfferData] = []
        kinds = ("on-demand", "bid") if self.settings.get("spot", True) else ("on-demand",)
        searches = run_concurrently([functools.partial(self._search, kind) for kind in kinds])
        for kind, found in zip(kinds, searches, strict=True):
            # One offer per (class, count, country): the cheapest machine, with how many match.
            best: dict[tuple[str, int, str], tuple[dict[str, Any], int]] = {}
            for o in found:
                gpu_ram_gb = (o.get("gpu_ram") or 0) / 1024
                gpu_class = canonical_gpu_class(str(o.get("gpu_name", "")), gpu_ram_gb)
                country = country_of(o.get("geolocation"))
                if gpu_class is None or not country or not o.get("dph_total"):
                    continue
                key = (gpu_class, int(o.get("num_gpus") or 1), country)
                cur = best.get(key)
                if cur is None or float(o["dph_total"]) < float(cur[0]["dph_total"]):
                    best[key] = (o, (cur[1] if cur else 0) + 1)
                else:
                    best[key] = (cur[0], cur[1] + 1)
            for (gpu_class, count, country), (o, n) in best.items():
                offers.append(OfferData(
                    gpu_class=gpu_class, gpu_count=count, region=country, country=country,
                    price_per_hour=Decimal(str(o["dph_total"])).quantize(Decimal("0.000001"), ROUND_HALF_UP),
                    currency="USD", spot=(kind == "bid"), available=n, instance_type=str(o["id"]),
                    gpu_memory_gb=round((o.get("gpu_ram") or 0) / 1024) or None, supports_volumes=("ephemeral",),
                    extra={"ask_id": o["id"], "machine_id": o.get("machine_id"), "reliability": o.get("reliability2"),
                           "min_bid": o.get("min_bid"), "geolocation": o.get("geolocation", ""),
                           # billing: the GPU's own rate and the host's storage price ($/GB/month),
                           # charged apart (Vast.ai 'Billing Help': storage every second it exists)
                           "base_price_per_hour": o.get("dph_base"), "storage_per_gb_month": o.get("storage_cost")},
                ))
        return offers

    def launch(self, request: LaunchRequest) -> RemotePod:
        label = LABEL_PREFIX + request.tag
        existing = self._find_by_label(label)
        if existing is not None:
            return existing
        if not request.instance_type.isdigit():
            raise PermanentError(f"Vast.ai needs an offer id to rent, got {request.instance_type!r}")
        # the SDK's object form (see the module docstring): variables, then "-p H:C" port keys
        env = {str(k): str(v) for k, v in request.env.items()}
        env.update({f"-p {int(p['port'])}:{int(p['port'])}": "1" for p in request.ports})
        body: dict[str, Any] = {"image": request.image, "label": label, "disk": float(request.disk_gb),
                                "target_state": "running", "cancel_unavail": True}
        if env:
            body["env"] = env
        if request.command or request.args:
            body["runtype"] = "args"
            body["args"] = [*request.command, *request.args]
        else:
            body["runtype"] = "ssh_direct"
        if request.spot:
            if request.bid_price_per_hour is None:
                raise PermanentError("an interruptible Vast.ai instance needs a bid price")
            body["price"] = float(request.bid_price_per_hour)
        login = registry_login(request)
        if login:  # "-u user -p pass host", the host last, as the official CLI's --login
            body["image_login"] = vast_image_login(login)
        try:
            created = self.client.request("PUT", f"/api/v0/asks/{request.instance_type}", json=body, idempotent=False).json()
        except (LaunchTimeout, TransientError):
            try:
                found = self._find_by_label(label)
            except ProviderError:
                found = None
            if found is not None:
                return found
            raise
        if not created.get("success") or not created.get("new_contract"):
            raise CapacityUnavailable(str(created.get("msg") or "the offer could not be rented"))
        try:
            return self.get(str(created["new_contract"]))
        except NotFound:
            return RemotePod(external_id=str(created["new_contract"]), state=REMOTE_PROVISIONING, tag=request.tag,
                             region=request.region)

    def _find_by_label(self, label: str) -> RemotePod | None:
        filters = json.dumps({"label": {"eq": label}})
        body = self.client.get_json("/api/v1/instances", params={"select_filters": filters, "limit": PAGE}) or {}
        for inst in body.get("instances") or []:
            if inst.get("label") == label:
                return self._remote(inst)
        return None

    def _remote(self, inst: dict[str, Any]) -> RemotePod:
        actual = inst.get("actual_status")
        intended = inst.get("intended_status") or "running"
        is_bid = bool(inst.get("is_bid"))
        message = str(inst.get("status_msg") or "")
        if actual == "running":
            state = REMOTE_RUNNING
        elif actual in (None, "", "loading", "created", "scheduling"):
            state = REMOTE_PROVISIONING
        elif intended == "stopped":
            state = REMOTE_STOPPED
        elif is_bid:
            state = REMOTE_INTERRUPTED  # outbid (or displaced by an on-demand rental): paused
            message = message or "outbid: interruptible instance paused"
        elif actual == "exited":
            state = REMOTE_EXITED  # the container finished on its own
        else:
            state = REMOTE_FAILED  # offline / unknown on an on-demand contract
        connection: dict[str, Any] = {}
        if state == REMOTE_RUNNING:
            host, port = inst.get("ssh_host"), inst.get("ssh_port")
            if host and port:
                connection = {"host": str(inst.get("public_ipaddr") or host), "ssh": f"ssh -p {port} root@{host}"}
        label = str(inst.get("label") or "")
        price = inst.get("dph_total")
        return RemotePod(
            external_id=str(inst["id"]), state=state, tag=label[len(LABEL_PREFIX):] if label.startswith(LABEL_PREFIX) else "",
            region=country_of(inst.get("geolocation")), connection=connection,
            price_per_hour=Decimal(str(price)) if price is not None else None, message=message,
            raw={"actual_status": actual, "intended_status": intended, "is_bid": is_bid,
                 "gpu_util": inst.get("gpu_util"), "num_gpus": inst.get("num_gpus")},
        )

    def _instance(self, external_id: str) -> dict[str, Any]:
        body = self.client.get_json(f"/api/v0/instances/{external_id}") or {}
        inst = body.get("instances")
        if not inst:
            raise NotFound(f"Vast.ai instance {external_id} not found")
        return inst

    def get(self, external_id: str) -> RemotePod:
        return self._remote(self._instance(external_id))

    def terminate(self, external_id: str) -> None:
        try:
            self.client.request("DELETE", f"/api/v0/instances/{external_id}")
        except NotFound:
            return

    def stop(self, external_id: str) -> None:
        self.client.request("PUT", f"/api/v0/instances/{external_id}", json={"state": "stopped"})

    def list_pods(self) -> list[RemotePod]:
        out: list[RemotePod] = []
        token: str | None = None
        for _ in range(200):  # keyset pages of 25; a hard stop against a looping cursor
            params: dict[str, Any] = {"limit": PAGE}
            if token:
                params["after_token"] = token
            body = self.client.get_json("/api/v1/instances", params=params) or {}
            out += [self._remote(i) for i in body.get("instances") or [] if str(i.get("label") or "").startswith(LABEL_PREFIX)]
            token = body.get("next_token")
            if not token:
                break
        return out

    def gpu_utilization(self, external_id: str) -> list[GpuSample] | None:
        """Vast reports one host-side ``gpu_util`` for the whole instance; every GPU gets that value.

        It is a percent (0..100), not a fraction: the official CLI (vastai 1.9.1, cli/display.py,
        instance fields) prints it under "Util. %" with format "{:0.1f}" and no multiplier, and
        cli/commands/instances.py ``_fmt_gpu`` shows it as "{gpu_util:.0f}%". Reading 0.5 as 50 %
        kept idle GPUs looking busy (issue 13, defect 3)."""
        inst = self._instance(external_id)
        util = inst.get("gpu_util")
        if util is None or inst.get("actual_status") != "running":
            return None
        pct = max(0.0, float(util))
        total = inst.get("gpu_totalram") or inst.get("gpu_ram")
        return [GpuSample(gpu_index=i, util_pct=round(min(100.0, pct), 1), mem_total_mb=float(total) if total else None)
                for i in range(int(inst.get("num_gpus") or 1))]
