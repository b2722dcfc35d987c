"""factory-boy factories shared by every test module."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from providers.models import ProviderAccount
from tenants.models import Role
from tenants.services import membership_set, tenant_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.django.Password("pw-test-123")


def make_tenant(name: str = "Org", slug: str | None = None, **kw):
    return tenant_create(name=name, slug=slug or name.lower().replace(" ", "-"), **kw)


def make_member(tenant, role: str = Role.DEVELOPER, username: str | None = None):
    user = UserFactory(username=username) if username else UserFactory()
    membership_set(tenant=tenant, user=user, role=role)
    return user


class SandboxAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ProviderAccount

    kind = "sandbox"
    name = factory.Sequence(lambda n: f"Sandbox {n}")
    credentials = factory.LazyFunction(dict)
    settings = factory.LazyFunction(lambda: {"seed": "test", "boot_seconds": 0})
