"""The typed client of Caddy's admin API against a real Caddy: routes by id, idempotent writes,
private services behind their token, and the answers when nothing serves."""

from __future__ import annotations

import time

import pytest

from gateway.caddy import CaddyAdmin, GatewayError
from gateway.routes import build_route, route_id, upstream_dial


def _serve(pod_servers, pod_id: str) -> str:
    port = pod_servers.start(pod_id, boot_in=0, end_in=None)["port"]
    url = f"http://127.0.0.1:{port}"
    import httpx

    for _ in range(100):  # listening a few ms after the process started
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return url
        except httpx.HTTPError:
            time.sleep(0.02)
    raise AssertionError("pod server did not listen")


def test_route_by_id_is_idempotent_and_proxies_to_the_pods(caddy, pod_servers):
    a, b = _serve(pod_servers, "pod-a"), _serve(pod_servers, "pod-b")
    with CaddyAdmin(caddy.admin_url) as gw:
        assert gw.put_route(build_route("chat-1", [a])) is True
        assert gw.put_route(build_route("chat-1", [a])) is False  # same route: nothing written
        assert gw.route_ids() == [route_id("chat-1")]
        answer = caddy.get("/s/chat-1/v1/models")
        assert answer.status_code == 200 and (answer.json()["pod"], answer.json()["path"]) == ("pod-a", "/v1/models")
        assert gw.put_route(build_route("chat-1", [a, b])) is True  # replaced in place, not appended
        assert gw.route_ids() == [route_id("chat-1")]
        seen = {caddy.get("/s/chat-1/").json()["pod"] for _ in range(6)}
        assert seen == {"pod-a", "pod-b"}
        assert gw.delete_route(route_id("chat-1")) is True
        assert gw.delete_route(route_id("chat-1")) is False
    assert caddy.get("/s/chat-1/").status_code == 404


def test_private_service_needs_its_token(caddy, pod_servers):
    a = _serve(pod_servers, "pod-a")
    with CaddyAdmin(caddy.admin_url) as gw:
        gw.put_route(build_route("secret-1", [a], token="tok-123"))
    assert caddy.get("/s/secret-1/").status_code == 401
    assert caddy.get("/s/secret-1/", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert caddy.get("/s/secret-1/", headers={"Authorization": "Bearer tok-123"}).json()["pod"] == "pod-a"
    assert caddy.get("/s/secret-1/x?token=tok-123").status_code == 200


def test_no_ready_pod_is_a_503_and_an_unknown_service_a_404(caddy):
    with CaddyAdmin(caddy.admin_url) as gw:
        gw.put_route(build_route("empty-1", []))
    answer = caddy.get("/s/empty-1/")
    assert answer.status_code == 503 and answer.headers["Retry-After"] == "2"
    assert caddy.get("/s/nobody/").status_code == 404


def test_a_dead_upstream_is_skipped_not_failed(caddy, pod_servers):
    """A pod that vanished unannounced (still in the route) costs no failed request."""
    from gateway.process import free_port

    a = _serve(pod_servers, "pod-a")
    with CaddyAdmin(caddy.admin_url) as gw:
        gw.put_route(build_route("svc-1", [a, f"http://127.0.0.1:{free_port()}"]))
    assert all(caddy.get("/s/svc-1/").status_code == 200 for _ in range(10))


def test_unreachable_admin_api_is_a_gateway_error():
    from gateway.process import free_port

    with CaddyAdmin(f"http://127.0.0.1:{free_port()}", timeout=0.5) as gw, pytest.raises(GatewayError):
        gw.put_route(build_route("x-1", []))


def test_upstream_dial():
    assert upstream_dial("http://127.0.0.1:9000") == ("127.0.0.1:9000", False)
    assert upstream_dial("https://pod-1.example.com") == ("pod-1.example.com:443", True)
