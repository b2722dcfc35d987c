"""Spot interruption notices: what a provider says before it takes a pod back.

Sources: the in-pod agent's heartbeat (``notice`` field: AWS IMDSv2 ``spot/instance-action`` and
rebalance recommendations, GCP ``instance/preempted``, Azure Scheduled Events ``Preempt``; see
``workloads/agent/provisioner_agent.py`` for the documents each follows) and the provider's API as
the sync reads it (``RemotePod.notice``: EC2 scheduled events, Kubernetes DisruptionTarget and node
termination taints, the Sandbox's notices with a configurable lead time).

A notice is recorded once per pod (a repeat with the same kind and deadline changes nothing) as
an "interruption notice" event carrying the provider's deadline; ``workloads.interruptions.actions``
then acts on it. A rebalance recommendation (AWS) only says the risk is elevated: it is recorded
but nothing is replaced for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from providers.adapters.base import ProviderNotice
from provisioner import clock
from provisioner.inputs import bad_text_reason
from workloads.lifecycle.transitions import pod_event
from workloads.models import LIVE_POD_STATES, Lifecycle, Pod, PodEvent

PROVIDERS = {"aws": "AWS", "gcp": "GCP", "azure": "Azure", "sandbox": "Sandbox", "kubernetes": "Kubernetes",
             "coreweave": "CoreWeave"}
# aws instance-action values (terminate/stop/hibernate), gcp/azure/sandbox preemption, aws rebalance
INTERRUPTING_KINDS = ("terminate", "stop", "hibernate", "preempt")
KINDS = (*INTERRUPTING_KINDS, "rebalance")  # what the agent may report
# provider-side kinds that take nothing away: the pod comes back (reboot), may be affected
# (maintenance) or is at elevated risk (rebalance). Recorded, never replaced for.
ADVISORY_KINDS = ("rebalance", "reboot", "maintenance")
ADVISORY_TITLES = {"rebalance": "Rebalance recommendation", "reboot": "Scheduled reboot",
                   "maintenance": "Scheduled maintenance"}
# a provider-side notice days ahead (an EC2 retirement) is recorded at once, but its replacement is
# placed only this long before the deadline: long enough for a GPU pod to boot, short enough not to
# pay for two pods for days
ACT_AHEAD = timedelta(minutes=30)
_KEYS = {"provider", "kind", "deadline", "detail"}
# a deadline further out than this is not a spot notice (AWS: 2 min, GCP/Azure: ~30 s); one far
# in the past is a clock gone wrong. Both are refused rather than guessed at.
MAX_AHEAD = timedelta(hours=1)
MAX_BEHIND = timedelta(hours=1)


# clouds whose instance metadata the agent reads for notices (AGENT_NOTICE_CLOUD)
AGENT_WATCHED_KINDS = ("aws", "gcp", "azure")


def notice_watch_env(kind: str, *, spot: bool) -> dict[str, str]:
    """Tell the in-pod agent which metadata service publishes this pod's notices (spot pods on
    AWS, GCP or Azure; every other provider publishes nothing a container can read)."""
    return {"AGENT_NOTICE_CLOUD": kind} if spot and kind in AGENT_WATCHED_KINDS else {}


class NoticeInvalid(ValueError):
    """The heartbeat's ``notice`` field is not the documented object."""


@dataclass(frozen=True)
class Notice:
    provider: str
    kind: str
    deadline: datetime | None = None
    detail: str = ""
    source: str = ""  # provider-side notices: the signal (an EC2 event code, a node taint)

    @property
    def interrupting(self) -> bool:
        return self.kind in INTERRUPTING_KINDS

    def as_json(self, *, received_at: datetime) -> dict[str, Any]:
        return {"provider": self.provider, "kind": self.kind, "detail": self.detail, "source": self.source,
                "deadline": self.deadline.isoformat() if self.deadline else None,
                "received_at": received_at.isoformat()}


