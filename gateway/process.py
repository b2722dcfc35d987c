"""Running a Caddy process (``manage.py rungateway``, the embedded stack, tests and benches)."""

from __future__ import annotations

import ctypes
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

CADDY = "caddy"  # Debian's package (apt-get install caddy): /usr/bin/caddy


def caddy_binary() -> str:
    found = shutil.which(CADDY)
    if found is None:
        raise FileNotFoundError("caddy is not installed (Debian: apt-get install -y caddy)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(config: dict[str, Any], folder: Path | None = None) -> Path:
    folder = folder or Path(tempfile.mkdtemp(prefix="gateway-"))
    path = folder / "caddy.json"
    path.write_text(json.dumps(config))
    return path


def caddy_argv(config_path: Path) -> list[str]:
    return [caddy_binary(), "run", "--config", str(config_path)]


def wait_ready(admin_url: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(f"{admin_url}/config/", timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the gateway's admin API at {admin_url} did not answer") from None
            time.sleep(0.05)


def _die_with_parent() -> None:
    """Linux: Caddy gets SIGTERM when the process that started it dies, even by SIGKILL, so a
    killed ``rungateway`` never leaves a Caddy holding the ports its restart needs (prctl(2),
    PR_SET_PDEATHSIG)."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass


def start_caddy(config: dict[str, Any], admin_url: str, **popen: Any) -> subprocess.Popen:
    """Start Caddy with ``config`` and wait until its admin API answers."""
    proc = subprocess.Popen(caddy_argv(write_config(config)), stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent if sys.platform == "linux" else None, **popen)
    try:
        wait_ready(admin_url)
    except TimeoutError:
        proc.kill()
        raise
    return proc


def stop_caddy(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
