"""Private registry logins: which host an image is pulled from, and how each provider is told.

One rule for every adapter: the login goes to the registry the image is pulled from (the host
part of the image reference), with the workload's registry credential (``LaunchRequest.registry_auth``:
``registry``, ``username``, ``password``). ``docker login ''`` logs in to Docker Hub, so a login
without the host silently fails every ``nvcr.io/...`` pull; the host always comes from here.

Host rule, from the reference grammar of the distribution project (``distribution/reference``,
``reference.go``: "domain": the first path component is a registry host only when it contains a
``.`` or a ``:``, or is ``localhost``; otherwise the image lives on Docker Hub, ``docker.io``).
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass

from .base import LaunchRequest

DOCKER_HUB = "docker.io"
# docker's own config key for Docker Hub (``docker login`` writes it; kubelet reads it): the
# ``kubectl create secret docker-registry`` default ``--docker-server``
DOCKER_HUB_CONFIG_KEY = "https://index.docker.io/v1/"
_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "hub.docker.com"}


def image_registry_host(image: str) -> str:
    """``nvcr.io/nvidia/pytorch:24.08-py3`` -> ``nvcr.io``; ``pytorch/pytorch`` -> ``docker.io``."""
    name = (image or "").strip().split("@", 1)[0]
    first, sep, _ = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return normalize_host(first)
    return DOCKER_HUB


def normalize_host(value: str) -> str:
    """A registry as people write it (``https://nvcr.io/v2/``, ``NVCR.IO``) -> its host."""
    host = (value or "").strip().lower()
    host = host.split("://", 1)[-1].split("/", 1)[0]
    return DOCKER_HUB if host in _HUB_ALIASES else host


@dataclass(frozen=True)
class RegistryLogin:
    host: str  # where the image is pulled from, e.g. nvcr.io
    username: str  # e.g. $oauthtoken for an NGC API key
    password: str
    credential_registry: str = ""  # what the credential says it is for (shown when it differs)

    @property
    def mismatch(self) -> bool:
        return bool(self.credential_registry) and normalize_host(self.credential_registry) != self.host


def registry_login(request: LaunchRequest) -> RegistryLogin | None:
    """The login a launch needs, or None for a public image (no credential)."""
    auth = request.registry_auth or {}
    if not (auth.get("username") or auth.get("password")):
        return None
    return RegistryLogin(host=image_registry_host(request.image), username=str(auth.get("username") or ""),
                         password=str(auth.get("password") or ""), credential_registry=str(auth.get("registry") or ""))


def docker_login_line(login: RegistryLogin) -> str:
    """The boot-script line: the password on stdin (never on the command line), the host explicit.

    ``docker login [OPTIONS] [SERVER]`` (Docker CLI reference, "docker login": "--password-stdin",
    "If no server is specified, the default is defined by the daemon", i.e. Docker Hub)."""
    return (f"printf '%s' {shlex.quote(login.password)} | docker login {shlex.quote(login.host)} "
            f"-u {shlex.quote(login.username)} --password-stdin")


def dockerconfig_key(host: str) -> str:
    return DOCKER_HUB_CONFIG_KEY if host == DOCKER_HUB else host


def dockerconfigjson(login: RegistryLogin) -> dict:
    """``.dockerconfigjson`` content (Kubernetes docs, "Pull an Image from a Private Registry":
    ``{"auths": {"<server>": {"username", "password", "auth": base64(user:password)}}}``)."""
    token = base64.b64encode(f"{login.username}:{login.password}".encode()).decode()
    return {"auths": {dockerconfig_key(login.host): {"username": login.username, "password": login.password, "auth": token}}}


def vast_image_login(login: RegistryLogin) -> str:
    """Vast.ai ``image_login``: the docker login arguments as one string, host last.

    Official ``vastai`` CLI 1.9.1 (``vastai/cli/commands/instances.py``), ``create instance --login``:
    "docker login arguments for private repo authentication, surround with ''", example
    ``--login '-u bob -p 9d8df!fd89ufZ docker.io'``; ``vastai/api/offers.py`` sends it unchanged
    as ``image_login`` in ``PUT /api/v0/asks/{id}/``."""
    return f"-u {login.username} -p {login.password} {login.host}"
