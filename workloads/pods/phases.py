"""The pod page's phase bar (requested → placed → provisioning → running) from the pod's timestamps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from workloads.models import LIVE_POD_STATES, LaunchAttempt, Pod, PodState

# --- the phase bar ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Phase:
    key: str
    label: str
    hint: str
    start: datetime | None
    end: datetime | None
    current: bool

    @property
    def seconds(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, (self.end - self.start).total_seconds())

    @property
    def duration(self) -> str:
        s = self.seconds
        if s is None:
            return ""
        s = int(round(s))
        if s < 60:
            return f"{s} s"
        if s < 3600:
            return f"{s // 60} min {s % 60:02d} s"
        if s < 86400:
            return f"{s // 3600} h {(s % 3600) // 60:02d} min"
        return f"{s // 86400} d {(s % 86400) // 3600} h"


def pod_phases(pod: Pod, *, now: datetime) -> list[Phase]:
    """requested → placed → provisioning → running, from the pod's own timestamps:
    requested_at, provisioning_at (a worker took the request and started placing it), the first
    accepted launch (LaunchAttempt launched/adopted: the provider has it) and started_at.
    A phase that has not started has no times; the current one runs until ``now``."""
    placed_at = (LaunchAttempt.objects.filter(pod=pod, outcome__in=(LaunchAttempt.Outcome.LAUNCHED,
                                                                      LaunchAttempt.Outcome.ADOPTED))
                 .order_by("at").values_list("at", flat=True).first())
    if placed_at is None and pod.started_at and pod.provisioning_at:
        placed_at = pod.provisioning_at  # adopted or imported without an attempt row: no placing time known
    end = pod.ended_at or (pod.stopped_at if pod.state == PodState.STOPPED else None)
    marks = [pod.requested_at, pod.provisioning_at, placed_at, pod.started_at]
    specs = [("requested", "Requested", "waiting for a worker to pick the request up"),
             ("placed", "Placing", "choosing an offer and asking the provider, failing over if refused"),
             ("provisioning", "Provisioning", "the provider boots the machine and pulls the image"),
             ("running", "Running", "")]
    last = max((i for i, m in enumerate(marks) if m is not None), default=0)
    phases = []
    for i, (key, label, hint) in enumerate(specs):
        start = marks[i]
        nxt = next((m for m in marks[i + 1:] if m is not None), None)
        if start is None:
            phases.append(Phase(key, label, hint, None, None, False))
            continue
        stop = nxt or end or (now if pod.state in LIVE_POD_STATES else None)
        phases.append(Phase(key, label, hint, start, stop, i == last and pod.state in LIVE_POD_STATES))
    return phases


def phase_widths(phases: list[Phase]) -> list[int]:
    """Percent widths for the bar: proportional to the durations, each known phase at least 8 %."""
    secs = [p.seconds or 0.0 for p in phases]
    known = [i for i, p in enumerate(phases) if p.seconds is not None]
    if not known:
        return [25] * len(phases)
    total = sum(secs) or 1.0
    raw = [max(8.0, 100 * secs[i] / total) if i in known else 0.0 for i in range(len(phases))]
    scale = 100 / (sum(raw) or 1.0)
    return [int(round(r * scale)) for r in raw]


