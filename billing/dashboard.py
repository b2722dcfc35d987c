"""The spend dashboard's read model: filters, series, top workloads, burn rate, forecast,
budget gauges — from daily rollups for past days plus today's ledger and the live,
not-yet-metered accrual of running pods.

Every figure can also be computed from the raw ledger (``source="ledger"``): the benchmark
uses that as its baseline and checks both give the same numbers.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from django.core.cache import cache
from django.db.models import DateField, F, Sum, Value
from django.db.models.functions import TruncDate, TruncMonth, TruncWeek

from providers.models import ProviderAccount
from providers.selectors import usd_rates_needed
from provisioner import clock
from tenants.models import Project
from workloads.models import BILLABLE_POD_STATES, Pod, PodState, Workload

from . import money
from .budgets import forecast_spend
from .idle import idle_usd_by_key
from .metering import unbooked_usd
from .models import LedgerEntry, SpendRollup, SpendRollupMonth
from .rollups import generation
from .selectors import MONEY, ZERO, day_start, period_end, period_start
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

TOP_N = 10
logger = logging.getLogger(__name__)


def bucket_of(day: date, grain: str) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


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


class _Source:
    """Where history comes from: rollups (the product) or the raw ledger (the baseline).

    ``parts(since, until, months=True)`` splits whole past days ``since <= day < until`` into
    querysets: daily rollups for the partial months at the edges and monthly rollups for the
    whole months between (``months=False``: daily rollups throughout, for daily/weekly charts).
    Each part is (queryset, date field, is_monthly).
    """

    def __init__(self, tenant, f: Filters, kind: str):
        self.tenant, self.f, self.kind = tenant, f, kind

    def _daily(self, since: date, until: date):
        if self.kind == "ledger":
            qs = LedgerEntry.objects.filter(tenant=self.tenant, bucket_start__gte=day_start(since),
                                            bucket_start__lt=day_start(until))
            return _scoped(qs, self.f), "bucket_start", False
        qs = SpendRollup.objects.filter(tenant=self.tenant, day__gte=since, day__lt=until)
        return _scoped(qs, self.f), "day", False

    def parts(self, since: date, until: date, *, months: bool = True) -> list:
        if since >= until:
            return []
        if self.kind == "ledger" or not months:
            return [self._daily(since, until)]
        m1 = since if since.day == 1 else (since.replace(day=1) + timedelta(days=32)).replace(day=1)
        m2 = until.replace(day=1)
        if m1 >= m2:
            return [self._daily(since, until)]
        out = []
        if since < m1:
            out.append(self._daily(since, m1))
        qs = SpendRollupMonth.objects.filter(tenant=self.tenant, month__gte=m1, month__lt=m2)
        out.append((_scoped(qs, self.f), "month", True))
        if m2 < until:
            out.append(self._daily(m2, until))
        return out

    @staticmethod
    def bucket_expr(field_name: str, monthly: bool, grain: str):
        if grain == "week":
            return TruncWeek(field_name, output_field=DateField())
        if grain == "month":
            return F(field_name) if monthly else TruncMonth(field_name, output_field=DateField())
        return TruncDate(field_name) if field_name == "bucket_start" else F(field_name)


def _union(querysets: list) -> list:
    """Run aggregated querysets of the same shape as one UNION ALL round trip."""
    if not querysets:
        return []
    first, *rest = querysets
    return list(first.union(*rest, all=True) if rest else first)


def _as_date(x) -> date:
    return x.date() if isinstance(x, datetime) else x


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
    out = []
    for row in qs.values(*_LIVE_FIELDS, "provider_account__kind", "provider_account__settings",
                         "workload__volumes").order_by():
        rec = SimpleNamespace(**{k: row[k] for k in _LIVE_FIELDS})
        rec.provider_account = (SimpleNamespace(kind=row["provider_account__kind"],
                                                settings=row["provider_account__settings"] or {})
                                if row["provider_account_id"] else None)
        rec.workload = SimpleNamespace(volumes=row["workload__volumes"] or [])
        out.append(rec)
    return out


# --- history: whole past days, from the rollups, cached per rollup generation ---------------

HISTORY_TTL_SECONDS = 15 * 60


def _cached(tenant, generation: int | None, parts: tuple, compute: Callable[[], Any]) -> Any:
    """``compute()``, kept in the cache under the tenant's rollup generation.

    Whole past days change only when their rollups are rewritten, which bumps the generation
    (``billing.rollups.generation_bump``), so an entry can never outlive the history it was
    computed from. ``generation=None`` (the raw-ledger baseline) computes every time. The cache
    is only a shortcut: if it is unreachable the figures are computed as if it were empty."""
    if generation is None:
        return compute()
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()
    key = f"spend-history:{tenant.pk}:{generation}:{digest}"
    try:
        hit = cache.get(key)
    except Exception:  # noqa: BLE001 - any cache backend error: compute instead
        logger.warning("spend history cache unreachable", exc_info=True)
        return compute()
    if hit is None:
        hit = compute()
        try:
            cache.set(key, hit, HISTORY_TTL_SECONDS)
        except Exception:  # noqa: BLE001
            logger.warning("spend history cache unreachable", exc_info=True)
    return hit


def _rank(item: tuple) -> tuple:
    (workload, _project), usd = item
    return (-usd, str(workload))


@dataclass
class _History:
    series: list[tuple[date, str | None, Decimal, Decimal]]  # (chart bucket, group key, usd, idle usd)
    by_workload: dict[tuple[str | None, str | None], Decimal]  # (workload, project) -> usd over the range
    ranked: list[tuple[str | None, str | None]]  # the TOP_N (workload, project) keys by history alone
    daily: dict[date, Decimal]  # per day over the burn/forecast window
    workload_names: dict[str, str]  # names of the ranked workloads (a workload is never renamed)
    idle_by_workload: dict[tuple[str | None, str | None], Decimal] = field(default_factory=dict)
    daily_idle: dict[date, Decimal] = field(default_factory=dict)


def _idle_sum(src: _Source):
    """Idle GPU spend is stored in the rollups (``billing.idle``); the raw-ledger baseline has
    no such column and reads it as zero (the benchmark compares spend, not idle)."""
    return Sum("idle_usd") if src.kind != "ledger" else Sum(Value(ZERO), output_field=MONEY)


def _history(src: _Source, f: Filters, *, group_field: str, until: date, recent_since: date, today: date) -> _History:
    series = [(bucket_of(_as_date(b), f.grain), _key(key), usd or ZERO, idle or ZERO)
              for b, key, usd, idle in _union([qs.annotate(b=src.bucket_expr(fld, monthly, f.grain))
                                               .values_list("b", group_field)
                                               .annotate(s=Sum("amount_usd"), i=_idle_sum(src)).order_by()
                                               for qs, fld, monthly in src.parts(f.start, until, months=f.grain == "month")])]
    by_workload: dict = defaultdict(Decimal)
    idle_by_workload: dict = defaultdict(Decimal)
    for w, p, usd, idle in _union([qs.values_list("workload_id", "project_id")
                                   .annotate(s=Sum("amount_usd"), i=_idle_sum(src)).order_by()
                                   for qs, _fld, _monthly in src.parts(f.start, until)]):
        by_workload[(_key(w), _key(p))] += usd or ZERO
        idle_by_workload[(_key(w), _key(p))] += idle or ZERO
    ranked = [k for k, _ in sorted(by_workload.items(), key=_rank)[:TOP_N]]
    daily: dict[date, Decimal] = defaultdict(Decimal)
    daily_idle: dict[date, Decimal] = defaultdict(Decimal)
    for d, usd, idle in _union([qs.annotate(b=src.bucket_expr(fld, monthly, "day")).values_list("b")
                                .annotate(s=Sum("amount_usd"), i=_idle_sum(src)).order_by()
                                for qs, fld, monthly in src.parts(recent_since, today, months=False)]):
        daily[_as_date(d)] += usd or ZERO
        daily_idle[_as_date(d)] += idle or ZERO
    return _History(series, dict(by_workload), ranked, dict(daily), _workload_names(w for w, _p in ranked),
                    dict(idle_by_workload), dict(daily_idle))


def _workload_names(ids) -> dict[str, str]:
    ids = [w for w in ids if w]
    if not ids:
        return {}
    return {str(pk): name for pk, name in Workload.objects.filter(pk__in=ids).values_list("pk", "name")}


GROUP_FIELDS = {"project": "project_id", "provider": "provider_account_id", "kind": "provider_account_id",
                "workload": "workload_id", "gpu": "workload_id", "user": "workload_id"}
_PART = {"project_id": 0, "provider_account_id": 1, "workload_id": 2}  # in (project, provider, workload) keys
TODAY_IDLE_TTL_SECONDS = 60  # today's idle share is read from samples: once a minute is enough


def today_idle(tenant, f: Filters, today: date) -> dict:
    """Today's idle GPU spend per (project, provider account, workload), from today's ledger and
    samples (past days are in the rollups); kept a minute so the 5-second poll stays cheap."""
    key = "spend-idle-today:" + hashlib.sha1(f"{tenant.pk}|{today}|{f.query()}".encode()).hexdigest()
    try:
        hit = cache.get(key)
    except Exception:  # noqa: BLE001 - any cache backend error: compute instead
        hit = None
    if hit is None:
        start = day_start(today)
        hit = idle_usd_by_key(tenant_id=tenant.pk, start=start, end=start + timedelta(days=1),
                              scope=lambda qs: _scoped(qs, f))
        try:
            cache.set(key, hit, TODAY_IDLE_TTL_SECONDS)
        except Exception:  # noqa: BLE001
            logger.warning("spend cache unreachable", exc_info=True)
    return hit


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
    src = _Source(tenant, f, source)
    group_field = GROUP_FIELDS[f.group]
    hist_end = min(f.end + timedelta(days=1), today)
    month_start = today.replace(day=1)
    recent_since = min(month_start, today - timedelta(days=7))
    v.generation = generation(tenant.pk) if source == "rollup" else None
    history: _History = _cached(
        tenant, v.generation, ("build", today, f.start, hist_end, f.grain, group_field, f.query()),
        lambda: _history(src, f, group_field=group_field, until=hist_end, recent_since=recent_since, today=today))
    raw: list[tuple[date, str | None, Decimal, Decimal]] = list(history.series)
    # today: booked ledger lines plus the live, not-yet-metered accrual
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
    idle_today = today_idle(tenant, f, today) if source == "rollup" else {}
    v.idle_today = sum(idle_today.values(), ZERO)
    in_range_today = f.start <= today <= f.end
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
    contenders = {k: history.by_workload.get(k, ZERO) for k in history.ranked}
    for key, usd in today_by_workload.items():
        contenders[key] = history.by_workload.get(key, ZERO) + usd
    top = sorted(contenders.items(), key=_rank)[:TOP_N]
    wnames = history.workload_names
    if missing := [w for (w, _p), _ in top if w and w not in wnames]:  # only today made them top
        wnames = {**wnames, **_workload_names(missing)}
    v.top = [{"workload_id": w, "name": wnames.get(w, "(removed)"), "project": projects.get(p, "(removed)"),
              "usd": usd, "idle": history.idle_by_workload.get((w, p), ZERO) + idle_today_by_workload.get((w, p), ZERO),
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
    return [(_as_date(d), _key(p), s or ZERO) for d, p, s in qs.annotate(s=Sum("amount_usd")).order_by()]


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
    history = _cached(tenant, gen, ("gauges", today, earliest),
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
