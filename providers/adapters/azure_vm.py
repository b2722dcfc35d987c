"""The Azure VM a launch creates: the ARM create body (api-version 2024-07-01) and the boot
script that runs the workload's container. Pure functions, pinned by the contract tests."""

from __future__ import annotations

import base64
import shlex
from typing import Any

from .base import LaunchRequest
from .image_registry import docker_login_line, registry_login

TAG = "provisioner-pod"
# Ubuntu HPC image: NVIDIA driver, CUDA and Docker with the NVIDIA runtime preinstalled [K]
DEFAULT_IMAGE = {"publisher": "microsoft-dsvm", "offer": "ubuntu-hpc", "sku": "2204", "version": "latest"}


def ephemeral_ssh_key() -> str:
    """Access goes through the in-VM agent; Azure still wants a key, so use one whose private
    half is thrown away."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    private = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    return private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def cloud_init(request: LaunchRequest) -> str:
    """The boot script that runs the workload's container on the VM's GPUs."""
    lines = ["#!/bin/bash", "set -euo pipefail"]
    docker = ["docker", "run", "-d", "--name", "workload", "--gpus", "all", "--restart", "no"]
    for i, vol in enumerate(request.volumes):
        host = f"/mnt/data{i}"
        lines.append(f"mkdir -p {host}")
        docker += ["-v", f"{host}:{vol.get('mount_path') or f'/data{i}'}"]
    for p in request.ports:
        if p.get("port"):
            docker += ["-p", f"{int(p['port'])}:{int(p['port'])}"]
    for k, v in request.env.items():
        docker += ["-e", f"{k}={v}"]
    if request.command:
        docker += ["--entrypoint", request.command[0]]
    docker += [request.image, *request.command[1:], *request.args]
    login = registry_login(request)
    if login:  # to the image's registry host (image_registry)
        lines.append(docker_login_line(login))
    lines.append(shlex.join(docker))
    return "\n".join(lines) + "\n"


def vm_body(request: LaunchRequest, *, name: str, nic_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    """``PUT .../virtualMachines/{name}`` body: Spot with evictionPolicy/maxPrice when asked."""
    user = str(settings.get("admin_username") or "azureuser")
    key = str(settings.get("ssh_public_key") or "") or ephemeral_ssh_key()
    props: dict[str, Any] = {
        "hardwareProfile": {"vmSize": request.instance_type},
        "storageProfile": {
            "imageReference": dict(settings.get("image") or DEFAULT_IMAGE),
            "osDisk": {"createOption": "FromImage", "diskSizeGB": max(64, int(request.disk_gb)),
                       "managedDisk": {"storageAccountType": "Premium_LRS"}, "deleteOption": "Delete"},
            "dataDisks": [{"lun": i, "createOption": "Empty", "diskSizeGB": int(v.get("size_gb") or 10),
                           "managedDisk": {"storageAccountType": "Premium_LRS"}, "deleteOption": "Delete"}
                          for i, v in enumerate(request.volumes) if v.get("kind") in ("persistent", "network")],
        },
        "osProfile": {
            "computerName": name, "adminUsername": user,
            "linuxConfiguration": {"disablePasswordAuthentication": True,
                                   "ssh": {"publicKeys": [{"path": f"/home/{user}/.ssh/authorized_keys", "keyData": key}]}},
            "customData": base64.b64encode(cloud_init(request).encode()).decode(),
        },
        # the NIC goes with the VM, also when a spot eviction deletes it
        "networkProfile": {"networkInterfaces": [{"id": nic_id, "properties": {"primary": True, "deleteOption": "Delete"}}]},
        "priority": "Spot" if request.spot else "Regular",
    }
    if request.spot:
        props["evictionPolicy"] = str(settings.get("eviction_policy") or "Delete")
        # -1 caps at the on-demand price, so only capacity (not price) evicts; "bid" pins the offer's price
        bid = request.bid_price_per_hour if settings.get("spot_max_price") == "bid" else None
        props["billingProfile"] = {"maxPrice": float(bid) if bid is not None else -1}
    body: dict[str, Any] = {"location": request.region, "tags": {TAG: request.tag, "provisioner-name": request.name[:256]},
                            "properties": props}
    if request.zone:
        body["zones"] = [request.zone]
    return body
