"""The access helpers every tenant-scoped view starts with, and the restricted queryset.

Rules: an object of another organization (or a missing one) is a 404, never a 403, so that
ids of other tenants cannot be probed. A member lacking the capability gets a 403.
"""

from __future__ import annotations

from typing import TypeVar

from django.core.exceptions import PermissionDenied
from django.db import models
from django.http import Http404, HttpRequest

from .models import Membership, Tenant
from .permissions import role_has

M = TypeVar("M", bound=models.Model)


class TenantQuerySet(models.QuerySet):
    """Every tenant-owned model's manager derives from this; ``for_tenant`` is the one filter."""

    def for_tenant(self, tenant: Tenant | None):
        if tenant is None:
            return self.none()
        return self.filter(tenant=tenant)


def current_membership(request: HttpRequest) -> Membership | None:
    return getattr(request, "membership", None)


def require_member(request: HttpRequest, capability: str = "view") -> Membership:
    """The current user's membership in the current tenant, with ``capability`` checked.

    No tenant / not a member -> 404; member without the capability -> 403.
    """
    membership = current_membership(request)
    if membership is None:
        raise Http404("No organization")
    if not role_has(membership.role, capability):
        raise PermissionDenied(f"Your role ({membership.get_role_display()}) cannot do this.")
    return membership


def get_for_tenant_or_404(request: HttpRequest, queryset: models.QuerySet[M] | type[M], capability: str = "view", **lookup) -> M:
    """Fetch one object of the current tenant or 404; then check the capability (403)."""
    membership = require_member(request, "view")
    qs = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    try:
        obj = qs.filter(tenant=membership.tenant).get(**lookup)
    except (qs.model.DoesNotExist, ValueError, TypeError):
        raise Http404("Not found") from None
    except Exception as exc:  # malformed UUIDs raise ValidationError
        from django.core.exceptions import ValidationError

        if isinstance(exc, ValidationError):
            raise Http404("Not found") from None
        raise
    if not role_has(membership.role, capability):
        raise PermissionDenied(f"Your role ({membership.get_role_display()}) cannot do this.")
    return obj
