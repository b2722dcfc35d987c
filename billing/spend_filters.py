"""The Spend dashboard's filters and groupings: what the query string may say (date range,
projects, provider accounts and the drill-down filters: workload, GPU class, user, provider),
how a queryset is narrowed to it, and how each grouping names its groups and drills into them."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, timedelta
from urllib.parse import urlencode

from django.db.models import F, Value

from providers.models import ProviderAccount
from workloads.models import Workload

PRESETS = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days", "mtd": "Month to date",
           "ytd": "Year to date", "365d": "Last 365 days", "custom": "Custom"}
# "provider" stacks by provider account (its name): the key predates "kind" (the provider itself)
GROUPS = {"provider": "Provider account", "kind": "Provider", "project": "Project", "workload": "Workload",
          "gpu": "GPU class", "user": "User"}
# where a drill-down from a bar or row of each grouping lands: filtered to it, stacked one level finer
DRILL_NEXT = {"kind": "provider", "provider": "project", "project": "workload", "gpu": "workload",
              "user": "workload", "workload": "workload"}
# the drill-down filters beyond project and provider account (query name -> Filters field)
EXTRA_FILTERS = {"workload": "workload_ids", "gpu": "gpu_classes", "user": "user_ids", "kind": "kinds"}
_TOKEN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
GRAINS = {"day": "Daily", "week": "Weekly", "month": "Monthly"}
MODES = {"period": "Spend per period", "cumulative": "Cumulative"}
MAX_DAYS = 3 * 366


@dataclass
class Filters:
    preset: str
    start: date
    end: date  # inclusive
    project_ids: tuple[str, ...] = ()  # several values allowed; empty = all
    provider_ids: tuple[str, ...] = ()
    workload_ids: tuple[str, ...] = ()  # drill-down filters: workloads, GPU classes, owners, provider kinds
    gpu_classes: tuple[str, ...] = ()
    user_ids: tuple[str, ...] = ()
    kinds: tuple[str, ...] = ()
    group: str = "provider"
    grain: str = "day"
    mode: str = "period"  # "period": spend per bar ($ / day|week|month); "cumulative": running total ($)
    # what was changed in the asked range and why (a reversed range swapped, a missing date), shown
    # on the page: a range is never replaced silently
    notice: str = ""

    def query(self, **override) -> str:
        q: dict = {"range": self.preset, "group": self.group, "grain": self.grain, "mode": self.mode}
        if self.preset == "custom":
            q.update({"from": self.start.isoformat(), "to": self.end.isoformat()})
        if self.project_ids:
            q["project"] = list(self.project_ids)
        if self.provider_ids:
            q["provider"] = list(self.provider_ids)
        for name, attr in EXTRA_FILTERS.items():
            if getattr(self, attr):
                q[name] = list(getattr(self, attr))
        q.update(override)
        return urlencode(q, doseq=True)


def _date(s: str) -> date | None:
    try:
        return date.fromisoformat(s)
    except (TypeError, ValueError):
        return None


def _custom_range(raw_start: str, raw_end: str, today: date) -> tuple[date | None, date, str]:
    """(start, end, notice) of a custom range; start None when it cannot be read (the caller shows
    the last 7 days and says so). A reversed range is swapped, an end after today ends today, a
    range longer than ``MAX_DAYS`` is shortened: each with a notice saying what is shown."""
    s, e = _date(raw_start), _date(raw_end)
    if s is None or e is None:
        return None, today, "The custom range needs a start and an end date (YYYY-MM-DD): showing the last 7 days."
    notes = []
    if s > e:
        s, e = e, s
        notes.append(f"The start date was after the end date: swapped, showing {s:%Y-%m-%d} to {e:%Y-%m-%d}.")
    if e > today:
        e = today
        notes.append(f"Spend is known up to today: showing up to {today:%Y-%m-%d}.")
        s = min(s, e)
    if s < e - timedelta(days=MAX_DAYS):
        s = e - timedelta(days=MAX_DAYS)
        notes.append(f"A range is at most {MAX_DAYS} days: showing from {s:%Y-%m-%d}.")
    return s, e, " ".join(notes)


def parse_filters(params, *, projects: dict, providers: dict, today: date) -> Filters:
    """Filters from the query string; anything unknown falls back to the default (last 7 days); a
    custom range that had to be changed says how in ``notice``."""
    preset = params.get("range", "7d")
    notice = ""
    if preset not in PRESETS:
        preset = "7d"
    start, end = today - timedelta(days=6), today
    if preset == "30d":
        start = today - timedelta(days=29)
    elif preset == "90d":
        start = today - timedelta(days=89)
    elif preset == "365d":
        start = today - timedelta(days=364)
    elif preset == "mtd":
        start = today.replace(day=1)
    elif preset == "ytd":
        start = today.replace(month=1, day=1)
    elif preset == "custom":
        start, end, notice = _custom_range(params.get("from", ""), params.get("to", ""), today)
        if start is None:
            preset, start, end = "7d", today - timedelta(days=6), today

    def many(name: str, known: dict) -> tuple[str, ...]:
        values = params.getlist(name) if hasattr(params, "getlist") else params.get(name, [])
        values = [values] if isinstance(values, str) else values
        return tuple(sorted({v for v in values if v in known}))

    def tokens(name: str) -> tuple[str, ...]:  # scoped to the tenant by every query: only the shape is checked
        values = params.getlist(name) if hasattr(params, "getlist") else params.get(name, [])
        values = [values] if isinstance(values, str) else values
        return tuple(sorted({v for v in values if isinstance(v, str) and _TOKEN.match(v)}))[:50]

    group = params.get("group", "provider")
    grain = params.get("grain", "day")
    mode = params.get("mode", "period")
    return Filters(preset=preset, start=start, end=end, notice=notice, project_ids=many("project", projects),
                   provider_ids=many("provider", providers),
                   **{attr: tokens(name) for name, attr in EXTRA_FILTERS.items()},
                   group=group if group in GROUPS else "provider", grain=grain if grain in GRAINS else "day",
                   mode=mode if mode in MODES else "period")


def _scoped(qs, f: Filters):
    if f.project_ids:
        qs = qs.filter(project_id__in=f.project_ids)
    if f.provider_ids:
        qs = qs.filter(provider_account_id__in=f.provider_ids)
    if f.workload_ids:
        qs = qs.filter(workload_id__in=[w for w in f.workload_ids if _is_uuid(w)])
    if f.gpu_classes:
        qs = qs.filter(workload__gpu_class__in=f.gpu_classes)
    if f.user_ids:
        qs = qs.filter(workload__owner_id__in=[int(u) for u in f.user_ids if u.isdigit()])
    if f.kinds:
        qs = qs.filter(provider_account__kind__in=f.kinds)
    return qs


def _is_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
    except ValueError:
        return False
    return True


def narrowed(f: Filters) -> bool:
    """Any drill-down filter beyond project and provider account."""
    return any(getattr(f, attr) for attr in EXTRA_FILTERS.values())


def _key(x) -> str | None:
    """Ids as plain strings (cheap to hash, sort and cache); ``None`` stays ``None``."""
    return None if x is None else str(x)


def _labels(f: Filters, keys: set, *, projects: dict, providers: dict, kinds: dict) -> dict:
    """Group key -> (label, drill-down filter value). Workload-based groupings read their
    workloads' name, GPU class and owner in one query."""
    if f.group == "project":
        return {k: (projects.get(k, "(removed)"), k) for k in keys}
    if f.group == "provider":
        return {k: (providers.get(k, "(removed)"), k) for k in keys}
    if f.group == "kind":
        from providers.models import ProviderKind

        kinds = kinds or {str(pk): kind for pk, kind in
                          ProviderAccount.objects.filter(pk__in=[k for k in keys if k]).values_list("pk", "kind")}
        out = {}
        for k in keys:
            kind = kinds.get(k)
            out[k] = (ProviderKind(kind).label if kind in ProviderKind.values else "(removed)", kind or "")
        return out
    rows = {str(pk): (name, gpu, _key(owner), username) for pk, name, gpu, owner, username in
            Workload.objects.filter(pk__in=[k for k in keys if k]).values_list(
                "pk", "name", "gpu_class", "owner_id", "owner__username")}
    out = {}
    for k in keys:
        name, gpu, owner, username = rows.get(k, ("(removed)", "", None, None))
        if f.group == "workload":
            out[k] = (name, k or "")
        elif f.group == "gpu":
            out[k] = (gpu or "(none)", gpu or "")
        else:
            out[k] = (username or "(no owner)", owner or "")
    # two workloads may share a name: tell them apart rather than add them up
    seen: dict = defaultdict(set)
    for label, value in out.values():
        seen[label].add(value)
    return {k: (f"{label} ({value[:8]})" if len(seen[label]) > 1 and value else label, value)
            for k, (label, value) in out.items()}


