"""Shared fixtures: an organization with three personas (owner, read-only member, outsider)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from providers.services import capacity_poll  # noqa: E402
from tenants.models import Role  # noqa: E402

from .factories import SandboxAccountFactory, make_member, make_tenant  # noqa: E402

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium", "args": CHROMIUM_FLAGS}


@pytest.fixture(autouse=True)
def _eager_celery(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    settings.SANDBOX_BOOT_SECONDS = 0


@pytest.fixture
def tenant(db):
    return make_tenant("Acme", "acme")


@pytest.fixture
def other_tenant(db):
    return make_tenant("Globex", "globex")


@pytest.fixture
def owner(tenant):
    return make_member(tenant, Role.OWNER, "owner")


@pytest.fixture
def developer(tenant):
    return make_member(tenant, Role.DEVELOPER, "developer")


@pytest.fixture
def finance(tenant):
    return make_member(tenant, Role.FINANCE, "finance")


@pytest.fixture
def viewer(tenant):
    return make_member(tenant, Role.VIEWER, "viewer")


@pytest.fixture
def outsider(other_tenant):
    return make_member(other_tenant, Role.OWNER, "outsider")


@pytest.fixture
def sandbox(tenant):
    account = SandboxAccountFactory(tenant=tenant)
    capacity_poll(accounts=[account])
    account.refresh_from_db()
    return account


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def project(tenant):
    return tenant.projects.get(name="Default")
