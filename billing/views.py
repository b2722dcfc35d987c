"""Spend dashboard, CSV export, budgets and alerts pages. Thin: access check, read model,
template."""

from __future__ import annotations

import csv
import dataclasses
from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html_join
from django.views.decorators.http import require_POST

from providers import services as provider_services
from providers.models import InvoiceRate
from providers.selectors import effective_invoice_rates
from provisioner import clock
from provisioner.tables import table_response
from tenants.access import get_for_tenant_or_404, require_member
from tenants.permissions import MANAGE_BUDGETS, VIEW_SPEND, role_has

from . import charts, dashboard, digest, money, reports
from .budgets import alerts_mark_read, budget_create, budget_delete, budget_update
from .forms import BudgetForm, DigestForm, InvoiceRateForm
from .models import Budget, SavedSpendView
from .selectors import (
    alert_banners,
    alerts_for,
    budgets_for,
    reconciliation_accounts,
    reconciliation_rows,
    saved_views_for_tenant,
    spend_names,
)
from .tables import AlertFilter, AlertTable

SPEND_FILTERS_KEY = "spend_filters"  # the dashboard's last filters: "← Spend" links go back to them


def _back_to_spend(request: HttpRequest) -> str:
    query = request.session.get(SPEND_FILTERS_KEY, "")
    return reverse("billing:spend") + (f"?{query}" if query else "")


def _view_model(request: HttpRequest):
    membership = require_member(request, VIEW_SPEND)
    tenant = membership.tenant
    names = spend_names(membership)  # per-project grants: only the spend of the projects the member may see
    if names is None:
        raise PermissionDenied("You may not see the spend of any project of this organization.")
    projects, providers, every = names
    f = dashboard.parse_filters(request.GET, projects=projects, providers=providers, today=clock.now().date())
    if not every and not f.project_ids:  # "all projects" = all the member's projects
        f = dataclasses.replace(f, project_ids=tuple(sorted(projects)))
    v = dashboard.build(tenant, f, projects=projects, providers=providers)
    return membership, tenant, projects, providers, f, v


def _table_rows_html(v) -> str:
    """The period x group table's rows (a daily year is 1,825 of them): escaped like the
    template would, at a fraction of a template loop's cost. Each group links to its drill-down."""
    spend_url, here = reverse("billing:spend"), v.filters.query()  # once, not per row (1,825 rows a daily year)
    return format_html_join("\n", '<tr><td>{}</td><td><a href="{}">{}</a></td><td class="num">${}</td>'
                            '<td class="num">${}</td></tr>',
                            ((period, f"{spend_url}?{v.drill.get(label, here)}", label, amount,
                              money.usd(v.idle_of(date.fromisoformat(period), label)))
                             for period, label, amount in v.table()))


def _filter_chips(tenant, f, projects: dict, providers: dict) -> list[dict]:
    """The active filters, each with the link that drops it and keeps the others."""
    from providers.models import ProviderKind

    names = {"project": projects, "provider": providers, "kind": dict(ProviderKind.choices),
             **dashboard.filter_names(tenant, f)}
    labels = {"project": "Project", "provider": "Account", "workload": "Workload", "gpu": "GPU", "user": "User",
              "kind": "Provider"}
    fields = {"project": "project_ids", "provider": "provider_ids", **dashboard.EXTRA_FILTERS}
    chips = []
    for param, attr in fields.items():
        values = getattr(f, attr)
        for value in values:
            chips.append({"label": f"{labels[param]}: {names.get(param, {}).get(value, value)}",
                          "drop": f.query(**{param: [x for x in values if x != value]})})
    return chips


