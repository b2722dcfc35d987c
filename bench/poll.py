#!/usr/bin/env python
"""One capacity-poll cycle over 8 accounts that each answer after 300 ms (issue 6).

The accounts are real RunPod accounts (the real adapter, over HTTP) pointed at the RunPod
stand-in served on 127.0.0.1 with 300 ms latency on every answer; each has its own API key, as
8 real accounts would. ``providers.services.capacity_poll`` runs them concurrently, so the
cycle must take at most 1.5 x 300 ms of wall time, not 8 x 300 ms. The measured figure includes
storing every account's offers in the database. ``--adapter sleep`` uses a registered test
adapter whose list_offers sleeps 300 ms instead (no HTTP at all).

Runs on SQLite in a temporary file (no PostgreSQL needed). Prints one JSON line with the best
cycle's wall time over the per-account latency (median and serial figures beside it).
``--quick``: 3 cycles (well under a minute); full: 7 cycles plus a measured serial baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

ACCOUNTS = 8
LATENCY_S = 0.3
TARGET_RATIO = 1.5


def setup_django(db_path: str) -> None:
    os.environ.pop("DATABASE_URL", None)
    os.environ["SQLITE_PATH"] = db_path
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "provisioner.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def sleep_adapter_class():
    """A registered test adapter: list_offers answers after LATENCY_S, like a slow provider."""
    from providers.adapters.base import OfferData, ProviderInfo
    from providers.adapters.sandbox import SandboxAdapter

    class SleepyAdapter(SandboxAdapter):
        info = ProviderInfo(kind="bench_sleepy", label="Bench (300 ms)", description="bench only",
                            supports_spot=True)

        def list_offers(self) -> list[OfferData]:
            time.sleep(LATENCY_S)
            return [OfferData(gpu_class="H100", gpu_count=1, region="sbx-us-east", country="US",
                              price_per_hour=Decimal("2.5"), available=3)]

    return SleepyAdapter


def serve_wide(standin):
    """The stand-in on 127.0.0.1, with a listen backlog for 8 accounts' parallel requests
    (a RunPod poll reads the catalogue once per cloud and GPU count, side by side)."""
    import threading

    from tests.standins import server as standin_server

    class WideServer(standin_server._ThreadingServer):
        request_queue_size = 256

    httpd = standin_server.make_server("127.0.0.1", 0, standin_server.wsgi_app(standin), server_class=WideServer,
                                       handler_class=standin_server._QuietHandler)
    thread = threading.Thread(target=httpd.serve_forever, name="bench-standin", daemon=True)
    thread.start()
    return standin_server.Served(standin, f"http://127.0.0.1:{httpd.server_port}", httpd, thread)


def make_accounts(mode: str):
    from providers.models import ProviderAccount
    from tenants.services import tenant_create

    tenant = tenant_create(name="Bench poll", slug=f"bench-poll-{int(time.time() * 1000)}")
    served = None
    if mode == "runpod":
        from tests.standins.runpod import RunPodStandIn

        keys = [f"bench-key-{i}" for i in range(ACCOUNTS)]
        standin = RunPodStandIn()
        standin.valid_keys = set(keys)
        standin.latency = LATENCY_S
        served = serve_wide(standin)
        accounts = [ProviderAccount.objects.create(
            tenant=tenant, kind="runpod", name=f"RunPod {i}", credentials={"api_key": keys[i]},
            # one catalogue read per account (1 GPU, secure cloud, no spot): each account
            # answers after exactly one 300 ms round trip, as in the setting
            settings={"base_url": served.url, "timeout": 10, "poll_timeout_seconds": 10, "gpu_counts": [1],
                      "clouds": ["SECURE"], "spot": False})
            for i in range(ACCOUNTS)]
    else:
        from providers.adapters import registry

        cls = sleep_adapter_class()
        registry.ADAPTERS["bench_sleepy"] = f"{__name__}:_SLEEPY"
        globals()["_SLEEPY"] = cls
        accounts = [ProviderAccount.objects.create(tenant=tenant, kind="bench_sleepy", name=f"Sleepy {i}",
                                                   settings={"seed": "bench"}) for i in range(ACCOUNTS)]
    return accounts, served


def cycle(accounts) -> float:
    from providers.services import capacity_poll

    started = time.perf_counter()
    results = capacity_poll(accounts=accounts)
    wall = time.perf_counter() - started
    failed = [r.error for r in results if r.offers is None]
    if failed:
        raise SystemExit(f"poll failed: {failed[:2]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--adapter", choices=("runpod", "sleep"), default="runpod")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-poll-") as tmp:
        setup_django(str(Path(tmp) / "bench.sqlite3"))
        accounts, served = make_accounts(args.adapter)
        try:
            from providers.adapters import http

            http.reset_limiters()
            cycle(accounts)  # warm-up: imports, connections, first table writes
            single = min(cycle(accounts[:1]) for _ in range(2))
            walls = [cycle(accounts) for _ in range(3 if args.quick else 7)]
            serial_ratio = None
            if not args.quick:
                serial = sum(cycle([a]) for a in accounts)
                serial_ratio = round(serial / LATENCY_S, 2)
        finally:
            if served is not None:
                served.stop()
    best, median = min(walls), statistics.median(walls)
    ratio = round(best / LATENCY_S, 3)
    out = {
        "bench": "poll", "metric": "wall_over_single_latency", "value": ratio, "unit": "x",
        "target": TARGET_RATIO, "ok": ratio <= TARGET_RATIO, "baseline_serial_ratio": ACCOUNTS,
        "accounts": ACCOUNTS, "latency_ms": int(LATENCY_S * 1000), "adapter": args.adapter,
        "best_wall_ms": round(best * 1000, 1), "median_ratio": round(median / LATENCY_S, 3),
        "single_account_wall_ms": round(single * 1000, 1),
    }
    if serial_ratio is not None:
        out["measured_serial_ratio"] = serial_ratio
    print(json.dumps(out))


if __name__ == "__main__":
    main()
