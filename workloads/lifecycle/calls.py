"""Calls to provider adapters from the lifecycle: one place to get an adapter, and a timeout
around every call, so that a hung provider cannot hang failover or reconciliation.

``adapter`` is the seam the chaos tests wrap with fault injection.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from django.db import connections

from providers.adapters.base import ProviderAdapter, TransientError
from providers.services import adapter_for

T = TypeVar("T")


def adapter(account) -> ProviderAdapter:
    """The adapter for a provider account (tests wrap this with fault injection)."""
    return adapter_for(account)


def attempt_timeout() -> float:
    return float(settings.PROVIDER_ATTEMPT_TIMEOUT_SECONDS)


def call_with_timeout(fn: Callable[..., T], *args: Any, timeout: float,
                      timeout_error: type[TransientError] = TransientError, what: str = "provider call") -> T:
    """Run ``fn(*args)`` in a worker thread and give up after ``timeout`` seconds.

    On timeout ``timeout_error`` is raised and the thread is abandoned (daemon): whatever it
    does later at the provider is found by reconciliation through the pod's tag.

    The Sandbox keeps its "cloud" in our database. A caller inside a transaction (a test, or
    a service that chose to) lends its connection to the worker so the worker sees the same
    rows; outside a transaction the worker opens and closes its own connection.
    """
    shared = {c.alias: c for c in connections.all(initialized_only=True) if c.in_atomic_block}
    box: dict[str, Any] = {}
    done = threading.Event()

    def run() -> None:
        try:
            for alias, conn in shared.items():
                connections[alias] = conn
            box["value"] = fn(*args)
        except BaseException as exc:  # handed to the caller, whatever it is
            box["error"] = exc
        finally:
            for conn in connections.all(initialized_only=True):
                if conn.alias not in shared:
                    conn.close()
            for alias, conn in shared.items():
                del connections[alias]
                conn.dec_thread_sharing()
            done.set()

    for conn in shared.values():
        conn.inc_thread_sharing()
    worker = threading.Thread(target=run, name="provider-call", daemon=True)
    worker.start()
    if not done.wait(timeout):
        raise timeout_error(f"{what} gave no answer within {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]
