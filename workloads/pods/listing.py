"""Reads for the pod list (filters, sorting, pages: all in the URL) and the pod page's phase bar."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.core.paginator import Page, Paginator
from django.db.models import Q, QuerySet

from workloads.models import FINAL_POD_STATES, LIVE_POD_STATES, LaunchAttempt, Pod, PodState

PAGE_SIZE = 25
# ?sort= value -> ORDER BY; "-" prefix = descending. Unknown values fall back to newest first.
SORTS: dict[str, tuple[str, ...]] = {
    "requested": ("requested_at",), "-requested": ("-requested_at",),
    "name": ("workload__name", "-requested_at"), "-name": ("-workload__name", "-requested_at"),
    "state": ("state", "-requested_at"), "-state": ("-state", "-requested_at"),
    "price": ("price_usd_per_hour", "-requested_at"), "-price": ("-price_usd_per_hour", "-requested_at"),
    "project": ("project__name", "-requested_at"), "-project": ("-project__name", "-requested_at"),
}
DEFAULT_SORT = "-requested"
STATUS_FILTERS = {"live": LIVE_POD_STATES, "ended": FINAL_POD_STATES, **{s.value: (s.value,) for s in PodState}}


@dataclass(frozen=True)
class PodListQuery:
    """The list's filters as read from the URL (invalid values are dropped, never a 500)."""

    status: str = ""
    project: str = ""
    provider: str = ""
    owner: str = ""
    q: str = ""
    sort: str = DEFAULT_SORT

    @classmethod
    def from_get(cls, get: Any) -> PodListQuery:
        status = get.get("status", "")
        sort = get.get("sort", DEFAULT_SORT)
        return cls(status=status if status in STATUS_FILTERS else "", project=_uuid_or_blank(get.get("project", "")),
                   provider=_uuid_or_blank(get.get("provider", "")), owner=(get.get("owner", "") or "")[:150],
                   q=(get.get("q", "") or "").strip()[:120], sort=sort if sort in SORTS else DEFAULT_SORT)

    def apply(self, pods: QuerySet[Pod]) -> QuerySet[Pod]:
        if self.status:
            pods = pods.filter(state__in=STATUS_FILTERS[self.status])
        if self.project:
            pods = pods.filter(project_id=self.project)
        if self.provider:
            pods = pods.filter(provider_account_id=self.provider)
        if self.owner:
            pods = pods.filter(workload__owner__username=self.owner)
        if self.q:
            pods = pods.filter(Q(workload__name__icontains=self.q) | Q(external_id__icontains=self.q)
                               | Q(region__icontains=self.q) | Q(gpu_class__icontains=self.q))
        return pods.select_related("workload__owner").order_by(*SORTS[self.sort])

    @property
    def active(self) -> bool:
        return bool(self.status or self.project or self.provider or self.owner or self.q)


def _uuid_or_blank(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return ""


def pod_page(pods: QuerySet[Pod], query: PodListQuery, page_number: Any) -> Page:
    """One page of the filtered, sorted pods (an out-of-range page number shows the last page)."""
    return Paginator(query.apply(pods), PAGE_SIZE).get_page(page_number)


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


