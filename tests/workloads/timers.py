"""A stand-in for the broker's delayed delivery, on the product clock.

Tests run Celery eagerly, which runs a task sent with ``eta``/``countdown`` at once. ``Timers``
holds such sends instead, and runs each one when the frozen clock reaches its time
(``run_due``), so a test sees both *when* a task was scheduled for and what it does then.
Sends without a delay still run eagerly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery.app.task import Task

from provisioner import clock


@dataclass(order=True)
class Timer:
    when: datetime
    seq: int
    task: Any = field(compare=False)
    args: tuple = field(compare=False, default=())
    kwargs: dict = field(compare=False, default_factory=dict)

    @property
    def name(self) -> str:
        return self.task.name


class Timers:
    def __init__(self, monkeypatch):
        self.pending: list[Timer] = []
        self.sent: list[Timer] = []  # every delayed send, run or not
        real = Task.apply_async

        def apply_async(task, args=None, kwargs=None, *rest, eta=None, countdown=None, **options):
            if eta is None and countdown is None:
                return real(task, args, kwargs, *rest, **options)
            when = eta if eta is not None else clock.now() + timedelta(seconds=countdown)
            timer = Timer(when, len(self.sent), task, tuple(args or ()), dict(kwargs or {}))
            self.sent.append(timer)
            self.pending.append(timer)
            return None

        monkeypatch.setattr(Task, "apply_async", apply_async)

    def named(self, name: str) -> list[Timer]:
        return [t for t in self.sent if t.name == name]

    def run_due(self) -> int:
        """Run every held task whose time has come (earliest first, including ones they send)."""
        ran = 0
        while True:
            due = sorted(t for t in self.pending if t.when <= clock.now())
            if not due:
                return ran
            timer = due[0]
            self.pending.remove(timer)
            timer.task(*timer.args, **timer.kwargs)
            ran += 1