def notice_parse(value: Any, *, now: datetime | None = None) -> Notice:
    """Validate the heartbeat's ``notice``: ``{"provider": "aws"|"gcp"|"azure", "kind":
    "terminate"|"stop"|"hibernate"|"preempt"|"rebalance", "deadline": ISO 8601 with offset or null,
    "detail": "..."}``. Raises NoticeInvalid with a message for the 400."""
    if not isinstance(value, dict):
        raise NoticeInvalid("notice must be an object")
    unknown = set(value) - _KEYS
    if unknown:
        raise NoticeInvalid(f"notice has unknown field(s): {', '.join(sorted(map(str, unknown)))[:100]}")
    provider, kind = value.get("provider"), value.get("kind")
    if not isinstance(provider, str) or provider not in AGENT_WATCHED_KINDS:
        raise NoticeInvalid("notice.provider must be one of aws, gcp, azure")
    if not isinstance(kind, str) or kind not in KINDS:
        raise NoticeInvalid(f"notice.kind must be one of {', '.join(KINDS)}")
    detail = value.get("detail", "")
    if not isinstance(detail, str) or len(detail) > 200:
        raise NoticeInvalid("notice.detail must be a string of at most 200 characters")
    why = bad_text_reason(detail)
    if why:
        raise NoticeInvalid(f"notice.detail: {why}")
    deadline = value.get("deadline")
    if deadline is not None:
        if not isinstance(deadline, str) or len(deadline) > 40:
            raise NoticeInvalid("notice.deadline must be an ISO 8601 time or null")
        try:
            deadline = datetime.fromisoformat(deadline.replace("Z", "+00:00"))
        except ValueError:
            raise NoticeInvalid("notice.deadline must be an ISO 8601 time or null") from None
        if deadline.tzinfo is None:
            raise NoticeInvalid("notice.deadline must carry a UTC offset")
        deadline = deadline.astimezone(UTC)  # the event says "UTC": an agent's +02:00 is converted, not relabelled
        now = now or clock.now()
        if not now - MAX_BEHIND <= deadline <= now + MAX_AHEAD:
            raise NoticeInvalid("notice.deadline is more than an hour away from now")
    return Notice(provider=provider, kind=kind, deadline=deadline, detail=detail)


def time_left(deadline: datetime, now: datetime) -> str:
    """"29 s", "2 h 05 min", "13 d 4 h": how far off a deadline is, readable at any range."""
    left = max(0, int((deadline - now).total_seconds()))
    if left < 3600:
        return f"{left} s"
    if left < 86400:
        return f"{left // 3600} h {left % 3600 // 60:02d} min"
    return f"{left // 86400} d {left % 86400 // 3600} h"


def _at(deadline: datetime, now: datetime) -> str:
    same_day = deadline.date() == now.date()
    return f"{deadline:%H:%M:%S} UTC" if same_day else f"{deadline:%Y-%m-%d %H:%M} UTC"


def describe(notice: Notice, *, now: datetime) -> str:
    who = PROVIDERS.get(notice.provider, notice.provider)
    via = f" [{notice.source}]" if notice.source else ""
    if not notice.interrupting:
        title = ADVISORY_TITLES.get(notice.kind, notice.kind)
        if notice.kind == "rebalance":
            return f"{title} from {who}{via}: this spot pod is at elevated risk of interruption"
        when = f" from {_at(notice.deadline, now)}" if notice.deadline else ""
        return f"{title} from {who}{via}{when}: the pod comes back after it, nothing is replaced"
    if notice.deadline is None:
        return f"Interruption notice from {who} ({notice.kind}){via}: the provider gave no deadline"
    return (f"Interruption notice from {who} ({notice.kind}){via}: the provider takes this pod at "
            f"{_at(notice.deadline, now)}, {time_left(notice.deadline, now)} from now")


def acts_now(notice: Notice, *, now: datetime) -> bool:
    """Whether an interrupting notice's replacement is placed now (see ACT_AHEAD)."""
    return notice.interrupting and (notice.deadline is None or notice.deadline - now <= ACT_AHEAD)


def notice_record(*, pod: Pod, notice: Notice) -> bool:
    """Record ``notice`` on ``pod`` (once) and act on it. Returns True when it was new.

    A rebalance recommendation never replaces an interruption notice already held.
    """
    now = clock.now()
    with transaction.atomic():
        locked = Pod.objects.select_for_update().filter(pk=pod.pk, state__in=LIVE_POD_STATES).first()
        if locked is None:
            return False
        held = locked.interruption_notice or {}
        if held.get("kind") in INTERRUPTING_KINDS and not notice.interrupting:
            return False
        same_deadline = held.get("deadline") == (notice.deadline.isoformat() if notice.deadline else None)
        if held.get("kind") == notice.kind and same_deadline:
            return False
        fields = {"interruption_notice": notice.as_json(received_at=now),
                  "interruption_deadline": notice.deadline if notice.interrupting else None}
        Pod.objects.filter(pk=pod.pk).update(**fields)
        for k, v in fields.items():
            setattr(pod, k, v)
        pod_event(pod, "notice", describe(notice, now=now), provider=notice.provider, notice_kind=notice.kind,
                  deadline=notice.deadline.isoformat() if notice.deadline else None, detail=notice.detail)
    if acts_now(notice, now=now):
        _act_on_commit(pod)
    return True


