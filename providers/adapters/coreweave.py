"""CoreWeave CKS: the Kubernetes adapter on a CoreWeave-managed cluster, plus node-pool scaling.

GPUs on CKS arrive as Node Pools (``compute.coreweave.com/v1alpha1`` ``NodePool``, cluster-
scoped): ``instanceType`` (immutable, e.g. ``gd-8xh100ib-i128``), ``targetNodes``,
``minNodes``/``maxNodes`` and ``computeClass`` (``default`` or ``Spot``). Offers are the free
GPUs on the pools' nodes plus the head-room up to ``maxNodes``; a launch that does not fit on
the current nodes raises the pool's ``targetNodes`` by one node and waits for it (the pod stays
Pending/Unschedulable until the node joins). Spot pools give spot offers; a reclaimed spot
node shows up as the pod's eviction (``DisruptionTarget`` / eviction events), handled by the
Kubernetes adapter.

Prices: CoreWeave has no price API, so a rate card ships here (see ``DEFAULT_RATE_CARD``) and
admins override it per account with ``settings["rate_card"]`` / ``settings["spot_rate_card"]``.
"""

from __future__ import annotations

import contextlib
import re
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

from provisioner import clock

from ..catalog import GPU_CLASSES, canonical_gpu_class, region_country
from .base import (
    CapacityUnavailable,
    CredentialField,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    OfferData,
    ProviderInfo,
)
from .kubernetes import COUNTS, PRODUCT_LABEL, REGION_LABEL, KubernetesAdapter, parse_rate_card

NODEPOOLS = "/apis/compute.coreweave.com/v1alpha1/nodepools"
# Label CKS puts on a pool's nodes [?]: not confirmed in the docs snapshot, hence overridable
# with settings["node_pool_label"].
NODE_POOL_LABEL = "compute.coreweave.com/node-pool"
SCALED_ANNOTATION = "provisioner.io/scaled-node-pool"

# On-demand USD per GPU-hour: CoreWeave's public list prices (coreweave.com/pricing, read
# 2025-06; per-instance price / GPUs per instance: HGX H100 8x $49.24, H200 8x $50.44,
# B200 8x $68.80, HGX A100 8x $21.60, L40S 8x $18.00, GH200 1x $6.50). Approximate and dated:
# admins should set their contracted rates in settings["rate_card"].
DEFAULT_RATE_CARD: dict[str, Decimal] = {
    "H100": Decimal("6.155"),
    "H200": Decimal("6.305"),
    "B200": Decimal("8.60"),
    "A100-80": Decimal("2.70"),
    "L40S": Decimal("2.25"),
}
# No public spot price list was found; spot capacity is priced at this fraction of on-demand
# unless settings["spot_rate_card"] says otherwise.
DEFAULT_SPOT_FACTOR = Decimal("0.5")

_INSTANCE = re.compile(r"(?P<count>\d+)x(?P<gpu>[a-z]+\d+[a-z]?)", re.I)


def instance_gpus(instance_type: str) -> tuple[str | None, int]:
    """``gd-8xh100ib-i128`` -> ("H100", 8); ``gd-1xgh200`` -> ("H100", 1)."""
    m = _INSTANCE.search(instance_type)
    if not m:
        return None, 0
    gpu = m.group("gpu").lower()
    if gpu.startswith("a100"):
        return "A100-80", int(m.group("count"))  # CoreWeave's HGX A100 nodes are 80 GB
    return canonical_gpu_class(gpu.removesuffix("ib")), int(m.group("count"))


def region_of_zone(zone: str) -> str:
    """CKS zones look like ``US-EAST-04A``; the region is the zone without its letter."""
    zone = zone.strip().lower()
    return zone[:-1] if re.fullmatch(r"[a-z]+-[a-z]+-\d+[a-z]", zone) else zone