@login_required
def spend(request: HttpRequest) -> HttpResponse:
    """The finance dashboard. HTMX polls re-render only the live figures (same view/template)."""
    membership, tenant, projects, providers, f, v = _view_model(request)
    if request.session.get(SPEND_FILTERS_KEY) != (query := f.query()):  # polls repeat it: no write
        request.session[SPEND_FILTERS_KEY] = query
    budgets = list(budgets_for(membership).select_related(None).defer("webhook_secret"))  # gauges: name, period, amount
    gauges = dashboard.budget_gauges(tenant, budgets, view=v)
    # "budget left": the budget closest to its limit (the one a team runs out of first)
    tightest = max(gauges, key=lambda g: g["pct"], default=None)
    ctx = {"v": v, "f": f, "now": clock.now(), "tightest": tightest}
    if request.htmx:
        return render(request, "billing/partials/spend_live.html", ctx)
    rows = v.table()
    ctx.update({
        "projects": sorted(projects.items(), key=lambda kv: kv[1]),
        "providers": sorted(providers.items(), key=lambda kv: kv[1]),
        "presets": dashboard.PRESETS, "groups": dashboard.GROUPS, "grains": dashboard.GRAINS,
        "modes": dashboard.MODES,
        "rows": rows, "rows_html": _table_rows_html(v), "gauges": gauges,
        "group_label": dashboard.GROUPS[f.group], "chips": _filter_chips(tenant, f, projects, providers),
        # the workload filter (drill-down only: too many for a list) rides along as hidden inputs,
        # so Apply keeps it; its chip drops it
        "drill_hidden": [("workload", w) for w in f.workload_ids], "options": dashboard.options(tenant, projects),
        "chart_spend": charts.spend_over_time(v, dashboard.annotations(tenant, f.start, f.end)),
        "chart_forecast": charts.burn_and_forecast(v),
        "chart_idle": charts.idle_spend(v),
        "chart_budgets": charts.budget_gauges(gauges),
        "alerts": alert_banners(membership),
    })
    return render(request, "billing/spend.html", ctx)


def _with_delete_right(views: list[dict], request: HttpRequest, membership) -> list[dict]:
    manager = role_has(membership.role, MANAGE_BUDGETS)
    for v in views:
        v["deletable"] = manager or v["created_by_id"] == request.user.pk
    return views


@login_required
def reconciliation(request: HttpRequest) -> HttpResponse:
    """The Spend page's reconciliation card, loaded after the page like the saved views: per
    provider account over the dashboard's period, our figure, the provider's and the drift."""
    membership = require_member(request, VIEW_SPEND)
    tenant = membership.tenant
    accounts = reconciliation_accounts(tenant)
    # reconciliation is per account: the project filter does not apply, the provider filter does
    f = dashboard.parse_filters(request.GET, projects={}, providers={str(a.pk): a.name for a in accounts},
                                today=clock.now().date())
    return render(request, "billing/partials/reconciliation.html", {
        "f": f, "threshold": settings.BILLING_DRIFT_THRESHOLD_PCT,
        "rows": reconciliation_rows(tenant, accounts=accounts, start=f.start, end=f.end, provider_ids=f.provider_ids)})


@login_required
def saved_views(request: HttpRequest) -> HttpResponse:
    """The Spend page's saved-views bar, loaded after the page (the dashboard request does not
    pay for it): the organization's views and a form saving the filters in this URL."""
    membership = require_member(request, VIEW_SPEND)
    return render(request, "billing/partials/saved_views.html", {
        "query": reports.normalized_query(membership.tenant, request.GET.urlencode()),
        "saved_views": _with_delete_right(saved_views_for_tenant(membership.tenant), request, membership)})


@login_required
@require_POST
def saved_view_save(request: HttpRequest) -> HttpResponse:
    """Save the dashboard's current filters under a name (a shared, linkable report)."""
    membership = require_member(request, VIEW_SPEND)
    query = request.POST.get("query", "")
    try:
        view = reports.saved_view_save(tenant=membership.tenant, user=request.user, name=request.POST.get("name", ""),
                                       query=query)
    except reports.SavedViewInvalid as exc:
        messages.error(request, str(exc))
        return redirect(f"{reverse('billing:spend')}?{reports.normalized_query(membership.tenant, query)}")
    messages.success(request, f'Saved the view "{view.name}": its link opens these filters for anyone in the organization.')
    return redirect(f"{reverse('billing:spend')}?{view.query}")


