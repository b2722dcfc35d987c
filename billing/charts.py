"""The spend dashboard's plotly figures (plain dicts), rendered by ``provisioner.charts`` (the
one way every chart of the app reaches a page: a div and its figure through ``json_script``).
"""

from __future__ import annotations

import calendar
import itertools

from django.utils.html import format_html
from django.utils.safestring import SafeString

from provisioner.charts import LAYOUT, PALETTE, chart

from . import money
from .dashboard import GRAINS, GROUPS, ZERO, SpendView, bucket_of


def _empty(div_id: str, title: str, v: SpendView) -> SafeString:
    """What a chart with nothing to draw shows instead of plotly's meaningless default axes
    (-1 to 6): its title and a sentence saying that nothing was spent in the range."""
    return format_html('<div id="{}" class="chart-empty" data-empty-chart><h3>{}</h3><p class="muted">No spend from {} to {}'
                       '{}. Try a longer date range{}.</p></div>', div_id, title, v.filters.start.isoformat(),
                       v.filters.end.isoformat(), " with these filters" if _filtered(v) else "",
                       " or fewer filters" if _filtered(v) else "")


def _filtered(v: SpendView) -> bool:
    f = v.filters
    return bool(f.project_ids or f.provider_ids or f.workload_ids or f.gpu_classes or f.user_ids or f.kinds)


def _marks(v: SpendView, events: list[tuple]) -> tuple[list[dict], list[dict]]:
    """Dotted vertical lines with a short label for dated events (``selectors.spend_annotations``),
    one per chart period (several events in one period share it: "Connected A; Removed B +1")."""
    by_period: dict = {}
    for day, text in events:
        if v.filters.start <= day <= v.filters.end:
            by_period.setdefault(bucket_of(day, v.filters.grain), []).append(text)
    shapes, notes = [], []
    for period, texts in sorted(by_period.items()):
        x = period.isoformat()
        label = "; ".join(texts[:2]) + (f" +{len(texts) - 2}" if len(texts) > 2 else "")
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": x, "x1": x, "y0": 0, "y1": 1,
                       "line": {"dash": "dot", "width": 1, "color": "#667085"}})
        notes.append({"x": x, "xref": "x", "y": 1, "yref": "paper", "yanchor": "bottom", "xanchor": "left",
                      "text": label[:60], "hovertext": "; ".join(texts), "showarrow": False,
                      "font": {"size": 10, "color": "#667085"}})
    return shapes, notes


def spend_over_time(v: SpendView, events: list[tuple] | None = None) -> SafeString:
    x = [p.isoformat() for p in v.periods]
    cumulative = v.filters.mode == "cumulative"
    traces = []
    for i, label in enumerate(sorted(v.series)):
        # cents rounded half-up here (billing.money), not by the browser's float formatting
        amounts = [v.series[label].get(p, 0) for p in v.periods]
        if cumulative:
            amounts = list(itertools.accumulate(amounts))
        ys = [float(money.cents(a)) for a in amounts]
        trace = {"type": "scatter" if cumulative else "bar", "name": label, "x": x, "y": ys,
                 "marker": {"color": PALETTE[i % len(PALETTE)]},
                 "hovertemplate": "%{x}: $%{y:,.2f}<extra>" + label + "</extra>"}
        if label in v.drill:  # app.js: a click on the bar opens the view filtered to it
            trace["meta"] = {"drill": "?" + v.drill[label]}
        if cumulative:
            trace["stackgroup"] = "one"
        traces.append(trace)
    unit = {"day": "$ / day", "week": "$ / week", "month": "$ / month"}[v.filters.grain]
    group = GROUPS[v.filters.group].lower()
    title = (f"Cumulative spend by {group} ($)" if cumulative
             else f"{GRAINS[v.filters.grain]} spend by {group} ({unit})")
    if not any(any(t["y"]) for t in traces):
        return _empty("chart-spend", title, v)
    layout = {**LAYOUT, "barmode": "stack", "title": {"text": title, "x": 0},
              "yaxis": {"tickprefix": "$", "rangemode": "tozero"}}
    shapes, notes = _marks(v, events or [])
    if shapes:
        layout.update({"shapes": shapes, "annotations": notes})
    return chart({"data": traces, "layout": layout}, "chart-spend")


