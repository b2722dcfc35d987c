from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url

from provisioner.tables import table_response
from tenants.access import get_for_tenant_or_404, require_member
from tenants.models import Tenant
from tenants.permissions import MANAGE_PROVIDERS

from . import services, wizard
from .adapters.registry import provider_info
from .forms import AccountEditForm, CredentialsReplaceForm
from .models import ProviderAccount
from .prerequisites import prerequisites_for
from .selectors import offers_for, provider_accounts_for_tenant
from .tables import OfferFilter, OfferTable


@login_required
def provider_list(request: HttpRequest) -> HttpResponse:
    """Accounts with their health; the table refreshes itself (HTMX) while the page is open."""
    membership = require_member(request)
    accounts = provider_accounts_for_tenant(membership.tenant)
    template = "providers/partials/accounts_table.html" if request.htmx else "providers/list.html"
    return render(request, template, {"accounts": accounts})


@login_required
def provider_detail(request: HttpRequest, pk) -> HttpResponse:
    account = get_for_tenant_or_404(request, ProviderAccount, pk=pk)
    if request.htmx and request.GET.get("part") == "health":
        return render(request, "providers/partials/account_health.html", {"account": account})
    offers = OfferFilter(request.GET, queryset=offers_for(request.membership, account), request=request,
                         with_provider=False)
    return table_response(request, "providers/detail.html", OfferTable(offers.qs, exclude=("provider_account",)),
                          offers, {"account": account, "removed": "removed_at" in (account.settings or {}),
                                   "has_live_pods": services.account_has_live_pods(account)})


@login_required
def capacity(request: HttpRequest) -> HttpResponse:
    """Every offer of the enabled accounts: filters (``?gpu_class=A100&market=spot``), sorting and
    pages in the URL."""
    membership = require_member(request)
    offers = OfferFilter(request.GET, queryset=offers_for(membership), request=request)
    return table_response(request, "providers/capacity.html", OfferTable(offers.qs), offers)


# --- the connection wizard ----------------------------------------------------------------------


def _wizard_url(state: wizard.WizardState, step: str) -> str:
    return reverse("providers:wizard_step", kwargs={"wizard_id": state.id, "step": step})


def _render_step(request: HttpRequest, tenant: Tenant, state: wizard.WizardState | None, step: str,
                 form=None, *, status: int = 200, push: str | None = None, error: str = "") -> HttpResponse:
    """Render one step: the whole page, or just the wizard panel for an HTMX request."""
    summary_error = wizard.ensure_offer_summary(state) if step in ("regions", "gpu") else ""
    if form is None and step != "review":
        form = wizard.build_form(step, state, request, tenant)
    ctx: dict = {
        "step": step, "steps": [(s, wizard.STEP_TITLES[s]) for s in wizard.STEPS], "state": state, "form": form,
        "step_index": wizard.STEPS.index(step), "previous": wizard.previous_step(step), "error": error,
        "action": _wizard_url(state, step) if state else reverse("providers:connect"),
        "cancel_url": reverse("providers:wizard_cancel", kwargs={"wizard_id": state.id}) if state else "",
        "done_steps": [s for s in wizard.STEPS if state and state.clean(s) is not None],
        "info": state.info if state and state.kind else None,
    }
    if step == "provider":
        ctx["cards"], ctx["recommendation"] = wizard.provider_cards(tenant)
        ctx["start_with_sandbox"] = wizard.starts_with_sandbox(tenant)
        ctx["selected_kind"] = (form["kind"].value() if form is not None else "") or (
            "sandbox" if ctx["start_with_sandbox"] else "")
    elif step == "credentials":
        ctx["stored"] = sorted(state.credentials()) if state else []
        ctx["prerequisites"] = prerequisites_for(state.kind) if state else ()
    elif step in ("regions", "gpu"):
        ctx["error"] = ctx["error"] or summary_error
        ctx["summary"] = state.offer_summary
        ctx["classes_in_countries"] = wizard.offered_classes(state)[1]
        if step == "gpu":
            facts = (state.offer_summary or {}).get("classes", {})
            ctx["gpu_rows"] = [(choice, facts.get(choice.data["value"], {})) for choice in form["default_gpu_class"]]
    elif step == "review":
        ctx["offers"], offers_error = wizard.review_offers(state)
        ctx["error"] = ctx["error"] or offers_error
        ctx["offer_total"] = len(ctx["offers"])
        # the offers as fetched (not saved yet), in the wizard's order: the capacity table, unsorted, one page
        ctx["offers_table"] = OfferTable(ctx["offers"][:wizard.REVIEW_OFFER_ROWS], orderable=False, order_by=(),
                                         exclude=("provider_account",), empty_text=OfferTable.empty_all)
        ctx["offers"] = ctx["offers"][:wizard.REVIEW_OFFER_ROWS]
        ctx["summary_rows"] = _review_summary(state)
    if state is not None:
        wizard.WizardStore(request).save(state)  # the summary/offers cache may have changed
    # a history restore (browser Back, no htmx snapshot: see panel.html) swaps in a whole page
    fragment = request.htmx and not request.htmx.history_restore_request
    template = "providers/wizard/panel.html" if fragment else "providers/wizard/wizard.html"
    response = render(request, template, ctx, status=status)
    if push and request.htmx:
        push_url(response, push)
    return response


