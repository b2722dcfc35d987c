"""On-prem Kubernetes: GPU pods on an organization's own cluster, over the API server's REST API.

No Kubernetes SDK: a handful of core/v1 calls through httpx. Credentials are an uploaded
kubeconfig (stored encrypted); everything else lives in the account's ``settings``:

- ``namespace`` (default: the kubeconfig context's, else ``default``)
- ``region`` / ``country``: where the cluster is (an on-prem cluster's location is the admin's
  word); otherwise nodes' ``topology.kubernetes.io/region`` label
- ``rate_card`` {canonical class: USD per GPU-hour}: the internal price used for cost
- ``prometheus_url``: DCGM exporter metrics (``DCGM_FI_DEV_GPU_UTIL``) for utilization
- ``base_url``: overrides the kubeconfig's server (stand-ins), ``context``, ``storage_class``,
  ``service_type``, ``priority_class``, ``launch_wait_seconds``, ``unschedulable_grace_seconds``,
  ``ingress_host`` (host that NodePort URLs use)

Capacity is what the scheduler could place now: allocatable ``nvidia.com/gpu`` per node,
minus the GPUs that non-terminated pods on that node request.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from provisioner import clock

from ..catalog import canonical_gpu_class, region_country
from . import kube_manifests as manifests
from . import kube_notices
from .base import (
    REMOTE_EXITED,
    REMOTE_FAILED,
    REMOTE_INTERRUPTED,
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_TERMINATED,
    CapacityUnavailable,
    CredentialField,
    GpuSample,
    InvalidCredentials,
    LaunchRequest,
    NotFound,
    OfferData,
    PermanentError,
    ProviderError,
    ProviderInfo,
    ProviderNotice,
    QuotaExceeded,
    RemotePod,
    TransientError,
)
from .http import ApiClient
from .kube_manifests import GPU, OWNED_LABEL, POD_LABEL, PRODUCT_LABEL, tolerated_taints
from .kubeconfig import KubeConfig, default_tls, parse_kubeconfig, ssl_context
from .rest import RestAdapter, bearer

logger = logging.getLogger(__name__)

MEMORY_LABEL = "nvidia.com/gpu.memory"  # MiB per GPU
REGION_LABEL = "topology.kubernetes.io/region"
COUNTS = (1, 2, 4, 8)
# DisruptionTarget reasons (Kubernetes >= 1.26) and the events older clusters leave behind
DISRUPTION_EVENT_REASONS = {"Preempted", "Evicted", "TaintManagerEviction", "Preempting"}
IMAGE_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}


def _gpus(value: Any) -> int:
    try:
        return int(str(value or "0"))
    except ValueError:
        return 0


def _pod_gpus(pod: dict[str, Any]) -> int:
    """GPUs a pod holds: extended resources have requests == limits, either may be given."""
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += _gpus((res.get("limits") or {}).get(GPU) or (res.get("requests") or {}).get(GPU))
    return total


def _condition(pod: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_rate_card(value: Any) -> dict[str, Decimal]:
    """{class: USD per GPU-hour} from settings (a dict) or the wizard's text ("H100=2.40, A100-80=1.6")."""
    if isinstance(value, str):
        pairs = [p.split("=", 1) for p in re.split(r"[,\n;]+", value) if "=" in p]
        value = {k.strip(): v.strip() for k, v in pairs}
    out: dict[str, Decimal] = {}
    for cls, rate in (value or {}).items():
        try:
            out[str(cls)] = Decimal(str(rate))
        except InvalidOperation:
            raise PermanentError(f"rate card: {rate!r} is not a price for {cls}")
    return out


