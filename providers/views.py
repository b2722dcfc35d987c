from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import MANAGE_PROVIDERS

from . import services
from .adapters.registry import all_provider_infos
from .forms import ConnectSandboxForm
from .models import ProviderAccount, ProviderKind
from .selectors import offers_for_tenant, provider_accounts_for_tenant


@login_required
def provider_list(request: HttpRequest) -> HttpResponse:
    membership = require_member(request)
    accounts = provider_accounts_for_tenant(membership.tenant)
    return render(request, "providers/list.html", {"accounts": accounts})


@login_required
def provider_detail(request: HttpRequest, pk) -> HttpResponse:
    account = get_for_tenant_or_404(request, ProviderAccount, pk=pk)
    offers = account.offers.order_by("gpu_class", "gpu_count", "price_usd_per_hour")[:500]
    return render(request, "providers/detail.html", {"account": account, "offers": offers})


@login_required
def capacity(request: HttpRequest) -> HttpResponse:
    membership = require_member(request)
    offers = (offers_for_tenant(membership.tenant).select_related("provider_account")
              .order_by("gpu_class", "gpu_count", "price_usd_per_hour")[:1000])
    return render(request, "providers/capacity.html", {"offers": offers})


@login_required
def connect(request: HttpRequest) -> HttpResponse:
    """Provider choice tiles; the Sandbox connects with a one-step form."""
    membership = require_member(request, MANAGE_PROVIDERS)
    infos = all_provider_infos()
    form = ConnectSandboxForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        d = form.cleaned_data
        try:
            account = services.provider_account_create(
                tenant=membership.tenant, kind=ProviderKind.SANDBOX, name=d["name"], credentials={},
                settings={"seed": str(membership.tenant.pk)}, spending_cap_usd=d["spending_cap_usd"],
                spending_cap_period=d["spending_cap_period"], allowed_countries=d["countries"],
                default_gpu_class=d["default_gpu_class"], created_by=request.user,
            )
        except IntegrityError:
            form.add_error("name", "You already have a provider account with this name.")
        else:
            services.capacity_poll(accounts=[account])
            messages.success(request, f"Connected {account.name}. {account.offers.count()} offers are live.")
            return redirect("providers:detail", pk=account.pk)
    return render(request, "providers/connect.html", {"infos": infos, "form": form})
