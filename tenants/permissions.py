"""Roles -> permissions. The single table the UI and the server both consult.

Tenant-wide capabilities come from the member's role. Project-level grants are stored as
django-guardian object permissions on each Project (so a developer can be limited to some
projects later); ``membership_sync_permissions`` keeps them in step with the role.
"""

from __future__ import annotations

from .models import Role

# capability names used across the app
PROVISION = "provision_compute"
USE_CREDENTIALS = "use_credentials"
VIEW_SPEND = "view_spend"
MANAGE_BUDGETS = "manage_budgets"
MANAGE_PROVIDERS = "manage_providers"
MANAGE_MEMBERS = "manage_members"
VIEW = "view"
VIEW_AUDIT = "view_audit"

ROLE_CAPABILITIES: dict[str, frozenset[str]] = {
    Role.OWNER: frozenset({VIEW, PROVISION, USE_CREDENTIALS, VIEW_SPEND, MANAGE_BUDGETS, MANAGE_PROVIDERS, MANAGE_MEMBERS, VIEW_AUDIT}),
    Role.ADMIN: frozenset({VIEW, PROVISION, USE_CREDENTIALS, VIEW_SPEND, MANAGE_BUDGETS, MANAGE_PROVIDERS, VIEW_AUDIT}),
    Role.FINANCE: frozenset({VIEW, VIEW_SPEND, MANAGE_BUDGETS}),
    Role.DEVELOPER: frozenset({VIEW, PROVISION, USE_CREDENTIALS, VIEW_SPEND}),
    Role.VIEWER: frozenset({VIEW}),
}

# capabilities that are granted per project through guardian
PROJECT_PERMISSIONS = {PROVISION: "tenants.provision_compute", VIEW_SPEND: "tenants.view_spend",
                       MANAGE_BUDGETS: "tenants.manage_budgets"}


def role_has(role: str, capability: str) -> bool:
    return capability in ROLE_CAPABILITIES.get(role, frozenset())
