"""The spend dashboard's history: whole past days, aggregated in SQL from the rollups (or the
raw ledger, the benchmark's baseline) and cached under the tenant's rollup generation.

What one computation reads: per chart bucket and group, the top workloads ranked in the
database (``ranked_sums``: N rows, not one per workload of the organization), the history of
the workloads that spend today (they may climb into the top N once today is added), and the
daily totals of the burn-rate/forecast window, each with its idle GPU share.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import DateField, F, Sum, UUIDField, Value
from django.db.models.functions import TruncDate, TruncMonth, TruncWeek

from workloads.models import Workload

from .models import LedgerEntry, SpendRollup, SpendRollupMonth
from .selectors import MONEY, ZERO, day_start
from .spend_filters import Filters, _key, _scoped

TOP_N = 10
HISTORY_TTL_SECONDS = 15 * 60
logger = logging.getLogger(__name__)

Key = tuple[str | None, str | None]  # (workload id, project id)


def bucket_of(day: date, grain: str) -> date:
    if grain == "week":
        return day - timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


def rank_key(item: tuple[Key, Decimal]) -> tuple:
    """The order of the top workloads: most spent first; ties by workload id, then project id,
    a removed workload (``None``) after the others. ``ranked_sums`` orders the same in SQL."""
    (workload, project), usd = item
    return (-usd, workload is None, workload or "", project is None, project or "")


class Source:
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

    def idle_column(self):
        """Per row: the idle GPU share (see ``idle_sum``)."""
        return F("idle_usd") if self.kind != "ledger" else Value(ZERO, output_field=MONEY)

    def idle_sum(self):
        """Idle GPU spend is stored in the rollups (``billing.idle``); the raw-ledger baseline
        has no such column and reads it as zero (the benchmark compares spend, not idle)."""
        return Sum("idle_usd") if self.kind != "ledger" else Sum(Value(ZERO), output_field=MONEY)


def union(querysets: list):
    """Aggregated querysets of the same shape as one UNION ALL queryset (None if none)."""
    if not querysets:
        return None
    first, *rest = querysets
    return first.union(*rest, all=True) if rest else first


def as_date(x) -> date:
    return x.date() if isinstance(x, datetime) else x


# --- top workloads, ranked in SQL ------------------------------------------------------------

_MONEY_OUT = Value(ZERO, output_field=MONEY)
_UUID_OUT = Value(None, output_field=UUIDField())


def _converter(expression) -> Callable[[Any], Any]:
    """Raw column values as the ORM would return them (SQLite: floats to 6-place decimals, hex
    to UUID; PostgreSQL: already typed), through the backend's own converters."""
    converters = connection.ops.get_db_converters(expression)

    def convert(value):
        for fn in converters:
            value = fn(value, expression, connection)
        return value
    return convert


def ranked_sums(src: Source, since: date, until: date, *, limit: int,
                include: Iterable[str | None] = ()) -> tuple[list[Key], dict[Key, tuple[Decimal, Decimal]]]:
    """Spend and idle spend per (workload, project) over whole past days ``since <= day < until``:
    the ``limit`` best by ``rank_key``, ordered and cut in the database, plus every pair of the
    workloads in ``include`` (``None``: lines of removed workloads). Returns (the ranked keys,
    key -> (usd, idle usd) for those and the included ones).

    The ORM cannot aggregate over a UNION (whole months and the daily edges are different
    tables), so the parts are compiled by the ORM and only the outer query is written here;
    it is plain SQL that PostgreSQL and SQLite both run."""
    # the parts' rows go to one aggregation as they are (aggregating each part first would
    # build every (workload, project) group twice)
    parts = union([qs.annotate(s=F("amount_usd"), i=src.idle_column()).values_list("workload_id", "project_id", "s", "i")
                   .order_by() for qs, _fld, _monthly in src.parts(since, until)])
    if parts is None:
        return [], {}
    try:
        inner, params = parts.query.sql_with_params()
    except EmptyResultSet:  # filters that match nothing (e.g. only malformed workload ids)
        return [], {}
    include = set(include)
    ids = [UUIDField().get_db_prep_value(uuid.UUID(w), connection) for w in include if w is not None]
    wanted = " OR ".join(([f"w IN ({', '.join(['%s'] * len(ids))})"] if ids else [])
                         + (["w IS NULL"] if None in include else [])) or "1 = 0"
    # "x IS NULL" sorts false (0) before true (1) on both databases: removed workloads last, as rank_key
    sql = (f"WITH agg(w, p, s, i) AS (SELECT workload_id, project_id, SUM(s), SUM(i) FROM ({inner}) parts "
           "GROUP BY workload_id, project_id) "
           "SELECT w, p, s, i, 1 FROM (SELECT w, p, s, i FROM agg "
           "ORDER BY s DESC, w IS NULL, w, p IS NULL, p LIMIT %s) top "
           f"UNION ALL SELECT w, p, s, i, 0 FROM agg WHERE {wanted}")
    with connection.cursor() as cur:
        cur.execute(sql, [*params, limit, *ids])
        rows = cur.fetchall()
    sums: dict[Key, tuple[Decimal, Decimal]] = {}
    top = []
    as_uuid, as_money = _converter(_UUID_OUT), _converter(_MONEY_OUT)
    for w, p, s, i, in_top in rows:
        k = (_key(as_uuid(w)), _key(as_uuid(p)))
        sums[k] = (as_money(s) or ZERO, as_money(i) or ZERO)
        if in_top:
            top.append(k)
    # the database ordered the top rows; a UNION ALL need not keep that order, so sort the N again
    top.sort(key=lambda k: rank_key((k, sums[k][0])))
    return top, sums


