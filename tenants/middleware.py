"""Resolves the current tenant (organization) for each request from the session."""

from __future__ import annotations

from urllib.parse import urlencode

from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from .audit import reset_current_request, set_current_request
from .selectors import memberships_for_user

SESSION_KEY = "current_tenant_id"
# reachable before choosing an organization: the chooser itself, leaving, joining, assets, pod agents
_OPEN_PREFIXES = ("/static/", "/agent/", "/invite/", "/admin/")


class CurrentTenantMiddleware:
    """The active organization is the one chosen in this session. A member of exactly one
    organization has it chosen for them; a member of several chooses explicitly (the chooser,
    ``switch_tenant``): never "the first by name" - acting in the wrong organization with
    another organization's role is what this prevents."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        request.tenant = None
        request.membership = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            memberships = memberships_for_user(user)
            wanted = request.session.get(SESSION_KEY)
            chosen = next((m for m in memberships if str(m.tenant_id) == wanted), None)
            if chosen is None and len(memberships) == 1:
                chosen = memberships[0]
                request.session[SESSION_KEY] = str(chosen.tenant_id)
            if chosen is not None:
                request.membership = chosen
                request.tenant = chosen.tenant
            request.memberships = memberships
            if chosen is None and len(memberships) > 1 and not self._open(request.path):
                return HttpResponseRedirect(f"{reverse('switch_tenant')}?{urlencode({'next': request.get_full_path()})}")
        token = set_current_request(request)
        try:
            return self.get_response(request)
        finally:
            reset_current_request(token)

    @staticmethod
    def _open(path: str) -> bool:
        return path.startswith(_OPEN_PREFIXES) or path in (reverse("switch_tenant"), reverse("logout"), reverse("login"))
