"""Hooks other apps attach to without workloads importing them (apps above workloads, such as
the service gateway, listen here; the dependency direction stays tenants ← providers ← workloads).

* ``pod_changed`` is sent after the commit of every pod state change (``workloads.lifecycle.transitions``), with
  ``pod_id``, ``workload_id`` and ``state``.
* ``retire_requested`` is sent when a pod is scaled down (a burst window's end), with ``pod_id`` and
  ``reason``; a receiver answering True took it over (the gateway: out of the route, terminated
  after the drain), else ``retire_pod`` terminates it at once.
* ``retire_gate`` is asked before the old pod of a move is terminated (``workloads.placement.move.move_finish``),
  with ``new`` and ``old``; a receiver answering False holds the retirement (the gateway holds it
  until the new pod passed its readiness check and the old one drained).
"""

from django.dispatch import Signal

pod_changed = Signal()
retire_requested = Signal()
retire_gate = Signal()


def retire_pod(*, pod_id: str, reason: str) -> None:
    """Scale a pod down: drained first where a gateway routes it, terminated (verified) at once
    otherwise."""
    if any(answer is True for _, answer in retire_requested.send(sender=None, pod_id=pod_id, reason=reason)):
        return
    from .lifecycle.services import pod_terminate

    pod_terminate(pod_id=pod_id, reason=reason)


def may_retire(*, new, old) -> bool:
    return all(answer is not False for _, answer in retire_gate.send(sender=None, new=new, old=old))