def map_error(response: httpx.Response, body: Any) -> ProviderError:
    """Map a Kubernetes ``Status`` failure (or a bare HTTP error) to a typed error."""
    if not isinstance(body, dict):
        body = {}
    code = response.status_code
    reason = str(body.get("reason") or "")
    message = str(body.get("message") or response.reason_phrase or f"HTTP {code}")
    if code == 401 or reason == "Unauthorized":
        return InvalidCredentials(f"the cluster refused the credentials: {message}", status=code, code=reason)
    if code == 403 or reason == "Forbidden":
        if "exceeded quota" in message.lower():
            return QuotaExceeded(message, status=code, code="ExceededQuota")
        return InvalidCredentials(f"not allowed: {message}", status=code, code=reason or "Forbidden")
    if code == 429 or code >= 500:
        return TransientError(message, status=code, code=reason)  # the client adds Retry-After
    if code == 404:
        return NotFound(message, status=code, code=reason or "NotFound")
    return PermanentError(message, status=code, code=reason)


def prometheus_error(response: httpx.Response, body: Any) -> ProviderError:
    # utilization is best effort: any refusal is reported as transient (the next tick asks again)
    return TransientError(f"Prometheus answered {response.status_code}", status=response.status_code)


class KubernetesAdapter(RestAdapter):
    info = ProviderInfo(
        kind="kubernetes",
        label="Kubernetes (on-prem)",
        description="Your own cluster: GPU pods requesting nvidia.com/gpu, priced from an internal rate card. "
        "Upload a kubeconfig with a ServiceAccount token or client certificate.",
        supports_spot=False,
        private_registry=True,  # imagePullSecrets: a dockerconfigjson Secret
        credential_fields=(
            CredentialField("kubeconfig", "Kubeconfig", help="A self-contained kubeconfig (kubectl config view --raw "
                            "--flatten --minify): server, token or client certificate, CA.", multiline=True, file=True),
            CredentialField("namespace", "Namespace", help="Where pods are created (default: the kubeconfig's, else "
                            "'default').", secret=False, required=False),
            CredentialField("country", "Country of the cluster", help="ISO code, e.g. DE: on-prem clusters are where you "
                            "say they are.", secret=False, required=False),
            CredentialField("region", "Location name", help="e.g. fra-dc1 (default: the nodes' topology region label).",
                            secret=False, required=False),
            CredentialField("rate_card", "Internal rate card", help="USD per GPU-hour by class, e.g. "
                            "\"H100=2.40, A100-80=1.60\": what a GPU-hour costs you, for budgets and placement.",
                            secret=False, required=False, multiline=True),
            CredentialField("prometheus_url", "Prometheus URL", help="Optional: DCGM exporter metrics for GPU "
                            "utilization, e.g. http://prometheus.monitoring:9090.", secret=False, required=False),
        ),
        regions_hint="wherever your cluster is (set its country in the account settings)",
    )

    error_mapper = staticmethod(map_error)

    def __init__(self, credentials: dict[str, Any], settings: dict[str, Any] | None = None, **kw: Any):
        super().__init__(credentials, settings, **kw)
        self._config: KubeConfig | None = None

    # --- plumbing -----------------------------------------------------------------------------
    @property
    def config(self) -> KubeConfig:
        if self._config is None:
            self._config = parse_kubeconfig(str(self.credentials.get("kubeconfig") or ""), str(self.settings.get("context") or ""))
        return self._config

    @property
    def namespace(self) -> str:
        return str(self.opt("namespace") or self.config.namespace or "default")

    def make_client(self, name: str) -> ApiClient:
        if name == "prometheus":
            # an in-cluster Prometheus is trusted through the system store (an organization's own CA)
            return self.new_client(str(self.opt("prometheus_url")), verify=default_tls(), error_mapper=prometheus_error)
        cfg = self.config
        base = self.endpoint(cfg.server)
        # the kubeconfig's CA and client certificate; plain http (a stand-in) needs no TLS context
        verify: Any = ssl_context(cfg) if base.startswith("https://") else False
        return self.new_client(base, secret=cfg.token or cfg.client_cert_pem, headers=bearer(cfg.token) if cfg.token else {},
                               verify=verify)

    def _call(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
              content_type: str = "application/json", idempotent: bool | None = None) -> dict[str, Any]:
        headers = {"Content-Type": content_type} if body is not None else {}
        r = self.client.request(method, path, params=params, headers=headers, content=json.dumps(body) if body is not None else None,
                      idempotent=idempotent)
        return r.json() if r.content else {}

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self._call("GET", path)
        except NotFound:
            return None

    def _delete(self, path: str, **params: Any) -> None:
        with contextlib.suppress(NotFound):
            self._call("DELETE", path, params=params or None)

    def _ns_path(self, kind: str, name: str = "") -> str:
        return f"/api/v1/namespaces/{self.namespace}/{kind}" + (f"/{name}" if name else "")

    # --- interface ----------------------------------------------------------------------------
    def verify(self) -> None:
        self._call("GET", "/version")
        # the account must be able to see nodes (capacity) and pods in its namespace
        self._call("GET", "/api/v1/nodes", params={"limit": 1})
        self._call("GET", self._ns_path("pods"), params={"limit": 1})

    def rate_card(self) -> dict[str, Decimal]:
        return parse_rate_card(self.opt("rate_card"))

    def _region_of(self, node: dict[str, Any]) -> tuple[str, str]:
        labels = (node.get("metadata") or {}).get("labels") or {}
        region = str(self.opt("region") or labels.get(REGION_LABEL) or "on-prem")
        country = str(self.opt("country") or region_country(region) or "").upper()
        return region, country

    def _node_gpu_free(self) -> list[tuple[dict[str, Any], int, int]]:
        """(node, allocatable GPUs, free GPUs) for every schedulable, Ready GPU node."""
        params = {"labelSelector": self.settings["node_selector"]} if self.settings.get("node_selector") else None
        nodes = self._call("GET", "/api/v1/nodes", params=params).get("items") or []
        pods = self._call("GET", "/api/v1/pods",
                          params={"fieldSelector": "status.phase!=Succeeded,status.phase!=Failed"}).get("items") or []
        used: dict[str, int] = defaultdict(int)
        for p in pods:
            node_name = (p.get("spec") or {}).get("nodeName")
            # a terminating pod gives its GPUs back within its grace period: count them as free
            if node_name and not (p.get("metadata") or {}).get("deletionTimestamp"):
                used[node_name] += _pod_gpus(p)
        out = []
        for node in nodes:
            alloc = _gpus(((node.get("status") or {}).get("allocatable") or {}).get(GPU))
            if alloc <= 0:
                continue
            ready = any(cond.get("type") == "Ready" and cond.get("status") == "True"
                        for cond in (node.get("status") or {}).get("conditions") or [])
            # a node tainted for someone else (dedicated=team-a:NoSchedule) is not ours to offer
            tolerated = {GPU, *tolerated_taints(self.settings)}
            foreign = [t for t in (node.get("spec") or {}).get("taints") or []
                       if t.get("effect") in ("NoSchedule", "NoExecute") and t.get("key") not in tolerated]
            schedulable = ready and not (node.get("spec") or {}).get("unschedulable") and not foreign
            free = max(0, alloc - used.get(node["metadata"]["name"], 0)) if schedulable else 0
            out.append((node, alloc, free))
        return out

    def _gpu_class(self, labels: dict[str, str]) -> str | None:
        product = labels.get(PRODUCT_LABEL, "")
        mem_mib = _gpus(labels.get(MEMORY_LABEL))
        return canonical_gpu_class(product.replace("-", " "), mem_mib / 1024 if mem_mib else None) if product else None

    def list_offers(self) -> list[OfferData]:
        nodes = self._node_gpu_free()
        rates = self.rate_card()
        # (class, product label, region) -> free GPUs per node; a pod must fit on one node
        groups: dict[tuple[str, str, str, str], list[tuple[int, int]]] = defaultdict(list)
        memory: dict[str, int | None] = {}
        for node, alloc, free in nodes:
            labels = (node.get("metadata") or {}).get("labels") or {}
            cls = self._gpu_class(labels)
            if cls is None:
                continue
            region, country = self._region_of(node)
            groups[(cls, labels[PRODUCT_LABEL], region, country)].append((alloc, free))
            mem = _gpus(labels.get(MEMORY_LABEL))
            memory[cls] = round(mem / 1024) if mem else None
        offers = []
        for (cls, product, region, country), per_node in sorted(groups.items()):
            rate = rates.get(cls)
            largest = max(alloc for alloc, _ in per_node)
            for count in COUNTS:
                if count > largest:
                    break
                available = sum(free // count for _, free in per_node)
                offers.append(OfferData(
                    gpu_class=cls, gpu_count=count, region=region, country=country,
                    # no rate card entry: priced at zero and flagged, so the admin sees it on the capacity page
                    price_per_hour=(rate or Decimal("0")) * count, currency="USD", spot=False,
                    available=available, availability="NONE" if available == 0 else ("LOW" if available < 2 else "HIGH"),
                    instance_type=product, gpu_memory_gb=memory.get(cls),
                    supports_volumes=("ephemeral", "persistent"),
                    extra={"rate_card_missing": True} if rate is None else {},
                ))
        return offers

    # --- launch -------------------------------------------------------------------------------
    @staticmethod
    def pod_name(tag: str) -> str:
        return manifests.pod_name(tag)

    def _node_selector(self, request: LaunchRequest) -> dict[str, str]:
        return {PRODUCT_LABEL: request.instance_type} if request.instance_type else {}

    def pod_manifest(self, request: LaunchRequest, pull_secret: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The Pod to create and the PVCs it needs."""
        return manifests.pod_manifest(request, namespace=self.namespace, node_selector=self._node_selector(request),
                                      settings=self.settings, pull_secret=pull_secret)

    def service_manifest(self, request: LaunchRequest, pod: dict[str, Any]) -> dict[str, Any] | None:
        return manifests.service_manifest(request, pod, namespace=self.namespace, service_type=self.settings.get("service_type"))

    def _create(self, kind: str, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create, or return the existing object of that name (409 AlreadyExists): idempotent."""
        # fieldValidation=Strict (Kubernetes docs, API Concepts, "Field validation"): a field the API
        # server does not know fails the create with a BadRequest instead of being dropped with a warning
        try:  # named from the pod's tag: a repeated create answers AlreadyExists, so retrying is safe
            return self._call("POST", self._ns_path(kind), body=manifest, params={"fieldValidation": "Strict"},
                              idempotent=True)
        except PermanentError as exc:
            if exc.code != "AlreadyExists":
                raise
            return self._call("GET", self._ns_path(kind, manifest["metadata"]["name"]))

    def _pull_secret(self, request: LaunchRequest) -> str:
        secret = manifests.pull_secret_manifest(request, namespace=self.namespace)
        if secret is None:
            return ""
        self._create("secrets", secret)
        return secret["metadata"]["name"]

    def before_launch(self, request: LaunchRequest) -> None:
        """Hook for subclasses (CoreWeave scales a node pool here)."""

    def launch(self, request: LaunchRequest) -> RemotePod:
        name = self.pod_name(request.tag)
        existing = self._get_or_none(self._ns_path("pods", name))
        if existing is not None:  # a retried launch: the pod is already there
            return self._remote(existing)
        self.before_launch(request)
        pod_manifest, claims = self.pod_manifest(request, self._pull_secret(request))
        for claim in claims:
            self._create("persistentvolumeclaims", claim)
        pod = self._create("pods", pod_manifest)
        service = self.service_manifest(request, pod)
        if service is not None:
            self._create("services", service)
        pod = self._await_scheduling(pod)
        unschedulable = _condition(pod, "PodScheduled")
        if (unschedulable and unschedulable.get("status") == "False" and unschedulable.get("reason") == "Unschedulable"
                and self.unschedulable_is_final(pod)):
            self._cleanup(name, request.tag)
            raise CapacityUnavailable(f"unschedulable: {unschedulable.get('message', '')}".strip(), code="Unschedulable")
        return self._remote(pod)

    def _await_scheduling(self, pod: dict[str, Any]) -> dict[str, Any]:
        """Wait briefly (bounded) for the scheduler's verdict, so that 'no room' fails over now."""
        expired = self.deadline(float(self.settings.get("launch_wait_seconds", 10)))
        interval = self.poll_interval
        while True:
            cond = _condition(pod, "PodScheduled")
            if cond is not None and (cond.get("status") == "True" or cond.get("reason") == "Unschedulable"):
                return pod
            if expired():
                return pod
            self.sleep(interval)
            pod = self._call("GET", self._ns_path("pods", pod["metadata"]["name"]))

    def unschedulable_is_final(self, pod: dict[str, Any]) -> bool:
        """Whether an Unschedulable pod should be given up on. Plain clusters: yes (subclasses
        that are adding nodes for it say no)."""
        return True

    # --- state --------------------------------------------------------------------------------
    def _connection(self, pod: dict[str, Any]) -> dict[str, Any]:
        status = pod.get("status") or {}
        host = str(self.settings.get("ingress_host") or status.get("hostIP") or "")
        conn: dict[str, Any] = {"host": host, "pod_ip": status.get("podIP", ""), "namespace": self.namespace,
                                "exec": f"kubectl -n {self.namespace} exec -it {pod['metadata']['name']} -- /bin/sh"}
        svc = self._get_or_none(self._ns_path("services", pod["metadata"]["name"]))
        if svc is not None:
            urls = {}
            for port in (svc.get("spec") or {}).get("ports") or []:
                if port.get("nodePort") and host:
                    urls[str(port["port"])] = f"http://{host}:{port['nodePort']}"
                else:
                    urls[str(port["port"])] = f"http://{svc['metadata']['name']}.{self.namespace}.svc:{port['port']}"
            conn["urls"] = urls
        return conn

    def _nodes_of(self, pods: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The nodes running ``pods`` (their taints are notices: kube_notices): one list call for a
        list, one get for a single pod, none when nothing runs. A service account that may not
        read nodes gets no taint notices rather than no pods."""
        names = {(p.get("spec") or {}).get("nodeName") for p in pods if (p.get("status") or {}).get("phase") == "Running"}
        names.discard(None)
        try:
            if len(names) == 1:
                node = self._get_or_none(f"/api/v1/nodes/{next(iter(names))}")
                return {node["metadata"]["name"]: node} if node else {}
            if names:
                return {n["metadata"]["name"]: n for n in self._call("GET", "/api/v1/nodes").get("items") or []
                        if n["metadata"]["name"] in names}
        except InvalidCredentials:
            pass
        return {}

    def _remote(self, pod: dict[str, Any], nodes: dict[str, dict[str, Any]] | None = None) -> RemotePod:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        phase = status.get("phase", "Pending")
        state, message, exit_code = REMOTE_PROVISIONING, "", None
        disruption = _condition(pod, "DisruptionTarget")
        terminated = next(((cs.get("state") or {}).get("terminated") for cs in status.get("containerStatuses") or []
                           if (cs.get("state") or {}).get("terminated")), None)
        deleting_at = _parse_time(meta.get("deletionTimestamp"))
        deadline = None
        if (disruption is not None and disruption.get("status") == "True" and phase == "Running"
                and deleting_at is not None and deleting_at > clock.now()):
            # Kubernetes docs, "Pod Conditions" / "Disruptions" ("Pod disruption conditions"):
            # DisruptionTarget=True says the pod is about to be terminated (preemption, eviction,
            # taint manager, node shutdown); while its containers get their termination grace
            # period it still runs, and metadata.deletionTimestamp ("API Conventions": the time
            # after which the object is gone) is that deadline: a notice, not yet an interruption
            state, deadline = REMOTE_RUNNING, deleting_at
            message = f"{disruption.get('reason')}: {disruption.get('message', '')}"
        elif (disruption is not None and disruption.get("status") == "True") or status.get("reason") == "Evicted":
            state = REMOTE_INTERRUPTED
            message = f"{(disruption or {}).get('reason') or status.get('reason')}: {(disruption or {}).get('message') or status.get('message', '')}"
        elif meta.get("deletionTimestamp"):
            state = REMOTE_TERMINATED
        elif phase == "Succeeded":
            state, exit_code = REMOTE_EXITED, int((terminated or {}).get("exitCode", 0))
        elif phase == "Failed":
            if terminated is not None:
                state, exit_code = REMOTE_EXITED, int(terminated.get("exitCode", 1))
            else:
                state = REMOTE_FAILED
            message = str(status.get("message") or (terminated or {}).get("reason") or "")
        elif phase == "Running":
            state = REMOTE_RUNNING
        elif phase == "Pending":
            cond = _condition(pod, "PodScheduled")
            waiting = next(((cs.get("state") or {}).get("waiting") for cs in status.get("containerStatuses") or []
                            if ((cs.get("state") or {}).get("waiting") or {}).get("reason") in IMAGE_ERRORS), None)
            if waiting is not None:
                message = f"{waiting['reason']}: {waiting.get('message', '')}"
                created = _parse_time(meta.get("creationTimestamp"))
                grace = float(self.settings.get("image_pull_grace_seconds", 300))
                # a bad image name never heals; a pull error may (registry hiccup), for a while
                if waiting["reason"] in ("InvalidImageName", "CreateContainerConfigError") or (
                        created and (clock.now() - created).total_seconds() > grace):
                    self._cleanup(meta["name"], (meta.get("labels") or {}).get(POD_LABEL, ""))
                    state = REMOTE_FAILED
            elif cond is not None and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
                message = f"Unschedulable: {cond.get('message', '')}"
                since = _parse_time(cond.get("lastTransitionTime"))
                grace = float(self.settings.get("unschedulable_grace_seconds", 300))
                if since and (clock.now() - since).total_seconds() > grace and self.unschedulable_is_final(pod):
                    # given up on: delete it so that it cannot start later unaccounted for
                    self._cleanup(meta["name"], (meta.get("labels") or {}).get(POD_LABEL, ""))
                    state = REMOTE_FAILED
        connection = self._connection(pod) if state == REMOTE_RUNNING else {}
        node_name = (pod.get("spec") or {}).get("nodeName", "")
        notice = None
        if deadline is not None:
            notice = ProviderNotice("preempt", deadline, source="pod condition DisruptionTarget", detail=message[:200])
        elif state == REMOTE_RUNNING and node_name:
            nodes = self._nodes_of([pod]) if nodes is None else nodes
            notice = kube_notices.node_notice(nodes.get(node_name))
        return RemotePod(external_id=meta.get("name", ""), state=state, tag=(meta.get("labels") or {}).get(POD_LABEL, ""),
                         region=str(self.opt("region") or ""), connection=connection, exit_code=exit_code,
                         message=message, raw={"phase": phase, "node": node_name}, notice=notice)

    def _disrupted_after_deletion(self, name: str) -> str:
        """A pod deleted by an eviction/preemption is gone from the API; its events remain (~1 h)."""
        params = {"fieldSelector": f"involvedObject.kind=Pod,involvedObject.name={name}"}
        try:
            events = self._call("GET", self._ns_path("events"), params=params).get("items") or []
        except (NotFound, InvalidCredentials):
            return ""
        for ev in events:
            if ev.get("reason") in DISRUPTION_EVENT_REASONS:
                return f"{ev['reason']}: {ev.get('message', '')}"
        return ""

    def get(self, external_id: str) -> RemotePod:
        pod = self._get_or_none(self._ns_path("pods", external_id))
        if pod is None:
            why = self._disrupted_after_deletion(external_id)
            if why:
                return RemotePod(external_id=external_id, state=REMOTE_INTERRUPTED, message=why)
            raise NotFound(f"pod {self.namespace}/{external_id} not found")
        return self._remote(pod)

    def logs(self, external_id: str, tail_lines: int, connection: Mapping[str, Any] | None = None) -> str:
        """Kubernetes API reference, "Pod v1" → "read log of the specified Pod":
        ``GET /api/v1/namespaces/{namespace}/pods/{name}/log`` answers ``text/plain``; ``tailLines``
        is the number of lines from the end, ``timestamps=true`` prefixes each line with an RFC3339
        timestamp. A container still waiting to start is a 400 BadRequest Status."""
        r = self.client.request("GET", self._ns_path("pods", external_id) + "/log",
                                params={"tailLines": max(1, int(tail_lines)), "timestamps": "true"})
        return r.text

    def _cleanup(self, name: str, tag: str) -> None:
        self._delete(self._ns_path("pods", name), gracePeriodSeconds=int(self.settings.get("grace_seconds", 30)))
        self._delete(self._ns_path("services", name))
        if tag:
            for kind in ("persistentvolumeclaims", "secrets"):
                owned = self._call("GET", self._ns_path(kind), params={"labelSelector": f"{OWNED_LABEL}={tag}"})
                for item in owned.get("items") or []:
                    self._delete(self._ns_path(kind, item["metadata"]["name"]))

    def terminate(self, external_id: str) -> None:
        pod = self._get_or_none(self._ns_path("pods", external_id))
        tag = ((pod or {}).get("metadata") or {}).get("labels", {}).get(POD_LABEL, "")
        self._cleanup(external_id, tag)
        self.after_terminate(pod)

    def after_terminate(self, pod: dict[str, Any] | None) -> None:
        """Hook for subclasses (CoreWeave scales its node pool back down)."""

    def list_pods(self) -> list[RemotePod]:
        items = self._call("GET", self._ns_path("pods"), params={"labelSelector": POD_LABEL}).get("items") or []
        nodes = self._nodes_of(items)
        return [self._remote(p, nodes) for p in items]

    def gpu_utilization(self, external_id: str) -> list[GpuSample] | None:
        url = self.opt("prometheus_url")
        if not url:
            return None
        # dcgm-exporter labels each GPU with the pod using it. Scraped with Prometheus' default
        # honor_labels: false (Prometheus docs, Configuration, <scrape_config>: "conflicting labels in
        # the scraped data" are renamed "exported_<original-label>"), those become
        # exported_pod/exported_namespace and pod/namespace name the exporter itself: ask for both.
        query = (f'DCGM_FI_DEV_GPU_UTIL{{namespace="{self.namespace}",pod="{external_id}"}} or '
                 f'DCGM_FI_DEV_GPU_UTIL{{exported_namespace="{self.namespace}",exported_pod="{external_id}"}}')
        body = self.api("prometheus").get_json("/api/v1/query", params={"query": query}) or {}
        if body.get("status") != "success":
            raise TransientError(f"Prometheus query failed: {body.get('error', '')}")
        samples = []
        for series in (body.get("data") or {}).get("result") or []:
            ts, value = series.get("value") or (None, None)
            if value is None:
                continue
            samples.append(GpuSample(gpu_index=_gpus(series.get("metric", {}).get("gpu")), util_pct=float(value),
                                     at=datetime.fromtimestamp(float(ts), tz=UTC) if ts else clock.now()))
        return sorted(samples, key=lambda s: s.gpu_index) or None
