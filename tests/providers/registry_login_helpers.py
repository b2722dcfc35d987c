"""A private image and its registry login, shared by each provider's "logs in to the image's
registry" test (issue 13 §2.1): the boot scripts must name the host, or docker logs in to Docker Hub."""

from __future__ import annotations

import shlex

PRIVATE_IMAGE = "nvcr.io/nvidia/pytorch:24.08-py3"
# an NGC API key: user "$oauthtoken", registry nvcr.io (NGC docs, "Accessing the NGC Container Registry")
REGISTRY_AUTH = {"registry": "nvcr.io", "username": "$oauthtoken", "password": "nvapi-s3cr3t-key"}


def docker_login(script: str) -> dict[str, str]:
    """The ``docker login`` of a boot script: {"host", "user", "stdin"} (what is piped in)."""
    lines = [line for line in script.splitlines() if "docker login" in line]
    assert len(lines) == 1, f"expected one docker login line in:\n{script}"
    feed, _, login = lines[0].partition("|")
    words = shlex.split(login)
    assert words[:2] == ["docker", "login"] and "--password-stdin" in words
    host = words[2] if len(words) > 2 and not words[2].startswith("-") else ""
    return {"host": host, "user": words[words.index("-u") + 1], "stdin": shlex.split(feed)[-1]}


def assert_logs_in_to_nvcr(script: str) -> None:
    login = docker_login(script)
    assert login == {"host": "nvcr.io", "user": "$oauthtoken", "stdin": "nvapi-s3cr3t-key"}, login
    # the login comes before the container is started
    assert script.index("docker login") < script.index("docker run")
