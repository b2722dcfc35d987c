"""What the pod page shows: the utilization chart, the idle countdown, the "no telemetry"
warning; plus the provider-metrics poll and sample retention."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from provisioner import clock
from tests.chart_helpers import figures
from workloads.autoshutdown import telemetry
from workloads.models import HostSample, Lifecycle, UtilizationSample

from .telemetry_helpers import feed, running_pod

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
M = timedelta(minutes=1)


def _page(client, pod):
    return client.get(reverse("workloads:pod_detail", args=[pod.pk])).content.decode()


def _fragment(client, pod, **params):
    return client.get(reverse("workloads:pod_utilization", args=[pod.pk]), params)


@pytest.mark.django_db
def test_countdown_counts_from_the_last_busy_sample(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 18 * M, util=lambda at, g: 40.0 if at == T0 + 10 * M else 1.0)
        advance(minutes=18)
        html = _page(owner_client, pod)
    # idle since 10:10, window 30 min + grace 5 min -> stops at 10:45, 27 min from 10:18
    assert re.search(r'id="idle-countdown"[^>]*>\s*<svg class="icon"[^>]*>.*?</svg> Stops in 27 min at &lt;5 % GPU', html, re.S), html
    assert 'id="no-telemetry"' not in html
    assert 'id="pod-utilization"' in html  # the chart panel loads from its own fragment


@pytest.mark.django_db
def test_countdown_when_warned_and_when_busy(owner_client, tenant, project, owner, sandbox):
    from workloads.autoshutdown import idle

    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 31 * M, util=lambda at, g: 0.0)
        advance(minutes=31)
        idle.idle_reap()
        advance(minutes=2)
        assert "Stops in 3 min at &lt;5 % GPU — idle warning sent" in _page(owner_client, pod)
        telemetry.samples_ingest(pod=type(pod).objects.select_related("workload").get(pk=pod.pk),
                                 samples=[telemetry.GpuSample(0, 88.0), telemetry.GpuSample(1, 3.0)], source="agent")
        html = _page(owner_client, pod)
    assert "GPU busy now (max 88 %): stops after 30 min at &lt;5 % GPU" in html
    assert "idle shutdown cancelled" in html  # the event is on the timeline


@pytest.mark.django_db
def test_no_telemetry_warning_is_visible(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        advance(minutes=10)
        html = _page(owner_client, pod)
        fragment = _fragment(owner_client, pod).content.decode()
    assert 'id="no-telemetry"' in html and "No telemetry" in html
    assert "auto-shutdown will not stop this pod" in html
    assert "No telemetry in the last 1h" in fragment


@pytest.mark.django_db
def test_a_pod_that_just_started_waits_for_its_first_reading_instead_of_warning(owner_client, tenant, project, owner, sandbox):
    """The README promises the no-telemetry warning after 5 minutes without samples, not at once."""
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        advance(seconds=20)
        early = _page(owner_client, pod)
        advance(minutes=6)
        late = _page(owner_client, pod)
    assert 'id="no-telemetry"' not in early
    assert "Waiting for the first GPU reading" in early
    assert 'id="no-telemetry"' in late and "Waiting for the first GPU reading" not in late


@pytest.mark.django_db
def test_power_icon_is_drawn_not_left_to_the_font(owner_client, tenant, project, owner, sandbox):
    """U+23FB is missing from common fonts and rendered as an empty box."""
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
        advance(minutes=1)
        html = _page(owner_client, pod)
    assert "⏻" not in html and '<svg class="icon"' in html


@pytest.mark.django_db
def test_policy_off_says_so(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, lifecycle=Lifecycle.SERVICE)
        feed(pod, start=T0, end=T0 + 5 * M)
        advance(minutes=5)
        html = _page(owner_client, pod)
    assert "Auto-shutdown off" in html


@pytest.mark.django_db
def test_chart_fragment_has_one_trace_per_gpu_and_the_threshold(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 20 * M, util=lambda at, g: 30.0 + g)
        advance(minutes=20)
        r = _fragment(owner_client, pod, range="15m")
    assert r.status_code == 200
    html = r.content.decode()
    figure = figures(html)["util-chart"]
    assert [t["name"] for t in figure["data"]] == ["GPU 0", "GPU 1"]
    assert set(figure["data"][1]["y"]) == {31.0}
    assert len(figure["data"][0]["x"]) == 31  # last 15 minutes at 30 s
    assert figure["layout"]["shapes"][0]["y0"] == 5  # the idle threshold line
    assert "vendor/plotly.min.js" in html and "cdn" not in html.lower()


@pytest.mark.django_db
def test_gpu_memory_and_host_cpu_memory_charts_on_the_same_range(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner)
        feed(pod, start=T0, end=T0 + 20 * M)  # 100 of 24576 MB on each GPU
        HostSample.objects.bulk_create([
            HostSample(pod=pod, at=T0 - 120 * M, cpu_pct=80.0, mem_used_mb=4096, mem_total_mb=16384),  # 7d only
            HostSample(pod=pod, at=T0 + 10 * M, cpu_pct=12.5, mem_used_mb=8192, mem_total_mb=16384),
            HostSample(pod=pod, at=T0 + 19 * M, cpu_pct=None, mem_used_mb=None, mem_total_mb=16384)])
        advance(minutes=20)
        html = _fragment(owner_client, pod, range="15m").content.decode()
        week = _fragment(owner_client, pod, range="7d").content.decode()
    charts = figures(html)
    memory, host = charts["gpu-mem-chart"], charts["host-chart"]
    assert [t["name"] for t in memory["data"]] == ["GPU 0", "GPU 1"]
    assert set(memory["data"][0]["y"]) == {round(100 * 100 / 24576, 1)} and len(memory["data"][0]["x"]) == 31
    assert "of 24.0 GiB" in memory["data"][0]["hovertemplate"] and "(of 24.0 GiB, 24.0 GiB)" in html
    assert {t["name"]: t["y"] for t in host["data"]} == {"CPU": [12.5], "Memory": [50.0]}
    assert memory["layout"]["xaxis"]["range"] == charts["util-chart"]["layout"]["xaxis"]["range"]
    assert {t["name"]: t["y"] for t in figures(week)["host-chart"]["data"]} == {"CPU": [80.0, 12.5], "Memory": [25.0, 50.0]}
    assert 'aria-current="true" style="font-weight:700">7d' in week


@pytest.mark.django_db
def test_without_memory_or_host_readings_the_page_says_where_they_come_from(owner_client, tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, gpu_count=1)
        feed(pod, start=T0, end=T0 + 5 * M, source="provider")
        UtilizationSample.objects.filter(pod=pod).update(mem_used_mb=None, mem_total_mb=None)  # provider metrics
        advance(minutes=5)
        html = _fragment(owner_client, pod).content.decode()
    assert set(figures(html)) == {"util-chart"}
    with clock.frozen(T0 + 600 * M):  # no sample at all in the hour: the empty chart still has a time axis
        empty = figures(_fragment(owner_client, pod).content.decode())["util-chart"]
    assert empty["data"] == [] and empty["layout"]["xaxis"]["type"] == "date"
    assert 'id="no-gpu-memory"' in html and 'id="no-host-metrics"' in html and "in-pod agent" in html


@pytest.mark.django_db
def test_chart_fragment_access(client, viewer, outsider, tenant, project, owner, sandbox):
    pod = running_pod(tenant, project, owner)
    client.force_login(viewer)
    assert _fragment(client, pod).status_code == 200
    client.force_login(outsider)
    assert _fragment(client, pod).status_code == 404
    client.logout()
    assert _fragment(client, pod).status_code == 302


@pytest.mark.django_db
def test_long_ranges_are_downsampled_keeping_spikes(tenant, project, owner, sandbox):
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, gpu_count=1)
        feed(pod, start=T0, end=T0 + 23 * 60 * M, every_s=60, util=lambda at, g: 95.0 if at == T0 + 600 * M else 2.0)
        advance(hours=23)
        series = telemetry.pod_utilization_series(pod, minutes=1440)
    assert len(series[0]) <= telemetry.MAX_POINTS_PER_GPU
    assert max(u for _, u in series[0]) == 95.0


@pytest.mark.django_db
def test_provider_metrics_poll_stores_samples_for_running_pods(tenant, project, owner, sandbox, settings):
    settings.TELEMETRY_POLL_WORKERS = 1
    with clock.frozen(T0):
        pod = running_pod(tenant, project, owner)
        stored = telemetry.telemetry_poll()
    assert stored == 2
    rows = list(UtilizationSample.objects.filter(pod=pod).values_list("gpu_index", "source", "at"))
    assert sorted(rows) == [(0, "provider", T0), (1, "provider", T0)]


@pytest.mark.django_db
def test_retention_purges_old_samples_only(tenant, project, owner, sandbox, settings):
    settings.UTILIZATION_RETENTION_DAYS = 7
    with clock.frozen(T0):
        pod = running_pod(tenant, project, owner, gpu_count=1)
        feed(pod, start=T0 - timedelta(days=8), end=T0 - timedelta(days=8) + 10 * M, every_s=60)
        feed(pod, start=T0 - timedelta(days=6), end=T0 - timedelta(days=6) + 10 * M, every_s=60)
        HostSample.objects.bulk_create([HostSample(pod=pod, at=T0 - timedelta(days=d), cpu_pct=5.0) for d in (8, 9, 6)])
        assert telemetry.samples_purge(batch=4) == 11 + 2
    assert UtilizationSample.objects.filter(pod=pod).count() == 11
    assert not UtilizationSample.objects.filter(at__lt=T0 - timedelta(days=7)).exists()
    assert list(HostSample.objects.filter(pod=pod).values_list("at", flat=True)) == [T0 - timedelta(days=6)]


def test_schedule_registers_the_periodic_tasks():
    from provisioner.schedule import SCHEDULE

    tasks = {e.task: e.every_seconds for e in SCHEDULE}
    assert tasks["workloads.reap_idle"] == 60
    assert tasks["workloads.poll_telemetry"] == 60
    assert tasks["workloads.purge_samples"] == 3600


@pytest.mark.django_db
def test_a_pod_that_just_started_waits_in_the_chart_card_too(owner_client, tenant, project, owner, sandbox):
    """Issue 15 §2.2 in the utilization card: no "No telemetry" from the first second of Running."""
    with clock.frozen(T0) as advance:
        pod = running_pod(tenant, project, owner, idle_enabled=False)
        advance(minutes=1)
        html = _fragment(owner_client, pod).content.decode()
        assert 'id="chart-waiting"' in html and "chart-no-telemetry" not in html
        advance(minutes=10)  # past IDLE_TELEMETRY_STALE_MINUTES without a sample
        html = _fragment(owner_client, pod).content.decode()
    assert 'id="chart-waiting"' not in html and "chart-no-telemetry" in html
