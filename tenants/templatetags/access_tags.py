"""``{% project_may "provision_compute" obj.project_id as ok %}``: the same role × per-project grant
decision as the server's (``tenants.access.may_on_project``), so no page offers a button that the
server would refuse."""

from __future__ import annotations

from django import template

from tenants.access import may_on_project

register = template.Library()


@register.simple_tag(takes_context=True)
def project_may(context, capability: str, project_id) -> bool:
    request = context.get("request")
    return may_on_project(getattr(request, "membership", None), capability, project_id)
