"""Telemetry endpoints: the in-pod agent's heartbeat (token auth, no session), the agent script
download, and the pod page's utilization chart fragment."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.contrib.auth.decorators import login_required
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from provisioner import clock
from provisioner.charts import LAYOUT, chart
from tenants.access import get_for_tenant_or_404
from workloads.interruptions.notices import on_notice_deliver
from workloads.models import LIVE_POD_STATES
from workloads.pods.selectors import pods_for_tenant

from . import telemetry
from .idle import pod_idle_status

AGENT_SCRIPT = Path(__file__).resolve().parent.parent / "agent" / "provisioner_agent.py"


@csrf_exempt  # authenticated by the per-pod bearer token, not a session cookie
@require_POST
def agent_heartbeat(request: HttpRequest, pk) -> JsonResponse:
    """Store one agent report. 401 unknown/expired token, 403 foreign token or pod not live,
    429 rate-limited, 400/413/415 bad body. Nothing is stored unless everything checks out."""
    token = telemetry.bearer_token(request.headers.get("Authorization", ""))
    if token is None:
        return JsonResponse({"error": "missing or malformed bearer token"}, status=401)
    retry_after = telemetry.heartbeat_rate_limited(telemetry.agent_token_hash(token))
    if retry_after:
        response = JsonResponse({"error": "rate limited"}, status=429)
        response["Retry-After"] = str(retry_after)
        return response
    try:
        pod = telemetry.agent_authenticate(pod_id=str(pk), token=token)
        try:
            body = request.body
        except RawPostDataException:  # a multipart body was already parsed (request.POST, by the middleware)
            raise telemetry.HeartbeatInvalid("Content-Type must be application/json", status=415) from None
        beat = telemetry.heartbeat_parse(body, request.content_type or "")
    except telemetry.TokenRefused as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    except telemetry.HeartbeatInvalid as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    stored = telemetry.heartbeat_record(pod=pod, beat=beat)
    answer = {"ok": True, "stored": stored, "interval": telemetry.agent_interval_seconds()}
    order = on_notice_deliver(pod)
    if order is not None:  # a job under notice: the agent runs the workload's on-notice command
        answer["on_notice"] = order
    return JsonResponse(answer)


@require_GET
def agent_script(request: HttpRequest) -> FileResponse:
    """The agent itself, so an image without it can fetch it at start (it is not secret)."""
    response = FileResponse(AGENT_SCRIPT.open("rb"), content_type="text/x-python; charset=utf-8")
    response["Content-Disposition"] = 'inline; filename="provisioner_agent.py"'
    return response


def _percent_figure(series: dict, *, label: str, axis: str, minutes: int, now, hover: dict | None = None) -> dict:
    """One line per series (GPU n, CPU, Memory) on a 0–100 % axis over the chosen range."""
    # lines AND markers: with one sample a minute a lone first sample is a point, not nothing (§2.1)
    data = [{"type": "scatter", "mode": "lines+markers", "name": label.format(name), "line": {"width": 2},
             "marker": {"size": 5}, "x": [at.isoformat() for at, _ in points], "y": [round(v, 1) for _, v in points],
             "hovertemplate": f"%{{y:.1f}} %{(hover or {}).get(name, '')}<extra>{label.format(name)}</extra>"}
            for name, points in series.items()]
    layout = {**LAYOUT, "height": 260, "margin": {"l": 40, "r": 10, "t": 10, "b": 30}, "showlegend": len(series) > 1,
              "yaxis": {"range": [0, 100], "title": {"text": axis}, "gridcolor": "#eaecf0"},
              # a date axis even without data: plotly guesses a linear -1..6 axis for an empty figure
              "xaxis": {"type": "date", "range": [(now - timedelta(minutes=minutes)).isoformat(), now.isoformat()],
                        "gridcolor": "#eaecf0"}}
    return {"data": data, "layout": layout}


def _utilization_figure(series, *, threshold: int | None, minutes: int, now) -> dict:
    """One line per GPU over the chosen range, and the idle threshold as a dashed line."""
    figure = _percent_figure(series, label="GPU {}", axis="GPU %", minutes=minutes, now=now)
    layout = figure["layout"]
    if threshold is not None:  # a horizontal line across the plot, labelled at its left end
        layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y", "y0": threshold,
                             "y1": threshold, "line": {"dash": "dash", "color": "#d92d20", "width": 1}}]
        layout["annotations"] = [{"text": f"idle below {threshold} %", "xref": "paper", "x": 0, "xanchor": "left",
                                  "yref": "y", "y": threshold, "yanchor": "bottom", "showarrow": False}]
    return figure


def _gib(mb: float) -> str:
    return f"{mb / 1024:.1f} GiB"


@login_required
def pod_utilization(request: HttpRequest, pk) -> HttpResponse:
    """Per-GPU utilization and memory, the host's CPU and memory, the idle countdown and the
    "no telemetry" warning (HTMX fragment)."""
    pod = get_for_tenant_or_404(request, pods_for_tenant(request.tenant), pk=pk)
    now = clock.now()
    range_key = request.GET.get("range", "1h")
    if range_key not in telemetry.CHART_RANGES:
        range_key = "1h"
    minutes = telemetry.CHART_RANGES[range_key]
    series = telemetry.pod_utilization_series(pod, minutes=minutes, now=now)
    idle = pod_idle_status(pod, now=now)
    figure = _utilization_figure(series, threshold=idle.threshold if idle.enabled else None, minutes=minutes, now=now)
    memory, gpu_totals = telemetry.pod_gpu_memory_series(pod, minutes=minutes, now=now)
    host, host_total = telemetry.pod_host_series(pod, minutes=minutes, now=now)
    memory_figure = _percent_figure(memory, label="GPU {}", axis="GPU memory %", minutes=minutes, now=now,
                                    hover={gpu: f" of {_gib(total)}" for gpu, total in gpu_totals.items()})
    host_figure = _percent_figure(host, label="{}", axis="Host %", minutes=minutes, now=now,
                                  hover={"Memory": f" of {_gib(host_total)}"} if host_total else None)
    ctx = {"pod": pod, "idle": idle, "chart": chart(figure, "util-chart", gpus=len(series)), "has_samples": bool(series),
           "memory_chart": chart(memory_figure, "gpu-mem-chart") if memory else None,
           "host_chart": chart(host_figure, "host-chart") if host else None,
           "gpu_totals": [_gib(total) for _, total in sorted(gpu_totals.items())], "host_total": _gib(host_total) if host_total else "",
           "range_key": range_key, "ranges": list(telemetry.CHART_RANGES), "live": pod.state in LIVE_POD_STATES,
           "now": now, "agent_error": pod.agent_error}
    return render(request, "workloads/partials/utilization.html", ctx)