@login_required
@require_POST
def saved_view_delete(request: HttpRequest, pk) -> HttpResponse:
    """Delete a saved view: its author, or anyone who manages budgets."""
    view = get_for_tenant_or_404(request, SavedSpendView, VIEW_SPEND, pk=pk)
    if view.created_by_id != request.user.pk and not role_has(request.membership.role, MANAGE_BUDGETS):
        raise PermissionDenied("Only its author or someone who manages budgets can delete a saved view.")
    reports.saved_view_delete(view=view)
    messages.success(request, f'Deleted the saved view "{view.name}".')
    return redirect(_back_to_spend(request))


@login_required
def spend_export(request: HttpRequest) -> HttpResponse:
    """CSV of exactly the tables the dashboard shows for the same filters."""
    membership, tenant, projects, providers, f, v = _view_model(request)
    resp = HttpResponse(content_type="text/csv")
    resp["Content-Disposition"] = f'attachment; filename="spend-{f.start}-{f.end}.csv"'
    w = csv.writer(resp)
    # the third column is what the view is stacked by (provider or project); the fifth is the
    # top workload's own project, named apart so that both survive a read by column name
    # idle_usd: the part of amount_usd booked while every GPU of the pod was idle (billing.idle)
    w.writerow(["section", "period", f.group, "workload", "workload_project", "amount_usd", "idle_usd"])
    for period, label, usd in v.table():
        w.writerow(["spend", period, label, "", "", usd, money.usd(v.idle_of(date.fromisoformat(period), label))])
    w.writerow(["total", f"{f.start.isoformat()}..{f.end.isoformat()}", "", "", "", money.usd(v.total), money.usd(v.idle_total)])
    for t in v.top:
        w.writerow(["top_workload", "", "", t["name"], t["project"], money.usd(t["usd"]), money.usd(t["idle"])])
    return resp


def _budget_fields(form: BudgetForm, *, keep_secret: str = "") -> dict:
    d = dict(form.cleaned_data)
    if not d.get("webhook_secret"):
        d["webhook_secret"] = keep_secret
    d["webhook_url"] = d.get("webhook_url") or ""
    return d


@login_required
def budgets(request: HttpRequest) -> HttpResponse:
    """Budgets with their gauges; finance/owners/admins create them here."""
    membership = require_member(request, VIEW_SPEND)
    tenant = membership.tenant
    form = BudgetForm(membership=membership)
    if request.method == "POST":
        require_member(request, MANAGE_BUDGETS)
        form = BudgetForm(request.POST, membership=membership)
        if form.is_valid():
            b = budget_create(tenant=tenant, **_budget_fields(form))
            messages.success(request, f'Budget "{b.name}" created.')
            return redirect("billing:budgets")
    items = list(budgets_for(membership))
    return render(request, "billing/budgets.html", {
        "form": form, "gauges": dashboard.budget_gauges(tenant, items), "back_to_spend": _back_to_spend(request),
        "rates": effective_invoice_rates(tenant),
    })


@login_required
def budget_edit(request: HttpRequest, pk) -> HttpResponse:
    budget = get_for_tenant_or_404(request, Budget, MANAGE_BUDGETS, pk=pk)  # and on its project (or all)
    membership = request.membership
    if request.method == "POST":
        if "delete" in request.POST:
            name = budget.name
            budget_delete(budget=budget)
            messages.success(request, f'Budget "{name}" deleted.')
            return redirect("billing:budgets")
        form = BudgetForm(request.POST, membership=membership)
        if form.is_valid():
            budget_update(budget=budget, **_budget_fields(form, keep_secret=budget.webhook_secret))
            messages.success(request, f'Budget "{budget.name}" saved.')
            return redirect("billing:budgets")
    else:
        form = BudgetForm(initial=BudgetForm.initial_for(budget), membership=membership)
    return render(request, "billing/budget_edit.html", {"form": form, "budget": budget})


