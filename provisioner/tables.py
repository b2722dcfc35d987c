"""The one way a list page is built: a django-tables2 table over a restricted queryset, filtered by a
django-filter FilterSet, everything in the URL (``?sort=``, ``?page=``, the filters), one view
serving the full page and, for htmx requests (sort and page links, refreshes), the table alone.

    rows = Offer.objects.restrict(membership).filter(...)            # the access helper, always
    filters = OfferFilter(request.GET, queryset=rows, request=request)
    table = OfferTable(filters.qs)
    return table_response(request, "providers/capacity.html", table, filters, {...})

Bad input in the URL never errors: an unknown sort column is ignored (django-tables2 keeps only
orderable columns), a filter value the form refuses matches nothing and the page says which filter
it did not understand, a page number out of range shows the last page, a non-number the first.
"""

from __future__ import annotations

from typing import Any

import django_filters
import django_tables2 as tables
from django.core.paginator import EmptyPage, PageNotAnInteger
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme

PER_PAGE = 25
FRAGMENT_TEMPLATE = "tables/fragment.html"


class Table(tables.Table):
    """Base of every table: our template (sort links drop the page number, htmx-boosted links
    swap only the table), our pager and an empty text that knows about filters."""

    class Meta:
        template_name = "tables/table.html"
        attrs = {"class": "data-table"}
        order_by_field = "sort"
        page_field = "page"

    #: the element id of the table's container (the htmx target); pages with two tables differ
    dom_id = "table"
    #: seconds between htmx refreshes of the table (0: none); a refresh asks for the page's own URL
    refresh_seconds = 0
    #: what the table lists, for the pager ("3 pods", "1 pod")
    noun = "rows"
    #: columns a user may hide with the column chooser (``?cols=`` lists the visible ones, so a
    #: reload, a shared link and the live refresh keep the choice); the others always show
    optional_columns: tuple[str, ...] = ()
    #: text shown when nothing matches (``filtered``: some filter is set)
    empty_all = "Nothing yet."
    empty_filtered = "Nothing matches these filters."

    def query_with(self, **changes: str | None) -> str:
        """This list's query string with ``changes`` (None drops a parameter) and no page number:
        a link that narrows or drills down keeps the other filters and the sort."""
        params = self.request.GET.copy() if getattr(self, "request", None) is not None else QueryDict(mutable=True)
        params.pop(self.prefixed_page_field, None)
        for name, value in changes.items():
            if value is None:
                params.pop(name, None)
            else:
                params[name] = value
        return params.urlencode()

    def choose_columns(self, params: QueryDict) -> None:
        """Hide the optional columns ``?cols=`` leaves out (``cols_set`` marks a submitted chooser,
        so unticking every box hides them all). Unknown names are ignored."""
        if not self.optional_columns or ("cols" not in params and "cols_set" not in params):
            return
        wanted = {c for value in params.getlist("cols") for c in value.split(",")}
        for name in self.optional_columns:
            if name not in wanted:
                self.columns.hide(name)

    @property
    def column_choices(self) -> list[tuple[str, str, bool]]:
        """(name, header, visible) of each optional column, for the chooser."""
        return [(name, str(self.columns[name].header), self.columns[name].visible) for name in self.optional_columns]

    @property
    def chooser_hidden(self) -> list[tuple[str, str]]:
        """The query's other parameters (filters, sort), carried by the chooser's GET form."""
        params = self.request.GET if getattr(self, "request", None) is not None else QueryDict()
        return [(k, v) for k, values in params.lists() if k not in ("cols", "cols_set", self.prefixed_page_field)
                for v in values]

    @property
    def column_params(self) -> list[tuple[str, str]]:
        """The column choice in the URL (``cols``, ``cols_set``), carried by the filter form."""
        params = self.request.GET if getattr(self, "request", None) is not None else QueryDict()
        return [(k, v) for k in ("cols", "cols_set") for v in params.getlist(k)]

    @property
    def counted(self) -> str:
        n = self.paginator.count
        return f"{n} {self.noun if n != 1 else self.noun.removesuffix('s')}"


class FilterSet(django_filters.FilterSet):
    """Base of every filter set: ``active`` says whether any filter is set (the Clear link, the
    empty text); ``sort`` is carried as a hidden field by the form template."""

    @property
    def form(self):
        form = super().form
        form.auto_id = "f-%s"  # the filter fields' ids: #f-status, #f-gpu_class (distinct from other forms' id_*)
        for field in form.fields.values():
            if getattr(field.widget, "input_type", "") == "select":
                field.widget.attrs.setdefault("data-autosubmit", "")  # a choice applies at once
        return form

    @property
    def qs(self):
        # a value the form refuses (a user who is not a member, another organization's project, a
        # date that is no date) matches nothing: dropping it would silently show everything
        if self.is_bound and not self.form.is_valid():
            return self.queryset.none()
        return super().qs

    @property
    def refused(self) -> list[str]:
        """The labels of the filters whose value in the URL was not understood."""
        if not self.is_bound or self.form.is_valid():
            return []
        return [str(self.form.fields[name].label or name) for name in self.form.errors]

    @property
    def active(self) -> bool:
        if not self.is_bound or not self.form.is_valid():
            return bool(self.data and any(self.data.get(name) for name in self.filters))
        return any(value not in (None, "", [], ()) for value in self.form.cleaned_data.values())


def configure(request: HttpRequest, table: Table, *, per_page: int = PER_PAGE) -> Table:
    """Sort and page ``table`` from the URL. The page size is ours, not the URL's (no
    ``?per_page=100000``)."""
    table.request = request
    table.choose_columns(request.GET)
    order_by = request.GET.getlist(table.prefixed_order_by_field)[:3]
    if order_by:
        table.order_by = order_by  # django-tables2 keeps only the names of orderable columns
    try:
        table.paginate(page=request.GET.get(table.prefixed_page_field) or 1, per_page=per_page)
    except PageNotAnInteger:
        table.paginate(page=1, per_page=per_page)
    except EmptyPage:
        table.paginate(page=table.paginator.num_pages, per_page=per_page)
    return table


def table_response(request: HttpRequest, template: str, table: Table, filters: FilterSet | None,
                   context: dict[str, Any] | None = None, *, per_page: int = PER_PAGE,
                   fragment: str = FRAGMENT_TEMPLATE) -> HttpResponse:
    """The full page, or (htmx: a sort or page link, a refresh) the table alone."""
    configure(request, table, per_page=per_page)
    table.empty_text = table.empty_filtered if filters is not None and filters.active else table.empty_all
    ctx = {"table": table, "filters": filters, **(context or {})}
    return render(request, fragment if request.htmx else template, ctx)


def list_to_return_to(request: HttpRequest, list_path: str) -> str | None:
    """Where a row action posted from a list goes back to: the list's own URL with its filters,
    sort and page (the form's ``next``), when it is that list on this site; else None."""
    back = request.POST.get("next", "")
    if back.split("?", 1)[0] == list_path and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return back
    return None
