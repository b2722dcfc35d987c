from django import template

from tenants.permissions import PROJECT_PERMISSIONS

register = template.Library()


@register.simple_tag
def has_grant(grants: dict, project_pk, capability: str) -> bool:
    codename = PROJECT_PERMISSIONS.get(capability, "").split(".")[-1]
    return codename in grants.get(project_pk, set())
