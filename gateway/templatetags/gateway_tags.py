from django import template

from gateway.selectors import endpoint_view

register = template.Library()


@register.simple_tag
def gateway_endpoint(workload):
    """``{% gateway_endpoint workload as gw %}``: the stable URL and each pod's place in the route."""
    return endpoint_view(workload)


@register.filter
def route_state(gw, pod_id) -> str:
    return gw.pods.get(str(pod_id), "") if gw else ""
