"""Stand-ins for the instance metadata services the in-pod agent reads for interruption notices,
answering as the providers document (see the citations in workloads/agent/provisioner_agent.py).
Served on 127.0.0.1 with ``_loopback.serve``; never the real link-local addresses."""

from __future__ import annotations

import json
import secrets

import httpx


class AwsImds:
    """IMDSv2: PUT /latest/api/token, then GETs with X-aws-ec2-metadata-token (401 without).
    ``instance_action`` / ``rebalance_time`` unset: the documented 404."""

    def __init__(self):
        self.tokens: set[str] = set()
        self.instance_action: dict | None = None
        self.rebalance_time: str | None = None
        self.requests: list[tuple[str, str]] = []

    def expire_tokens(self) -> None:
        self.tokens.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        self.requests.append((request.method, path))
        if path == "/latest/api/token":
            ttl = request.headers.get("x-aws-ec2-metadata-token-ttl-seconds", "")
            if request.method != "PUT" or not ttl.isdigit() or not 1 <= int(ttl) <= 21600:
                return httpx.Response(400)
            token = secrets.token_urlsafe(24)
            self.tokens.add(token)
            return httpx.Response(200, text=token)
        if request.headers.get("x-aws-ec2-metadata-token") not in self.tokens:
            return httpx.Response(401)
        if path == "/latest/meta-data/spot/instance-action" and self.instance_action:
            return httpx.Response(200, text=json.dumps(self.instance_action))
        if path == "/latest/meta-data/events/recommendations/rebalance" and self.rebalance_time:
            return httpx.Response(200, text=json.dumps({"noticeTime": self.rebalance_time}))
        return httpx.Response(404, text="Not Found")


class GcpMetadata:
    """GCP metadata server: Metadata-Flavor: Google required (403 without), instance/preempted
    answers TRUE/FALSE with an ETag; ``wait_for_change`` answers at once here (a change is what
    the test makes)."""

    def __init__(self):
        self.preempted = False
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(str(request.url))
        if request.headers.get("metadata-flavor") != "Google":
            return httpx.Response(403, text="Missing Metadata-Flavor:Google header.")
        if request.url.path != "/computeMetadata/v1/instance/preempted":
            return httpx.Response(404)
        value = "TRUE" if self.preempted else "FALSE"
        return httpx.Response(200, text=value, headers={"ETag": f"etag-{value.lower()}",
                                                        "Metadata-Flavor": "Google"})


class AzureImds:
    """Azure IMDS: Metadata: true and api-version required (400 without), Scheduled Events
    document and the VM's compute name."""

    def __init__(self, vm_name: str = "spot-vm-1"):
        self.vm_name = vm_name
        self.events: list[dict] = []
        self.incarnation = 1

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("metadata") != "true" or not request.url.params.get("api-version"):
            return httpx.Response(400, json={"error": "Bad request. Required metadata header not specified"})
        if request.url.path == "/metadata/scheduledevents":
            return httpx.Response(200, json={"DocumentIncarnation": self.incarnation, "Events": self.events})
        if request.url.path == "/metadata/instance/compute/name":
            return httpx.Response(200, text=self.vm_name)
        return httpx.Response(404)

    def preempt(self, not_before: str, resources: list[str] | None = None) -> None:
        self.incarnation += 1
        self.events = [{"EventId": "602d9444-d2cd-49c7-8624-8643e7171297", "EventType": "Preempt",
                        "ResourceType": "VirtualMachine", "Resources": resources or [self.vm_name],
                        "EventStatus": "Scheduled", "NotBefore": not_before, "Description": "",
                        "EventSource": "Platform", "DurationInSeconds": -1}]
