"""A stateful stand-in for a Kubernetes API server (core/v1 subset), CoreWeave NodePools and a
tiny Prometheus, in the real request/response shapes.

Serves: ``GET /version``; nodes (list/get); pods (list in all namespaces or one, create, get,
delete); services, persistentvolumeclaims, secrets, events (list/create/get/delete);
``compute.coreweave.com/v1alpha1`` NodePools (cluster-scoped: list/get/create/merge-patch/
delete) with a controller that adds/removes Nodes to match ``targetNodes``; and
``/prom/api/v1/query`` for ``DCGM_FI_DEV_GPU_UTIL``. Errors are ``Status`` objects.

A small scheduler places pods on Ready nodes whose labels match the nodeSelector, whose taints
are tolerated and which have enough free ``nvidia.com/gpu``; otherwise the pod stays Pending
with ``PodScheduled=False, reason=Unschedulable``. Fault knobs: ``throttle`` (429 +
Retry-After), ``disrupt`` (DisruptionTarget, optionally deleting the pod with an event),
``finish`` (container exits), ``reclaim_node`` (spot node reclaimed), ``taint_node`` (a termination
handler's taint before a drain), ``gpu_quota``.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx

from provisioner import clock

from . import kube_schemas
from ._loopback import PEER_CERT_HEADER, serve

GPU = "nvidia.com/gpu"
NODEPOOL_PATH = "/apis/compute.coreweave.com/v1alpha1/nodepools"
NODEPOOL_LABEL = "compute.coreweave.com/node-pool"
# CoreWeave instance types the stand-in knows: product label, GPUs per node, MiB per GPU
INSTANCE_TYPES = {
    "gd-8xh100ib-i128": ("NVIDIA-H100-80GB-HBM3", 8, 81559),
    "gd-8xh200ib-i128": ("NVIDIA-H200", 8, 143771),
    "gd-8xa100-i128": ("NVIDIA-A100-SXM4-80GB", 8, 81920),
    "gd-8xl40s-i128": ("NVIDIA-L40S", 8, 46068),
}
NAMESPACED_KINDS = {"pods": "Pod", "services": "Service", "persistentvolumeclaims": "PersistentVolumeClaim",
                    "secrets": "Secret", "events": "Event"}


def _ts() -> str:
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


def _dig(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _match_labels(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        if "!=" in term:
            k, v = term.split("!=", 1)
            if labels.get(k) == v:
                return False
        elif "=" in term:
            k, v = term.split("=", 1)
            if labels.get(k.rstrip("=")) != v:
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _match_fields(obj: dict[str, Any], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        neg = "!=" in term
        k, v = term.split("!=" if neg else "=", 1)
        actual = str(_dig(obj, k.rstrip("=")) or "")
        if (actual == v) == neg:
            return False
    return True


def status(code: int, reason: str, message: str, *, details: dict[str, Any] | None = None,
           headers: dict[str, str] | None = None) -> httpx.Response:
    """A Kubernetes ``Status`` failure response."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}
    if details is not None:
        body["details"] = details
    return httpx.Response(code, json=body, headers=headers)


