#!/usr/bin/env python
"""Capacity poll of a large on-prem Kubernetes cluster (issue 7).

An in-process API-server stand-in (tests/standins/kubernetes.py, over httpx.MockTransport)
holds N GPU nodes of 4 GPU products (8 GPUs each) and 5 pods per node (non-terminated GPU
pods, finished ones and CPU pods mixed). Measured: the median wall time of
``KubernetesAdapter.list_offers()`` (two list calls, JSON decode, per-node subtraction of
requested GPUs, grouping by product), 7 runs (5 in quick mode), stand-in included.
OK when value <= 5000 ms for 2,000 nodes / 10,000 pods: a quarter of the capacity poll's own
20 s timeout, with the stand-in's JSON serialization of the two lists (~6 MB) included.
``--quick``: 500 nodes / 2,500 pods, same target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_MS = 5000.0


def build(nodes: int):
    from tests.standins.kubernetes import FakeKubernetes

    products = [("NVIDIA-A100-SXM4-80GB", 81920), ("NVIDIA-H100-80GB-HBM3", 81559), ("NVIDIA-L40S", 46068), ("Tesla-T4", 15360)]
    fk = FakeKubernetes()
    fk.record = False  # the stand-in's own response log is not what we measure
    with fk.lock:
        fk._schedule_pending = lambda: None  # bulk load: no re-scheduling per added node
        for i in range(nodes):
            product, mem = products[i % len(products)]
            fk.add_node(f"gpu-{i:05d}", product, 8, memory_mib=mem, region="fra")
        for i in range(nodes):
            node = f"gpu-{i:05d}"
            for j, (gpus, phase) in enumerate(((2, "Running"), (1, "Running"), (4, "Succeeded"), (0, "Running"), (1, "Pending"))):
                name = f"p-{i:05d}-{j}"
                fk.objects[("pods", "ml", name)] = {
                    "apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": name, "namespace": "ml", "labels": {"app": "x"}},
                    "spec": {"nodeName": node, "containers": [{"name": "c", "image": "x",
                                                                 "resources": {"limits": {"nvidia.com/gpu": str(gpus)} if gpus else {}}}]},
                    "status": {"phase": phase, "conditions": []}}
    return fk


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    import django

    django.setup()
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)
    from providers.adapters.kubernetes import KubernetesAdapter
    from tests.standins.kubernetes import kubeconfig

    nodes = 500 if args.quick else 2000
    fk = build(nodes)
    adapter = KubernetesAdapter({"kubeconfig": kubeconfig("https://bench-cluster:6443")},
                                {"country": "DE", "rate_card": {"A100-80": 1.6, "H100": 2.4, "L40S": 0.9, "T4": 0.3}},
                                transport=fk.transport())
    times, offers = [], []
    for _ in range(5 if args.quick else 7):
        start = time.perf_counter()
        offers = adapter.list_offers()
        times.append((time.perf_counter() - start) * 1000)
    # each node: 8 - (2 + 1 + 1 pending) = 4 free GPUs
    one = next(o for o in offers if o.gpu_class == "H100" and o.gpu_count == 1)
    assert one.available == 4 * (nodes // 4), one.available
    value = statistics.median(times)
    print(json.dumps({"bench": "kubernetes_capacity", "metric": f"list_offers median ms ({nodes} nodes, {nodes * 5} pods)",
                      "value": round(value, 1), "unit": "ms", "target": TARGET_MS, "ok": value <= TARGET_MS}))


if __name__ == "__main__":
    main()
