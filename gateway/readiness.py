"""The readiness check a pod must pass before it joins its service's route.

Per workload (``ServiceEndpoint``): an HTTP GET of ``ready_path`` answering ``ready_status``
within ``ready_timeout_seconds``; without a path, a TCP connect to the pod's first HTTP port
(what Kubernetes calls a ``tcpSocket`` probe, "Configure Liveness, Readiness and Startup Probes").
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx


@dataclass(frozen=True)
class Probe:
    path: str = ""
    status: int = 200
    timeout: float = 2.0


def check(address: str, probe: Probe) -> tuple[bool, str]:
    """Probe the pod at ``address`` (``http://host:port``). Returns (ready, what was seen)."""
    if not address:
        return False, "no HTTP endpoint yet"
    parts = urlsplit(address)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    if not probe.path:
        try:
            with socket.create_connection((host, port), timeout=probe.timeout):
                return True, f"TCP connect to {host}:{port} succeeded"
        except OSError as exc:
            return False, f"TCP connect to {host}:{port} failed: {exc.strerror or exc}"
    url = f"{parts.scheme}://{host}:{port}/{probe.path.lstrip('/')}"
    try:
        status = httpx.get(url, timeout=probe.timeout, follow_redirects=False).status_code
    except httpx.HTTPError as exc:
        return False, f"GET {probe.path} failed: {type(exc).__name__}"
    if status != probe.status:
        return False, f"GET {probe.path} answered {status}, expected {probe.status}"
    return True, f"GET {probe.path} answered {status}"
