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
from urllib.parse import urlencode

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
from .metering import unbooked_usd
from .models import LedgerEntry, SpendRollup, SpendRollupMonth
from .rollups import generation
from .selectors import ZERO, day_start, period_end, period_start

PRESETS = {"7d": "Last 7 days", "30d": "Last 30 days", "90d": "Last 90 days", "mtd": "Month to date",
           "ytd": "Year to date", "365d": "Last 365 days", "custom": "Custom"}
GROUPS = {"provider": "Provider", "project": "Project"}
GRAINS = {"day": "Daily", "week": "Weekly", "month": "Monthly"}
MODES = {"period": "Spend per period", "cumulative": "Cumulative"}
MAX_DAYS = 3 * 366
TOP_N = 10
logger = logging.getLogger(__name__)


@dataclass
class Filters:
    preset: str
    start: date
    end: date  # inclusive
    project_ids: tuple[str, ...] = ()  # several values allowed; empty = all
    provider_ids: tuple[str, ...] = ()
    group: str = "provider"
    grain: str = "day"
    mode: str = "period"  # "period": spend per bar ($ / day|week|month); "cumulative": running total ($)

    def query(self, **override) -> str:
        q: dict = {"range": self.preset, "group": self.group, "grain": self.grain, "mode": self.mode}
        if self.preset == "custom":
            q.update({"from": self.start.isoformat(), "to": self.end.isoformat()})
        if self.project_ids:
            q["project"] = list(self.project_ids)
        if self.provider_ids:
            q["provider"] = list(self.provider_ids)
        q.update(override)
        return urlencode(q, doseq=True)


def _date(s: str) -> date | None:
    try:
        return date.fromisoformat(s)
    except (TypeError, ValueError):
        return None


def parse_filters(params, *, projects: dict, providers: dict, today: date) -> Filters:
    """Filters from the query string; anything unknown falls back to the default (last 7 days)."""
    preset = params.get("range", "7d")
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
        s, e = _date(params.get("from", "")), _date(params.get("to", ""))
        if s and e and s <= e:
            start, end = s, min(e, today)
            start = max(start, end - timedelta(days=MAX_DAYS))
        else:
            preset = "7d"
    def many(name: str, known: dict) -> tuple[str, ...]:
        values = params.getlist(name) if hasattr(params, "getlist") else params.get(name, [])
        values = [values] if isinstance(values, str) else values
        return tuple(sorted({v for v in values if v in known}))

    group = params.get("group", "provider")
    grain = params.get("grain", "day")
    mode = params.get("mode", "period")
    return Filters(preset=preset, start=start, end=end, project_ids=many("project", projects),
                   provider_ids=many("provider", providers),
                   group=group if group in GROUPS else "provider", grain=grain if grain in GRAINS else "day",
                   mode=mode if mode in MODES else "period")


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

    def table(self) -> list[tuple[str, str, str]]:
        """``rows()`` formatted once (ISO date, label, amount to the cent): the page and the
        CSV print these same strings."""
        return [(p.isoformat(), label, money.usd(amount)) for p, label, amount in self.rows()]

    def rows(self) -> list[tuple[date, str, Decimal]]:
        """The period x group table the page shows and the CSV exports."""
        out = []
        for p in self.periods:
            for label in sorted(self.series):
                v = self.series[label].get(p, ZERO)
                if v:
                    out.append((p, label, v))
        return out


def _scoped(qs, f: Filters):
    if f.project_ids:
        qs = qs.filter(project_id__in=f.project_ids)
    if f.provider_ids:
        qs = qs.filter(provider_account_id__in=f.provider_ids)
    return qs


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


def _key(x) -> str | None:
    """Ids as plain strings (cheap to hash, sort and cache); ``None`` stays ``None``."""
    return None if x is None else str(x)


def today_rows(tenant, today: date) -> list[tuple[str | None, str | None, str | None, Decimal]]:
    """Today's booked spend from the ledger (only today's buckets), for every project and
    provider: the filtered figures and the budget gauges both take their share of it."""
    qs = LedgerEntry.objects.filter(tenant=tenant, bucket_start__gte=day_start(today))
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
    series: list[tuple[date, str | None, Decimal]]  # (chart bucket, group key, usd)
    by_workload: dict[tuple[str | None, str | None], Decimal]  # (workload, project) -> usd over the range
    ranked: list[tuple[str | None, str | None]]  # the TOP_N (workload, project) keys by history alone
    daily: dict[date, Decimal]  # per day over the burn/forecast window
    workload_names: dict[str, str]  # names of the ranked workloads (a workload is never renamed)


