"""The Kubernetes objects a launch creates: Pod, PVCs, Service and image-pull Secret.

Pure functions from a LaunchRequest to core/v1 manifests, shared by the on-prem Kubernetes
and CoreWeave adapters (and pinned by the contract tests).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from .base import LaunchRequest
from .image_registry import dockerconfigjson, registry_login

GPU = "nvidia.com/gpu"
PRODUCT_LABEL = "nvidia.com/gpu.product"  # GPU Feature Discovery, e.g. NVIDIA-A100-SXM4-80GB
POD_LABEL = "provisioner.io/pod"  # the pod UUID: our tag
OWNED_LABEL = "provisioner.io/owned-by-pod"  # PVCs/secrets created for one pod only
MANAGED = {"app.kubernetes.io/managed-by": "ai-cloud-provisioner"}


def tolerated_taints(settings: dict[str, Any]) -> list[str]:
    """Taint keys (besides nvidia.com/gpu) the admin lets our pods tolerate: settings["tolerate_taints"]."""
    value = settings.get("tolerate_taints") or []
    return [k.strip() for k in (value.split(",") if isinstance(value, str) else value) if k and k.strip()]


def pod_name(tag: str) -> str:
    """Derived from the pod UUID, so a retried launch meets its own pod (409 AlreadyExists)."""
    return f"prov-{tag.lower()}"[:63]


def labels(tag: str) -> dict[str, str]:
    return {POD_LABEL: tag, **MANAGED}


def volumes_for(request: LaunchRequest, name: str, *, namespace: str,
                storage_class: str = "") -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(pod volumes, volume mounts, PVCs to create). Persistent volumes are PVCs; a named one
    outlives the pod (a workload's data), an unnamed one belongs to this pod only."""
    volumes, mounts, claims = [], [], []
    for i, vol in enumerate(request.volumes):
        vname = f"v{i}"
        mount = str(vol.get("mount_path") or f"/data{i}")
        size = f"{int(vol.get('size_gb') or 10)}Gi"
        if vol.get("kind") in ("persistent", "network"):
            claim = str(vol.get("name") or f"{name}-v{i}")[:63].lower()
            claim_labels = labels(request.tag) if vol.get("name") else {**labels(request.tag), OWNED_LABEL: request.tag}
            pvc_spec: dict[str, Any] = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}}
            if storage_class:
                pvc_spec["storageClassName"] = storage_class
            claims.append({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                           "metadata": {"name": claim, "namespace": namespace, "labels": claim_labels}, "spec": pvc_spec})
            volumes.append({"name": vname, "persistentVolumeClaim": {"claimName": claim}})
        else:
            volumes.append({"name": vname, "emptyDir": {"sizeLimit": size}})
        mounts.append({"name": vname, "mountPath": mount})
    return volumes, mounts, claims


def pod_manifest(request: LaunchRequest, *, namespace: str, node_selector: dict[str, str], settings: dict[str, Any],
                 pull_secret: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The Pod to create and the PVCs it needs."""
    name = pod_name(request.tag)
    volumes, mounts, claims = volumes_for(request, name, namespace=namespace, storage_class=str(settings.get("storage_class") or ""))
    limits: dict[str, str] = {GPU: str(request.gpu_count)}  # extended resource: requests default to limits
    requests: dict[str, str] = {}
    for key, per_gpu in (("cpu", settings.get("cpu_per_gpu")), ("memory", settings.get("memory_gb_per_gpu"))):
        if per_gpu:
            requests[key] = f"{int(per_gpu) * request.gpu_count}" + ("Gi" if key == "memory" else "")
    container: dict[str, Any] = {
        "name": "main", "image": request.image, "resources": {"limits": limits, **({"requests": requests} if requests else {})},
        "env": [{"name": k, "value": v} for k, v in request.env.items()],
        "ports": [{"name": f"p{int(p['port'])}", "containerPort": int(p["port"]), "protocol": "TCP"}
                  for p in request.ports if p.get("port")],
        "volumeMounts": mounts,
    }
    if request.command:
        container["command"] = list(request.command)
    if request.args:
        container["args"] = list(request.args)
    spec: dict[str, Any] = {
        # one pod = one run: an exit is reported, not silently restarted
        "restartPolicy": str(settings.get("restart_policy") or "Never"),
        "containers": [container],
        "nodeSelector": node_selector,
        # GPU nodes are commonly tainted so that only GPU pods land there
        "tolerations": [{"key": GPU, "operator": "Exists", "effect": "NoSchedule"},
                        *({"key": key, "operator": "Exists"} for key in tolerated_taints(settings))],
        "volumes": volumes,
        "terminationGracePeriodSeconds": int(settings.get("grace_seconds", 30)),
    }
    if settings.get("priority_class"):
        spec["priorityClassName"] = settings["priority_class"]
    if pull_secret:
        spec["imagePullSecrets"] = [{"name": pull_secret}]
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": name, "namespace": namespace, "labels": labels(request.tag),
                        "annotations": {"provisioner.io/name": request.name[:200]}},
           "spec": spec}
    return pod, claims


def service_manifest(request: LaunchRequest, pod: dict[str, Any], *, namespace: str, service_type: str | None = None) -> dict[str, Any] | None:
    """A Service for the exposed ports (NodePort when public), or None without ports."""
    ports = [int(p["port"]) for p in request.ports if p.get("port")]
    if not ports:
        return None
    meta = pod["metadata"]
    kind = str(service_type or ("NodePort" if request.public_ingress else "ClusterIP"))
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": meta["name"], "namespace": namespace, "labels": labels(request.tag),
                         # garbage-collected with the pod, should a terminate ever be missed
                         "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta.get("uid", "")}]},
            "spec": {"type": kind, "selector": {POD_LABEL: request.tag},
                     "ports": [{"name": f"p{p}", "port": p, "targetPort": p, "protocol": "TCP"} for p in ports]}}


def pull_secret_manifest(request: LaunchRequest, *, namespace: str) -> dict[str, Any] | None:
    """A dockerconfigjson Secret for a private registry (e.g. nvcr.io), owned by the pod."""
    login = registry_login(request)
    if login is None:
        return None
    config = dockerconfigjson(login)  # keyed by the image's registry host
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/dockerconfigjson",
            "metadata": {"name": f"{pod_name(request.tag)}-pull"[:63], "namespace": namespace,
                         "labels": {**labels(request.tag), OWNED_LABEL: request.tag}},
            "data": {".dockerconfigjson": base64.b64encode(json.dumps(config).encode()).decode()}}
