"""The spend dashboard's read model: filters, series, top workloads, burn rate, forecast,
budget gauges — from daily rollups for past days plus today's ledger and the live,
not-yet-metered accrual of running pods.

Every figure can also be computed from the raw ledger (``source="ledger"``): the benchmark
uses that as its baseline and checks both give the same numbers.
"""

from __future__ import annotations

import calendar
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from types import SimpleNamespace

from django.db.models import OuterRef, Subquery, Sum, Value
from django.db.models.functions import TruncDate

from providers.models import ProviderAccount
from providers.selectors import usd_rates_needed
from provisioner import clock
from tenants.models import Project
from workloads.models import BILLABLE_POD_STATES, Pod, PodState, Workload

from . import money
from .budgets import forecast_spend
from .idle import idle_usd_by_key
from .metering import unbooked_usd
from .models import LedgerEntry, SpendRollup
from .rollups import generation
from .selectors import ZERO, day_start, period_end, period_start, spend_annotations
from .spend_filters import (  # noqa: F401 - re-exported: views, reports and the bench read them here
    DRILL_NEXT,
    EXTRA_FILTERS,
    GRAINS,
    GROUPS,
    MODES,
    PRESETS,
    Filters,
    _key,
    _labels,
    _scoped,
    filter_names,
    filter_options,
    narrowed,
    parse_filters,
)
from .spend_history import (  # noqa: F401 - TOP_N and bucket_of: re-exported for their readers
    TOP_N,
    History,
    Source,
    as_date,
    bucket_of,
    cache_key,
    cache_put,
    cached,
    compute,
    look_up,
    rank_key,
    ttl_cached,
    workload_names,
)


@dataclass
class SpendView:
    filters: Filters
    today: date
    periods: list[date] = field(default_factory=list)
    series: dict[str, dict[date, Decimal]] = field(default_factory=dict)  # group label -> period -> usd
    total: Decimal = ZERO
    top: list[dict] = field(default_factory=list)
    burn_per_day: Decimal = ZERO
    month_to_date: Decimal = ZERO
    forecast_month: Decimal = ZERO
    mtd_daily: list[tuple[date, Decimal]] = field(default_factory=list)
    run_rate: Decimal = ZERO
    spent_today: Decimal = ZERO
    running_count: int = 0
    generation: int | None = None  # the rollup generation the history was read at (None: raw ledger)
    today_booked: list[tuple] = field(default_factory=list)  # today's ledger, every project and provider
    idle_series: dict[str, dict[date, Decimal]] = field(default_factory=dict)  # idle GPU share of ``series``
    idle_total: Decimal = ZERO  # idle GPU spend in the range
    idle_month: Decimal = ZERO  # idle GPU spend this month (the KPI)
    idle_today: Decimal = ZERO
    drill: dict[str, str] = field(default_factory=dict)  # group label -> query string of its drill-down

    def table(self) -> list[tuple[str, str, str]]:
        """``rows()`` formatted once (ISO date, label, amount to the cent): the page and the
        CSV print these same strings."""
        return [(p.isoformat(), label, money.usd(amount)) for p, label, amount in self.rows()]

    def period_query(self, period: date) -> str:
        """The query string of the drill-down into one chart period: its days (within the
        range), daily bars, every other filter kept."""
        last = {"day": period, "week": period + timedelta(days=6),
                "month": period.replace(day=calendar.monthrange(period.year, period.month)[1])}[self.filters.grain]
        start, end = max(period, self.filters.start), min(last, self.filters.end)
        return self.filters.query(**{"range": "custom", "from": start.isoformat(), "to": end.isoformat(), "grain": "day"})

    def idle_of(self, period: date, label: str) -> Decimal:
        return self.idle_series.get(label, {}).get(period, ZERO)

    def rows(self) -> list[tuple[date, str, Decimal]]:
        """The period x group table the page shows and the CSV exports."""
        out = []
        for p in self.periods:
            for label in sorted(self.series):
                v = self.series[label].get(p, ZERO)
                if v:
                    out.append((p, label, v))
        return out


