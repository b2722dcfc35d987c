"""EC2 scheduled events as provider-side notices (``DescribeInstanceStatus``).

AWS, EC2 User Guide, "Scheduled events for your instances": AWS schedules a stop, a retirement,
a reboot or maintenance of an instance and publishes it, days ahead for most, in the instance's
status (``InstanceStatuses[].Events[]``); an instance-stop or instance-retirement event ends the
instance (stopped, or terminated when its root device is an instance store), a reboot brings it
back after minutes, system-maintenance may not be felt at all. EC2 API Reference,
"InstanceStatusEvent": ``Code`` is one of the five below, ``NotBefore`` the earliest scheduled
start (our deadline), and a completed event is still described for up to a week with a
``Description`` starting "[Completed]" (a canceled one, per the User Guide, "[Canceled]").
Spot interruptions are not scheduled events: the agent reads those from instance metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .base import ProviderNotice

# event code -> notice kind (base.NOTICE_INTERRUPTING / NOTICE_ADVISORY)
EVENT_KINDS = {
    "instance-stop": "stop",
    "instance-retirement": "terminate",
    "instance-reboot": "reboot",
    "system-reboot": "reboot",
    "system-maintenance": "maintenance",
}
FINISHED_PREFIXES = ("[Completed]", "[Canceled]")
# DescribeInstanceStatus: "you can specify up to 100 instance IDs per call" (EC2 API Reference)
MAX_IDS = 100


def event_notice(event: dict[str, Any]) -> ProviderNotice | None:
    """The notice one ``InstanceStatusEvent`` gives, or None (finished, canceled or unknown code)."""
    kind = EVENT_KINDS.get(str(event.get("Code") or ""))
    description = str(event.get("Description") or "")
    if kind is None or description.startswith(FINISHED_PREFIXES):
        return None
    return ProviderNotice(kind, event.get("NotBefore"), source=f"EC2 scheduled event {event['Code']}",
                          detail=description[:200])


def instance_notice(events: Iterable[dict[str, Any]]) -> ProviderNotice | None:
    """The notice that matters most among an instance's events: one that ends the instance before
    one that does not, then the earliest ``NotBefore``."""
    notices = [n for n in map(event_notice, events) if n is not None]
    if not notices:
        return None
    return min(notices, key=lambda n: (not n.interrupting, n.deadline is None, n.deadline))


def notices_by_instance(statuses: Iterable[dict[str, Any]]) -> dict[str, ProviderNotice]:
    """``{instance id: notice}`` from ``DescribeInstanceStatus``'s ``InstanceStatuses``."""
    out = {}
    for status in statuses:
        notice = instance_notice(status.get("Events") or [])
        if notice is not None:
            out[status["InstanceId"]] = notice
    return out
