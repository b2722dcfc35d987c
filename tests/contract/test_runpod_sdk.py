"""RunPod GraphQL documents against the official ``runpod`` SDK (1.12.0, pyproject.toml oracles extra).

What the SDK offers as ground truth: ``runpod/api/mutations/pods.py`` builds the pod-creation
mutation (``podFindAndDeployOnDemand``) with every input field it knows, and
``runpod/api/queries/gpus.py`` the ``gpuTypes`` query with the spot prices. SDK 1.12.0 builds no
interruptible mutation: ``podRentInterruptable(input: PodRentInterruptableInput!)`` -- name and input
type -- come from RunPod's GraphQL docs (providers.md §1) and stay unverifiable without an account.
What *is* checked: the interruptible input is the deploy input plus ``bidPerGpu``, so every other
field we send must be one the SDK's builder emits, with the same value for the same request and
the same GraphQL type (string, int, boolean, enum, ``[{key, value}]`` env list); the selection set
is the SDK's; the spot-price query selects only fields the SDK's ``gpuTypes`` query selects.

The SDK module is loaded from its file, without running ``runpod/__init__`` (which starts the
serverless worker machinery); nothing is sent anywhere.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path
from typing import Any

from providers.adapters.base import LaunchRequest
from providers.adapters.runpod import RENT_INTERRUPTABLE, SPOT_PRICES_QUERY, RunPodAdapter
from tests.standins.fixtures import STANDIN_CREDENTIALS
from tests.standins.runpod import RunPodStandIn


def _sdk_module(relative: str):
    """A module of the installed runpod package, loaded on its own (a missing SDK is an error)."""
    spec = importlib.util.find_spec("runpod")
    assert spec is not None and spec.submodule_search_locations, "the runpod SDK oracle is not installed"
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    module_spec = importlib.util.spec_from_file_location(f"_oracle_runpod_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


class Enum(str):
    """A GraphQL enum literal (``SECURE``), told apart from a string ("SECURE")."""


def parse_literal(text: str) -> tuple[dict[str, Any], int]:
    """Parse a GraphQL input object literal ``{ a: "x", b: 2, c: [ {..} ], d: ENUM }``."""
    pos = 0

    def skip() -> None:
        nonlocal pos
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1

    def value() -> Any:
        nonlocal pos
        skip()
        ch = text[pos]
        if ch == '"':
            m = re.compile(r'"((?:[^"\\]|\\.)*)"').match(text, pos)
            pos = m.end()
            return json.loads(f'"{m.group(1)}"')
        if ch == "{":
            return obj()
        if ch == "[":
            pos += 1
            items = []
            skip()
            while text[pos] != "]":
                items.append(value())
                skip()
            pos += 1
            return items
        m = re.compile(r"-?\d+(\.\d+)?|[A-Za-z_]\w*").match(text, pos)
        pos = m.end()
        word = m.group(0)
        if m.group(1) is not None:
            return float(word)
        if word.lstrip("-").isdigit():
            return int(word)
        return {"true": True, "false": False, "null": None}.get(word, Enum(word))

    def obj() -> dict[str, Any]:
        nonlocal pos
        assert text[pos] == "{"
        pos += 1
        out = {}
        skip()
        while text[pos] != "}":
            m = re.compile(r"([A-Za-z_]\w*)\s*:").match(text, pos)
            pos = m.end()
            out[m.group(1)] = value()
            skip()
        pos += 1
        return out

    skip()
    return obj(), pos


def _block(text: str, start: int) -> str:
    """The ``{...}`` block opening at the first brace from ``start``, whitespace normalised."""
    begin = text.index("{", start)
    depth = 0
    for i in range(begin, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return " ".join(text[begin:i + 1].split())
    raise AssertionError("unbalanced braces")


def _sdk_document(mutation: str) -> tuple[str, dict[str, Any], str]:
    """(operation, input literal, selection set) of an SDK mutation string."""
    m = re.search(r"(\w+)\(\s*input:\s*", mutation)
    fields, used = parse_literal(mutation[m.end():])
    return m.group(1), fields, _block(mutation, m.end() + used)


def _graphql_type(value: Any) -> str:
    if isinstance(value, Enum):
        return "enum"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[" + ",".join(sorted({_graphql_type(v) for v in value})) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_graphql_type(v)}" for k, v in sorted(value.items())) + "}"
    return type(value).__name__


def _our_spot_launch() -> tuple[dict[str, Any], LaunchRequest, RunPodStandIn]:
    s = RunPodStandIn()
    a = RunPodAdapter(STANDIN_CREDENTIALS["runpod"], {"account_id": "contract-sdk"}, transport=s.transport(),
                      sleep=lambda x: None)
    spot = next(o for o in a.list_offers() if o.spot and o.gpu_count == 2 and o.region == "EU-RO-1")
    request = LaunchRequest(tag="22222222-0000-0000-0000-0000000000a1", name="spot", image="ghcr.io/acme/train:1",
                            gpu_class=spot.gpu_class, gpu_count=2, region=spot.region, instance_type=spot.instance_type,
                            spot=True, bid_price_per_hour=spot.price_per_hour, disk_gb=40,
                            ports=[{"port": 8888, "protocol": "http"}, {"port": 22, "protocol": "tcp"}],
                            env={"HF_HOME": "/workspace/hf"}, command=["python"], args=["train.py"],
                            volumes=[{"kind": "persistent", "size_gb": 20, "mount_path": "/workspace"}])
    a.launch(request)
    sent = [json.loads(e.request.content) for e in s.exchanges if e.request.url.path == "/graphql"]
    rent = next(b for b in sent if "podRentInterruptable" in b["query"])
    return rent, request, s


def test_interruptible_input_is_the_sdk_deploy_input_plus_the_bid():
    pods = _sdk_module("api/mutations/pods.py")
    rent, request, _ = _our_spot_launch()
    ours = rent["variables"]["input"]
    cloud, _, gpu_id = request.instance_type.partition(":")
    sdk_mutation = pods.generate_pod_deployment_mutation(
        name=ours["name"], image_name=request.image, gpu_type_id=gpu_id, cloud_type=cloud, start_ssh=True,
        data_center_id=request.region, gpu_count=2, volume_in_gb=20, container_disk_in_gb=40,
        docker_args="python train.py", ports="8888/http,22/tcp", volume_mount_path="/workspace",
        env={"HF_HOME": "/workspace/hf", "PROVISIONER_POD": request.tag, "PROVISIONER_MARKET": "spot"})
    operation, sdk_input, sdk_selection = _sdk_document(sdk_mutation)
    assert operation == "podFindAndDeployOnDemand"
    errors = []
    for key, value in ours.items():
        if key == "bidPerGpu":  # the one field an interruptible input adds (providers.md §1)
            assert isinstance(value, float) and value > 0
            continue
        if key not in sdk_input:
            errors.append(f"{key}: the SDK's deploy input has no such field")
            continue
        sdk_value = sdk_input[key]
        our_type = "enum" if key == "cloudType" else _graphql_type(value)  # variables carry enums as strings
        if our_type != _graphql_type(sdk_value):
            errors.append(f"{key}: we send {our_type}, the SDK {_graphql_type(sdk_value)}")
        elif key == "env":
            if sorted((e["key"], e["value"]) for e in value) != sorted((e["key"], e["value"]) for e in sdk_value):
                errors.append(f"env: {value} != {sdk_value}")
        elif value != sdk_value:
            errors.append(f"{key}: we send {value!r}, the SDK {sdk_value!r} for the same request")
    assert not errors, errors
    # the selection set is the SDK's, field for field
    assert _block(RENT_INTERRUPTABLE, RENT_INTERRUPTABLE.index(")", RENT_INTERRUPTABLE.index("podRentInterruptable"))) == sdk_selection
    assert re.search(r"\$input:\s*PodRentInterruptableInput!", rent["query"])


def test_spot_price_query_selects_only_what_the_sdk_selects():
    gpus = _sdk_module("api/queries/gpus.py")
    sdk_fields = set(re.findall(r"\b([a-zA-Z]\w*)\b", gpus.generate_gpu_query("NVIDIA A100 80GB PCIe", 2)))
    ours = SPOT_PRICES_QUERY[SPOT_PRICES_QUERY.index("gpuTypes"):]
    our_fields = set(re.findall(r"\b([a-zA-Z]\w*)\b", ours))
    assert our_fields <= sdk_fields, our_fields - sdk_fields
    assert {"secureSpotPrice", "communitySpotPrice"} <= our_fields


def test_the_literal_parser_reads_what_the_sdk_writes():
    pods = _sdk_module("api/mutations/pods.py")
    _, fields, selection = _sdk_document(pods.generate_pod_deployment_mutation(
        name="n", image_name="i", gpu_type_id="g", cloud_type="SECURE", gpu_count=1, env={"A": "1"}))
    assert fields["cloudType"] == "SECURE" and isinstance(fields["cloudType"], Enum)
    assert fields["gpuCount"] == 1 and fields["startSsh"] is True and fields["dataCenterId"] is None
    assert fields["env"] == [{"key": "A", "value": "1"}]
    assert selection == "{ id imageName env machineId machine { podHostId } }"


def test_the_standin_refuses_an_input_field_the_sdk_does_not_know():
    rent, _, s = _our_spot_launch()
    import httpx

    with httpx.Client(transport=s.transport(), base_url="https://api.runpod.io",
                      headers={"Authorization": "Bearer test-key"}) as c:
        body = {"query": rent["query"], "variables": {"input": {**rent["variables"]["input"], "interruptible": True}}}
        answer = c.post("/graphql", json=body).json()
    assert "interruptible" in answer["errors"][0]["message"] and "data" not in answer