def today_rows(tenant, today: date, f: Filters | None = None) -> list[tuple[str | None, str | None, str | None, Decimal]]:
    """Today's booked spend from the ledger (only today's buckets), for every project and
    provider: the filtered figures and the budget gauges both take their share of it.
    ``f``: only the lines under the dashboard's filters (the drill-down ones need joins)."""
    qs = LedgerEntry.objects.filter(tenant=tenant, bucket_start__gte=day_start(today))
    if f is not None:
        qs = _scoped(qs, f)
    return [(_key(project), _key(provider), _key(workload), usd or ZERO) for project, provider, workload, usd in
            qs.values_list("project_id", "provider_account_id", "workload_id").annotate(s=Sum("amount_usd")).order_by()]


_LIVE_FIELDS = ("state", "price_per_hour", "price_usd_per_hour", "currency", "spot", "started_at", "stopped_at", "ended_at",
                "run_sessions", "metered_until", "offer_snapshot", "project_id", "workload_id", "provider_account_id")


def live_pods(tenant, f: Filters) -> list[SimpleNamespace]:
    """Pods accruing cost now (running, or stopped with storage/held servers), as light
    records carrying what ``unbooked_usd`` reads (no model instances: this runs every poll)."""
    qs = _scoped(Pod.objects.filter(tenant=tenant, started_at__isnull=False)
                 .filter(state__in=[*BILLABLE_POD_STATES, PodState.STOPPED]), f)
    # each live pod's workload by its key (a subquery per row): a join let the planner hash every
    # workload the organization ever ran (1 ms at 5,000, growing) to find the few live ones
    volumes = Subquery(Workload.objects.filter(pk=OuterRef("workload_id")).order_by().values("volumes")[:1])
    out = []
    for row in qs.annotate(workload_volumes=volumes).values(
            *_LIVE_FIELDS, "provider_account__kind", "provider_account__settings", "workload_volumes").order_by():
        rec = SimpleNamespace(**{k: row[k] for k in _LIVE_FIELDS})
        rec.provider_account = (SimpleNamespace(kind=row["provider_account__kind"],
                                                settings=row["provider_account__settings"] or {})
                                if row["provider_account_id"] else None)
        rec.workload = SimpleNamespace(volumes=row["workload_volumes"] or [])
        out.append(rec)
    return out


GROUP_FIELDS = {"project": "project_id", "provider": "provider_account_id", "kind": "provider_account_id",
                "workload": "workload_id", "gpu": "workload_id", "user": "workload_id"}
_PART = {"project_id": 0, "provider_account_id": 1, "workload_id": 2}  # in (project, provider, workload) keys
TODAY_IDLE_TTL_SECONDS = 60  # today's idle share is read from samples: once a minute is enough


def today_idle(tenant, f: Filters, today: date) -> dict:
    """Today's idle GPU spend per (project, provider account, workload), from today's ledger and
    samples (past days are in the rollups); kept a minute so the 5-second poll stays cheap."""
    start = day_start(today)
    key = "spend-idle-today:" + hashlib.sha1(f"{tenant.pk}|{today}|{f.query()}".encode()).hexdigest()
    return ttl_cached(key, TODAY_IDLE_TTL_SECONDS, lambda: idle_usd_by_key(
        tenant_id=tenant.pk, start=start, end=start + timedelta(days=1), scope=lambda qs: _scoped(qs, f)))


OPTIONS_TTL_SECONDS = 60
ANNOTATIONS_TTL_SECONDS = 60


def annotations(tenant, start: date, end: date) -> list[tuple[date, str]]:
    """The spend chart's dated events (``selectors.spend_annotations``: providers connected or
    removed, invoice rates set), kept a minute: rare events, read on every refresh."""
    key = f"spend-annotations:{tenant.pk}:{start}:{end}"
    return ttl_cached(key, ANNOTATIONS_TTL_SECONDS, lambda: spend_annotations(tenant, start, end))


def options(tenant, project_ids) -> dict[str, list[tuple[str, str]]]:
    """The filter form's GPU classes, users and provider kinds (``filter_options``), kept a minute:
    they read every workload of the projects (5 ms at 5,000 workloads), and a new one appearing in
    a drop-down a minute late costs nothing (its spend shows at once)."""
    ids = sorted(str(p) for p in project_ids)
    key = "spend-options:" + hashlib.sha1(f"{tenant.pk}|{','.join(ids)}".encode()).hexdigest()
    return ttl_cached(key, OPTIONS_TTL_SECONDS, lambda: filter_options(tenant, ids))