def _act_on_commit(pod: Pod) -> None:
    from .actions import notice_act  # acting builds on recording, not the reverse

    transaction.on_commit(lambda: notice_act(pod_id=str(pod.pk)))


def notice_withdrawn(*, pod: Pod) -> bool:
    """The provider no longer publishes the notice the pod holds (an EC2 event canceled or completed,
    a node taint removed) and the pod still runs: the notice is cleared, with an event, so the pod
    page shows no countdown and billing does not end at a deadline that will not come. Only
    provider-side notices (they carry their ``source``) are the sync's to withdraw; the agent's are
    not in the provider's answer. A replacement already placed for it stays. Returns True when cleared."""
    if not (pod.interruption_notice or {}).get("source"):
        return False
    with transaction.atomic():
        locked = Pod.objects.select_for_update().filter(pk=pod.pk).first()
        held = (locked.interruption_notice or {}) if locked else {}
        if not held.get("source"):
            return False
        Pod.objects.filter(pk=pod.pk).update(interruption_notice={}, interruption_deadline=None)
        pod.interruption_notice, pod.interruption_deadline = {}, None
        who = PROVIDERS.get(held.get("provider"), held.get("provider"))
        pod_event(pod, "notice", f"{who} no longer announces its notice ({held.get('kind')}, {held['source']}): "
                                 "the pod runs on", provider=held.get("provider"), notice_kind=held.get("kind"),
                  withdrawn=True)
    return True


def on_notice_order(pod: Pod, *, now: datetime | None = None) -> dict[str, Any] | None:
    """What the agent must run for a job under notice: the workload's on-notice command and the
    seconds left, or None. Sent in every heartbeat answer until the pod ends (the agent runs it once)."""
    notice = pod.interruption_notice or {}
    command = pod.workload.on_notice_command
    if not command or pod.workload.lifecycle != Lifecycle.JOB or notice.get("kind") not in INTERRUPTING_KINDS:
        return None
    now = now or clock.now()
    left = max(0, int((pod.interruption_deadline - now).total_seconds())) if pod.interruption_deadline else None
    return {"command": command, "seconds_left": left,
            "deadline": pod.interruption_deadline.isoformat() if pod.interruption_deadline else None}


def notice_from_provider(*, pod: Pod, notice: ProviderNotice) -> bool:
    """A provider-side notice seen by the sync (``RemotePod.notice``). Returns True when it was new.

    Every sync sees it again: the same notice costs no lock; it only places the replacement once
    its deadline comes within ACT_AHEAD (an EC2 retirement is published days ahead)."""
    held = pod.interruption_notice or {}
    deadline = notice.deadline.isoformat() if notice.deadline else None
    if held.get("kind") == notice.kind and held.get("deadline") == deadline:
        recorded = Notice(provider=held.get("provider", ""), kind=notice.kind, deadline=notice.deadline)
        if acts_now(recorded, now=clock.now()) and not Pod.objects.filter(replaces=pod).exists():
            _act_on_commit(pod)
        return False
    kind = pod.provider_account.kind if pod.provider_account_id else "provider"
    return notice_record(pod=pod, notice=Notice(provider=kind, kind=notice.kind, deadline=notice.deadline,
                                                 detail=notice.detail or "reported by the provider's API",
                                                 source=notice.source))


def on_notice_deliver(pod: Pod) -> dict[str, Any] | None:
    """The on-notice order for the heartbeat answer; the first delivery is recorded as an event
    (the pod page shows that the command went to the container, and with how long left)."""
    order = on_notice_order(pod)
    if order is not None and not PodEvent.objects.filter(pod=pod, kind="on_notice").exists():
        left = f"{order['seconds_left']} s left" if order["seconds_left"] is not None else "no deadline given"
        pod_event(pod, "on_notice", f"On-notice command sent to the agent ({left}): {order['command'][:200]}",
                  seconds_left=order["seconds_left"])
    return order
