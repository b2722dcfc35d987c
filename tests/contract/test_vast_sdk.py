"""Vast.ai adapter against what the official ``vastai`` package (1.9.1, pyproject.toml oracles extra)
sends for the same operations (issue 13 §1).

The SDK's own request builders run unmodified; only its HTTP session's ``send`` is replaced, so
each request it prepares is recorded and answered by our Vast stand-in (nothing leaves the
machine). The stand-in therefore also has to accept what the real CLI sends. For search, create
(on-demand and bid), stop and destroy we compare method, path, and every body field both send:
same name, same JSON type, same value where the value is a code (``type``, ``runtype``, ``state``).

Where the SDK and the published spec (vastai.openapi.yaml) disagree, the adapter follows the SDK
-- the code every CLI user runs against the real API -- and the disagreement is written down
in providers/adapters/vast.py: ``env`` (spec: a Docker-flag string; SDK: an object), search
``type`` (spec enum "ondemand"; SDK "on-demand"), ``allocated_storage`` (both: sent by search).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import requests
from requests.structures import CaseInsensitiveDict

from providers.adapters.base import LaunchRequest
from providers.adapters.vast import VastAdapter
from tests.standins.vast import VastStandIn

TAG = "0b7c1d2e-aaaa-bbbb-cccc-0000000000aa"


def _sdk():
    """The official package; a missing oracle is an error, not a skip."""
    from vastai.api import client, instances, offers

    return client, instances, offers


class Recorder:
    """Routes the SDK's prepared requests into the stand-in and keeps them."""

    def __init__(self, standin: VastStandIn):
        self.standin = standin
        self.sent: list[requests.PreparedRequest] = []

    def send(self, session, prep: requests.PreparedRequest, **kw: Any) -> requests.Response:
        self.sent.append(prep)
        body = prep.body.encode() if isinstance(prep.body, str) else (prep.body or b"")
        answer = self.standin.handle(httpx.Request(prep.method, prep.url, headers=dict(prep.headers), content=body))
        r = requests.Response()
        r.status_code, r._content, r.url, r.request = answer.status_code, answer.content, prep.url, prep
        r.headers = CaseInsensitiveDict(answer.headers)
        return r


def _json(content: bytes | str | None) -> Any:
    return json.loads(content) if content else None


def _path(url: str) -> str:
    return urlsplit(url).path.rstrip("/")


@pytest.fixture
def world(monkeypatch):
    client, instances, offers = _sdk()
    standin = VastStandIn()
    recorder = Recorder(standin)
    monkeypatch.setattr(client.VastSession, "send", lambda self, prep, **kw: recorder.send(self, prep, **kw))
    sdk = client.VastClient(api_key="test-key", server_url="https://console.vast.ai", retry=1)
    ours = VastAdapter({"api_key": "test-key"}, {"account_id": "contract-vast-sdk"}, transport=standin.transport(),
                       sleep=lambda s: None)
    return standin, recorder, sdk, ours, instances, offers


def _ours(standin: VastStandIn, since: int) -> list[httpx.Request]:
    return [e.request for e in standin.exchanges[since:]]


def _same_fields(sdk_body: dict[str, Any], our_body: dict[str, Any], codes: tuple[str, ...]) -> list[str]:
    errors = []
    for key in sorted(set(sdk_body) & set(our_body)):
        a, b = sdk_body[key], our_body[key]
        if a is None:
            continue
        if type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
            errors.append(f"{key}: the SDK sends {type(a).__name__} {a!r}, we send {type(b).__name__} {b!r}")
        elif key in codes and a != b:
            errors.append(f"{key}: the SDK sends {a!r}, we send {b!r}")
    return errors


def test_search_matches_the_sdk(world):
    standin, recorder, sdk, ours, _, offers = world
    for sdk_type in ("on-demand", "bid"):
        offers.search_offers(sdk, query={"num_gpus": {"in": [1, 2, 4, 8]}}, offer_type=sdk_type, limit=512, storage=50.0)
    mark = len(standin.exchanges)
    ours.list_offers()
    sdk_bodies = {(_json(p.body) or {})["type"]: (p.method, _path(p.url), _json(p.body)) for p in recorder.sent}
    our_bodies = {_json(r.content)["type"]: (r.method, r.url.path, _json(r.content)) for r in _ours(standin, mark)}
    assert set(our_bodies) == set(sdk_bodies) == {"on-demand", "bid"}
    for kind, (method, path, body) in our_bodies.items():
        s_method, s_path, s_body = sdk_bodies[kind]
        assert (method, path) == (s_method, s_path)
        assert not _same_fields(s_body, body, ("type",))
        # the price of an offer includes its storage: both say for how much
        assert body["allocated_storage"] == s_body["allocated_storage"] == 50.0
        # every filter is an operator object, as the SDK builds them
        assert all(isinstance(body[k], dict) for k in ("verified", "rentable", "rented", "num_gpus"))


