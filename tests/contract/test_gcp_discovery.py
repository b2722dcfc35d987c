"""GCP adapter and stand-in against Google's own discovery documents (issue 13 §1), not against
schemas we wrote: ../shared/specs/gcp-compute.v1.discovery.json (revision 20261106, shipped in
google-api-python-client 2.202.0) and gcp-cloudbilling.v1.discovery.json.

* every request of a full session is a documented method (path template + HTTP method), its
  query parameters are declared by that method, and its body validates against the method's
  ``request`` schema with no unknown field;
* every 2xx answer of the stand-in validates against the method's ``response`` schema (a stand-in
  that invents a field fails);
* every field the adapter *reads* from an answer exists in that response schema (the JSON is
  handed to the adapter wrapped, and each key it looks up is checked);
* every ``Instance.status`` the document lists maps to a deliberate pod state (defect 10).

The OAuth token exchange (``POST /token``) is not a Compute method; tests/contract/
test_gcp_contract.py pins it to Google's OAuth 2.0 service-account flow.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import httpx
import jsonschema
import pytest

from providers.adapters import gcp as gcp_module
from providers.adapters.base import (
    REMOTE_PROVISIONING,
    REMOTE_RUNNING,
    REMOTE_STOPPED,
    REMOTE_STOPPING,
    LaunchRequest,
)
from providers.adapters.gcp import INSTANCE_STATES, GcpAdapter
from tests.contract import discovery
from tests.standins import gcp as standin

TAGS = ("0f6a1e2b-3c4d-4e5f-8a9b-0c1d2e3f4a5b", "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", "2b3c4d5e-6f7a-4b8c-9d0e-1f2a3b4c5d6e")


@pytest.fixture(autouse=True)
def _fresh_caches():
    gcp_module.clear_caches()
    yield
    gcp_module.clear_caches()


def _adapter(fake, **settings) -> GcpAdapter:
    return GcpAdapter(standin.credentials(), {**standin.account_settings("http://gcp.standin"),
                                              "allowed_regions": ["us-central1", "europe-west4"], **settings},
                      transport=fake.transport(), sleep=lambda s: None)


def _doc_of(request: httpx.Request) -> str | None:
    path = request.url.path
    if path == "/token":
        return None
    return discovery.BILLING if path.startswith("/v1/services/") else discovery.COMPUTE


def _session(fake) -> GcpAdapter:
    """Everything the adapter does in production: verify, offers, launch (standard, spot, a G2
    with built-in GPUs), stop/start, preemption, list, terminate, and two refusals."""
    a = _adapter(fake)
    a.verify()
    assert a.list_offers()
    base = dict(name="x", image="ghcr.io/acme/train:1", gpu_class="T4", gpu_count=2, region="us-central1",
                zone="us-central1-a", instance_type="n1-standard-8+nvidia-tesla-t4", env={"A": "1"}, ports=[{"port": 8888}])
    std = a.launch(LaunchRequest(tag=TAGS[0], **base))
    spot = a.launch(LaunchRequest(tag=TAGS[1], spot=True, **base))
    g2 = a.launch(LaunchRequest(tag=TAGS[2], name="y", image="busybox", gpu_class="L4", gpu_count=1, region="us-central1",
                                zone="us-central1-b", instance_type="g2-standard-4"))
    a.stop(std.external_id)
    a.start(std.external_id)
    fake.preempt(*spot.external_id.split("/"))
    a.get(spot.external_id)
    a.list_pods()
    for pod in (std, g2):
        a.terminate(pod.external_id)
    return a


def test_every_request_and_answer_is_a_documented_method_and_schema():
    fake = standin.FakeGcp(op_polls=2)
    _session(fake)
    seen, errors = set(), []
    for request, response in fake.exchanges:
        name = _doc_of(request)
        if name is None:
            continue
        method = discovery.method_for(request.method, request.url.path, name)
        seen.add(method["id"])
        errors += discovery.check_path(method, request.url.path, name)
        errors += discovery.check_query(method, parse_qs(request.url.query.decode(), keep_blank_values=True), name)
        if "request" in method:
            body = httpx.Response(200, content=request.content).json()
            for e in jsonschema.Draft202012Validator(discovery.json_schema(method["request"], 0, name)).iter_errors(body):
                errors.append(f"{method['id']} request {list(e.absolute_path)}: {e.message}")
        else:
            assert not request.content, f"{method['id']} takes no body"
        if response.status_code < 300 and "response" in method:
            schema = discovery.json_schema(method["response"], 0, name)
            for e in jsonschema.Draft202012Validator(schema).iter_errors(response.json()):
                errors.append(f"{method['id']} response {list(e.absolute_path)}: {e.message}")
    assert seen >= {"compute.projects.get", "compute.acceleratorTypes.aggregatedList", "compute.machineTypes.aggregatedList",
                    "compute.instances.insert", "compute.instances.get", "compute.instances.aggregatedList",
                    "compute.instances.stop", "compute.instances.start", "compute.instances.delete",
                    "compute.zoneOperations.get", "compute.zoneOperations.list", "cloudbilling.services.skus.list"}, seen
    assert not errors, "\n".join(errors)


def test_the_discovery_check_catches_what_compute_would_refuse():
    """The oracle is not vacuous: a misspelled field, a wrong enum and an undeclared query
    parameter are each reported."""
    insert = discovery.method_for("POST", "/compute/v1/projects/p/zones/us-central1-a/instances")
    schema = discovery.json_schema(insert["request"])
    good = {"name": "pod-x", "machineType": "zones/us-central1-a/machineTypes/n1-standard-4",
            "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "STOP"}}
    assert not list(jsonschema.Draft202012Validator(schema).iter_errors(good))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors({**good, "gpuType": "t4"}))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(
        {**good, "scheduling": {"provisioningModel": "PREEMPTIBLE"}}))
    assert list(jsonschema.Draft202012Validator(schema).iter_errors({**good, "scheduling": {"spot": True}}))
    assert discovery.check_query(insert, {"requestId": ["x"], "dryRun": ["true"]})
    get = discovery.method_for("GET", "/compute/v1/projects/p/zones/us-central1-a/instances/Pod_X")
    assert discovery.check_path(get, "/compute/v1/projects/p/zones/us-central1-a/instances/Pod_X")
    assert not discovery.check_path(get, "/compute/v1/projects/p/zones/us-central1-a/instances/pod-x")
    assert not discovery.check_query(insert, {"requestId": ["6f7a8b9c-0d1e-4f2a-8b3c-5d6e7f8a9b0c"]})


# --- what the adapter reads ------------------------------------------------------------------


def _resolve(schema: dict[str, Any] | None, name: str) -> dict[str, Any] | None:
    while schema is not None and "$ref" in schema:
        schema = discovery.load_spec(name)["schemas"][schema["$ref"]]
    return schema


class _Read(dict):
    """A JSON object that reports every key looked up that its discovery schema lacks."""

    def __init__(self, data: dict[str, Any], schema: dict[str, Any] | None, where: str, name: str, log: list[str]):
        self._schema, self._where, self._log = _resolve(schema, name), where, log
        super().__init__({k: _wrap(v, self._child(k), f"{where}.{k}", name, log) for k, v in data.items()})

    def _child(self, key: str) -> dict[str, Any] | None:
        s = self._schema
        if s is None:
            return None
        if key in (s.get("properties") or {}):
            return s["properties"][key]
        return s.get("additionalProperties")

    def _note(self, key: Any) -> None:
        s = self._schema
        if s is not None and key not in (s.get("properties") or {}) and "additionalProperties" not in s:
            self._log.append(f"{self._where}.{key}")

    def get(self, key: Any, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __getitem__(self, key: Any) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        self._note(key)
        return super().__contains__(key)


def _wrap(value: Any, schema: dict[str, Any] | None, where: str, name: str, log: list[str]) -> Any:
    if isinstance(value, dict):
        return _Read(value, schema, where, name, log)
    if isinstance(value, list):
        items = (_resolve(schema, name) or {}).get("items")
        return [_wrap(v, items, f"{where}[]", name, log) for v in value]
    return value


def test_every_field_the_adapter_reads_is_in_the_response_schema(monkeypatch):
    unread: list[str] = []
    reads: list[str] = []
    original = httpx.Response.json

    def tracked(self: httpx.Response, **kw: Any) -> Any:
        data = original(self, **kw)
        request = self.request
        name = _doc_of(request)
        if name is None or self.status_code >= 300:
            return data
        method = discovery.method_for(request.method, request.url.path, name)
        reads.append(method["id"])
        return _wrap(data, method.get("response"), method["response"]["$ref"], name, unread)

    monkeypatch.setattr(httpx.Response, "json", tracked)
    _session(standin.FakeGcp(op_polls=2))
    assert "compute.instances.get" in reads and "cloudbilling.services.skus.list" in reads
    assert not unread, f"the adapter reads fields the discovery document does not define: {sorted(set(unread))}"


# --- every documented instance status (defect 10) -----------------------------------------------

EXPECTED = {
    # not usable yet, on its way up
    "PROVISIONING": REMOTE_PROVISIONING, "STAGING": REMOTE_PROVISIONING, "PENDING": REMOTE_PROVISIONING,
    "REPAIRING": REMOTE_PROVISIONING,
    "RUNNING": REMOTE_RUNNING,
    # on its way down: neither starting nor stopped yet
    "PENDING_STOP": REMOTE_STOPPING, "STOPPING": REMOTE_STOPPING, "SUSPENDING": REMOTE_STOPPING,
    "DEPROVISIONING": REMOTE_STOPPING,
    "STOPPED": REMOTE_STOPPED, "SUSPENDED": REMOTE_STOPPED, "TERMINATED": REMOTE_STOPPED,
}


def test_every_documented_instance_status_is_mapped_deliberately():
    enum = discovery.compute()["schemas"]["Instance"]["properties"]["status"]["enum"]
    assert set(enum) == set(EXPECTED), "the discovery document changed the status list: map the new ones"
    assert set(INSTANCE_STATES) == set(enum)
    fake = standin.FakeGcp()
    a = _adapter(fake)
    pod = a.launch(LaunchRequest(tag=TAGS[0], name="x", image="busybox", gpu_class="T4", gpu_count=1, region="us-central1",
                                 zone="us-central1-a", instance_type="n1-standard-4+nvidia-tesla-t4"))
    zone, name = pod.external_id.split("/")
    for status, state in EXPECTED.items():
        fake.instances[(zone, name)]["status"] = status
        remote = a.get(pod.external_id)
        assert (status, remote.state) == (status, state)
        assert remote.raw["status"] == status


def test_the_read_tracker_reports_an_undefined_field_and_the_standin_an_undeclared_parameter():
    log: list[str] = []
    inst = _wrap({"status": "RUNNING", "scheduling": {"provisioningModel": "SPOT"}}, {"$ref": "Instance"}, "Instance",
                 discovery.COMPUTE, log)
    assert inst.get("status") == "RUNNING" and inst["scheduling"].get("provisioningModel") == "SPOT" and not log
    inst.get("gpuUtilization")
    inst["scheduling"].get("spot")
    assert log == ["Instance.gpuUtilization", "Instance.scheduling.spot"]
    fake = standin.FakeGcp()
    a = _adapter(fake)
    a.verify()
    answer = a.api("compute")._client.get(a._p("/aggregated/instances"), params={"returnPartialSuccess": "true"})
    assert answer.status_code == 400 and "Cannot bind query parameter" in answer.json()["error"]["message"]