# --- the cached history ----------------------------------------------------------------------

@dataclass
class History:
    series: list[tuple[date, str | None, Decimal, Decimal]]  # (chart bucket, group key, usd, idle usd)
    ranked: list[Key]  # the TOP_N (workload, project) keys by history alone
    by_workload: dict[Key, tuple[Decimal, Decimal]]  # (usd, idle usd) of the ranked and looked-up workloads
    looked_up: set[str | None]  # workloads whose every pair is in by_workload (absent: no history)
    daily: dict[date, Decimal]  # per day over the burn/forecast window
    daily_idle: dict[date, Decimal]
    workload_names: dict[str, str]  # names of the ranked workloads (a workload is never renamed)

    def usd(self, k: Key) -> Decimal:
        return self.by_workload.get(k, (ZERO, ZERO))[0]

    def idle(self, k: Key) -> Decimal:
        return self.by_workload.get(k, (ZERO, ZERO))[1]


def compute(src: Source, f: Filters, *, group_field: str, until: date, recent_since: date, today: date,
            include: set[str | None]) -> History:
    series = []
    if (parts := union([qs.annotate(b=src.bucket_expr(fld, monthly, f.grain)).values_list("b", group_field)
                        .annotate(s=Sum("amount_usd"), i=src.idle_sum()).order_by()
                        for qs, fld, monthly in src.parts(f.start, until, months=f.grain == "month")])) is not None:
        series = [(bucket_of(as_date(b), f.grain), _key(key), usd or ZERO, idle or ZERO) for b, key, usd, idle in parts]
    ranked, by_workload = ranked_sums(src, f.start, until, limit=TOP_N, include=include)
    daily: dict[date, Decimal] = defaultdict(Decimal)
    daily_idle: dict[date, Decimal] = defaultdict(Decimal)
    if (parts := union([qs.annotate(b=src.bucket_expr(fld, monthly, "day")).values_list("b")
                        .annotate(s=Sum("amount_usd"), i=src.idle_sum()).order_by()
                        for qs, fld, monthly in src.parts(recent_since, today, months=False)])) is not None:
        for d, usd, idle in parts:
            daily[as_date(d)] += usd or ZERO
            daily_idle[as_date(d)] += idle or ZERO
    return History(series, ranked, by_workload, set(include), dict(daily), dict(daily_idle),
                   workload_names(w for w, _p in ranked))


def look_up(history: History, src: Source, f: Filters, until: date, workloads: set[str | None]) -> bool:
    """Add the history of ``workloads`` not looked up yet (a workload that started spending
    after the history was cached). Returns whether anything was added."""
    missing = workloads - history.looked_up
    if not missing:
        return False
    _top, sums = ranked_sums(src, f.start, until, limit=0, include=missing)
    history.by_workload.update(sums)
    history.looked_up |= missing
    return True


def workload_names(ids) -> dict[str, str]:
    ids = [w for w in ids if w]
    if not ids:
        return {}
    return {str(pk): name for pk, name in Workload.objects.filter(pk__in=ids).values_list("pk", "name")}


# --- the cache -------------------------------------------------------------------------------

def cache_key(tenant, generation: int, parts: tuple) -> str:
    digest = hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()
    return f"spend-history:{tenant.pk}:{generation}:{digest}"


def cache_get(key: str) -> Any:
    """The cache is only a shortcut: if it is unreachable the figures are computed as if it were empty."""
    try:
        return cache.get(key)
    except Exception:  # noqa: BLE001 - any cache backend error: compute instead
        logger.warning("spend history cache unreachable", exc_info=True)
        return None


def cache_put(key: str, value: Any, ttl_seconds: int = HISTORY_TTL_SECONDS) -> None:
    try:
        cache.set(key, value, ttl_seconds)
    except Exception:  # noqa: BLE001
        logger.warning("spend history cache unreachable", exc_info=True)


def ttl_cached(key: str, ttl_seconds: int, compute_fn: Callable[[], Any]) -> Any:
    """``compute_fn()``, kept ``ttl_seconds`` under ``key``: for figures that may lag a little
    (today's idle share, the filter form's options) and are read on every refresh."""
    hit = cache_get(key)
    if hit is None:
        hit = compute_fn()
        cache_put(key, hit, ttl_seconds)
    return hit


def cached(tenant, generation: int | None, parts: tuple, compute_fn: Callable[[], Any]) -> Any:
    """``compute_fn()``, kept in the cache under the tenant's rollup generation.

    Whole past days change only when their rollups are rewritten, which bumps the generation
    (``billing.rollups.generation_bump``), so an entry can never outlive the history it was
    computed from. ``generation=None`` (the raw-ledger baseline) computes every time."""
    if generation is None:
        return compute_fn()
    return ttl_cached(cache_key(tenant, generation, parts), HISTORY_TTL_SECONDS, compute_fn)
