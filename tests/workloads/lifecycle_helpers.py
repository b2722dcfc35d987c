"""Helpers for the lifecycle tests: Sandbox accounts, workloads and a fault-injecting adapter."""

from __future__ import annotations

import threading
from typing import Any

from providers.adapters.base import ProviderAdapter, RemotePod
from providers.services import capacity_poll
from tests.factories import SandboxAccountFactory
from workloads.lifecycle import calls, services


def sandbox_account(tenant, name: str, rank: int = 100, **settings: Any):
    account = SandboxAccountFactory(tenant=tenant, name=name, preference_rank=rank,
                                    settings={"seed": "test", "boot_seconds": 0, **settings})
    capacity_poll(accounts=[account])
    account.refresh_from_db()
    return account


def workload(tenant, project, owner, **kw):
    defaults = dict(name="train", image="nvcr.io/nvidia/pytorch:24.08-py3", gpu_class="A100-80", gpu_count=1)
    defaults.update(kw)
    return services.workload_create(tenant=tenant, project=project, owner=owner, **defaults)


def launch(w):
    (pod,) = services.workload_launch(workload=w, enqueue=False)
    return services.pod_provision(pod_id=str(pod.pk))


class WorkerKilled(BaseException):
    """Simulates the worker process dying mid-launch (not an Exception: nothing catches it)."""


class Faulty(ProviderAdapter):
    """Wraps a real adapter; ``plan`` maps an account id to a callable deciding each launch's
    fault. Faults: "hang" (never answers), "hide" (created, then invisible to listings and
    the caller times out), "timeout_after_create", "kill_after_create", "kill_before_call",
    or an exception instance to raise before anything is created."""

    info = None  # set per instance

    def __init__(self, inner: ProviderAdapter, fault: str | BaseException | None, hidden: set[str], release: threading.Event):
        self.inner, self.fault, self.hidden, self.release = inner, fault, hidden, release
        self.info = inner.info
        self.credentials, self.settings = inner.credentials, inner.settings

    def verify(self):
        return self.inner.verify()

    def list_offers(self):
        return self.inner.list_offers()

    def launch(self, request):
        from providers.adapters.base import LaunchTimeout

        f = self.fault
        if isinstance(f, BaseException):
            raise f
        if f == "hang":
            self.release.wait(30)
            raise LaunchTimeout("never answered")
        if f == "kill_before_call":
            raise WorkerKilled()
        remote = self.inner.launch(request)
        if f == "hide":
            self.hidden.add(remote.external_id)
            raise LaunchTimeout("read timeout")
        if f == "timeout_after_create":
            raise LaunchTimeout("read timeout")
        if f == "kill_after_create":
            raise WorkerKilled()
        return remote

    def get(self, external_id: str) -> RemotePod:
        return self.inner.get(external_id)

    def terminate(self, external_id: str) -> None:
        return self.inner.terminate(external_id)

    def list_pods(self):
        return [p for p in self.inner.list_pods() if p.external_id not in self.hidden]


class FaultInjector:
    """Patch ``workloads.lifecycle.calls.adapter`` so launches at chosen accounts misbehave."""

    def __init__(self, monkeypatch):
        self.faults: dict[str, Any] = {}  # account id -> fault or callable() -> fault
        self.hidden: set[str] = set()
        self.release = threading.Event()
        real = calls.adapter

        def adapter(account):
            inner = real(account)
            fault = self.faults.get(str(account.pk))
            if callable(fault) and not isinstance(fault, BaseException):
                fault = fault()
            return Faulty(inner, fault, self.hidden, self.release)

        monkeypatch.setattr(calls, "adapter", adapter)

    def reveal(self):
        """The provider's listing catches up: hidden resources become visible."""
        self.hidden.clear()
