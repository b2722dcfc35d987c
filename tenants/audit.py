"""The audit log writer. Services call ``audit_record`` for every security-relevant change.

The request (when there is one) is taken from a context variable set by the middleware, so
services do not need to thread it through their signatures.
"""

from __future__ import annotations

import contextvars
from typing import Any

from django.db import models

from provisioner import clock
from provisioner.inputs import request_id_from_header

from .models import AuditEvent, Tenant

_current_request: contextvars.ContextVar = contextvars.ContextVar("audit_request", default=None)

SENSITIVE_KEYS = ("password", "secret", "token", "api_key", "apikey", "key", "credential", "kubeconfig", "private")


def set_current_request(request) -> contextvars.Token:
    if request is not None and not hasattr(request, "request_id"):
        # bounded and sanitized: the id lands in a 64-character column and in log lines
        request.request_id = request_id_from_header(request.headers.get("X-Request-ID"))
    return _current_request.set(request)


def reset_current_request(token: contextvars.Token) -> None:
    _current_request.reset(token)


def _scrub(details: dict[str, Any]) -> dict[str, Any]:
    """Audit details never carry secret values, only the fact that they changed."""
    out: dict[str, Any] = {}
    for k, v in details.items():
        if any(s in k.lower() for s in SENSITIVE_KEYS):
            out[k] = "[changed]" if v else ""
        elif isinstance(v, dict):
            out[k] = _scrub(v)
        else:
            out[k] = v if isinstance(v, (str, int, float, bool, type(None), list)) else str(v)
    return out


def audit_record(*, tenant: Tenant | Any, action: str, target: models.Model | None = None, actor=None,
                 details: dict[str, Any] | None = None) -> AuditEvent:
    """Append one audit event. ``actor`` defaults to the current request's user."""
    request = _current_request.get()
    if actor is None and request is not None and getattr(request, "user", None) is not None and request.user.is_authenticated:
        actor = request.user
    tenant_id = tenant.pk if isinstance(tenant, models.Model) else tenant
    ip = None
    ua = ""
    if request is not None:
        ip = request.META.get("REMOTE_ADDR") or None
        ua = request.META.get("HTTP_USER_AGENT", "")[:300]
    return AuditEvent.objects.create(
        tenant_id=tenant_id, actor=actor, actor_name=getattr(actor, "username", "") or "system",
        action=action, target_type=target._meta.label if target is not None else "",
        target_id=str(target.pk) if target is not None else "", target_repr=str(target)[:200] if target is not None else "",
        details=_scrub(details or {}), ip=ip, user_agent=ua,
        request_id=getattr(request, "request_id", "") if request is not None else "", at=clock.now(),
    )