def _history(src: _Source, f: Filters, *, group_field: str, until: date, recent_since: date, today: date) -> _History:
    series = [(bucket_of(_as_date(b), f.grain), _key(key), usd or ZERO)
              for b, key, usd in _union([qs.annotate(b=src.bucket_expr(fld, monthly, f.grain))
                                         .values_list("b", group_field).annotate(s=Sum("amount_usd")).order_by()
                                         for qs, fld, monthly in src.parts(f.start, until, months=f.grain == "month")])]
    by_workload: dict = defaultdict(Decimal)
    for w, p, usd in _union([qs.values_list("workload_id", "project_id").annotate(s=Sum("amount_usd")).order_by()
                             for qs, _fld, _monthly in src.parts(f.start, until)]):
        by_workload[(_key(w), _key(p))] += usd or ZERO
    ranked = [k for k, _ in sorted(by_workload.items(), key=_rank)[:TOP_N]]
    daily: dict[date, Decimal] = defaultdict(Decimal)
    for d, usd in _union([qs.annotate(b=src.bucket_expr(fld, monthly, "day")).values_list("b")
                          .annotate(s=Sum("amount_usd")).order_by()
                          for qs, fld, monthly in src.parts(recent_since, today, months=False)]):
        daily[_as_date(d)] += usd or ZERO
    return _History(series, dict(by_workload), ranked, dict(daily), _workload_names(w for w, _p in ranked))


def _workload_names(ids) -> dict[str, str]:
    ids = [w for w in ids if w]
    if not ids:
        return {}
    return {str(pk): name for pk, name in Workload.objects.filter(pk__in=ids).values_list("pk", "name")}


def build(tenant, f: Filters, *, projects: dict, providers: dict, source: str = "rollup") -> SpendView:
    """Everything the dashboard shows, in a fixed number of queries.

    History (whole past days) is aggregated in SQL from the rollups — per chart bucket and
    group, per workload, and the recent daily totals — and cached under the tenant's rollup
    generation; today's ledger and the live accrual of running pods are read every time and
    added in Python. ``source="ledger"``: history from the raw ledger, uncached (the
    benchmark's baseline, and the tests' reference).
    """
    now = clock.now()
    today = now.date()
    v = SpendView(filters=f, today=today)
    src = _Source(tenant, f, source)
    group_field = "project_id" if f.group == "project" else "provider_account_id"
    names = projects if f.group == "project" else providers
    hist_end = min(f.end + timedelta(days=1), today)
    month_start = today.replace(day=1)
    recent_since = min(month_start, today - timedelta(days=7))
    v.generation = generation(tenant.pk) if source == "rollup" else None
    history: _History = _cached(
        tenant, v.generation, ("build", today, f.start, hist_end, f.grain, group_field, f.project_ids, f.provider_ids),
        lambda: _history(src, f, group_field=group_field, until=hist_end, recent_since=recent_since, today=today))
    series: dict[str, dict[date, Decimal]] = defaultdict(lambda: defaultdict(Decimal))

    def add(label_key, period: date, usd: Decimal) -> None:
        series[names.get(label_key, "(removed)")][period] += usd
        v.total += usd

    for period, key, usd in history.series:
        add(key, period, usd)
    # today: booked ledger lines plus the live, not-yet-metered accrual
    v.today_booked = today_rows(tenant, today)
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
    today_by_workload: dict = defaultdict(Decimal)
    for project_id, provider_id, workload_id, usd in todays:
        v.spent_today += usd
        if in_range_today:
            add(project_id if f.group == "project" else provider_id, bucket_of(today, f.grain), usd)
            today_by_workload[(workload_id, project_id)] += usd
    periods, d = [], bucket_of(f.start, f.grain)
    while d <= f.end:
        periods.append(d)
        d = bucket_of(d + timedelta(days={"day": 1, "week": 7}.get(f.grain, 32)), f.grain)
    v.periods, v.series = periods, {k: dict(x) for k, x in series.items()}
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
              "usd": usd} for (w, p), usd in top]
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
