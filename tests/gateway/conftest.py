"""A real Caddy on free loopback ports for every gateway test (``.ci/run`` installs Debian's
caddy; there is no skip) and Sandbox pods that serve real HTTP."""

from __future__ import annotations

import httpx
import pytest

from gateway.caddy import base_config
from gateway.process import free_port, start_caddy, stop_caddy
from providers.adapters import sandbox_http


class Caddy:
    def __init__(self):
        self.admin_port, self.port = free_port(), free_port()
        self.admin_url = f"http://127.0.0.1:{self.admin_port}"
        self.listen = f"127.0.0.1:{self.port}"
        self.public_url = f"http://{self.listen}"
        self.proc = None

    def start(self):
        self.proc = start_caddy(base_config(self.listen, f"127.0.0.1:{self.admin_port}"), self.admin_url)

    def stop(self):
        stop_caddy(self.proc)

    def get(self, path: str, **kw) -> httpx.Response:
        return httpx.get(f"{self.public_url}{path}", timeout=5, **kw)


@pytest.fixture
def caddy():
    c = Caddy()
    c.start()
    yield c
    c.stop()


@pytest.fixture
def gateway_on(caddy, settings):
    """The app pointed at the test's Caddy, with Sandbox pods serving HTTP."""
    settings.GATEWAY_ADMIN_URL = caddy.admin_url
    settings.GATEWAY_ADMIN_LISTEN = f"127.0.0.1:{caddy.admin_port}"
    settings.GATEWAY_LISTEN = caddy.listen
    settings.GATEWAY_PUBLIC_URL = caddy.public_url
    settings.SANDBOX_HTTP = True
    yield caddy
    sandbox_http.stop_all_started()


@pytest.fixture
def pod_servers():
    yield sandbox_http
    sandbox_http.stop_all_started()
