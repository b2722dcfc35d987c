"""The Sandbox provider: simulated capacity, prices and pods, needing no credentials.

Deterministic under ``settings["seed"]``: the same seed and hour give the same offers, and a
pod's interruption time and utilization depend only on the seed and its tag. Knobs (all in
the account's ``settings``): ``seed``, ``boot_seconds``, ``interrupt_rate_per_hour`` (spot),
``no_capacity_regions`` (list), ``fail_launch`` ("capacity"/"quota"/"transient"/"timeout"),
``job_seconds`` (a job's container exits after this long), ``idle_after_seconds``,
``interrupt_after_seconds`` (spot: interrupted this long after boot, deterministic) and
``notice_seconds`` (spot: an interruption notice this long before the interruption, like AWS's
two minutes or GCP's and Azure's 30 s; 0 = none, the interruption comes unannounced).
"""

from __future__ import annotations

import hashlib
import math
import random
import uuid
from collections.abc import Mapping
from datetime import timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.conf import settings as django_settings

from provisioner import clock

from . import sandbox_http
from .base import (
    REMOTE_EXITED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_TERMINATED,
    CapacityUnavailable,
    GpuSample,
    LaunchRequest,
    LaunchTimeout,
    NotFound,
    OfferData,
    ProviderAdapter,
    ProviderInfo,
    ProviderNotice,
    QuotaExceeded,
    RemotePod,
    TransientError,
)

# region -> (country, price multiplier)
SANDBOX_REGIONS: dict[str, tuple[str, float]] = {
    "sbx-us-east": ("US", 1.00),
    "sbx-us-west": ("US", 1.04),
    "sbx-ca-central": ("CA", 0.97),
    "sbx-de-fra": ("DE", 1.08),
    "sbx-nl-ams": ("NL", 1.06),
    "sbx-fi-hel": ("FI", 0.93),
    "sbx-jp-tyo": ("JP", 1.15),
}

# canonical class -> on-demand USD per GPU-hour (roughly the 2026 market median)
SANDBOX_PRICES: dict[str, Decimal] = {
    "T4": Decimal("0.35"),
    "L4": Decimal("0.62"),
    "A10": Decimal("0.75"),
    "RTX4090": Decimal("0.69"),
    "A40": Decimal("0.79"),
    "L40S": Decimal("1.19"),
    "A100-40": Decimal("1.29"),
    "A100-80": Decimal("1.79"),
    "H100": Decimal("2.69"),
    "MI300X": Decimal("2.99"),
}
GPU_MEMORY = {"T4": 16, "L4": 24, "A10": 24, "RTX4090": 24, "A40": 48, "L40S": 48,
              "A100-40": 40, "A100-80": 80, "H100": 80, "MI300X": 192}
COUNTS = (1, 2, 4, 8)
CENT = Decimal("0.0001")


def _unit(*parts: Any) -> float:
    """Deterministic pseudo-random number in [0, 1) from the parts."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64



def _stored_env(request: LaunchRequest) -> dict[str, Any]:
    """What the simulated cloud keeps of the launch env: plain values as given, secret values as
    their reference (issue 16 §5), and nothing of the agent's per-pod token."""
    return {k: ({"secret_ref": request.env_refs[k]} if k in request.env_refs else v)
            for k, v in request.env.items() if not k.startswith("AGENT_")}