def build(tenant, f: Filters, *, projects: dict, providers: dict, kinds: dict | None = None,
          source: str = "rollup") -> SpendView:
    """Everything the dashboard shows, in a fixed number of queries.

    History (whole past days) is aggregated in SQL from the rollups — per chart bucket and
    group, per workload, and the recent daily totals, each with its idle GPU share — and cached
    under the tenant's rollup generation; today's ledger, today's idle share and the live
    accrual of running pods are read every time and added in Python. ``source="ledger"``:
    history from the raw ledger, uncached (the benchmark's baseline, and the tests' reference).
    """
    now = clock.now()
    today = now.date()
    v = SpendView(filters=f, today=today)
    src = Source(tenant, f, source)
    group_field = GROUP_FIELDS[f.group]
    hist_end = min(f.end + timedelta(days=1), today)
    month_start = today.replace(day=1)
    recent_since = min(month_start, today - timedelta(days=7))
    # today first: booked ledger lines plus the live, not-yet-metered accrual. Its workloads
    # are the only ones that may climb into the top N, so the history is read for them too
    v.today_booked = today_rows(tenant, today)
    if narrowed(f):
        todays = today_rows(tenant, today, f)
    else:
        todays = [r for r in v.today_booked if (not f.project_ids or r[0] in f.project_ids)
                  and (not f.provider_ids or r[1] in f.provider_ids)]
    pods = live_pods(tenant, f)
    # invoice rates are only needed (one query) when a live pod bills in another currency
    rates = usd_rates_needed(tenant.pk, (p.currency for p in pods))
    for pod in pods:
        if pod.state in BILLABLE_POD_STATES:
            v.run_rate += pod.price_usd_per_hour or ZERO
            v.running_count += 1
        tail = unbooked_usd(pod, rates, now)
        if tail:
            todays.append((_key(pod.project_id), _key(pod.provider_account_id), _key(pod.workload_id), tail))
    in_range_today = f.start <= today <= f.end
    spending_today = {w for _p, _a, w, _u in todays} if in_range_today else set()
    v.generation = generation(tenant.pk) if source == "rollup" else None
    parts = ("build", today, f.start, hist_end, f.grain, group_field, f.query())
    history: History = cached(
        tenant, v.generation, parts,
        lambda: compute(src, f, group_field=group_field, until=hist_end, recent_since=recent_since, today=today,
                        include=spending_today))
    # a workload that started spending after the history was cached: its history is read once
    # and kept with the entry (the next refresh finds it there)
    if look_up(history, src, f, hist_end, spending_today) and v.generation is not None:
        cache_put(cache_key(tenant, v.generation, parts), history)
    raw: list[tuple[date, str | None, Decimal, Decimal]] = list(history.series)
    idle_today = today_idle(tenant, f, today) if source == "rollup" else {}
    v.idle_today = sum(idle_today.values(), ZERO)
    today_by_workload: dict = defaultdict(Decimal)
    part = _PART[group_field]
    for row in todays:
        project_id, _provider_id, workload_id, usd = row
        v.spent_today += usd
        if in_range_today:
            raw.append((bucket_of(today, f.grain), row[part], usd, ZERO))
            today_by_workload[(workload_id, project_id)] += usd
    idle_today_by_workload: dict = defaultdict(Decimal)
    if in_range_today:
        for k, usd in idle_today.items():
            raw.append((bucket_of(today, f.grain), k[part], ZERO, usd))
            idle_today_by_workload[(k[2], k[0])] += usd
    labels = _labels(f, {k for _p, k, _u, _i in raw}, projects=projects, providers=providers, kinds=kinds or {})
    series: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    idle_series: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    param = "provider" if f.group == "provider" else f.group
    for period, key, usd, idle in raw:
        label, value = labels[key]
        if usd:
            series[label][period] += usd
        if idle:
            idle_series[label][period] += idle
        v.total += usd
        v.idle_total += idle
        if value and label not in v.drill:
            v.drill[label] = f.query(**{param: [value], "group": DRILL_NEXT[f.group]})
    periods, d = [], bucket_of(f.start, f.grain)
    while d <= f.end:
        periods.append(d)
        d = bucket_of(d + timedelta(days={"day": 1, "week": 7}.get(f.grain, 32)), f.grain)
    v.periods, v.series = periods, {k: dict(x) for k, x in series.items()}
    v.idle_series = {k: dict(x) for k, x in idle_series.items()}
    # top workloads: a workload without spend today ranks as in history alone, so only the
    # history's top N and today's workloads can make the top N once today is added
    contenders = {k: history.usd(k) for k in history.ranked}
    for key, usd in today_by_workload.items():
        contenders[key] = history.usd(key) + usd
    top = sorted(contenders.items(), key=rank_key)[:TOP_N]
    wnames = history.workload_names
    if missing := [w for (w, _p), _ in top if w and w not in wnames]:  # only today made them top
        wnames = {**wnames, **workload_names(missing)}
    v.top = [{"workload_id": w, "name": wnames.get(w, "(removed)"), "project": projects.get(p, "(removed)"),
              "usd": usd, "idle": history.idle((w, p)) + idle_today_by_workload.get((w, p), ZERO),
              "drill": f.query(workload=[w], group="workload") if w else ""} for (w, p), usd in top]
    # burn rate (average of the last 7 complete days) and forecast to month end
    daily = dict(history.daily)
    daily[today] = v.spent_today
    v.burn_per_day = sum((daily.get(today - timedelta(days=i), ZERO) for i in range(1, 8)), ZERO) / 7
    running = ZERO
    for i in range(today.day):
        day = month_start + timedelta(days=i)
        running += daily.get(day, ZERO)
        v.mtd_daily.append((day, running))
    v.month_to_date = running
    v.idle_month = sum((x for day, x in history.daily_idle.items() if day >= month_start), ZERO) + v.idle_today
    days_in_month = calendar.monthrange(today.year, today.month)[1]
    v.forecast_month = running + v.burn_per_day * (days_in_month - today.day)
    return v


