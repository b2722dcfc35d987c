"""Server-side plotly charts for the spend dashboard.

Figures are plain dicts rendered with ``plotly.io.to_html(validate=False)`` (no graph-object
validation: it costs tens of milliseconds per figure and the dicts are ours); the page loads
the vendored plotly.js once, so ``include_plotlyjs=False``.
"""

from __future__ import annotations

import calendar
import itertools
import json

from django.templatetags.static import static
from plotly.utils import PlotlyJSONEncoder

from . import money
from .dashboard import GRAINS, GROUPS, ZERO, SpendView

PALETTE = ["#3b5bdb", "#12805c", "#b54708", "#c01048", "#7048e8", "#0b7285", "#5c940d", "#862e9c"]
LAYOUT = {"margin": {"l": 50, "r": 10, "t": 30, "b": 40}, "height": 320, "paper_bgcolor": "rgba(0,0,0,0)",
          "plot_bgcolor": "rgba(0,0,0,0)", "font": {"size": 12}, "legend": {"orientation": "h", "y": -0.2}}
CONFIG = {"displayModeBar": False, "responsive": True}


def _html(fig: dict, div_id: str) -> str:
    """The chart's div and its figure as inert JSON, drawn by ``static/js/app.js``: plotly's own
    ``to_html`` writes an inline ``<script>``, which the CSP (script-src 'self') refuses."""
    payload = json.dumps({**fig, "config": CONFIG}, cls=PlotlyJSONEncoder, separators=(",", ":"))
    # inside <script>, "</" could end the element early: escape "<", ">" and "&" as JSON allows
    payload = payload.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    height = (fig.get("layout") or {}).get("height") or LAYOUT["height"]
    return (f'<div id="{div_id}" class="plotly-graph-div" style="height:{int(height)}px;width:100%"></div>'
            f'<script type="application/json" data-plotly-for="{div_id}" data-plotly-src="{static("vendor/plotly.min.js")}">'
            f"{payload}</script>")


def spend_over_time(v: SpendView) -> str:
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
    layout = {**LAYOUT, "barmode": "stack", "title": {"text": title, "x": 0},
              "yaxis": {"tickprefix": "$", "rangemode": "tozero"}}
    return _html({"data": traces, "layout": layout}, "chart-spend")


def idle_spend(v: SpendView) -> str:
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
    layout = {**LAYOUT, "barmode": "stack", "title": {"text": f"Idle GPU spend ({unit})", "x": 0},
              "yaxis": {"tickprefix": "$", "rangemode": "tozero"}}
    return _html({"data": traces, "layout": layout}, "chart-idle")


def burn_and_forecast(v: SpendView) -> str:
    days = [d.isoformat() for d, _ in v.mtd_daily]
    actual = {"type": "scatter", "mode": "lines+markers", "name": "Month to date", "x": days,
              "y": [float(money.cents(c)) for _, c in v.mtd_daily], "line": {"color": PALETTE[0]}}
    month_end = v.today.replace(day=calendar.monthrange(v.today.year, v.today.month)[1])
    forecast = {"type": "scatter", "mode": "lines", "name": f"Forecast at {money.usd_label(v.burn_per_day)}/day", "x":
                [v.today.isoformat(), month_end.isoformat()],
                "y": [float(money.cents(v.month_to_date)), float(money.cents(v.forecast_month))], "line": {"dash": "dash", "color": PALETTE[2]}}
    layout = {**LAYOUT, "title": {"text": "Burn rate and forecast to month end", "x": 0},
              "yaxis": {"tickprefix": "$", "rangemode": "tozero"}}
    return _html({"data": [actual, forecast], "layout": layout}, "chart-forecast")


def budget_gauges(gauges: list[dict]) -> str:
    """Each budget as a horizontal bar (spent this period) with a tick at its amount: plotly's
    basic bundle (bar, scatter, pie: static/vendor/plotly.min.js) has no ``indicator`` trace,
    and bars keep long budget names readable on the axis instead of clipped dial titles."""
    if not gauges:
        return ""
    names = [f"{g['budget'].name} ({g['budget'].get_period_display()})" for g in gauges]
    spent = {"type": "bar", "orientation": "h", "name": "Spent", "y": names,
             "x": [float(money.cents(g["spent"])) for g in gauges],
             "marker": {"color": [{"ok": PALETTE[1], "warn": PALETTE[2], "bad": PALETTE[3]}[g["state"]] for g in gauges]},
             "text": [f"{g['pct']:.0f}%" for g in gauges], "textposition": "auto",
             "hovertemplate": "%{y}: $%{x:,.2f} spent<extra></extra>"}
    amount = {"type": "scatter", "mode": "markers", "name": "Budget", "y": names,
              "x": [float(g["budget"].amount_usd) for g in gauges],
              "marker": {"symbol": "line-ns-open", "size": 28, "color": "#101828", "line": {"width": 3}},
              "hovertemplate": "%{y}: budget $%{x:,.2f}<extra></extra>"}
    layout = {**LAYOUT, "height": 90 + 44 * len(gauges), "margin": {"l": 10, "r": 20, "t": 10, "b": 40},
              "showlegend": False, "xaxis": {"tickprefix": "$", "rangemode": "tozero"},
              "yaxis": {"automargin": True, "autorange": "reversed"}}
    return _html({"data": [spent, amount], "layout": layout}, "chart-budgets")
