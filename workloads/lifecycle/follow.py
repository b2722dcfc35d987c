"""When to look at a provisioning pod again (issue 18 §2).

A provider that says when it expects the pod to run (``RemotePod.expected_ready_at``, kept on the
pod as ``ready_expected_at``) gets a check just before that moment, then one every
``WATCH_INTERVAL_SECONDS`` until the pod runs or ``WATCH_WINDOW_SECONDS`` have passed: our database
says "running" a fraction of a second after the provider does, whatever the boot time. One check
task asks in a loop for at most ``WATCH_HOLD_SECONDS`` and then hands over to a new task with a
countdown, so a worker is never held for the whole window, and a broker that delivers slowly
(the embedded one polls its file) is not on the path of every 0.1 s check. A provider
that says nothing (and a pod still booting after the window) is checked on the backing-off
``FOLLOW_DELAYS``; the periodic sync stays the safety net.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

FOLLOW_DELAYS = [1, 1, 2, 2, 3, 5, 5, 8, 10, 15, 20, 30, 30, 60, 60]
WATCH_LEAD_SECONDS = 0.5  # the first check this long before the expected time (a busy worker starts late)
WATCH_INTERVAL_SECONDS = 0.1  # then one this often (about half of it is the median lag it adds) ...
WATCH_WINDOW_SECONDS = 5.0  # ... until this long after the expected time
WATCH_HOLD_SECONDS = 1.0  # the longest one check task keeps asking before handing over
sleep = time.sleep  # (tests advance a frozen clock instead)


def first_check_in(*, now: datetime, expected: datetime | None) -> float:
    """Seconds from the launch to the first follow-up check."""
    if expected is None:
        return float(FOLLOW_DELAYS[0])
    return max(0.0, (expected - now).total_seconds() - WATCH_LEAD_SECONDS)


def watching(*, now: datetime, expected: datetime | None) -> bool:
    """Is the pod due to run any moment now (inside the window around the expected time)?"""
    if expected is None:
        return False
    return -WATCH_WINDOW_SECONDS <= (expected - now).total_seconds() <= WATCH_LEAD_SECONDS


def watch(refresh: Callable, *, now: Callable[[], datetime]):
    """Ask (``refresh()`` returns the pod) every WATCH_INTERVAL_SECONDS while the pod is due to
    run, for at most WATCH_HOLD_SECONDS; returns the last pod seen."""
    from workloads.models import PodState

    pod = refresh()
    for _ in range(round(WATCH_HOLD_SECONDS / WATCH_INTERVAL_SECONDS)):
        if pod.state != PodState.PROVISIONING or not watching(now=now(), expected=pod.ready_expected_at):
            break
        sleep(WATCH_INTERVAL_SECONDS)
        pod = refresh()
    return pod


def next_check(*, now: datetime, expected: datetime | None, step: int) -> tuple[float, int] | None:
    """(seconds until the next check, its back-off step) for a pod still provisioning, or None
    when the back-off is spent.

    Before the expected time: just before it; around it: every WATCH_INTERVAL_SECONDS (neither
    spends a back-off step, and a revised estimate moves them). After the window, or with no
    estimate: the back-off."""
    if expected is not None:
        to_go = (expected - now).total_seconds()
        if to_go > WATCH_LEAD_SECONDS:
            return to_go - WATCH_LEAD_SECONDS, step
        if to_go >= -WATCH_WINDOW_SECONDS:
            return WATCH_INTERVAL_SECONDS, step
    if step + 1 >= len(FOLLOW_DELAYS):
        return None
    return float(FOLLOW_DELAYS[step + 1]), step + 1