def _review_summary(state: wizard.WizardState) -> list[tuple[str, str, str]]:
    creds, cap = state.clean("credentials") or {}, state.clean("cap") or {}
    regions, gpu = state.clean("regions") or {}, state.clean("gpu") or {}
    info = state.info
    where = ", ".join(regions.get("allowed_countries") or []) or "anywhere"
    if regions.get("allowed_regions"):
        where += " · regions " + ", ".join(regions["allowed_regions"])
    settings = creds.get("settings") or {}
    rows = [
        ("provider", "Provider", info.label),
        ("credentials", "Account name", creds.get("name", "")),
        ("credentials", "Credentials", "verified live · stored encrypted" if info.credential_fields else "none needed"),
        ("cap", "Spending cap", f"${cap.get('spending_cap_usd', '')} per {cap.get('spending_cap_period', '')}"),
        ("regions", "Where pods may run", where),
        ("gpu", "Default GPU class", gpu.get("default_gpu_class", "")),
    ]
    if settings.get("base_url"):
        rows.insert(3, ("credentials", "API base URL", settings["base_url"]))
    return rows


def _goto(request: HttpRequest, tenant: Tenant, state: wizard.WizardState, step: str) -> HttpResponse:
    """After a successful step: the next step's panel in place (HTMX, URL pushed) or a redirect."""
    url = _wizard_url(state, step)
    if request.htmx:
        return _render_step(request, tenant, state, step, push=url)
    return redirect(url)


@login_required
def connect(request: HttpRequest) -> HttpResponse:
    """Wizard entry, step 1: pick a provider (tiles, one recommended). Nothing is stored
    until a provider is picked; then the wizard gets its id and moves to the credentials."""
    membership = require_member(request, MANAGE_PROVIDERS)
    tenant = membership.tenant
    if request.method == "POST":
        form = wizard.build_form("provider", None, request, tenant, data=request.POST)
        if form.is_valid():
            store = wizard.WizardStore(request)
            state = store.create(tenant)
            wizard.apply_step("provider", state, form, request.POST)
            store.save(state)
            return _goto(request, tenant, state, "credentials")
        return _render_step(request, tenant, None, "provider", form)
    return _render_step(request, tenant, None, "provider")


@login_required
def wizard_step(request: HttpRequest, wizard_id: str, step: str) -> HttpResponse:
    membership = require_member(request, MANAGE_PROVIDERS)
    tenant = membership.tenant
    if step not in wizard.STEPS:
        raise Http404("No such step")
    store = wizard.WizardStore(request)
    state = store.get(wizard_id, tenant)
    if state is None:
        messages.warning(request, "That wizard has expired or was finished; start again.")
        return HttpResponseClientRedirect(reverse("providers:connect")) if request.htmx else redirect("providers:connect")
    first_open = state.first_incomplete()
    if wizard.STEPS.index(step) > wizard.STEPS.index(first_open):
        # no skipping ahead: go to the first step that still needs input
        return _goto(request, tenant, state, first_open) if request.htmx else redirect(_wizard_url(state, first_open))
    if request.method != "POST":
        return _render_step(request, tenant, state, step)

    nav = request.POST.get("_nav", "next")
    if nav == "back" and step != "provider":
        if step != "review":  # keep what was typed on this step, unvalidated
            wizard.save_draft(step, state, wizard.build_form(step, state, request, tenant), request.POST)
            store.save(state)
        return _goto(request, tenant, state, wizard.previous_step(step) or "provider")
    if step == "review":
        try:
            account = wizard.finish(state, tenant, request.user)
        except wizard.ConnectFailed as exc:
            return _render_step(request, tenant, state, exc.step, error=exc.message, push=_wizard_url(state, exc.step))
        store.drop(state.id)
        messages.success(request, f"Connected {account.name}. {account.offer_count} offers are live.")
        url = reverse("providers:detail", kwargs={"pk": account.pk})
        return HttpResponseClientRedirect(url) if request.htmx else redirect(url)

    form = wizard.build_form(step, state, request, tenant, data=request.POST, files=request.FILES)
    if form.is_valid():
        wizard.apply_step(step, state, form, request.POST)
        store.save(state)
        return _goto(request, tenant, state, wizard.next_step(step))
    wizard.save_draft(step, state, form, request.POST)
    store.save(state)
    return _render_step(request, tenant, state, step, form)