class FakeKubernetes:
    def __init__(self, *, token: str = "test-token", client_cert_cn: str = "") -> None:
        self.token = token
        self.client_cert_cn = client_cert_cn  # accept TLS clients presenting this CN
        self.lock = threading.RLock()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}  # (kind plural, ns, name)
        self.nodepools: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # {"method","path","body"} as received
        self.responses: list[tuple[str, str, Any]] = []  # (method, path, JSON body) as sent
        self.record = True  # keep self.responses (benchmarks turn it off)
        self.bad_images: set[str] = set()  # images the kubelet fails to pull (ErrImagePull)
        self.util: dict[str, float] = {}  # pod name -> GPU utilization for Prometheus
        self.pod_logs: dict[str, list[str]] = {}  # pod name -> its container's output lines
        # False: Prometheus' default scrape (honor_labels: false) renames the exporter's pod/namespace
        # labels exported_pod/exported_namespace and sets pod/namespace to the dcgm-exporter's own
        self.dcgm_honor_labels = True
        self.gpu_quota: dict[str, int] = {}  # namespace -> ResourceQuota requests.nvidia.com/gpu
        self.auto_run = True  # scheduled pods go straight to Running
        self.graceful_delete = False  # True: DELETE only sets deletionTimestamp
        self.hold_nodes = False  # True: node pools do not add nodes until settle_pools()
        self._throttle: list[float] = []
        self._rv = itertools.count(1000)
        self._ports = itertools.count(30080)
        self._ips = itertools.count(10)

    # --- fixtures & knobs ---------------------------------------------------------------------
    def add_node(self, name: str, product: str = "NVIDIA-A100-SXM4-80GB", gpus: int = 8, *, memory_mib: int | None = 81920,
                 labels: dict[str, str] | None = None, region: str = "", ready: bool = True, taint: bool = True) -> dict[str, Any]:
        with self.lock:
            node_labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}
            if gpus:
                node_labels.update({"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": product,
                                    "nvidia.com/gpu.count": str(gpus)})
                if memory_mib:
                    node_labels["nvidia.com/gpu.memory"] = str(memory_mib)
            if region:
                node_labels["topology.kubernetes.io/region"] = region
            node_labels.update(labels or {})
            ip = f"10.0.0.{next(self._ips)}"
            node = {
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(next(self._rv)),
                             "creationTimestamp": _ts(), "labels": node_labels, "annotations": {}},
                "spec": {"taints": [{"key": GPU, "value": "present", "effect": "NoSchedule"}] if taint and gpus else []},
                "status": {
                    "capacity": {"cpu": "128", "memory": "1056000000Ki", "pods": "110", GPU: str(gpus)},
                    "allocatable": {"cpu": "127", "memory": "1050000000Ki", "pods": "110", GPU: str(gpus)},
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False", "lastHeartbeatTime": _ts(),
                                    "lastTransitionTime": _ts(), "reason": "KubeletReady" if ready else "KubeletNotReady",
                                    "message": "kubelet is posting ready status" if ready else "container runtime is down"}],
                    "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
                    "nodeInfo": {"kubeletVersion": "v1.31.2", "containerRuntimeVersion": "containerd://1.7.22",
                                 "osImage": "Ubuntu 22.04.5 LTS", "kernelVersion": "5.15.0-124-generic", "architecture": "amd64",
                                 "operatingSystem": "linux", "kubeProxyVersion": "v1.31.2", "machineID": uuid.uuid4().hex,
                                 "systemUUID": str(uuid.uuid4()), "bootID": str(uuid.uuid4())},
                },
            }
            self.nodes[name] = node
            self._schedule_pending()
            return node

    def throttle(self, times: int = 1, retry_after: float = 1) -> None:
        with self.lock:
            self._throttle.extend([retry_after] * times)

    def pod(self, name: str, namespace: str = "default") -> dict[str, Any] | None:
        return self.objects.get(("pods", namespace, name))

    def pods(self) -> list[dict[str, Any]]:
        return [o for (k, _, _), o in self.objects.items() if k == "pods"]

    def disrupt(self, name: str, namespace: str = "default", *, reason: str = "PreemptionByScheduler",
                message: str = "Preempted by a higher-priority pod", delete: bool = False,
                grace_seconds: float | None = None) -> None:
        """Evict/preempt a pod: DisruptionTarget condition; ``delete`` removes it (with an event).
        ``grace_seconds``: a graceful disruption, as the kubelet does it — the pod keeps running
        with ``deletionTimestamp`` = now + grace until the grace period ends."""
        with self.lock:
            pod = self.objects[("pods", namespace, name)]
            pod["status"]["conditions"].append({"type": "DisruptionTarget", "status": "True", "lastProbeTime": None,
                                                "lastTransitionTime": _ts(), "reason": reason, "message": message})
            if grace_seconds is not None:
                at = clock.now() + timedelta(seconds=grace_seconds)
                pod["metadata"]["deletionTimestamp"] = at.strftime("%Y-%m-%dT%H:%M:%SZ")
                pod["metadata"]["deletionGracePeriodSeconds"] = int(grace_seconds)
                return
            self._terminate_containers(pod, 137, "Error")
            pod["status"]["phase"] = "Failed"
            if delete:
                event_reason = {"PreemptionByScheduler": "Preempted", "DeletionByTaintManager": "TaintManagerEviction"}.get(reason, "Evicted")
                self.record_event(pod, event_reason, message, "Warning")
                del self.objects[("pods", namespace, name)]

    def finish(self, name: str, namespace: str = "default", exit_code: int = 0) -> None:
        with self.lock:
            pod = self.objects[("pods", namespace, name)]
            self._terminate_containers(pod, exit_code, "Completed" if exit_code == 0 else "Error")
            pod["status"]["phase"] = "Succeeded" if exit_code == 0 else "Failed"

    def reclaim_node(self, node_name: str) -> None:
        """A spot node is taken back: its pods are evicted by the taint manager, the node goes."""
        with self.lock:
            for pod in list(self.pods()):
                if pod["spec"].get("nodeName") == node_name and pod["metadata"].get("deletionTimestamp"):
                    meta = pod["metadata"]  # already terminating: the pod GC removes it, no eviction event
                    del self.objects[("pods", meta["namespace"], meta["name"])]
                elif pod["spec"].get("nodeName") == node_name:
                    self.disrupt(pod["metadata"]["name"], pod["metadata"]["namespace"], reason="DeletionByTaintManager",
                                 message="Taint manager: deleting due to NoExecute taint", delete=True)
            self.nodes.pop(node_name, None)

    def taint_node(self, node_name: str, key: str, effect: str = "NoSchedule", value: str = "") -> dict[str, Any]:
        """Taint a node as a termination handler does before it drains it (GKE, Karpenter, AWS NTH:
        providers/adapters/kube_notices.py); ``node.kubernetes.io/unschedulable`` is a cordon."""
        with self.lock:
            node = self.nodes[node_name]
            taint = {"key": key, "effect": effect, **({"value": value} if value else {})}
            if effect == "NoExecute":  # the API server writes timeAdded for NoExecute taints only
                taint["timeAdded"] = _ts()
            node["spec"].setdefault("taints", []).append(taint)
            if key == "node.kubernetes.io/unschedulable":
                node["spec"]["unschedulable"] = True
            node["metadata"]["resourceVersion"] = str(next(self._rv))
            return node

    def untaint_node(self, node_name: str, key: str) -> None:
        """Remove a taint (a handler abandons its drain: Karpenter un-taints when a replacement fails)."""
        with self.lock:
            node = self.nodes[node_name]
            node["spec"]["taints"] = [t for t in node["spec"].get("taints") or [] if t.get("key") != key]
            node["metadata"]["resourceVersion"] = str(next(self._rv))

    def record_event(self, obj: dict[str, Any], reason: str, message: str, kind: str = "Normal") -> None:
        meta = obj["metadata"]
        name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
        self.objects[("events", meta.get("namespace", "default"), name)] = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": name, "namespace": meta.get("namespace", "default"), "uid": str(uuid.uuid4()),
                         "resourceVersion": str(next(self._rv)), "creationTimestamp": _ts()},
            "involvedObject": {"kind": obj.get("kind", "Pod"), "namespace": meta.get("namespace", "default"),
                               "name": meta["name"], "uid": meta.get("uid", ""), "apiVersion": "v1"},
            "reason": reason, "message": message, "type": kind, "count": 1,
            "source": {"component": "default-scheduler" if reason == "Preempted" else "kubelet"},
            "firstTimestamp": _ts(), "lastTimestamp": _ts(), "reportingComponent": "", "reportingInstance": "",
        }

    # --- transports -----------------------------------------------------------------------------
    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @contextmanager
    def serve(self, tls=None) -> Iterator[str]:
        with serve(self.handle, tls=tls) as url:
            yield url

    # --- scheduling ----------------------------------------------------------------------------
    def _used(self, node_name: str) -> int:
        total = 0
        for pod in self.pods():
            if pod["spec"].get("nodeName") == node_name and pod["status"].get("phase") not in ("Succeeded", "Failed"):
                total += sum(int((c.get("resources") or {}).get("limits", {}).get(GPU, 0)) for c in pod["spec"]["containers"])
        return total

    def _fits(self, pod: dict[str, Any], node: dict[str, Any], gpus: int) -> str:
        if not any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"]["conditions"]) or node["spec"].get("unschedulable"):
            return "node(s) were unschedulable"
        labels = node["metadata"]["labels"]
        if any(labels.get(k) != v for k, v in (pod["spec"].get("nodeSelector") or {}).items()):
            return "node(s) didn't match Pod's node affinity/selector"
        tolerated = {t.get("key") for t in pod["spec"].get("tolerations") or [] if t.get("operator") == "Exists"}
        if any(t["key"] not in tolerated for t in node["spec"].get("taints") or [] if t["effect"] == "NoSchedule"):
            return "node(s) had untolerated taint"
        if int(node["status"]["allocatable"].get(GPU, 0)) - self._used(node["metadata"]["name"]) < gpus:
            return f"Insufficient {GPU}"
        return ""

    def _schedule(self, pod: dict[str, Any]) -> None:
        gpus = sum(int((c.get("resources") or {}).get("limits", {}).get(GPU, 0)) for c in pod["spec"]["containers"])
        reasons: dict[str, int] = {}
        for node in self.nodes.values():
            why = self._fits(pod, node, gpus)
            if not why:
                pod["spec"]["nodeName"] = node["metadata"]["name"]
                host_ip = node["status"]["addresses"][0]["address"]
                pod_ip = f"10.244.{next(self._ips)}.{next(self._ips) % 250}"
                pod["status"].update({"hostIP": host_ip, "hostIPs": [{"ip": host_ip}], "podIP": pod_ip,
                                      "podIPs": [{"ip": pod_ip}], "startTime": _ts()})
                pod["status"]["conditions"] = [
                    {"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": _ts()}
                    for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
                bad = next((c for c in pod["spec"]["containers"] if c["image"] in self.bad_images), None)
                if bad is not None:  # the kubelet cannot pull it: Pending, container waiting
                    pod["status"]["containerStatuses"] = [
                        {"name": c["name"], "state": {"waiting": {"reason": "ErrImagePull", "message": f'rpc error: code = NotFound desc = '
                                                                  f'failed to pull and unpack image "{c["image"]}": not found'}},
                         "lastState": {}, "ready": False, "restartCount": 0, "image": c["image"], "imageID": "", "started": False}
                        for c in pod["spec"]["containers"]]
                elif self.auto_run:
                    pod["status"]["phase"] = "Running"
                    pod["status"]["containerStatuses"] = [
                        {"name": c["name"], "state": {"running": {"startedAt": _ts()}}, "lastState": {}, "ready": True,
                         "restartCount": 0, "image": c["image"], "imageID": f"{c['image']}@sha256:{uuid.uuid4().hex}{uuid.uuid4().hex}",
                         "containerID": f"containerd://{uuid.uuid4().hex}", "started": True} for c in pod["spec"]["containers"]]
                return
            reasons[why] = reasons.get(why, 0) + 1
        total = len(self.nodes)
        msg = f"0/{total} nodes are available: " + ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) + "."
        if total == 0:
            msg = "no nodes available to schedule pods"
        cond = {"type": "PodScheduled", "status": "False", "lastProbeTime": None, "lastTransitionTime": _ts(),
                "reason": "Unschedulable", "message": msg}
        old = next((c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"), None)
        if old and old.get("reason") == "Unschedulable":
            cond["lastTransitionTime"] = old["lastTransitionTime"]
        pod["status"]["conditions"] = [cond]

    def _schedule_pending(self) -> None:
        for pod in self.pods():
            if not pod["spec"].get("nodeName") and pod["status"]["phase"] == "Pending" and not pod["metadata"].get("deletionTimestamp"):
                self._schedule(pod)

    @staticmethod
    def _terminate_containers(pod: dict[str, Any], exit_code: int, reason: str) -> None:
        pod["status"]["containerStatuses"] = [
            {**cs, "state": {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": _ts(), "finishedAt": _ts(),
                                            "containerID": cs.get("containerID", "")}}, "ready": False, "started": False}
            for cs in pod["status"].get("containerStatuses") or []]

    # --- HTTP -------------------------------------------------------------------------------------
    def handle(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            path = request.url.path
            body = json.loads(request.content) if request.content else None
            self.requests.append({"method": request.method, "path": path, "body": body,
                                  "content_type": request.headers.get("content-type", ""),
                                  "query": {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}})
            if path.startswith("/prom/"):
                return self._prometheus(request)
            if self._throttle:
                retry = self._throttle.pop(0)
                return status(429, "TooManyRequests", "Too many requests, please try again later.",
                              details={"retryAfterSeconds": int(retry)}, headers={"Retry-After": str(int(retry))})
            auth = request.headers.get("authorization", "")
            cert_ok = bool(self.client_cert_cn) and request.headers.get(PEER_CERT_HEADER) == self.client_cert_cn
            if not cert_ok and auth != f"Bearer {self.token}":
                return status(401, "Unauthorized", "Unauthorized")
            response = self._route(request, path, body)
            if self.record and response.headers.get("content-type", "").startswith("application/json"):
                self.responses.append((request.method, path, json.loads(response.content)))
            return response

    def _route(self, request: httpx.Request, path: str, body: Any) -> httpx.Response:
        q = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        method = request.method
        if path == "/version":
            return httpx.Response(200, json={"major": "1", "minor": "31", "gitVersion": "v1.31.2", "gitCommit": "5864a46",
                                             "gitTreeState": "clean", "buildDate": "2024-10-22T20:28:14Z",
                                             "goVersion": "go1.22.8", "compiler": "gc", "platform": "linux/amd64"})
        if path == "/api/v1/nodes":
            return self._list("NodeList", list(self.nodes.values()), q)
        m = re.fullmatch(r"/api/v1/nodes/([^/]+)", path)
        if m:
            node = self.nodes.get(m.group(1))
            return httpx.Response(200, json=node) if node else status(404, "NotFound", f'nodes "{m.group(1)}" not found',
                                                                       details={"name": m.group(1), "kind": "nodes"})
        m = re.fullmatch(r"/api/v1/(pods|services|persistentvolumeclaims|secrets|events)", path)
        if m and method == "GET":
            return self._list(f"{NAMESPACED_KINDS[m.group(1)]}List", [o for (k, _, _), o in self.objects.items() if k == m.group(1)], q)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods/([^/]+)/log", path)
        if m and method == "GET":
            return self._pod_log(m.group(1), m.group(2), q)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/(pods|services|persistentvolumeclaims|secrets|events)(?:/([^/]+))?", path)
        if m:
            return self._namespaced(method, m.group(2), m.group(1), m.group(3), body, q)
        if path.startswith(NODEPOOL_PATH):
            return self._nodepools(method, path[len(NODEPOOL_PATH):].strip("/"), body, request)
        return status(404, "NotFound", "the server could not find the requested resource")

    def _pod_log(self, ns: str, name: str, q: dict[str, str]) -> httpx.Response:
        """``GET .../pods/{name}/log`` as the API server answers it: text/plain, ``tailLines`` lines
        from the end, each prefixed with an RFC3339 timestamp under ``timestamps=true``; a 404 Status
        for an unknown pod and a 400 BadRequest while the container waits to start."""
        pod = self.objects.get(("pods", ns, name))
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', details={"name": name, "kind": "pods"})
        if pod["status"]["phase"] == "Pending":
            container = pod["spec"]["containers"][0]["name"]
            return status(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating')
        lines = self.pod_logs.get(name, [])
        if q.get("tailLines"):
            lines = lines[-int(q["tailLines"]):] if int(q["tailLines"]) > 0 else []
        if q.get("timestamps") == "true":
            lines = [f"2026-11-27T10:00:{i % 60:02d}.000000000Z {line}" for i, line in enumerate(lines)]
        return httpx.Response(200, text="".join(line + "\n" for line in lines),
                              headers={"Content-Type": "text/plain"})

    def _list(self, kind: str, items: list[dict[str, Any]], q: dict[str, str]) -> httpx.Response:
        if q.get("labelSelector"):
            items = [i for i in items if _match_labels(i["metadata"].get("labels") or {}, q["labelSelector"])]
        if q.get("fieldSelector"):
            items = [i for i in items if _match_fields(i, q["fieldSelector"])]
        if q.get("limit"):
            items = items[: int(q["limit"])]
        api_version = "compute.coreweave.com/v1alpha1" if kind == "NodePoolList" else "v1"
        return httpx.Response(200, json={"kind": kind, "apiVersion": api_version,
                                         "metadata": {"resourceVersion": str(next(self._rv))}, "items": items})

    def _namespaced(self, method: str, kind: str, ns: str, name: str | None, body: Any, q: dict[str, str]) -> httpx.Response:
        if name is None and method == "GET":
            return self._list(f"{NAMESPACED_KINDS[kind]}List", [o for (k, n, _), o in self.objects.items() if k == kind and n == ns], q)
        if name is None and method == "POST":
            refused, warnings = self._judge(kind, body, q)
            if refused is not None:
                return refused
            response = self._create(kind, ns, body)
            if warnings and response.status_code < 300:
                response.headers["Warning"] = ", ".join(warnings)
            return response
        key = (kind, ns, name)
        obj = self.objects.get(key)
        if obj is None:
            return status(404, "NotFound", f'{kind} "{name}" not found', details={"name": name, "kind": kind})
        if method == "GET":
            return httpx.Response(200, json=obj)
        if method == "DELETE":
            if kind == "pods" and self.graceful_delete and obj["status"]["phase"] not in ("Succeeded", "Failed"):
                obj["metadata"]["deletionTimestamp"] = _ts()
                obj["metadata"]["deletionGracePeriodSeconds"] = int(q.get("gracePeriodSeconds", 30))
            else:
                del self.objects[key]
                self._schedule_pending()  # freed GPUs
            return httpx.Response(200, json=obj)
        return status(405, "MethodNotAllowed", f"{method} is not supported")

    @staticmethod
    def _judge(kind: str, body: Any, q: dict[str, str]) -> tuple[httpx.Response | None, list[str]]:
        """What an API server does with a create, judged by Kubernetes' own schemas
        (tests/standins/kube_schemas.py): a wrong type is a 400 BadRequest, a missing required field
        or bad value a 422 Invalid; an unknown field is a 400 under ``fieldValidation=Strict`` and
        otherwise accepted with a ``Warning`` header (the server default is Warn)."""
        if not isinstance(body, dict) or NAMESPACED_KINDS.get(kind) not in kube_schemas.CORE_KINDS:
            return None, []
        obj = {"apiVersion": "v1", **body, "kind": NAMESPACED_KINDS[kind]}
        loose = kube_schemas.errors(obj, strict=False)
        if loose:
            e = loose[0]
            if e.validator == "type":
                return status(400, "BadRequest", f'{obj["kind"]} in version "v1" cannot be handled as a {obj["kind"]}: '
                                                 f"json: cannot unmarshal into field {kube_schemas.where(e)}: {e.message}"), []
            return status(422, "Invalid", f'{obj["kind"]} is invalid: {kube_schemas.where(e)}: {e.message}',
                          details={"kind": kind, "causes": [{"reason": "FieldValueInvalid", "field": kube_schemas.where(e)}]}), []
        if obj["kind"] == "Pod":  # validation beyond the schema: a pod's containers need an image
            for i, c in enumerate((obj.get("spec") or {}).get("containers") or []):
                if not c.get("image"):
                    return status(422, "Invalid", f"Pod is invalid: spec.containers[{i}].image: Required value",
                                  details={"kind": kind, "causes": [{"reason": "FieldValueRequired",
                                                                     "field": f"spec.containers[{i}].image"}]}), []
        unknown = [f'unknown field "{field}"' for field in kube_schemas.unknown_fields(obj)]
        if unknown and q.get("fieldValidation") == "Strict":
            return status(400, "BadRequest", f'{obj["kind"]} in version "v1" cannot be handled as a {obj["kind"]}: '
                                             f"strict decoding error: {', '.join(unknown)}"), []
        return None, [f'299 - "{u}"' for u in unknown]

    def _create(self, kind: str, ns: str, body: Any) -> httpx.Response:
        if not isinstance(body, dict) or not (body.get("metadata") or {}).get("name"):
            return status(422, "Invalid", f"{NAMESPACED_KINDS[kind]} is invalid: metadata.name: Required value",
                          details={"kind": kind, "causes": [{"reason": "FieldValueRequired", "field": "metadata.name"}]})
        name = body["metadata"]["name"]
        if (kind, ns, name) in self.objects:
            return status(409, "AlreadyExists", f'{kind} "{name}" already exists', details={"name": name, "kind": kind})
        obj = json.loads(json.dumps(body))
        obj.setdefault("apiVersion", "v1")
        obj["kind"] = NAMESPACED_KINDS[kind]
        obj["metadata"].update({"namespace": ns, "uid": str(uuid.uuid4()), "resourceVersion": str(next(self._rv)),
                                "creationTimestamp": _ts()})
        if kind == "pods":
            gpus = sum(int((c.get("resources") or {}).get("limits", {}).get(GPU, 0)) for c in obj["spec"]["containers"])
            quota = self.gpu_quota.get(ns)
            if quota is not None:
                used = sum(int((c.get("resources") or {}).get("limits", {}).get(GPU, 0))
                           for p in self.pods() if p["metadata"]["namespace"] == ns for c in p["spec"]["containers"])
                if used + gpus > quota:
                    return status(403, "Forbidden", f'pods "{name}" is forbidden: exceeded quota: gpu-quota, requested: '
                                  f"requests.{GPU}={gpus}, used: requests.{GPU}={used}, limited: requests.{GPU}={quota}",
                                  details={"name": name, "kind": "pods"})
            obj["spec"].setdefault("schedulerName", "default-scheduler")
            obj["spec"].setdefault("serviceAccountName", "default")
            obj["status"] = {"phase": "Pending", "conditions": [], "qosClass": "BestEffort"}
            self.objects[("pods", ns, name)] = obj
            self._schedule(obj)
        elif kind == "services":
            obj["spec"]["clusterIP"] = f"10.96.{next(self._ips)}.{next(self._ips) % 250}"
            obj["spec"]["clusterIPs"] = [obj["spec"]["clusterIP"]]
            obj["spec"].setdefault("type", "ClusterIP")
            if obj["spec"]["type"] in ("NodePort", "LoadBalancer"):
                for port in obj["spec"]["ports"]:
                    port.setdefault("nodePort", next(self._ports))
            obj["status"] = {"loadBalancer": {}}
            self.objects[("services", ns, name)] = obj
        elif kind == "persistentvolumeclaims":
            obj["spec"]["volumeName"] = f"pvc-{obj['metadata']['uid']}"
            obj["spec"].setdefault("storageClassName", "standard")
            obj["spec"].setdefault("volumeMode", "Filesystem")
            obj["status"] = {"phase": "Bound", "accessModes": obj["spec"]["accessModes"],
                             "capacity": {"storage": obj["spec"]["resources"]["requests"]["storage"]}}
            self.objects[("persistentvolumeclaims", ns, name)] = obj
        else:
            self.objects[(kind, ns, name)] = obj
        return httpx.Response(201, json=obj)

    # --- CoreWeave NodePools -----------------------------------------------------------------------
    def add_nodepool(self, name: str, instance_type: str = "gd-8xh100ib-i128", *, target: int = 0, min_nodes: int = 0,
                     max_nodes: int = 4, compute_class: str = "default", region: str = "US-EAST-04") -> dict[str, Any]:
        with self.lock:
            pool = {"apiVersion": "compute.coreweave.com/v1alpha1", "kind": "NodePool",
                    "metadata": {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(next(self._rv)),
                                 "creationTimestamp": _ts(), "generation": 1},
                    "spec": {"computeClass": compute_class, "instanceType": instance_type, "targetNodes": target,
                             "minNodes": min_nodes, "maxNodes": max_nodes, "autoscaling": False,
                             "nodeLabels": {}, "nodeAnnotations": {}, "nodeTaints": []},
                    "status": {}}
            pool["metadata"]["labels"] = {"topology.kubernetes.io/region": region}
            self.nodepools[name] = pool
            self._reconcile_pool(pool)
            return pool

    def _pool_nodes(self, name: str) -> list[dict[str, Any]]:
        return [n for n in self.nodes.values() if n["metadata"]["labels"].get(NODEPOOL_LABEL) == name]

    def _reconcile_pool(self, pool: dict[str, Any]) -> None:
        """The node-pool controller: converge the pool's nodes on targetNodes."""
        name, spec = pool["metadata"]["name"], pool["spec"]
        product, gpus, mem = INSTANCE_TYPES[spec["instanceType"]]
        nodes = self._pool_nodes(name)
        region = pool["metadata"].get("labels", {}).get("topology.kubernetes.io/region", "US-EAST-04")
        while len(nodes) < int(spec["targetNodes"]) and not self.hold_nodes:
            labels = {NODEPOOL_LABEL: name, "node.coreweave.cloud/type": spec["instanceType"],
                      "node.coreweave.cloud/reserved": "spot" if spec["computeClass"] == "Spot" else "on-demand",
                      **(spec.get("nodeLabels") or {})}
            self.add_node(f"{name}-{uuid.uuid4().hex[:6]}", product, gpus, memory_mib=mem, labels=labels, region=region)
            nodes = self._pool_nodes(name)
        for node in sorted(nodes, key=lambda n: self._used(n["metadata"]["name"]))[: max(0, len(nodes) - int(spec["targetNodes"]))]:
            self.reclaim_node(node["metadata"]["name"])
        nodes = self._pool_nodes(name)
        pool["status"] = {"currentNodes": len(nodes), "targetNodes": int(spec["targetNodes"]),
                          "conditions": [{"type": "Validated", "status": "True", "lastTransitionTime": _ts(),
                                          "reason": "Valid", "message": ""}]}

    def _nodepools(self, method: str, name: str, body: Any, request: httpx.Request) -> httpx.Response:
        if not name:
            if method == "GET":
                return self._list("NodePoolList", list(self.nodepools.values()), {})
            if method == "POST":
                spec = body.get("spec") or {}
                pool = self.add_nodepool(body["metadata"]["name"], spec.get("instanceType", "gd-8xh100ib-i128"),
                                         target=int(spec.get("targetNodes", 0)), compute_class=spec.get("computeClass", "default"))
                return httpx.Response(201, json=pool)
        pool = self.nodepools.get(name)
        if pool is None:
            return status(404, "NotFound", f'nodepools.compute.coreweave.com "{name}" not found',
                          details={"name": name, "group": "compute.coreweave.com", "kind": "nodepools"})
        if method == "GET":
            return httpx.Response(200, json=pool)
        if method == "PATCH":
            if request.headers.get("content-type") != "application/merge-patch+json":
                return status(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - accepted media types "
                              f"include: application/merge-patch+json; got {request.headers.get('content-type')}")
            patch = (body or {}).get("spec") or {}
            if "instanceType" in patch and patch["instanceType"] != pool["spec"]["instanceType"]:
                return status(422, "Invalid", "NodePool.compute.coreweave.com is invalid: spec.instanceType: field is immutable")
            target = int(patch.get("targetNodes", pool["spec"]["targetNodes"]))
            if not pool["spec"]["minNodes"] <= target <= pool["spec"]["maxNodes"]:
                return status(422, "Invalid", f"NodePool.compute.coreweave.com is invalid: spec.targetNodes: {target} outside "
                              f"[minNodes, maxNodes]")
            pool["spec"].update(patch)
            pool["metadata"]["generation"] += 1
            pool["metadata"]["resourceVersion"] = str(next(self._rv))
            self._reconcile_pool(pool)
            return httpx.Response(200, json=pool)
        if method == "DELETE":
            pool["spec"]["targetNodes"] = 0
            self._reconcile_pool(pool)
            del self.nodepools[name]
            return httpx.Response(200, json=pool)
        return status(405, "MethodNotAllowed", f"{method} is not supported")

    def settle_pools(self) -> None:
        """Let held node pools converge (new nodes join; pending pods get scheduled)."""
        with self.lock:
            self.hold_nodes = False
            for pool in self.nodepools.values():
                self._reconcile_pool(pool)

    # --- Prometheus ---------------------------------------------------------------------------------
    def _prometheus(self, request: httpx.Request) -> httpx.Response:
        if request.url.path != "/prom/api/v1/query":
            return httpx.Response(404, text="404 page not found")
        query = request.url.params.get("query", "")
        # instant vector selectors, optionally joined by the set operator ``or`` (union)
        selectors = [re.fullmatch(r"(\w+)\{(.*)\}", part.strip()) for part in re.split(r"\s+or\s+", query.strip())]
        if not all(selectors):
            return httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": f"parse error: {query!r}"})
        result: list[dict[str, Any]] = []
        for m in selectors:
            matchers = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            for series in self._dcgm_series() if m.group(1) == "DCGM_FI_DEV_GPU_UTIL" else []:
                if all(series["metric"].get(k, "") == v for k, v in matchers.items()) and series not in result:
                    result.append(series)
        return httpx.Response(200, json={"status": "success", "data": {"resultType": "vector", "result": result}})

    def _dcgm_series(self) -> list[dict[str, Any]]:
        out = []
        for pod in self.pods():
            meta = pod["metadata"]
            if pod["status"]["phase"] != "Running":
                continue
            gpus = sum(int((c.get("resources") or {}).get("limits", {}).get(GPU, 0)) for c in pod["spec"]["containers"])
            node = self.nodes.get(pod["spec"].get("nodeName", ""), {"metadata": {"labels": {}}})
            owner = {"namespace": meta["namespace"], "pod": meta["name"]}
            if not self.dcgm_honor_labels:
                owner = {"exported_namespace": meta["namespace"], "exported_pod": meta["name"],
                         "namespace": "gpu-operator", "pod": "nvidia-dcgm-exporter-7x2kq"}
            for i in range(gpus):
                out.append({"metric": {"__name__": "DCGM_FI_DEV_GPU_UTIL", "gpu": str(i), "UUID": f"GPU-{meta['uid'][:8]}-{i}",
                                       "device": f"nvidia{i}", "modelName": node["metadata"]["labels"].get("nvidia.com/gpu.product", ""),
                                       "Hostname": pod["spec"].get("nodeName", ""), "container": "main", **owner},
                            "value": [clock.now().timestamp(), str(self.util.get(meta["name"], 87.0))]})
        return out


def kubeconfig(server: str, *, token: str = "test-token", ca_pem: str = "", cert_pem: str = "", key_pem: str = "",
               namespace: str = "", context: str = "stand-in") -> str:
    """A self-contained kubeconfig (what ``kubectl config view --raw --flatten --minify`` prints)."""
    import base64

    import yaml

    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    cluster: dict[str, Any] = {"server": server}
    if ca_pem:
        cluster["certificate-authority-data"] = b64(ca_pem)
    user: dict[str, Any] = {"client-certificate-data": b64(cert_pem), "client-key-data": b64(key_pem)} if cert_pem else {"token": token}
    ctx: dict[str, Any] = {"cluster": context, "user": f"{context}-admin"}
    if namespace:
        ctx["namespace"] = namespace
    return yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": context, "preferences": {},
                           "clusters": [{"name": context, "cluster": cluster}],
                           "contexts": [{"name": context, "context": ctx}],
                           "users": [{"name": f"{context}-admin", "user": user}]})
