"""A small process supervisor for the embedded stack (``manage.py runstack``).

Each child (web, worker, beat) is restarted when it exits, with exponential backoff, and a
line says so; the others keep running. A child that stayed up for ``healthy_after`` seconds
starts again from the shortest delay. Clock, sleep and process start are injectable so the
policy is tested without real processes.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    restarts: int = 0
    failures_in_a_row: int = 0
    restart_at: float | None = None  # set while waiting out a backoff
    # when set, start_all waits until it answers True before starting the next children
    ready: Callable[[], bool] | None = None


@dataclass
class Supervisor:
    children: list[Child]
    log: Callable[[str], None]
    spawn: Callable[[Sequence[str]], subprocess.Popen] = field(default=lambda argv: subprocess.Popen(argv))
    clock: Callable[[], float] = time.monotonic
    first_delay: float = 1.0
    max_delay: float = 60.0
    healthy_after: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    ready_timeout: float = 60.0
    ready_poll: float = 0.2

    def start_all(self) -> None:
        """Start the children in order. One with a ``ready`` check is waited for first, so the web
        server loads alone instead of sharing the CPU with three other Django processes (on a
        2-core machine its first answer came 3-4 times later); the rest start once it answers,
        exits, or ``ready_timeout`` passes."""
        for child in self.children:
            self._start(child)
            if child.ready is not None:
                self._wait_ready(child)

    def _wait_ready(self, child: Child) -> None:
        deadline = self.clock() + self.ready_timeout
        while not child.ready():
            if child.process.poll() is not None:
                return  # tick() reports the exit and restarts it
            if self.clock() >= deadline:
                self.log(f"{child.name}: not answering after {self.ready_timeout:.0f} s; starting the others anyway")
                return
            self.sleep(self.ready_poll)

    def _start(self, child: Child) -> None:
        child.process = self.spawn(child.argv)
        child.started_at = self.clock()
        child.restart_at = None

    def delay_for(self, failures_in_a_row: int) -> float:
        return min(self.max_delay, self.first_delay * 2 ** max(0, failures_in_a_row - 1))

    def tick(self) -> None:
        """Notice exits, schedule restarts, start children whose backoff is over."""
        now = self.clock()
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    child.restarts += 1
                    self.log(f"{child.name}: restarting (restart {child.restarts})")
                    self._start(child)
                continue
            code = child.process.poll() if child.process else None
            if code is None:
                continue
            ran = now - child.started_at
            child.failures_in_a_row = 1 if ran >= self.healthy_after else child.failures_in_a_row + 1
            delay = self.delay_for(child.failures_in_a_row)
            child.restart_at = now + delay
            self.log(f"{child.name} exited with code {code} after {ran:.0f} s; "
                     f"restarting in {delay:.0f} s, the rest keep running")

    def stop_all(self, grace: float = 15.0) -> None:
        live = [c.process for c in self.children if c.process and c.process.poll() is None]
        for p in live:
            p.terminate()
        deadline = self.clock() + grace
        for p in live:
            try:
                p.wait(timeout=max(0.1, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                p.kill()
