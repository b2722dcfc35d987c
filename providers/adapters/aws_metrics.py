"""GPU utilization of an EC2 pod from the CloudWatch agent's NVIDIA metrics.

The agent's ``nvidia_gpu`` section publishes ``CWAgent/nvidia_smi_utilization_gpu`` per GPU
(dimension ``index``) with the ``InstanceId`` dimension appended; ``list_metrics`` finds one
metric per GPU and one ``get_metric_data`` call reads the latest minute of each.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .base import GpuSample

CW_NAMESPACE = "CWAgent"
CW_METRIC = "nvidia_smi_utilization_gpu"


def metric_data_request(metrics: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """``get_metric_data`` parameters: one query per GPU metric over the last ten minutes."""
    return {
        "MetricDataQueries": [{"Id": f"g{i}", "MetricStat": {"Metric": m, "Period": 60, "Stat": "Average"}, "ReturnData": True}
                              for i, m in enumerate(metrics)],
        "StartTime": now - timedelta(minutes=10), "EndTime": now + timedelta(minutes=1), "ScanBy": "TimestampDescending",
    }


def latest_samples(metrics: list[dict[str, Any]], data: dict[str, Any]) -> list[GpuSample] | None:
    """The newest datapoint of each GPU, ordered by GPU index; None when there is none."""
    samples: list[GpuSample] = []
    for i, m in enumerate(metrics):
        result = next((r for r in data.get("MetricDataResults", []) if r["Id"] == f"g{i}"), None)
        if not result or not result.get("Values"):
            continue
        at, value = max(zip(result["Timestamps"], result["Values"], strict=False), key=lambda tv: tv[0])
        index = str({d["Name"]: d["Value"] for d in m.get("Dimensions", [])}.get("index", i))
        samples.append(GpuSample(gpu_index=int(index) if index.isdigit() else i, util_pct=float(value), at=at))
    return sorted(samples, key=lambda s: s.gpu_index) or None