def _gauge_history(tenant, since: date, today: date, source: str) -> list[tuple[date, str | None, Decimal]]:
    if source == "ledger":
        qs = (LedgerEntry.objects.filter(tenant=tenant, bucket_start__gte=day_start(since),
                                         bucket_start__lt=day_start(today))
              .annotate(d=TruncDate("bucket_start")).values_list("d", "project_id"))
    else:
        qs = SpendRollup.objects.filter(tenant=tenant, day__gte=since, day__lt=today).values_list("day", "project_id")
    return [(as_date(d), _key(p), s or ZERO) for d, p, s in qs.annotate(s=Sum("amount_usd")).order_by()]


def budget_gauges(tenant, budgets, *, source: str = "rollup", view: SpendView | None = None) -> list[dict]:
    """Spent vs amount for each budget in its current period: rollups for its past days
    (cached under the rollup generation) + today's booked ledger. ``view``: the dashboard's
    ``build`` result, whose generation and today's ledger are reused (no second read).
    ``source="ledger"``: the raw ledger throughout, the benchmark's baseline."""
    if not budgets:
        return []
    now = clock.now()
    today = now.date()
    starts = {b.pk: period_start(b.period, now) for b in budgets}
    earliest = min(starts.values()).date()
    if source == "ledger":
        gen = None
    elif view is not None and view.generation is not None:
        gen = view.generation
    else:
        gen = generation(tenant.pk)
    history = cached(tenant, gen, ("gauges", today, earliest),
                      lambda: _gauge_history(tenant, earliest, today, source))
    todays = view.today_booked if view is not None and view.today == today else today_rows(tenant, today)
    per_day_project = [*history, *((today, p, usd) for p, _prov, _w, usd in todays)]
    out = []
    for b in budgets:
        project = _key(b.project_id)
        start = starts[b.pk]
        spent = sum((s for d, p, s in per_day_project if d >= start.date() and (project is None or p == project)), ZERO)
        pct = float(spent * 100 / b.amount_usd) if b.amount_usd else 0.0
        forecast = forecast_spend(spent, start=start, end=period_end(b.period, now), at=now)
        out.append({"budget": b, "spent": spent, "pct": pct, "left": max(ZERO, b.amount_usd - spent),
                    "forecast": forecast, "state": "bad" if pct >= 100 else "warn" if pct >= 80 else "ok"})
    return out


def name_maps(tenant) -> tuple[dict, dict]:
    """Project and provider-account names of the tenant (one round trip)."""
    rows = (Project.objects.filter(tenant=tenant).annotate(t=Value("p")).values_list("t", "pk", "name").order_by()
            .union(ProviderAccount.objects.filter(tenant=tenant).annotate(t=Value("a"))
                   .values_list("t", "pk", "name").order_by(), all=True))
    projects, providers = {}, {}
    for t, pk, name in rows:
        (projects if t == "p" else providers)[str(pk)] = name
    return projects, providers