def _launch(ours: VastAdapter, offer, tag: str):
    return ours.launch(LaunchRequest(
        tag=tag, name="train", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class=offer.gpu_class,
        gpu_count=offer.gpu_count, region=offer.region, instance_type=offer.instance_type, spot=offer.spot,
        bid_price_per_hour=offer.price_per_hour if offer.spot else None, env={"HF_HOME": "/workspace/hf"},
        ports=[{"port": 8888, "protocol": "http"}], command=["python"], args=["train.py"]))


@pytest.mark.parametrize("spot", [False, True], ids=["on-demand", "bid"])
def test_create_stop_destroy_match_the_sdk(world, spot):
    standin, recorder, sdk, ours, instances, _ = world
    offer = next(o for o in ours.list_offers() if o.spot == spot and o.gpu_class == "RTX4090")
    mark = len(standin.exchanges)
    mine = _launch(ours, offer, TAG)
    ours.stop(mine.external_id)
    ours.terminate(mine.external_id)
    our_calls = [r for r in _ours(standin, mark) if r.method in ("PUT", "DELETE")]
    # the same operations through the SDK, on another machine of the stand-in
    other = next(o for o in ours.list_offers() if o.spot == spot and o.gpu_class == "RTX4090")
    created = instances.create_instance(
        sdk, int(other.instance_type), image="nvcr.io/nvidia/pytorch:24.08-py3", disk=50.0,
        env="-e HF_HOME=/workspace/hf -p 8888:8888", label="provisioner-pod-sdk",
        price=float(other.price_per_hour) if spot else None, runtype="args", args=["python", "train.py"],
        cancel_unavail=True)
    assert created["success"], created
    instances.stop_instance(sdk, created["new_contract"])
    instances.destroy_instance(sdk, created["new_contract"])
    sdk_calls = [p for p in recorder.sent if p.method in ("PUT", "DELETE")]

    assert [(r.method, r.url.path.rsplit("/", 1)[0]) for r in our_calls] == [
        (p.method, _path(p.url).rsplit("/", 1)[0]) for p in sdk_calls]
    ours_create, sdk_create = _json(our_calls[0].content), _json(sdk_calls[0].body)
    assert not _same_fields(sdk_create, ours_create, ("runtype",))
    # env: an object, exactly what the SDK's parse_env makes of the Docker-flag string
    assert ours_create["env"] == sdk_create["env"] == {"HF_HOME": "/workspace/hf", "-p 8888:8888": "1"}
    assert ("price" in ours_create) == spot and (sdk_create["price"] is not None) == spot
    assert _json(our_calls[1].content) == _json(sdk_calls[1].body) == {"state": "stopped"}


def test_env_values_with_spaces_survive_only_as_an_object(world):
    """Why the object form: the SDK's own parser (vastai.utils.parse_env) turns the Docker-flag
    string "-e 'NOTE=a b'" into the key "'NOTE" -- a value with a space cannot travel in the
    string form the spec documents. The object form carries it as is."""
    from vastai.utils import parse_env

    assert parse_env("-e 'NOTE=a b'") != {"NOTE": "a b"}
    standin, _, _, ours, _, _ = world
    offer = next(o for o in ours.list_offers() if not o.spot and o.gpu_class == "RTX4090")
    mark = len(standin.exchanges)
    ours.launch(LaunchRequest(tag=TAG, name="t", image="img:1", gpu_class=offer.gpu_class, gpu_count=offer.gpu_count,
                              region=offer.region, instance_type=offer.instance_type, env={"NOTE": "a b", "Q": "it's"}))
    create = next(r for r in _ours(standin, mark) if r.method == "PUT")
    assert _json(create.content)["env"] == {"NOTE": "a b", "Q": "it's"}


def test_the_standin_refuses_what_vast_refuses(world):
    standin, _, sdk, ours, _, _ = world
    with httpx.Client(transport=standin.transport(), base_url="https://console.vast.ai",
                      headers={"Authorization": "Bearer test-key"}) as c:
        assert c.post("/api/v0/bundles/", json={"type": "spot"}).status_code == 400
        assert c.post("/api/v0/bundles/", json={"type": "on-demand", "allocated_storage": "lots"}).status_code == 400
        assert c.put("/api/v0/asks/4100101/", json={"image": "x", "env": ["-e A=1"]}).status_code == 400
        assert c.put("/api/v0/asks/4100101/", json={"image": "x", "runtype": "docker"}).status_code == 400
        assert c.put("/api/v0/asks/4100101/", json={"image": "x", "price": 500}).status_code == 400
        # both documented spellings of the search type and both env forms are accepted
        assert c.post("/api/v0/bundles/", json={"type": "ondemand"}).status_code == 200
        assert c.put("/api/v0/asks/4100101/", json={"image": "x", "env": "-e A=1 -p 22:22"}).status_code == 200
    assert standin.instances