def idle_spend(v: SpendView) -> SafeString:
    """Spend per period split into idle GPU time and the rest, stacked (the idle series per
    group is in the table; a stack of both would count idle dollars twice)."""
    x = [p.isoformat() for p in v.periods]
    total = {p: sum((s.get(p, ZERO) for s in v.series.values()), ZERO) for p in v.periods}
    idle = {p: sum((s.get(p, ZERO) for s in v.idle_series.values()), ZERO) for p in v.periods}
    unit = {"day": "$ / day", "week": "$ / week", "month": "$ / month"}[v.filters.grain]
    # a click on a period's bar drills down to that period (daily bars), the other filters kept
    drill = ["?" + v.period_query(p) for p in v.periods]
    traces = [
        {"type": "bar", "name": "Idle GPU", "x": x, "y": [float(money.cents(idle[p])) for p in v.periods],
         "customdata": drill, "marker": {"color": PALETTE[3]}, "hovertemplate": "%{x}: $%{y:,.2f} idle<extra></extra>"},
        {"type": "bar", "name": "Busy GPU and other", "x": x, "customdata": drill,
         "y": [float(money.cents(max(ZERO, total[p] - idle[p]))) for p in v.periods],
         "marker": {"color": PALETTE[0]}, "hovertemplate": "%{x}: $%{y:,.2f} busy or other<extra></extra>"},
    ]
    if not any(total.values()):
        return _empty("chart-idle", f"Idle GPU spend ({unit})", v)
    layout = {**LAYOUT, "barmode": "stack", "title": {"text": f"Idle GPU spend ({unit})", "x": 0},
              "yaxis": {"tickprefix": "$", "rangemode": "tozero"}}
    return chart({"data": traces, "layout": layout}, "chart-idle")


def burn_and_forecast(v: SpendView) -> SafeString:
    days = [d.isoformat() for d, _ in v.mtd_daily]
    actual = {"type": "scatter", "mode": "lines+markers", "name": "Month to date", "x": days,
              "y": [float(money.cents(c)) for _, c in v.mtd_daily], "line": {"color": PALETTE[0]}}
    month_end = v.today.replace(day=calendar.monthrange(v.today.year, v.today.month)[1])
    forecast = {"type": "scatter", "mode": "lines", "name": f"Forecast at {money.usd_label(v.burn_per_day)}/day", "x":
                [v.today.isoformat(), month_end.isoformat()],
                "y": [float(money.cents(v.month_to_date)), float(money.cents(v.forecast_month))], "line": {"dash": "dash", "color": PALETTE[2]}}
    layout = {**LAYOUT, "title": {"text": "Burn rate and forecast to month end", "x": 0},
              "yaxis": {"tickprefix": "$", "rangemode": "tozero"}}
    return chart({"data": [actual, forecast], "layout": layout}, "chart-forecast")


GAUGE_LABEL_CHARS = 32  # a budget's name on the axis; the full name is in the hover and the text below


def _short(name: str, limit: int = GAUGE_LABEL_CHARS) -> str:
    return name if len(name) <= limit else name[:limit - 1].rstrip() + "…"


def budget_gauges(gauges: list[dict]) -> SafeString:
    """Each budget as a horizontal bar (spent this period) with a tick at its amount: plotly's
    basic bundle (bar, scatter, pie: static/vendor/plotly.min.js) has no ``indicator`` trace.
    Rows are positions 0, 1, 2… labelled with the budget's name cut to ``GAUGE_LABEL_CHARS`` (a
    120-character name used to take half the chart's width and squeeze the bars; two budgets whose
    names start alike stay two rows); the hover shows the whole name."""
    if not gauges:
        return SafeString("")
    rows = list(range(len(gauges)))
    full = [f"{g['budget'].name} ({g['budget'].get_period_display()})" for g in gauges]
    labels = [f"{_short(g['budget'].name)} ({g['budget'].get_period_display()})" for g in gauges]
    spent = {"type": "bar", "orientation": "h", "name": "Spent", "y": rows, "customdata": full,
             "x": [float(money.cents(g["spent"])) for g in gauges],
             "marker": {"color": [{"ok": PALETTE[1], "warn": PALETTE[2], "bad": PALETTE[3]}[g["state"]] for g in gauges]},
             "text": [f"{g['pct']:.0f}%" for g in gauges], "textposition": "auto",
             "hovertemplate": "%{customdata}: $%{x:,.2f} spent<extra></extra>"}
    amount = {"type": "scatter", "mode": "markers", "name": "Budget", "y": rows, "customdata": full,
              "x": [float(g["budget"].amount_usd) for g in gauges],
              "marker": {"symbol": "line-ns-open", "size": 28, "color": "#101828", "line": {"width": 3}},
              "hovertemplate": "%{customdata}: budget $%{x:,.2f}<extra></extra>"}
    layout = {**LAYOUT, "height": 90 + 44 * len(gauges), "margin": {"l": 10, "r": 20, "t": 10, "b": 40},
              "showlegend": False, "xaxis": {"tickprefix": "$", "rangemode": "tozero"},
              "yaxis": {"automargin": True, "autorange": "reversed", "tickmode": "array", "tickvals": rows,
                        "ticktext": labels}}
    return chart({"data": [spent, amount], "layout": layout}, "chart-budgets")
