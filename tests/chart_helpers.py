"""The charts of a page as ``provisioner.charts`` renders them: ``{div id: figure}``."""

from __future__ import annotations

import json
import re

_CHART = re.compile(r'<div id="([^"]+)" class="plotly-graph-div"[^>]*data-plotly-figure="([^"]+)"[^>]*></div>'
                    r'<script id="([^"]+)" type="application/json">(.*?)</script>', re.S)


def figures(html: str) -> dict[str, dict]:
    out = {}
    for div_id, figure_id, script_id, payload in _CHART.findall(html):
        assert figure_id == script_id, (figure_id, script_id)  # the div names the script that holds its figure
        out[div_id] = json.loads(payload)
    return out
