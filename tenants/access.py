"""The access helpers every tenant-scoped view starts with, and the restricted queryset.

Rules: an object of another organization (or a missing one) is a 404, never a 403, so that
ids of other tenants cannot be probed. A member lacking the capability gets a 403.

One decision, read in one place: a member may use a capability on a project when their role
has it (``permissions.ROLE_CAPABILITIES``) AND, for the per-project capabilities
(``permissions.PROJECT_PERMISSIONS``), they hold the django-guardian object permission on that
project (granted with the role, revocable per project on the Members page). ``project_ids_for``
answers it for one member; ``TenantQuerySet.restrict`` and ``get_for_tenant_or_404`` apply it.
Grants are read from the database on every request (memoized on the request's membership only),
so a revoked grant loses access at once.
"""

from __future__ import annotations

import uuid
from typing import TypeVar

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models.functions import Cast, Replace
from django.http import Http404, HttpRequest

from .models import Membership, Project, Tenant
from .permissions import PROJECT_PERMISSIONS, role_has

M = TypeVar("M", bound=models.Model)


def project_scope(membership: Membership | None, capability: str) -> tuple[frozenset, bool]:
    """(ids of the tenant's projects on which ``membership`` may use ``capability``, whether that
    is every project of the tenant). Role × per-project grant; two queries at most, memoized on
    the membership (which the middleware loads afresh for each request)."""
    if membership is None or not role_has(membership.role, capability):
        return frozenset(), False
    cache = membership.__dict__.setdefault("_project_scope", {})
    if capability not in cache:
        projects = Project.objects.filter(tenant_id=membership.tenant_id)
        if capability in PROJECT_PERMISSIONS:
            # every project and whether the member holds the grant: one query. A grant is the user's
            # django-guardian object permission on the project, nothing else (no superuser, global
            # or group bypass). guardian keeps the pk as text (str(uuid)); SQLite stores a UUID as
            # 32 hex digits, PostgreSQL casts it with dashes: compare both without dashes.
            rows = list(projects.annotate(key=_undashed(Cast("pk", models.CharField()))).annotate(
                held=models.Exists(_grants(membership.user_id, capability).filter(key=models.OuterRef("key"))))
                .values_list("pk", "held"))
        else:
            rows = [(pk, True) for pk in projects.values_list("pk", flat=True)]
        granted = frozenset(pk for pk, held in rows if held)
        cache[capability] = (granted, len(granted) == len(rows))
    return cache[capability]


def _undashed(expr):
    return Replace(expr, models.Value("-"), models.Value(""))


def _grants(user_id, capability: str):
    """The user's guardian object permissions for ``capability`` on projects, keyed by undashed pk."""
    from guardian.models import UserObjectPermission

    app_label, codename = PROJECT_PERMISSIONS[capability].split(".")
    return UserObjectPermission.objects.filter(
        user_id=user_id, permission__codename=codename, permission__content_type__app_label=app_label,
        permission__content_type__model="project").annotate(key=_undashed("object_pk"))


def project_ids_for(membership: Membership | None, capability: str) -> frozenset:
    return project_scope(membership, capability)[0]


def may_on_project(membership: Membership | None, capability: str, project_id) -> bool:
    """May the member use ``capability`` on this project (``None``: the whole organization,
    which needs the capability on every project)?"""
    ids, every = project_scope(membership, capability)
    if project_id is None:
        return every
    try:
        return (project_id if isinstance(project_id, uuid.UUID) else uuid.UUID(str(project_id))) in ids
    except ValueError:
        return False


class TenantQuerySet(models.QuerySet):
    """Every tenant-owned model's manager derives from this; ``for_tenant`` is the one filter,
    ``restrict`` the one filter with the member's capability (and per-project grants) applied."""

    def for_tenant(self, tenant: Tenant | None):
        if tenant is None:
            return self.none()
        return self.filter(tenant=tenant)

    def restrict(self, membership: Membership | None, action: str = "view"):
        """The rows of the member's organization on which they may ``action`` (``restricted``)."""
        return restricted(self, membership, action)


def restricted(queryset: models.QuerySet[M], membership: Membership | None, action: str = "view") -> models.QuerySet[M]:
    """The rows of ``queryset`` (a model with a ``tenant`` foreign key) of the member's
    organization on which they may ``action``; none when their role lacks it.

    A model with a ``project`` foreign key is limited to the projects the member holds ``action``
    on; its rows without a project (organization-wide, e.g. a budget for the whole organization)
    need ``action`` on every project. ``TenantQuerySet.restrict`` is this; models of this app
    (which ``TenantQuerySet`` cannot be imported into) call it directly."""
    if membership is None or not role_has(membership.role, action):
        return queryset.none()
    qs = queryset.filter(tenant_id=membership.tenant_id)
    if action in PROJECT_PERMISSIONS and _project_field(queryset.model):
        ids, every = project_scope(membership, action)
        if not every:
            qs = qs.filter(project_id__in=ids)
    return qs


def _project_field(model) -> bool:
    try:
        field = model._meta.get_field("project")
    except Exception:
        return False
    return getattr(field, "related_model", None) is Project


def current_membership(request: HttpRequest) -> Membership | None:
    return getattr(request, "membership", None)


def require_member(request: HttpRequest, capability: str = "view") -> Membership:
    """The current user's membership in the current tenant, with ``capability`` checked.

    No tenant / not a member -> 404; member without the capability -> 403. For a per-project
    capability the role is enough here; what it may touch is narrowed by ``restrict``.
    """
    membership = current_membership(request)
    if membership is None:
        raise Http404("No organization")
    if not role_has(membership.role, capability):
        raise PermissionDenied(f"Your role ({membership.get_role_display()}) cannot do this.")
    return membership


def require_project(membership: Membership, capability: str, project_id) -> None:
    """403 unless the member may use ``capability`` on this project (``None``: organization-wide)."""
    if not may_on_project(membership, capability, project_id):
        raise PermissionDenied("You have no access to this project." if project_id is not None
                               else "This needs access to every project of the organization.")


def get_for_tenant_or_404(request: HttpRequest, queryset: models.QuerySet[M] | type[M], capability: str = "view", **lookup) -> M:
    """Fetch one object of the current tenant or 404; then check the capability (403), on the
    object's project too when the capability is granted per project."""
    membership = require_member(request, "view")
    qs = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    try:
        obj = qs.filter(tenant=membership.tenant).get(**lookup)
    except (qs.model.DoesNotExist, ValueError, TypeError, ValidationError):  # malformed UUIDs: ValidationError
        raise Http404("Not found") from None
    if not role_has(membership.role, capability):
        raise PermissionDenied(f"Your role ({membership.get_role_display()}) cannot do this.")
    if capability in PROJECT_PERMISSIONS and _project_field(type(obj)):
        require_project(membership, capability, obj.project_id)
    return obj