class SandboxAdapter(ProviderAdapter):
    info = ProviderInfo(
        kind="sandbox",
        label="Sandbox",
        description="Simulated GPU cloud: realistic prices in 7 regions across 6 countries, "
        "spot and on-demand, pods that boot and report GPU utilization. No credentials.",
        supports_spot=True,
        private_registry=True,  # simulated
        can_stop=True,
        credential_fields=(),
        regions_hint="US, CA, DE, NL, FI, JP",
    )

    # --- helpers ------------------------------------------------------------------------
    @property
    def seed(self) -> str:
        return str(self.settings.get("seed", "sandbox"))

    @property
    def account_id(self) -> str:
        return str(self.settings["account_id"])

    def _instances(self):
        from providers.models import SandboxInstance

        return SandboxInstance.objects.filter(account_id=self.account_id)

    # --- interface ------------------------------------------------------------------------
    def verify(self) -> None:
        return None

    def list_offers(self) -> list[OfferData]:
        hour = clock.now().strftime("%Y%m%d%H")
        no_capacity = set(self.settings.get("no_capacity_regions", []))
        offers: list[OfferData] = []
        for region, (country, mult) in SANDBOX_REGIONS.items():
            for gpu, base in SANDBOX_PRICES.items():
                # not every class is in every region
                if _unit(self.seed, "has", region, gpu) < 0.2:
                    continue
                for count in COUNTS:
                    jitter = 0.92 + 0.16 * _unit(self.seed, hour, region, gpu, count)
                    od = (base * count * Decimal(str(mult * jitter))).quantize(CENT, ROUND_HALF_UP)
                    avail = 0 if region in no_capacity else int(_unit(self.seed, hour, "a", region, gpu, count) * 9)
                    offers.append(self._offer(gpu, count, region, country, od, False, avail))
                    # spot is usually 35-65 % of on-demand, but not always cheaper: a few
                    # regions quote spot at or above on-demand, as real markets sometimes do
                    r = _unit(self.seed, "spot", region, gpu)
                    factor = 1.05 if r > 0.93 else 0.35 + 0.30 * r
                    spot_price = (od * Decimal(str(factor))).quantize(CENT, ROUND_HALF_UP)
                    spot_avail = 0 if region in no_capacity else int(_unit(self.seed, hour, "s", region, gpu, count) * 9)
                    offers.append(self._offer(gpu, count, region, country, spot_price, True, spot_avail))
        return offers

    def _offer(self, gpu, count, region, country, price, spot, avail) -> OfferData:
        return OfferData(
            gpu_class=gpu, gpu_count=count, region=region, country=country, price_per_hour=price,
            currency="USD", spot=spot, zone=f"{region}-a", available=avail,
            availability="NONE" if avail == 0 else ("LOW" if avail < 3 else "HIGH"),
            instance_type=f"sbx.{gpu.lower()}.x{count}", gpu_memory_gb=GPU_MEMORY.get(gpu),
            supports_volumes=("ephemeral", "persistent", "network"),
        )

    def launch(self, request: LaunchRequest) -> RemotePod:
        from providers.models import SandboxInstance

        fail = self.settings.get("fail_launch", "")
        if request.region in self.settings.get("no_capacity_regions", []) or fail == "capacity":
            raise CapacityUnavailable(f"no {request.gpu_count}x{request.gpu_class} capacity in {request.region}")
        if fail == "quota":
            raise QuotaExceeded("GPU quota exceeded for this account")
        if fail == "transient":
            raise TransientError("503 Service Unavailable", status=503, retry_after=1)
        existing = self._instances().filter(tag=request.tag, ended_at__isnull=True).first()
        if existing is not None:  # idempotent on the tag
            return self._remote(existing)
        now = clock.now()
        boot = self.settings.get("boot_seconds", django_settings.SANDBOX_BOOT_SECONDS)
        interrupt_at = None
        rate = float(self.settings.get("interrupt_rate_per_hour", 0))
        if request.spot and rate > 0:
            # exponential time-to-interruption, deterministic per tag
            u = max(_unit(self.seed, "int", request.tag), 1e-9)
            interrupt_at = now + timedelta(hours=-math.log(u) / rate)
        after = self.settings.get("interrupt_after_seconds")
        if request.spot and after is not None:
            interrupt_at = now + timedelta(seconds=float(boot) + float(after))
        exit_at = None
        job_seconds = request.env.get("SANDBOX_JOB_SECONDS") or self.settings.get("job_seconds")
        if job_seconds:
            exit_at = now + timedelta(seconds=float(boot) + float(job_seconds))
        # unique per launch even for the same tag at the same (frozen) instant in two places
        ext = "sbx-" + hashlib.sha1(f"{request.tag}{now.isoformat()}{uuid.uuid4()}".encode()).hexdigest()[:12]
        inst = SandboxInstance.objects.create(
            account_id=self.account_id, external_id=ext, tag=request.tag,
            spec={"name": request.name, "image": request.image, "gpu_class": request.gpu_class,
                  "gpu_count": request.gpu_count, "region": request.region, "spot": request.spot,
                  "ports": request.ports, "env": _stored_env(request)},
            created_at=now, boot_at=now + timedelta(seconds=float(boot)),
            interrupt_at=interrupt_at, exit_at=exit_at,
        )
        if django_settings.SANDBOX_HTTP:
            self._serve(inst, now)
        if fail == "timeout":  # the resource exists, but the caller never hears back
            raise LaunchTimeout("timed out waiting for the launch response")
        return self._remote(inst)

    def _serve(self, inst, now) -> None:
        """Start the pod's HTTP server: listening from boot, gone at its interruption or exit."""
        ends = [t for t in (inst.interrupt_at, inst.exit_at) if t is not None]
        end_in = (min(ends) - now).total_seconds() if ends else None
        inst.spec["http"] = sandbox_http.start(inst.tag, boot_in=(inst.boot_at - now).total_seconds(), end_in=end_in,
                                               alive_path=str(django_settings.VAR_DIR))
        type(inst).objects.filter(pk=inst.pk).update(spec=inst.spec)

    def _ensure_served(self, inst) -> None:
        """A running pod whose server is gone (the machine running the stack restarted, or the
        pod predates ``SANDBOX_HTTP``) gets it back, once even when several processes look."""
        from django.db import transaction

        if sandbox_http.alive((inst.spec.get("http") or {}).get("pid")):
            return
        with transaction.atomic():
            locked = type(inst).objects.select_for_update().get(pk=inst.pk)
            if not sandbox_http.alive((locked.spec.get("http") or {}).get("pid")):
                self._serve(locked, clock.now())
        inst.spec = locked.spec

    def _remote(self, inst) -> RemotePod:
        now = clock.now()
        exit_code = None
        if inst.ended_at:
            state = REMOTE_TERMINATED
        elif inst.interrupt_at and inst.interrupt_at <= now:
            state = REMOTE_INTERRUPTED
        elif inst.stopped_at:
            state = REMOTE_STOPPED
        elif inst.exit_at and inst.exit_at <= now:
            state, exit_code = REMOTE_EXITED, 0
        elif inst.boot_at > now:
            state = REMOTE_PROVISIONING
        else:
            state = REMOTE_RUNNING
        host = f"{inst.external_id}.sandbox.local"
        connection: dict[str, Any] = {}
        if state == REMOTE_RUNNING and django_settings.SANDBOX_HTTP:
            self._ensure_served(inst)
            endpoint = f"http://127.0.0.1:{inst.spec['http']['port']}"
            connection = {  # every HTTP port is answered by the pod's one server
                "host": "127.0.0.1", "endpoint": endpoint, "ssh": f"ssh root@{host} -p 22",
                "urls": {str(p.get("port")): endpoint
                         for p in inst.spec.get("ports", []) if p.get("protocol", "http") == "http"},
            }
        elif state == REMOTE_RUNNING:
            connection = {
                "host": host,
                "ssh": f"ssh root@{host} -p 22",
                "urls": {str(p.get("port")): f"https://{inst.external_id}-{p.get('port')}.sandbox.local"
                         for p in inst.spec.get("ports", []) if p.get("protocol", "http") == "http"},
            }
        notice = None
        lead = float(self.settings.get("notice_seconds") or 0)
        if state == REMOTE_RUNNING and inst.interrupt_at and lead > 0 and now >= inst.interrupt_at - timedelta(seconds=lead):
            # the notice: running still, taken at interrupt_at
            notice = ProviderNotice("preempt", inst.interrupt_at, source="spot notice")
        return RemotePod(external_id=inst.external_id, state=state, tag=inst.tag, region=inst.spec.get("region", ""),
                         connection=connection, exit_code=exit_code, raw={"spec": inst.spec}, notice=notice,
                         expected_ready_at=inst.boot_at if state == REMOTE_PROVISIONING else None)

    def get(self, external_id: str) -> RemotePod:
        inst = self._instances().filter(external_id=external_id).first()
        if inst is None:
            raise NotFound(f"sandbox pod {external_id} not found")
        return self._remote(inst)

    def terminate(self, external_id: str) -> None:
        self._instances().filter(external_id=external_id, ended_at__isnull=True).update(ended_at=clock.now())
        self._stop_serving(external_id)

    def stop(self, external_id: str) -> None:
        self._instances().filter(external_id=external_id, stopped_at__isnull=True).update(stopped_at=clock.now())
        self._stop_serving(external_id)

    def _stop_serving(self, external_id: str) -> None:
        for spec in self._instances().filter(external_id=external_id).values_list("spec", flat=True):
            sandbox_http.stop((spec.get("http") or {}).get("pid"))

    def list_pods(self) -> list[RemotePod]:
        return [self._remote(i) for i in self._instances().filter(ended_at__isnull=True)]

    def logs(self, external_id: str, tail_lines: int, connection: Mapping[str, Any] | None = None) -> str:
        """The simulated container's output: image pull, start, then one progress line a minute
        while it runs (derived from the instance's own times, so every read agrees)."""
        inst = self._instances().filter(external_id=external_id).first()
        if inst is None:
            raise NotFound(f"sandbox pod {external_id} not found")
        now = clock.now()
        end = min(t for t in (now, inst.ended_at, inst.stopped_at, inst.interrupt_at, inst.exit_at) if t is not None)
        image = inst.spec.get("image", "")
        lines = [(inst.created_at, f"Pulling image {image}"), (inst.created_at, f"Pulled image {image}")]
        if inst.boot_at <= end:
            lines.append((inst.boot_at, f"Started container on {inst.spec.get('gpu_count', 1)}x {inst.spec.get('gpu_class', '')}"))
            minutes = int((end - inst.boot_at).total_seconds() // 60)
            for m in range(max(1, minutes - tail_lines + 1), minutes + 1):
                rnd = random.Random(f"{self.seed}{inst.tag}log{m}")
                lines.append((inst.boot_at + timedelta(minutes=m), f"step {m * 100}: loss={2.5 / (1 + m / 30) + rnd.uniform(0, 0.05):.4f}"))
        if inst.ended_at and inst.ended_at <= now:
            lines.append((inst.ended_at, "Received SIGTERM, shutting down"))
        return "".join(f"{at.isoformat().replace('+00:00', 'Z')} {text}\n" for at, text in lines[-max(1, tail_lines):])

    def gpu_utilization(self, external_id: str) -> list[GpuSample] | None:
        inst = self._instances().filter(external_id=external_id).first()
        if inst is None or self._remote(inst).state != REMOTE_RUNNING:
            return None
        now = clock.now()
        idle_after = inst.spec.get("env", {}).get("SANDBOX_IDLE_AFTER_SECONDS") or self.settings.get("idle_after_seconds")
        idle = idle_after is not None and (now - inst.boot_at).total_seconds() >= float(idle_after)
        mem_total = GPU_MEMORY.get(inst.spec.get("gpu_class", ""), 24) * 1024
        samples = []
        for i in range(int(inst.spec.get("gpu_count", 1))):
            if idle:
                util = 0.0
            else:
                rnd = random.Random(f"{self.seed}{inst.tag}{i}{int(now.timestamp()) // 10}")
                util = round(70 + 25 * math.sin(now.timestamp() / 60 + i) * 0.5 + rnd.uniform(-5, 5), 1)
            samples.append(GpuSample(gpu_index=i, util_pct=max(0.0, min(100.0, util)),
                                     mem_used_mb=round(mem_total * (0.05 if idle else 0.7), 1),
                                     mem_total_mb=float(mem_total), at=now))
        return samples
