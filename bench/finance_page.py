#!/usr/bin/env python
"""The first Spend page a finance user opens, in real Chromium, as `make run` serves it (issue 15 §5).

A temporary SQLite database is migrated and seeded with ``seed_demo --with-history`` (the living
demo: months of spend), the web server starts as ``runstack`` starts it (``runserver
--noreload``), and Chromium logs in as the demo finance user. Measured: from navigating to
/spend/ with an empty browser cache (a fresh context: plotly.js is downloaded and parsed) until
every chart on the page is drawn (plotly's SVG in each chart div), and the same with the cache
warm. Target: the cold first page under 1 s. ``--quick``: 3 cold visits instead of 7 (the
median is reported).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_MS = 1000.0
DRAWN = ("() => { const divs = [...document.querySelectorAll('.plotly-graph-div')];"
         " return divs.length >= 3 && divs.every(d => d.querySelector('.main-svg')); }")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _visit(browser, base: str, *, warm_visits: int = 0) -> tuple[float, list[float]]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    page = ctx.new_page()
    page.goto(base + "/login/")
    page.fill("#id_username", "finance")
    page.fill("#id_password", "finance-demo-2026")
    page.click("button[type=submit]")
    page.wait_for_load_state("load")
    timings = []
    for _ in range(1 + warm_visits):
        t0 = time.perf_counter()
        page.goto(base + "/spend/")
        page.wait_for_function(DRAWN, timeout=30_000)
        timings.append((time.perf_counter() - t0) * 1000)
    ctx.close()
    return timings[0], timings[1:]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(SQLITE_PATH=str(Path(tmp) / "db.sqlite3"), LOG_LEVEL="WARNING",
                   EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
        for cmd in (["migrate", "--noinput"], ["seed_demo", "--with-history"]):
            subprocess.run([sys.executable, "manage.py", *cmd], cwd=ROOT, env=env, check=True,
                           stdout=subprocess.DEVNULL)
        port = _free_port()
        server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                                  cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"))
                _visit(browser, base)  # warm-up: Django's first request (imports, template compile)
                cold, warm = [], []
                for _ in range(3 if args.quick else 7):
                    c, w = _visit(browser, base, warm_visits=1)
                    cold.append(c)
                    warm.extend(w)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=10)
    value = statistics.median(cold)
    bundle = (ROOT / "static" / "vendor" / "plotly.min.js").stat().st_size
    print(json.dumps({"bench": "finance_page", "metric": "first Spend page, empty browser cache, until every chart "
                      "is drawn (median, Chromium, demo history)", "value": round(value), "unit": "ms",
                      "target": TARGET_MS, "ok": value < TARGET_MS, "warm_ms": round(statistics.median(warm)),
                      "plotly_bytes": bundle, "runs": len(cold)}))


if __name__ == "__main__":
    main()
