"""Kubernetes and CoreWeave manifests against the Kubernetes project's own OpenAPI-derived JSON
schemas (kubernetes-validate 1.37.0, pyproject.toml oracles extra; strict mode: a field the schema lacks
fails), for Kubernetes 1.37 -- not against schemas we wrote (issue 13 §1).

Every object the adapters send (Pod, Service, PersistentVolumeClaim, Secret) and every core
object the stand-in answers (Pod, Node, Service, PVC, Secret, Event and their lists, Status) is
validated. CoreWeave's ``NodePool`` is a custom resource with no schema in that package: its
shape stays pinned by tests/contract/test_kubernetes_contract.py and is unverifiable here.
"""

from __future__ import annotations

import kubernetes_validate
import pytest

from providers.adapters.base import LaunchRequest
from providers.adapters.kubernetes import KubernetesAdapter
from tests.contract.test_kubernetes_contract import scenario  # noqa: F401 - the shared full-session fixture
from tests.standins import kube_schemas
from tests.standins.kubernetes import FakeKubernetes, kubeconfig

VERSION = kube_schemas.VERSION
CORE = {"Pod", "Service", "PersistentVolumeClaim", "Secret", "Node", "Event", "Status", "Namespace"}


def problems(manifest: dict) -> list[str]:
    if manifest.get("kind") == "Status":  # filed as status-meta-v1.json, which validate() does not look up
        return [f"Status: {kube_schemas.where(e)}: {e.message}" for e in kube_schemas.errors(manifest)]
    try:
        kubernetes_validate.validate(manifest, VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{manifest.get('kind')}: {'/'.join(map(str, exc.path))}: {exc.message}"]
    return []


def _core(kind: str) -> bool:
    return kind in CORE or (kind.endswith("List") and kind.removesuffix("List") in CORE)


def test_every_manifest_the_adapters_send_is_valid_kubernetes(scenario):  # noqa: F811
    sent = [r["body"] for r in scenario.requests if r["method"] == "POST" and isinstance(r["body"], dict)]
    kinds = {b.get("kind") for b in sent}
    assert {"Pod", "Service", "PersistentVolumeClaim", "Secret"} <= kinds, kinds
    errors = [p for b in sent if _core(b.get("kind", "")) for p in problems(b)]
    assert not errors, errors


def test_every_core_object_the_standin_answers_is_valid_kubernetes(scenario):  # noqa: F811
    checked, errors = set(), []
    for _method, _path, body in scenario.responses:
        if isinstance(body, dict) and _core(str(body.get("kind", ""))):
            # the API server always sends apiVersion; a list item carries neither kind nor apiVersion
            errors += problems(body)
            checked.add(body["kind"])
    assert {"Pod", "PodList", "NodeList", "Service", "Status"} <= checked, checked
    assert not errors, errors


def test_the_oracle_refuses_an_invented_field_and_a_wrong_type():
    fk = FakeKubernetes()
    fk.add_node("n", "NVIDIA-L4", 1, memory_mib=23034)
    a = KubernetesAdapter({"kubeconfig": kubeconfig("https://k")}, {"launch_wait_seconds": 0}, transport=fk.transport())
    a.launch(LaunchRequest(tag="dddddddd-0000-4000-8000-0000000000d1", name="x", image="x", gpu_class="L4", gpu_count=1,
                           region="", ports=[{"port": 8888}]))
    pod = next(r["body"] for r in fk.requests if r["method"] == "POST" and (r["body"] or {}).get("kind") == "Pod")
    assert not problems(pod)
    assert problems({**pod, "spec": {**pod["spec"], "gpus": 1}})
    container = {**pod["spec"]["containers"][0], "ports": [{"containerPort": "8888"}]}
    assert problems({**pod, "spec": {**pod["spec"], "containers": [container]}})
    assert problems({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "retry": 1})
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate({"apiVersion": "compute.coreweave.com/v1alpha1", "kind": "NodePool",
                                      "metadata": {"name": "p"}}, VERSION, strict=True)


def test_the_standin_refuses_what_an_api_server_refuses():
    fk = FakeKubernetes()
    fk.add_node("n", "NVIDIA-L4", 1, memory_mib=23034)
    a = KubernetesAdapter({"kubeconfig": kubeconfig("https://k")}, {"launch_wait_seconds": 0}, transport=fk.transport())
    a.launch(LaunchRequest(tag="eeeeeeee-0000-4000-8000-0000000000e1", name="x", image="x", gpu_class="L4", gpu_count=1,
                           region="", ports=[{"port": 8888}]))
    pod = next(r["body"] for r in fk.requests if r["method"] == "POST" and (r["body"] or {}).get("kind") == "Pod")
    fresh = {**pod, "metadata": {**pod["metadata"], "name": "other"}}
    container = {**pod["spec"]["containers"][0], "ports": [{"containerPort": "8888"}]}
    wrong_type = fk._namespaced("POST", "pods", "default", None, {**fresh, "spec": {**pod["spec"], "containers": [container]}}, {})
    assert wrong_type.status_code == 400 and wrong_type.json()["reason"] == "BadRequest"
    missing = fk._namespaced("POST", "pods", "default", None, {**fresh, "spec": {**pod["spec"], "containers": [{"name": "c"}]}}, {})
    assert missing.status_code == 422 and missing.json()["reason"] == "Invalid"
    strict = fk._namespaced("POST", "pods", "default", None, {**fresh, "spec": {**pod["spec"], "gpus": 1}},
                            {"fieldValidation": "Strict"})
    assert strict.status_code == 400 and "unknown field" in strict.json()["message"]
    warned = fk._namespaced("POST", "pods", "default", None, {**fresh, "spec": {**pod["spec"], "gpus": 1}}, {})
    assert warned.status_code == 201 and 'unknown field "spec.gpus"' in warned.headers["Warning"]


def test_creates_ask_for_strict_field_validation(scenario):  # noqa: F811
    """An API server's default (Warn) drops a field it does not know and only warns; the adapters
    ask for Strict, so a misspelt manifest field fails the launch instead of vanishing."""
    posts = [r for r in scenario.requests if r["method"] == "POST" and isinstance(r["body"], dict)
             and _core(str(r["body"].get("kind", "")))]
    assert posts and all(r["query"].get("fieldValidation") == "Strict" for r in posts), [r["query"] for r in posts]
