"""pytest fixtures for the provider stand-ins (served on 127.0.0.1 or in-process).

Use from a test module or conftest::

    from tests.standins.fixtures import *  # noqa: F401,F403  (or list the fixtures you need)

    def test_x(served_runpod):
        account.settings = {"base_url": served_runpod.url}
        served_runpod.standin.fail_next("capacity", op="launch")

``<provider>_standin`` fixtures give a fresh in-process stand-in; ``served_<provider>`` start it
on a free port for the test and stop it afterwards. ``STANDIN_CREDENTIALS`` holds the
credentials each stand-in accepts; ``account_settings(served)`` the settings an account needs
to use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .base import StandIn
from .hetzner import HetznerRobotStandIn
from .lambda_cloud import LambdaStandIn
from .runpod import RunPodStandIn
from .server import Served, serve
from .vast import VastStandIn

STANDINS: dict[str, type[StandIn]] = {
    "runpod": RunPodStandIn,
    "lambda": LambdaStandIn,
    "vast": VastStandIn,
    "hetzner": HetznerRobotStandIn,
}

def robot_ssh_key(seed: bytes = b"hetzner-stand-in-account-key-32b") -> dict[str, str]:
    """A fixed test SSH key as a Hetzner account holds it: Robot's MD5 fingerprint + private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from providers.adapters.hetzner_bootstrap import load_private_key, md5_fingerprint

    text = ed25519.Ed25519PrivateKey.from_private_bytes(seed).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()).decode()
    return {"ssh_key_fingerprint": md5_fingerprint(load_private_key(text)), "ssh_private_key": text}


STANDIN_CREDENTIALS: dict[str, dict[str, str]] = {
    "runpod": {"api_key": "test-key"},
    "lambda": {"api_key": "test-key", "ssh_key_name": "default"},
    "vast": {"api_key": "test-key"},
    "hetzner": {"user": "robot-user", "password": "robot-pass", **robot_ssh_key()},
}


def account_settings(served: Served, **extra: Any) -> dict[str, Any]:
    """Settings for a ProviderAccount pointed at ``served`` (short timeouts, no long waits)."""
    return {"base_url": served.url, "timeout": 5, **extra}


def _served(kind: str) -> Iterator[Served]:
    served = serve(STANDINS[kind]())
    try:
        yield served
    finally:
        served.stop()


@pytest.fixture
def runpod_standin() -> RunPodStandIn:
    return RunPodStandIn()


@pytest.fixture
def lambda_standin() -> LambdaStandIn:
    return LambdaStandIn()


@pytest.fixture
def vast_standin() -> VastStandIn:
    return VastStandIn()


@pytest.fixture
def hetzner_standin() -> HetznerRobotStandIn:
    return HetznerRobotStandIn()


@pytest.fixture
def served_runpod() -> Iterator[Served]:
    yield from _served("runpod")


@pytest.fixture
def served_lambda() -> Iterator[Served]:
    yield from _served("lambda")


@pytest.fixture
def served_vast() -> Iterator[Served]:
    yield from _served("vast")


@pytest.fixture
def served_hetzner() -> Iterator[Served]:
    yield from _served("hetzner")


@pytest.fixture
def no_sleep(monkeypatch) -> list[float]:
    """Make every adapter's backoff and rate-limit waits instant; returns the waits asked for."""
    from providers.adapters import http

    waits: list[float] = []
    monkeypatch.setattr(http, "default_sleep", waits.append)
    http.reset_limiters()
    return waits


@pytest.fixture
def hetzner_ssh(served_hetzner, tmp_path) -> Iterator[dict[str, Any]]:  # noqa: F811
    """A real sshd on 127.0.0.1 (tests/standins/sshd.py) where the Robot stand-in "delivers" its
    servers, so that the SSH bootstrap of a Hetzner pod runs for real. Yields the account settings
    that point the bootstrap at it."""
    from .sshd import start_sshd

    server = start_sshd(tmp_path / "sshd", private_key=STANDIN_CREDENTIALS["hetzner"]["ssh_private_key"])
    served_hetzner.standin.server_ip = "127.0.0.1"
    served_hetzner.standin.host_keys = [server.host_key_fingerprint]
    try:
        yield {"ssh_port": server.port, "ssh_user": server.user, "bootstrap_dir": str(tmp_path / "remote")}
    finally:
        server.stop()