@login_required
def invoice_rates(request: HttpRequest) -> HttpResponse:
    """The organization's invoice rates: everyone who sees spend sees the effective rate per
    currency and where it comes from; finance/owners/admins set the organization's own."""
    membership = require_member(request, VIEW_SPEND)
    tenant = membership.tenant
    form = InvoiceRateForm()
    if request.method == "POST":
        require_member(request, MANAGE_BUDGETS)
        form = InvoiceRateForm(request.POST)
        if form.is_valid():
            rate = provider_services.invoice_rate_set(tenant=tenant, **form.cleaned_data)
            messages.success(request, f"{rate.currency} is now converted at {rate.usd_per_unit} USD per unit: new ledger "
                                      "lines from the next meter, offers from the next capacity poll.")
            return redirect("billing:rates")
    return render(request, "billing/rates.html", {
        "form": form, "rates": effective_invoice_rates(tenant), "back_to_spend": _back_to_spend(request),
    })


@login_required
@require_POST
def invoice_rate_clear(request: HttpRequest, pk: int) -> HttpResponse:
    """Drop one of the organization's own rates; the currency falls back to the platform's."""
    rate = get_for_tenant_or_404(request, InvoiceRate, MANAGE_BUDGETS, pk=pk)
    try:
        provider_services.invoice_rate_clear(tenant=rate.tenant, currency=rate.currency)
    except provider_services.InvoiceRateInvalid as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Your organization's {rate.currency} rate was removed.")
    return redirect("billing:rates")


@login_required
def alerts(request: HttpRequest) -> HttpResponse:
    """In-app notifications: every budget and provider-cap alert the member may see, newest first
    (filters, sorting and pages in the URL)."""
    membership = require_member(request, VIEW_SPEND)
    if request.method == "POST":
        visible = list(alerts_for(membership, unread_only=True).values_list("pk", flat=True))
        if visible:  # only what this member can see (an empty list would mean "all")
            alerts_mark_read(tenant=membership.tenant, ids=visible)
        return redirect("billing:alerts")
    alerts = AlertFilter(request.GET, queryset=alerts_for(membership), request=request)
    return table_response(request, "billing/alerts.html", AlertTable(alerts.qs), alerts,
                          {"back_to_spend": _back_to_spend(request),
                           "digest_form": DigestForm(initial=_digest_initial(membership))})


def _digest_initial(membership) -> dict:
    current = digest.digest_for(membership)
    return {"frequency": current.frequency if current else digest.OFF}


@login_required
@require_POST
def digest_update(request: HttpRequest) -> HttpResponse:
    """Subscribe to, change or stop the member's own spend digest."""
    membership = require_member(request, VIEW_SPEND)
    form = DigestForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose Off, Daily or Weekly for the spend digest.")
        return redirect("billing:alerts")
    frequency = form.cleaned_data["frequency"]
    digest.digest_set(membership=membership, frequency=frequency)
    if frequency == digest.OFF:
        messages.success(request, "Spend digest stopped.")
    else:
        messages.success(request, f"{dict(form.fields['frequency'].choices)[frequency]} spend digest on: it goes to "
                                  f"{request.user.email or 'your e-mail address (none is set on your account)'} "
                                  f"from {digest.SEND_HOUR_UTC:02d}:00 UTC.")
    return redirect("billing:alerts")


@login_required
def alerts_badge(request: HttpRequest) -> HttpResponse:
    """Tiny fragment for the nav bar (loaded lazily, so other pages pay no query for it)."""
    membership = require_member(request, VIEW_SPEND)
    n = alerts_for(membership, unread_only=True).count()
    return render(request, "billing/partials/alerts_badge.html", {"unread": n})
