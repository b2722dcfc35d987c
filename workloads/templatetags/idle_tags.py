"""``{% idle_countdown pod %}``: the auto-shutdown countdown and the "no telemetry" warning,
rendered inside the pod page's live panel (refreshed with it every 2 s)."""

from __future__ import annotations

from django import template

from workloads.autoshutdown.idle import pod_idle_status

register = template.Library()


@register.inclusion_tag("workloads/partials/idle_countdown.html")
def idle_countdown(pod):
    return {"pod": pod, "idle": pod_idle_status(pod)}