def filter_names(tenant, f: Filters) -> dict[str, dict[str, str]]:
    """Names of the workloads and users a drill-down filters on (none: no query)."""
    from django.contrib.auth import get_user_model

    out: dict[str, dict[str, str]] = {}
    if wids := [w for w in f.workload_ids if _is_uuid(w)]:
        out["workload"] = {str(pk): n for pk, n in Workload.objects.filter(tenant=tenant, pk__in=wids).values_list("pk", "name")}
    if uids := [int(u) for u in f.user_ids if u.isdigit()]:
        # only users owning a workload of this organization: no name leaks across tenants
        owners = Workload.objects.filter(tenant=tenant, owner_id__in=uids).values("owner_id")
        out["user"] = {str(pk): n for pk, n in get_user_model().objects.filter(pk__in=owners).values_list("pk", "username")}
    return out


def filter_options(tenant, project_ids) -> dict[str, list[tuple[str, str]]]:
    """The values the filter form offers for GPU class, user (workload owners) and provider
    kind: (value, label) pairs of this organization, from the workloads of ``project_ids`` (the
    projects the member may see), in one round trip."""
    from django.db.models import CharField
    from django.db.models.functions import Cast

    from providers.models import ProviderKind

    workloads = Workload.objects.filter(tenant=tenant, project_id__in=list(project_ids))
    rows = (workloads.exclude(gpu_class="").annotate(t=Value("g"), v=F("gpu_class"), n=F("gpu_class"))
            .values_list("t", "v", "n").order_by()
            .union(workloads.filter(owner__isnull=False)
                   .annotate(t=Value("u"), v=Cast("owner_id", CharField()), n=F("owner__username"))
                   .values_list("t", "v", "n").order_by(),
                   ProviderAccount.objects.filter(tenant=tenant).annotate(t=Value("k"), v=F("kind"), n=F("kind"))
                   .values_list("t", "v", "n").order_by()))
    out: dict[str, set] = {"gpu": set(), "user": set(), "kind": set()}
    for t, value, name in rows:
        key = {"g": "gpu", "u": "user", "k": "kind"}[t]
        out[key].add((str(value), ProviderKind(name).label if key == "kind" and name in ProviderKind.values else name))
    return {k: sorted(v, key=lambda x: x[1].lower()) for k, v in out.items()}
