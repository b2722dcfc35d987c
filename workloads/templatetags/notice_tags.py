"""``{% interruption_notice pod %}``: the provider's notice, its deadline counting down and the
replacement, inside the pod page's live panel (refreshed with it every 2 s);
``{% interruptions_survived workload %}``: how many interruptions it came through with no gap."""

from __future__ import annotations

from django import template
from django.utils.dateparse import parse_datetime

from provisioner import clock
from workloads.interruptions.actions import replacement_of, survived_without_downtime
from workloads.interruptions.notices import ACT_AHEAD, ADVISORY_TITLES, INTERRUPTING_KINDS, PROVIDERS, time_left

register = template.Library()


@register.inclusion_tag("workloads/partials/notice.html")
def interruption_notice(pod):
    notice = pod.interruption_notice or {}
    if not notice:
        return {"notice": None}
    now = clock.now()
    interrupting = notice.get("kind") in INTERRUPTING_KINDS
    # an advisory notice (reboot, maintenance) keeps its deadline in the notice only: nothing ends then
    deadline = pod.interruption_deadline if interrupting else parse_datetime(notice.get("deadline") or "")
    return {"notice": notice, "pod": pod, "provider": PROVIDERS.get(notice.get("provider"), notice.get("provider")),
            "interrupting": interrupting, "title": ADVISORY_TITLES.get(notice.get("kind"), "Notice"),
            "deadline": deadline, "left": time_left(deadline, now) if deadline else None,
            "far": bool(deadline) and deadline.date() != now.date(),
            "replacement": replacement_of(pod), "live": pod.is_live,
            "replaced_later": (f"{int(ACT_AHEAD.total_seconds() // 60)} min" if interrupting and pod.is_live and deadline
                               and deadline - now > ACT_AHEAD else "")}


@register.simple_tag
def interruptions_survived(workload) -> int:
    return survived_without_downtime(workload)
