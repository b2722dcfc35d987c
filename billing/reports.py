"""Saved dashboard views ("reports"): a name for a set of Spend filters, shared with the
organization. Writes only; the list is read by ``billing.selectors.saved_views_for_tenant``."""

from __future__ import annotations

from django.db import transaction
from django.http import QueryDict

from provisioner import clock
from tenants.models import Tenant

from . import dashboard
from .models import SavedSpendView

NAME_MAX = 80


class SavedViewInvalid(ValueError):
    """The name was refused; the message says why."""


def normalized_query(tenant: Tenant, query: str) -> str:
    """The filters of ``query`` as the dashboard reads them: unknown parameters, other
    organizations' project or provider ids and malformed dates are dropped, so a saved view
    can only ever hold what the page itself would have put in its URL."""
    projects, providers = dashboard.name_maps(tenant)
    f = dashboard.parse_filters(QueryDict(query or ""), projects=projects, providers=providers,
                                today=clock.now().date())
    return f.query()


@transaction.atomic
def saved_view_save(*, tenant: Tenant, user, name: str, query: str) -> SavedSpendView:
    """Save (or overwrite, by name) the organization's view ``name`` with these filters."""
    name = " ".join((name or "").split())
    if not name:
        raise SavedViewInvalid("Give the view a name.")
    if len(name) > NAME_MAX:
        raise SavedViewInvalid(f"Keep the name under {NAME_MAX} characters.")
    view, _ = SavedSpendView.objects.update_or_create(
        tenant=tenant, name=name, defaults={"query": normalized_query(tenant, query), "created_by": user})
    return view


def saved_view_delete(*, view: SavedSpendView) -> None:
    view.delete()