@login_required
@require_POST
def wizard_cancel(request: HttpRequest, wizard_id: str) -> HttpResponse:
    """Abandon the wizard: its session entry (with the sealed credentials) is dropped."""
    require_member(request, MANAGE_PROVIDERS)
    wizard.WizardStore(request).drop(wizard_id)
    messages.info(request, "Cancelled. Nothing was saved.")
    url = reverse("providers:list")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


# --- account management ----------------------------------------------------------------------------


@login_required
def account_edit(request: HttpRequest, pk) -> HttpResponse:
    account = get_for_tenant_or_404(request, ProviderAccount, MANAGE_PROVIDERS, pk=pk)
    allow = wizard.base_url_allowed(request)
    form = AccountEditForm(request.POST or None, account=account, allow_base_url=allow)
    if request.method == "POST" and form.is_valid():
        services.provider_account_update(account=account, **form.changes())
        messages.success(request, f"Saved {account.name}. Region changes apply from the next poll.")
        return redirect("providers:detail", pk=account.pk)
    return render(request, "providers/edit.html", {"account": account, "form": form})


@login_required
def account_credentials(request: HttpRequest, pk) -> HttpResponse:
    account = get_for_tenant_or_404(request, ProviderAccount, MANAGE_PROVIDERS, pk=pk)
    info = provider_info(account.kind)
    form = CredentialsReplaceForm(request.POST or None, request.FILES or None, account=account, info=info)
    if request.method == "POST" and form.is_valid():
        services.provider_account_credentials_replace(account=account, credentials=form.credentials, verify=False)
        messages.success(request, f"Replaced the credentials of {account.name} (verified live).")
        return redirect("providers:detail", pk=account.pk)
    multipart = any(cf.file for cf in info.credential_fields)
    return render(request, "providers/credentials.html", {"account": account, "form": form, "info": info,
                                                          "multipart": multipart})


@login_required
@require_POST
def account_poll(request: HttpRequest, pk) -> HttpResponse:
    """Poll this account now; answers with its refreshed health (HTMX) or the account page."""
    account = get_for_tenant_or_404(request, ProviderAccount, MANAGE_PROVIDERS, pk=pk)
    services.capacity_poll(accounts=[account])
    account.refresh_from_db()
    if request.htmx:
        if request.POST.get("from") == "list":
            return render(request, "providers/partials/accounts_table.html",
                          {"accounts": provider_accounts_for_tenant(account.tenant)})
        return HttpResponseClientRedirect(reverse("providers:detail", kwargs={"pk": account.pk}))
    messages.info(request, f"Polled {account.name}: {account.offer_count} offers"
                  + (f" — {account.last_error}" if account.last_error else "."))
    return redirect("providers:detail", pk=account.pk)


@login_required
@require_POST
def account_remove(request: HttpRequest, pk) -> HttpResponse:
    account = get_for_tenant_or_404(request, ProviderAccount, MANAGE_PROVIDERS, pk=pk)
    name = account.name
    try:
        outcome = services.provider_account_remove(account=account)
    except services.ProviderAccountBusy as exc:
        messages.error(request, str(exc))
        return redirect("providers:detail", pk=account.pk)
    if outcome == "archived":
        messages.success(request, f"Removed {name}. Its credentials were deleted; past pods and costs keep their history.")
    else:
        messages.success(request, f"Removed {name}.")
    return redirect("providers:list")
