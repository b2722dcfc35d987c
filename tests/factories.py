"""factory-boy factories shared by every test module."""

from __future__ import annotations

from decimal import Decimal

import factory
from django.contrib.auth import get_user_model

from billing.models import Budget
from providers.models import Offer, ProviderAccount
from provisioner import clock
from tenants.models import Role
from tenants.services import membership_set, tenant_create
from workloads.models import Pod, PodState, Workload


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


class ProviderAccountFactory(factory.django.DjangoModelFactory):
    """A provider account row (no live verification): pass ``tenant``; ``kind`` defaults to sandbox."""

    class Meta:
        model = ProviderAccount

    kind = "sandbox"
    name = factory.LazyAttributeSequence(lambda a, n: f"{a.kind} {n}")
    credentials = factory.LazyFunction(dict)
    settings = factory.LazyFunction(dict)


class SandboxAccountFactory(ProviderAccountFactory):
    name = factory.Sequence(lambda n: f"Sandbox {n}")
    settings = factory.LazyFunction(lambda: {"seed": "test", "boot_seconds": 0})


class WorkloadFactory(factory.django.DjangoModelFactory):
    """A workload declared through ``workloads.lifecycle.services.workload_create`` (its defaults apply,
    e.g. services have auto-shutdown off): pass ``tenant``, ``project`` and ``owner``."""

    class Meta:
        model = Workload

    name = "train"
    image = "nvcr.io/nvidia/pytorch:24.08-py3"
    gpu_class = "A100-80"
    gpu_count = 1

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from workloads.lifecycle.services import workload_create

        return workload_create(**kwargs)


class PodFactory(factory.django.DjangoModelFactory):
    """A pod row of ``workload`` (its tenant, project and GPU), requested now by the app's clock.
    Tests that need a real launch drive the services instead; this is for state set up around one."""

    class Meta:
        model = Pod

    workload = None  # required
    tenant = factory.LazyAttribute(lambda p: p.workload.tenant)
    project = factory.LazyAttribute(lambda p: p.workload.project)
    gpu_class = factory.LazyAttribute(lambda p: p.workload.gpu_class)
    gpu_count = factory.LazyAttribute(lambda p: p.workload.gpu_count)
    state = PodState.PROVISIONING
    requested_at = factory.LazyFunction(clock.now)


class OfferFactory(factory.django.DjangoModelFactory):
    """One capacity row of ``provider_account`` (its tenant and kind), fetched now."""

    class Meta:
        model = Offer

    provider_account = None  # required
    tenant = factory.LazyAttribute(lambda o: o.provider_account.tenant)
    kind = factory.LazyAttribute(lambda o: o.provider_account.kind)
    gpu_class = "H100"
    gpu_count = 1
    region = "sbx-us-east"
    country = "US"
    price_per_hour = Decimal("2.50")
    price_usd_per_hour = factory.LazyAttribute(lambda o: o.price_per_hour)
    available = 4
    fetched_at = factory.LazyFunction(clock.now)


class BudgetFactory(factory.django.DjangoModelFactory):
    """A budget created through ``billing.budgets.budget_create`` (audited): pass ``tenant``."""

    class Meta:
        model = Budget

    name = factory.Sequence(lambda n: f"Budget {n}")
    amount_usd = Decimal("100")

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        from billing.budgets import budget_create

        return budget_create(**kwargs)
