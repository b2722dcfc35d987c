"""moto's server (the installed ``moto[server]``) on 127.0.0.1, for real boto3-over-HTTP tests.

Started once per test session on a free port with instance-type and AMI validation on, so
``run_instances`` refuses unknown types and images the way EC2 does; each test starts from a
clean state through ``POST /moto-api/reset``. Use in a test module with::

    from tests.standins import moto_server as _moto
    moto_server = _moto.moto_server
    moto_url = _moto.moto_url
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

VALIDATION_ENV = {"MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION": "1", "MOTO_ENABLE_AMI_VALIDATION": "1"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _moto_command(port: int) -> list[str]:
    exe = Path(sys.executable).with_name("moto_server")
    if exe.exists():
        return [str(exe), "-H", "127.0.0.1", "-p", str(port)]
    found = shutil.which("moto_server")
    if found:
        return [found, "-H", "127.0.0.1", "-p", str(port)]
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


class MotoServer:
    """A running moto_server process. ``reset()`` wipes every service's state."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, **VALIDATION_ENV,
               # never let a real credential chain or config leak into the stand-in
               "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
        self.process = subprocess.Popen(_moto_command(self.port), env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}")
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto_server did not start within 30 s")

    def reset(self) -> None:
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def moto_url(moto_server) -> str:
    """A freshly reset moto server's base URL."""
    moto_server.reset()
    return moto_server.url
