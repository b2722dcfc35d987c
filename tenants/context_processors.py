from .permissions import ROLE_CAPABILITIES


def current_tenant(request):
    membership = getattr(request, "membership", None)
    caps = ROLE_CAPABILITIES.get(membership.role, frozenset()) if membership else frozenset()
    return {
        "current_tenant": getattr(request, "tenant", None),
        "current_membership": membership,
        "user_memberships": getattr(request, "memberships", []),
        "can": {c: True for c in caps},
    }
