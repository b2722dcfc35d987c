"""Node termination taints as provider-side notices on Kubernetes/CoreWeave, against the API-server
stand-in; every Node it answers is validated with the Kubernetes project's schemas
(kubernetes-validate, as tests/contract/test_kubernetes_validate.py does)."""

from __future__ import annotations

import pytest

from providers.adapters import kube_notices
from providers.adapters.base import REMOTE_RUNNING
from tests.standins import kube_schemas
from workloads.lifecycle import services
from workloads.models import Lifecycle, Pod, PodEvent, PodState

from . import test_kubernetes_adapter as _kube
from .test_kubernetes_adapter import H100x2, adapter, request

# the Kubernetes adapter tests' fixtures: the stand-in, served on 127.0.0.1, and an account on it
kube, served, k8s_account = _kube.kube, _kube.served, _kube.k8s_account


def _node_of(kube, remote) -> str:
    return kube.pod(remote.external_id, "ml")["spec"]["nodeName"]


def _valid(node: dict) -> dict:
    assert not kube_schemas.errors(node), [e.message for e in kube_schemas.errors(node)]
    return node


def test_a_termination_taint_on_the_pods_node_is_a_notice(kube):
    a = adapter(kube)
    remote = a.launch(request())
    assert a.get(remote.external_id).notice is None
    _valid(kube.taint_node(_node_of(kube, remote), "karpenter.sh/disrupted"))
    got = a.get(remote.external_id)
    assert got.state == REMOTE_RUNNING
    assert (got.notice.kind, got.notice.deadline, got.notice.interrupting) == ("terminate", None, True)
    assert got.notice.source == "node taint karpenter.sh/disrupted" and "Karpenter" in got.notice.detail
    before = len(kube.requests)
    (listed,) = [p for p in a.list_pods() if p.external_id == remote.external_id]
    assert listed.notice == got.notice
    node_calls = [r["path"] for r in kube.requests[before:] if r["path"].startswith("/api/v1/nodes")]
    assert node_calls == ["/api/v1/nodes/" + _node_of(kube, remote)]  # one pod running: one node get


@pytest.mark.parametrize("key,kind", [
    ("cloud.google.com/impending-node-termination", "terminate"),
    ("aws-node-termination-handler/spot-itn", "preempt"),
    ("aws-node-termination-handler/scheduled-maintenance", "stop"),
    ("aws-node-termination-handler/asg-lifecycle-termination", "terminate"),
    ("karpenter.sh/disruption", "terminate"),
    ("aws-node-termination-handler/rebalance-recommendation", "rebalance"),
])
def test_documented_taints(kube, key, kind):
    a = adapter(kube)
    remote = a.launch(request())
    _valid(kube.taint_node(_node_of(kube, remote), key, value="1234567890"))
    assert a.get(remote.external_id).notice.kind == kind


def test_a_cordon_or_a_foreign_taint_is_no_notice_and_termination_beats_rebalance(kube):
    a = adapter(kube)
    remote = a.launch(request())
    node = _node_of(kube, remote)
    kube.taint_node(node, "node.kubernetes.io/unschedulable")  # kubectl cordon: nothing is going away
    _valid(kube.taint_node(node, "dedicated", value="team-a", effect="NoExecute"))
    assert a.get(remote.external_id).notice is None
    kube.taint_node(node, "aws-node-termination-handler/rebalance-recommendation")
    _valid(kube.taint_node(node, "aws-node-termination-handler/spot-itn", effect="NoExecute"))
    assert a.get(remote.external_id).notice.kind == "preempt"
    assert kube_notices.node_notice(None) is None


def test_disruption_target_keeps_its_deadline_over_a_taint(kube):
    a = adapter(kube)
    remote = a.launch(request())
    kube.taint_node(_node_of(kube, remote), "cloud.google.com/impending-node-termination")
    kube.disrupt(remote.external_id, "ml", reason="DeletionByTaintManager", message="node shutting down", grace_seconds=30)
    notice = a.get(remote.external_id).notice
    assert notice.source == "pod condition DisruptionTarget" and notice.deadline is not None


@pytest.mark.django_db(transaction=True)
def test_the_control_plane_replaces_a_service_on_a_tainted_node(tenant, project, owner, kube, k8s_account):
    w = H100x2(tenant=tenant, project=project, owner=owner, lifecycle=Lifecycle.SERVICE)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING
    kube.taint_node(kube.pod(pod.external_id, "ml")["spec"]["nodeName"], "karpenter.sh/disrupted")
    pod = services.pod_refresh(pod_id=str(pod.pk))
    event = PodEvent.objects.get(pod=pod, kind="notice")
    assert event.message == ("Interruption notice from Kubernetes (terminate) [node taint karpenter.sh/disrupted]: "
                             "the provider gave no deadline")
    assert pod.state == PodState.RUNNING  # still serving beside its replacement
    new = Pod.objects.get(replaces=pod)
    assert new.placement_override.get("purpose") == "notice"
    services.pod_refresh(pod_id=str(pod.pk))
    assert PodEvent.objects.filter(pod=pod, kind="notice").count() == 1 and Pod.objects.filter(replaces=pod).count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_taint_removed_withdraws_the_notice(tenant, project, owner, kube, k8s_account):
    # a job that does not restart: nothing is replaced, the notice alone is at stake
    w = H100x2(tenant=tenant, project=project, owner=owner, lifecycle=Lifecycle.JOB)
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    pod = services.pod_provision(pod_id=str(pod.pk))
    node = kube.pod(pod.external_id, "ml")["spec"]["nodeName"]
    kube.taint_node(node, "karpenter.sh/disrupted")
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.interruption_notice["source"] == "node taint karpenter.sh/disrupted"
    kube.untaint_node(node, "karpenter.sh/disrupted")  # Karpenter abandoned the disruption
    pod = services.pod_refresh(pod_id=str(pod.pk))
    assert pod.state == PodState.RUNNING and pod.interruption_notice == {} and pod.interruption_deadline is None
    last = PodEvent.objects.filter(pod=pod, kind="notice").order_by("-at", "-pk").first()
    assert last.message == ("Kubernetes no longer announces its notice (terminate, node taint karpenter.sh/disrupted): "
                            "the pod runs on")
    services.pod_refresh(pod_id=str(pod.pk))
    assert PodEvent.objects.filter(pod=pod, kind="notice").count() == 2  # said once
