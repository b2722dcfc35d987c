"""``{% interruption_notice pod %}``: the provider's notice, its deadline counting down and the
replacement, inside the pod page's live panel (refreshed with it every 2 s);
``{% interruptions_survived workload %}``: how many interruptions it came through with no gap."""

from __future__ import annotations

from django import template

from provisioner import clock
from workloads.notice_actions import replacement_of, survived_without_downtime
from workloads.notices import INTERRUPTING_KINDS, PROVIDERS

register = template.Library()


@register.inclusion_tag("workloads/partials/notice.html")
def interruption_notice(pod):
    notice = pod.interruption_notice or {}
    if not notice:
        return {"notice": None}
    now = clock.now()
    deadline = pod.interruption_deadline
    left = max(0, int((deadline - now).total_seconds())) if deadline else None
    return {"notice": notice, "pod": pod, "provider": PROVIDERS.get(notice.get("provider"), notice.get("provider")),
            "interrupting": notice.get("kind") in INTERRUPTING_KINDS, "deadline": deadline, "seconds_left": left,
            "replacement": replacement_of(pod), "live": pod.is_live}


@register.simple_tag
def interruptions_survived(workload) -> int:
    return survived_without_downtime(workload)