class CoreWeaveAdapter(KubernetesAdapter):
    info = ProviderInfo(
        kind="coreweave",
        label="CoreWeave (CKS)",
        description="GPU pods on your CoreWeave Kubernetes Service cluster; node pools scale up for launches, "
        "Spot node pools for interruptible work.",
        supports_spot=True,
        private_registry=True,  # imagePullSecrets: a dockerconfigjson Secret
        credential_fields=(
            CredentialField("kubeconfig", "CKS kubeconfig", help="The kubeconfig of your CKS cluster (from the CoreWeave "
                            "console), with an API access token.", multiline=True, file=True),
            CredentialField("zone", "Cluster zone", help="e.g. US-EAST-04A (default: the nodes' region label).",
                            secret=False, required=False),
            CredentialField("namespace", "Namespace", secret=False, required=False),
            CredentialField("rate_card", "Contracted rates", help="Optional USD per GPU-hour overriding the list prices, "
                            "e.g. \"H100=4.25\".", secret=False, required=False),
            CredentialField("spot_rate_card", "Spot rates", help="Optional USD per GPU-hour for Spot node pools "
                            "(default: half the on-demand rate).", secret=False, required=False),
        ),
        regions_hint="US, GB, ES, SE (your cluster's zone)",
    )

    def __init__(self, credentials: dict[str, Any], settings: dict[str, Any] | None = None, **kw: Any):
        super().__init__(credentials, settings, **kw)
        self._pool: dict[str, Any] | None = None  # the node pool chosen for the launch in progress
        self._scaled = False

    @property
    def pool_label(self) -> str:
        return str(self.settings.get("node_pool_label") or NODE_POOL_LABEL)

    def rate_card(self) -> dict[str, Decimal]:
        return {**DEFAULT_RATE_CARD, **super().rate_card()}

    def spot_rate_card(self) -> dict[str, Decimal]:
        explicit = parse_rate_card(self.opt("spot_rate_card"))
        return {cls: explicit.get(cls, rate * DEFAULT_SPOT_FACTOR) for cls, rate in self.rate_card().items()} | explicit

    def _region_of(self, node: dict[str, Any]) -> tuple[str, str]:
        labels = (node.get("metadata") or {}).get("labels") or {}
        region = region_of_zone(str(self.opt("zone") or self.opt("region") or labels.get(REGION_LABEL) or ""))
        return region, str(self.opt("country") or region_country(region) or "").upper()

    def _pools(self) -> list[dict[str, Any]]:
        try:
            return self._call("GET", NODEPOOLS).get("items") or []
        except (NotFound, InvalidCredentials):
            return []  # no NodePool CRD or no right to read it: offer the existing nodes only

    # --- offers -----------------------------------------------------------------------------------
    def list_offers(self) -> list[OfferData]:
        nodes = self._node_gpu_free()
        pools = {p["metadata"]["name"]: p for p in self._pools()}
        by_pool: dict[str, list[int]] = defaultdict(list)  # pool -> free GPUs per node
        loose: dict[tuple[str, str, str, str], list[tuple[int, int]]] = defaultdict(list)
        region, country = self._region_of(nodes[0][0]) if nodes else self._region_of({})
        for node, alloc, free in nodes:
            labels = (node.get("metadata") or {}).get("labels") or {}
            pool = labels.get(self.pool_label)
            if pool in pools:
                by_pool[pool].append(free)
            elif (cls := self._gpu_class(labels)) is not None:
                loose[(cls, labels[PRODUCT_LABEL], *self._region_of(node))].append((alloc, free))
        offers: list[OfferData] = []
        for name, pool in sorted(pools.items()):
            spec = pool.get("spec") or {}
            cls, per_node = instance_gpus(str(spec.get("instanceType", "")))
            if cls is None or per_node < 1:
                continue
            spot = str(spec.get("computeClass", "default")).lower() == "spot"
            headroom = max(0, int(spec.get("maxNodes", spec.get("targetNodes", 0)) or 0) - int(spec.get("targetNodes", 0) or 0))
            for count in COUNTS:
                if count > per_node:
                    break
                available = sum(free // count for free in by_pool.get(name, [])) + headroom * (per_node // count)
                offers.append(self._offer(cls, count, region, country, spot, available, str(spec["instanceType"]), {"node_pool": name}))
        for (cls, product, node_region, node_country), per_node_free in sorted(loose.items()):
            largest = max(alloc for alloc, _ in per_node_free)
            for count in COUNTS:
                if count > largest:
                    break
                available = sum(free // count for _, free in per_node_free)
                offers.append(self._offer(cls, count, node_region, node_country, False, available, product, {}))
        return offers

    def _offer(self, cls: str, count: int, region: str, country: str, spot: bool, available: int, instance_type: str,
               extra: dict[str, Any]) -> OfferData:
        rate = (self.spot_rate_card() if spot else self.rate_card()).get(cls)
        if rate is None:
            extra = {**extra, "rate_card_missing": True}
        return OfferData(gpu_class=cls, gpu_count=count, region=region, country=country,
                         price_per_hour=(rate or Decimal("0")) * count, currency="USD", spot=spot, available=available,
                         availability="NONE" if available == 0 else ("LOW" if available < 2 else "HIGH"),
                         instance_type=instance_type, gpu_memory_gb=GPU_CLASSES.get(cls, ("", None))[1],
                         supports_volumes=("ephemeral", "persistent"), extra=extra)

    # --- launch -----------------------------------------------------------------------------------
    def before_launch(self, request: LaunchRequest) -> None:
        """Pick the node pool for the request; add a node to it when no current node has room."""
        wanted = "spot" if request.spot else "default"
        pools = [p for p in self._pools() if (p.get("spec") or {}).get("instanceType") == request.instance_type
                 and str((p.get("spec") or {}).get("computeClass", "default")).lower() == wanted]
        if not pools:
            if request.spot:
                raise CapacityUnavailable(f"no Spot node pool of {request.instance_type} in this cluster")
            return  # a plain GPU node group: scheduled by its product label like on-prem
        free = defaultdict(list)
        for node, _, node_free in self._node_gpu_free():
            free[((node.get("metadata") or {}).get("labels") or {}).get(self.pool_label)].append(node_free)
        for pool in pools:  # room on a node that is already there: no scaling
            if any(f >= request.gpu_count for f in free.get(pool["metadata"]["name"], [])):
                self._pool = pool
                return
        for pool in pools:
            spec = pool["spec"]
            target = int(spec.get("targetNodes", 0))
            if target < int(spec.get("maxNodes", target)):
                # an absolute targetNodes: a retried PATCH sets the same value again
                self._call("PATCH", f"{NODEPOOLS}/{pool['metadata']['name']}", body={"spec": {"targetNodes": target + 1}},
                           content_type="application/merge-patch+json", idempotent=True)
                self._pool, self._scaled = pool, True
                return
        raise CapacityUnavailable(f"node pool(s) {', '.join(p['metadata']['name'] for p in pools)} are at maxNodes "
                                  f"and have no node with {request.gpu_count} free GPUs", code="NodePoolFull")

    def _node_selector(self, request: LaunchRequest) -> dict[str, str]:
        if self._pool is not None:
            return {self.pool_label: self._pool["metadata"]["name"]}
        return super()._node_selector(request)

    def pod_manifest(self, request: LaunchRequest, pull_secret: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        pod, claims = super().pod_manifest(request, pull_secret)
        if self._scaled and self._pool is not None:
            # remembered on the pod: terminate gives the node back, and Unschedulable is expected meanwhile
            pod["metadata"]["annotations"][SCALED_ANNOTATION] = self._pool["metadata"]["name"]
        return pod, claims

    def unschedulable_is_final(self, pod: dict[str, Any]) -> bool:
        meta = pod.get("metadata") or {}
        if SCALED_ANNOTATION not in (meta.get("annotations") or {}):
            return True
        created = meta.get("creationTimestamp")
        try:
            age = (clock.now() - datetime.fromisoformat(str(created).replace("Z", "+00:00"))).total_seconds()
        except ValueError:
            return False
        return age > float(self.settings.get("scale_up_grace_seconds", 1800))

    def after_terminate(self, pod: dict[str, Any] | None) -> None:
        """Give back the node this pod's launch added, if a node of the pool is now idle."""
        pool_name = (((pod or {}).get("metadata") or {}).get("annotations") or {}).get(SCALED_ANNOTATION)
        if not pool_name:
            return
        with contextlib.suppress(NotFound):
            pool = self._call("GET", f"{NODEPOOLS}/{pool_name}")
            spec = pool.get("spec") or {}
            target = int(spec.get("targetNodes", 0))
            per_node = instance_gpus(str(spec.get("instanceType", "")))[1]
            pool_nodes = [(n, a, f) for n, a, f in self._node_gpu_free()
                          if ((n.get("metadata") or {}).get("labels") or {}).get(self.pool_label) == pool_name]
            idle = sum(1 for _, alloc, free in pool_nodes if free >= max(alloc, per_node))
            if idle and target > int(spec.get("minNodes", 0)):
                self._call("PATCH", f"{NODEPOOLS}/{pool_name}", body={"spec": {"targetNodes": target - 1}},
                           content_type="application/merge-patch+json", idempotent=True)
