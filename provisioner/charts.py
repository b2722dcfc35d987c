"""Every chart of the app is drawn one way: a plotly figure, a plain dict built by the page's own
module (billing/charts.py for the spend page, workloads/autoshutdown/views.py for a pod's GPUs), is
rendered here as an empty div plus the figure as inert JSON, and ``static/js/app.js`` draws it
with the vendored plotly.js (loaded once a page).

The JSON goes through Django's ``json_script`` (Django docs, "Built-in template tags and
filters", json_script): it escapes ``<``, ``>`` and ``&`` so that no string in a figure, a
workload or budget name among them, can end the ``<script>`` element early. plotly's own
``to_html`` would write an inline script, which the CSP (script-src 'self') refuses.
"""

from __future__ import annotations

from typing import Any

from django.templatetags.static import static
from django.utils.html import format_html, json_script
from django.utils.safestring import SafeString

PLOTLY_JS = "vendor/plotly.min.js"
PALETTE = ["#3b5bdb", "#12805c", "#b54708", "#c01048", "#7048e8", "#0b7285", "#5c940d", "#862e9c"]
LAYOUT: dict[str, Any] = {"margin": {"l": 50, "r": 10, "t": 30, "b": 40}, "height": 320, "paper_bgcolor": "rgba(0,0,0,0)",
                          "plot_bgcolor": "rgba(0,0,0,0)", "font": {"size": 12}, "legend": {"orientation": "h", "y": -0.2}}
CONFIG = {"displayModeBar": False, "responsive": True}


def figure_id(div_id: str) -> str:
    """The id of the ``<script type="application/json">`` holding the figure of chart ``div_id``."""
    return f"{div_id}-figure"


def chart(figure: dict[str, Any], div_id: str, **data: Any) -> SafeString:
    """The chart's div (``data-*`` attributes from ``data``) and its figure, for a template."""
    height = int((figure.get("layout") or {}).get("height") or LAYOUT["height"])
    extra = SafeString("".join(format_html(' data-{}="{}"', k.replace("_", "-"), v) for k, v in data.items()))
    return format_html('<div id="{}" class="plotly-graph-div" style="height:{}px;width:100%" data-plotly-figure="{}" '
                       'data-plotly-src="{}"{}></div>{}', div_id, height, figure_id(div_id), static(PLOTLY_JS), extra,
                       json_script({**figure, "config": CONFIG}, figure_id(div_id)))
