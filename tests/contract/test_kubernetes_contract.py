"""Pin the Kubernetes stand-in's wire shapes (and what the adapter sends) with strict schemas.

The schemas are written from the core/v1 field names of providers.md §9 (Pod, Node, Service,
Status, Event, list wrappers), §3 (CoreWeave NodePool) and the Prometheus HTTP API. Every
object is closed (``additionalProperties: false``): a field neither side may invent fails.
A full scenario runs through the adapter; then every request body and response is validated.
"""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator

from providers.adapters.base import CapacityUnavailable, LaunchRequest, TransientError
from providers.adapters.coreweave import CoreWeaveAdapter
from providers.adapters.kubernetes import KubernetesAdapter
from tests.standins.kubernetes import FakeKubernetes, kubeconfig

S, INT, B, N = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}, {"type": "number"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
EMPTY = {"type": "object", "additionalProperties": False}


def obj(*required: str, **props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(required), "additionalProperties": False}


def arr(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": items}


def enum(*values: Any) -> dict[str, Any]:
    return {"enum": list(values)}


OWNER_REF = obj("apiVersion", "kind", "name", "uid", apiVersion=S, kind=S, name=S, uid=S, controller=B, blockOwnerDeletion=B)
META = obj("name", name=S, namespace=S, uid=S, resourceVersion=S, creationTimestamp=S, generation=INT, labels=STR_MAP,
           annotations=STR_MAP, ownerReferences=arr(OWNER_REF), deletionTimestamp=S, deletionGracePeriodSeconds=INT)
CONDITION = obj("type", "status", type=S, status=enum("True", "False", "Unknown"), lastProbeTime={"type": ["string", "null"]},
                lastTransitionTime=S, lastHeartbeatTime=S, reason=S, message=S)
CONTAINER = obj("name", "image", name=S, image=S, command=arr(S), args=arr(S),
                env=arr(obj("name", name=S, value=S)),
                ports=arr(obj("containerPort", name=S, containerPort=INT, protocol=enum("TCP", "UDP", "SCTP"))),
                resources=obj(limits=STR_MAP, requests=STR_MAP),
                volumeMounts=arr(obj("name", "mountPath", name=S, mountPath=S, readOnly=B)))
VOLUME = obj("name", name=S, persistentVolumeClaim=obj("claimName", claimName=S, readOnly=B), emptyDir=obj(sizeLimit=S, medium=S))
TOLERATION = obj("key", key=S, operator=enum("Exists", "Equal"), value=S, effect=enum("NoSchedule", "PreferNoSchedule", "NoExecute"))
POD_SPEC = obj("containers", containers=arr(CONTAINER), restartPolicy=enum("Always", "OnFailure", "Never"), nodeSelector=STR_MAP,
               tolerations=arr(TOLERATION), volumes=arr(VOLUME), terminationGracePeriodSeconds=INT, priorityClassName=S,
               imagePullSecrets=arr(obj("name", name=S)), nodeName=S, schedulerName=S, serviceAccountName=S)
CONTAINER_STATE = obj(running=obj(startedAt=S), waiting=obj(reason=S, message=S),
                      terminated=obj("exitCode", exitCode=INT, reason=S, message=S, startedAt=S, finishedAt=S, containerID=S))
CONTAINER_STATUS = obj("name", "ready", "restartCount", name=S, state=CONTAINER_STATE, lastState=CONTAINER_STATE, ready=B,
                       restartCount=INT, image=S, imageID=S, containerID=S, started=B)
POD_STATUS = obj("phase", phase=enum("Pending", "Running", "Succeeded", "Failed", "Unknown"), conditions=arr(CONDITION),
                 hostIP=S, hostIPs=arr(obj("ip", ip=S)), podIP=S, podIPs=arr(obj("ip", ip=S)), startTime=S, qosClass=S,
                 containerStatuses=arr(CONTAINER_STATUS), reason=S, message=S)
POD = obj("apiVersion", "kind", "metadata", "spec", apiVersion={"const": "v1"}, kind={"const": "Pod"}, metadata=META, spec=POD_SPEC,
          status=POD_STATUS)
POD_CREATE = {**POD, "properties": {**POD["properties"], "status": False}}  # a client never sends status
NODE = obj("apiVersion", "kind", "metadata", "spec", "status", apiVersion={"const": "v1"}, kind={"const": "Node"}, metadata=META,
           spec=obj(taints=arr(obj("key", "effect", key=S, value=S, effect=S)), unschedulable=B),
           status=obj("allocatable", capacity=STR_MAP, allocatable=STR_MAP, conditions=arr(CONDITION),
                      addresses=arr(obj("type", "address", type=enum("InternalIP", "ExternalIP", "Hostname"), address=S)),
                      nodeInfo=obj(**{k: S for k in ("kubeletVersion", "containerRuntimeVersion", "osImage", "kernelVersion",
                                                     "architecture", "operatingSystem", "kubeProxyVersion", "machineID",
                                                     "systemUUID", "bootID")})))
SERVICE_PORT = obj("port", name=S, port=INT, targetPort={"type": ["integer", "string"]}, protocol=S, nodePort=INT)
SERVICE = obj("apiVersion", "kind", "metadata", "spec", apiVersion={"const": "v1"}, kind={"const": "Service"}, metadata=META,
              spec=obj("ports", type=enum("ClusterIP", "NodePort", "LoadBalancer"), selector=STR_MAP, ports=arr(SERVICE_PORT),
                       clusterIP=S, clusterIPs=arr(S)),
              status=obj(loadBalancer=obj(ingress=arr(obj(ip=S, hostname=S)))))
PVC = obj("apiVersion", "kind", "metadata", "spec", apiVersion={"const": "v1"}, kind={"const": "PersistentVolumeClaim"}, metadata=META,
          spec=obj("accessModes", "resources", accessModes=arr(enum("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")),
                   resources=obj(requests=obj("storage", storage=S)), storageClassName=S, volumeName=S, volumeMode=S),
          status=obj(phase=enum("Pending", "Bound", "Lost"), accessModes=arr(S), capacity=obj(storage=S)))
SECRET = obj("apiVersion", "kind", "metadata", apiVersion={"const": "v1"}, kind={"const": "Secret"}, metadata=META, type=S, data=STR_MAP)
EVENT = obj("apiVersion", "kind", "metadata", "involvedObject", "reason", apiVersion={"const": "v1"}, kind={"const": "Event"},
            metadata=META, involvedObject=obj("kind", "name", kind=S, namespace=S, name=S, uid=S, apiVersion=S),
            reason=S, message=S, type=enum("Normal", "Warning"), count=INT, source=obj(component=S, host=S),
            firstTimestamp=S, lastTimestamp=S, reportingComponent=S, reportingInstance=S)
STATUS = obj("kind", "apiVersion", "status", "message", "reason", "code", kind={"const": "Status"}, apiVersion={"const": "v1"},
             metadata=EMPTY, status=enum("Failure", "Success"), message=S, reason=S, code=INT,
             details=obj(name=S, group=S, kind=S, retryAfterSeconds=INT, causes=arr(obj(reason=S, message=S, field=S))))
# CoreWeave NodePool (§3): the spec fields are documented; ``status`` reports observed state, and its
# field names were not in the docs snapshot [?] -- the three below are the stand-in's choice.
NODEPOOL = obj("apiVersion", "kind", "metadata", "spec", apiVersion={"const": "compute.coreweave.com/v1alpha1"},
               kind={"const": "NodePool"}, metadata=META,
               spec=obj("instanceType", "targetNodes", computeClass=enum("default", "Spot"), instanceType=S, targetNodes=INT,
                        minNodes=INT, maxNodes=INT, autoscaling=B, nodeLabels=STR_MAP, nodeAnnotations=STR_MAP,
                        nodeTaints=arr(obj("key", "effect", key=S, value=S, effect=S))),
               status=obj(currentNodes=INT, targetNodes=INT, conditions=arr(CONDITION)))
NODEPOOL_PATCH = obj("spec", spec=obj(targetNodes=INT))
VERSION = obj("major", "minor", "gitVersion", **{k: S for k in ("major", "minor", "gitVersion", "gitCommit", "gitTreeState",
                                                               "buildDate", "goVersion", "compiler", "platform")})
PROMETHEUS = obj("status", "data", status={"const": "success"},
                 data=obj("resultType", "result", resultType={"const": "vector"},
                          result=arr(obj("metric", "value", metric=STR_MAP,
                                         value={"type": "array", "prefixItems": [N, S], "minItems": 2, "maxItems": 2}))))
BY_KIND = {"Pod": POD, "Node": NODE, "Service": SERVICE, "PersistentVolumeClaim": PVC, "Secret": SECRET, "Event": EVENT,
           "Status": STATUS, "NodePool": NODEPOOL}


def list_schema(kind: str) -> dict[str, Any]:
    api = "compute.coreweave.com/v1alpha1" if kind == "NodePool" else "v1"
    return obj("kind", "apiVersion", "metadata", "items", kind={"const": f"{kind}List"}, apiVersion={"const": api},
               metadata=obj(resourceVersion=S, **{"continue": S}), items=arr(BY_KIND[kind]))


def errors(schema: dict[str, Any], instance: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft202012Validator(schema).iter_errors(instance)]


def response_schema(path: str, body: dict[str, Any]) -> dict[str, Any]:
    if path == "/version":
        return VERSION
    if path.startswith("/prom/"):
        return PROMETHEUS
    kind = body.get("kind", "")
    if kind.endswith("List"):
        return list_schema(kind.removesuffix("List"))
    return BY_KIND[kind]


@pytest.fixture
def scenario():
    """Every call the adapters make, against a cluster with on-prem nodes and CoreWeave pools."""
    fk = FakeKubernetes()
    fk.add_node("gpu-1", "NVIDIA-A100-SXM4-80GB", 8, region="fra")
    fk.add_nodepool("h100", "gd-8xh100ib-i128", target=0, max_nodes=2, compute_class="Spot")
    settings = {"namespace": "ml", "launch_wait_seconds": 0, "rate_card": {"A100-80": 1.5},
                "prometheus_url": "http://prometheus/prom", "storage_class": "fast"}
    k8s = KubernetesAdapter({"kubeconfig": kubeconfig("https://k8s:6443")}, settings, transport=fk.transport(),
                            sleep=lambda seconds: None)
    k8s.verify()
    k8s.list_offers()
    req = LaunchRequest(tag="aaaaaaaa-0000-4000-8000-000000000001", name="nb", image="jupyter/base-notebook", gpu_class="A100-80",
                        gpu_count=2, region="fra", instance_type="NVIDIA-A100-SXM4-80GB", ports=[{"port": 8888}],
                        volumes=[{"kind": "persistent", "size_gb": 5, "mount_path": "/data"}, {"kind": "ephemeral", "mount_path": "/tmp/x"}],
                        env={"A": "1"}, command=["start.sh"], args=["--x"],
                        registry_auth={"registry": "nvcr.io", "username": "$oauthtoken", "password": "k"})
    pod = k8s.launch(req)
    k8s.launch(req)
    k8s.gpu_utilization(pod.external_id)
    fk.disrupt(pod.external_id, "ml")
    k8s.get(pod.external_id)
    k8s.list_pods()
    k8s.terminate(pod.external_id)
    with pytest.raises(CapacityUnavailable):
        k8s.launch(LaunchRequest(tag="bbbbbbbb-0000-4000-8000-000000000001", name="x", image="x", gpu_class="A100-80", gpu_count=8,
                                 region="fra", instance_type="NVIDIA-H100"))
    fk.throttle(times=4)  # more than the shared retry policy absorbs
    with pytest.raises(TransientError):
        k8s.list_offers()
    cw = CoreWeaveAdapter({"kubeconfig": kubeconfig("https://cks:6443")}, {"namespace": "ml", "launch_wait_seconds": 0},
                          transport=fk.transport())
    cw.list_offers()
    spot = cw.launch(LaunchRequest(tag="cccccccc-0000-4000-8000-000000000001", name="s", image="x", gpu_class="H100", gpu_count=8,
                                   region="us-east-04", instance_type="gd-8xh100ib-i128", spot=True))
    fk.reclaim_node(fk.pod(spot.external_id, "ml")["spec"]["nodeName"])
    cw.get(spot.external_id)
    cw.terminate(spot.external_id)
    return fk


def test_every_response_matches_the_schemas(scenario):
    seen: set[str] = set()
    for method, path, body in scenario.responses:
        schema = response_schema(path, body)
        assert not errors(schema, body), (method, path, errors(schema, body))
        seen.add(body.get("kind") or path)
    # the scenario really exercised every shape
    assert {"Pod", "PodList", "NodeList", "Service", "PersistentVolumeClaim", "Secret", "EventList", "Status", "NodePoolList",
            "NodePool", "/version"} <= seen


def test_every_request_body_matches_the_schemas(scenario):
    checked = 0
    for req in scenario.requests:
        if req["body"] is None:
            continue
        if req["method"] == "PATCH":
            schema = NODEPOOL_PATCH
            assert req["content_type"] == "application/merge-patch+json"
        else:
            schema = POD_CREATE if req["body"].get("kind") == "Pod" else BY_KIND[req["body"]["kind"]]
        assert not errors(schema, req["body"]), (req["path"], errors(schema, req["body"]))
        checked += 1
    assert checked >= 5


def test_an_invented_field_fails():
    fk = FakeKubernetes()
    fk.add_node("n", "NVIDIA-L4", 1, memory_mib=23034)
    a = KubernetesAdapter({"kubeconfig": kubeconfig("https://k")}, {"launch_wait_seconds": 0}, transport=fk.transport())
    remote = a.launch(LaunchRequest(tag="dddddddd-0000-4000-8000-000000000001", name="x", image="x", gpu_class="L4", gpu_count=1, region=""))
    pod = fk.pod(remote.external_id)
    assert not errors(POD, pod)
    pod["spec"]["gpus"] = 1
    pod["status"]["gpuUtil"] = 3
    assert len(errors(POD, pod)) == 2
    status = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "m", "reason": "NotFound", "code": 404, "retry": 1}
    assert errors(STATUS, status)
