"""Resolves the current tenant (organization) for each request from the session."""

from __future__ import annotations

from django.http import HttpRequest

from .audit import reset_current_request, set_current_request
from .selectors import memberships_for_user

SESSION_KEY = "current_tenant_id"


class CurrentTenantMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest):
        request.tenant = None
        request.membership = None
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            memberships = memberships_for_user(user)
            chosen = None
            wanted = request.session.get(SESSION_KEY)
            for m in memberships:
                if str(m.tenant_id) == wanted:
                    chosen = m
                    break
            if chosen is None and memberships:
                chosen = memberships[0]
                request.session[SESSION_KEY] = str(chosen.tenant_id)
            if chosen is not None:
                request.membership = chosen
                request.tenant = chosen.tenant
            request.memberships = memberships
        token = set_current_request(request)
        try:
            return self.get_response(request)
        finally:
            reset_current_request(token)
