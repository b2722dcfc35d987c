"""The boot script of a GPU VM pod (AWS UserData, GCP startup-script): run the pod's container.

The VM images we default to (AWS Deep Learning AMIs, GCP Deep Learning VM images) carry the
NVIDIA driver, docker and the NVIDIA container toolkit, so one ``docker run --gpus all`` is
the whole job.
"""

from __future__ import annotations

import shlex

from .base import LaunchRequest
from .image_registry import docker_login_line, registry_login


def container_script(request: LaunchRequest) -> str:
    """A bash script that logs in to the registry (if any) and starts the container once."""
    lines = ["#!/bin/bash", "set -euo pipefail", f"# ai-cloud-provisioner pod {request.tag}",
             # startup scripts run again on every boot: the container restarts by itself
             "docker inspect pod >/dev/null 2>&1 && exit 0"]
    login = registry_login(request)
    if login:  # to the image's registry host: a login without one goes to Docker Hub
        lines.append(docker_login_line(login))
    run = ["docker", "run", "-d", "--name", "pod", "--gpus", "all", "--restart", "on-failure"]
    for p in request.ports:
        if p.get("port"):
            run += ["-p", f"{int(p['port'])}:{int(p['port'])}"]
    for k, v in sorted(request.env.items()):
        run += ["-e", f"{k}={v}"]
    run += [request.image, *request.command, *request.args]
    lines.append(" ".join(shlex.quote(x) for x in run))
    return "\n".join(lines) + "\n"
