#!/usr/bin/env python
"""A newcomer's first `make run`: fresh clone to the login page answering (issue 18 §4).

The repository's HEAD is cloned into a temporary directory and ``make run`` started there with
none of the environment that would point it elsewhere (no DATABASE_URL, broker or virtualenv), on a
free port. Measured until ``GET /login/`` answers 200, then the stack is stopped as Ctrl-C stops it
(SIGINT to make's process group) and must exit cleanly.

- ``cold_s``: fresh clone, no .venv and an empty package cache (uv's cache in a temporary
  directory: every wheel is downloaded, as on a machine that never installed the project). Target
  ≤ 45 s.
- ``warm_s``: ``make run`` again in the same clone (installed, migrated, seeded).
- ``recloned_s`` (not in ``--quick``): a second fresh clone with the package cache the first filled.

Each run also reports how long each step took (the ``==> [step]`` headings `make run` prints), the
CPU seconds it used and the machine's load average, since the wall time of a shared machine says
as much about the neighbours as about the install.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 45.0
LIMIT_S = 900.0
# variables that would send the clone's stack to another database, broker or virtualenv
CLEARED = ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CACHE_URL", "VIRTUAL_ENV",
           "PROVISIONER_TESTING", "CELERY_TASK_ALWAYS_EAGER", "DJANGO_SETTINGS_MODULE", "UV_CACHE_DIR",
           "GATEWAY_ADMIN_URL", "GATEWAY_ADMIN_LISTEN", "GATEWAY_LISTEN", "GATEWAY_PUBLIC_URL")
STEP = re.compile(r"^==> \[(?P<step>[^\]]+)\]")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_run(clone: Path, cache: Path, log: Path) -> dict:
    """One `make run` in ``clone`` until the login page answers; then stop it. Seconds per step."""
    port = _free_port()
    # the service gateway (Caddy, when installed) on free ports too, beside any other stack on this machine
    env = {k: v for k, v in os.environ.items() if k not in CLEARED} | {
        "UV_CACHE_DIR": str(cache), "GATEWAY_ADMIN_URL": f"http://127.0.0.1:{_free_port()}",
        "GATEWAY_LISTEN": f"127.0.0.1:{_free_port()}"}
    cpu_before = _children_cpu()
    started = time.monotonic()
    marks: list[tuple[str, float]] = []
    with log.open("a") as sink:
        proc = subprocess.Popen(["make", "run", f"ADDR=127.0.0.1:{port}"], cwd=clone, env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)

        def follow() -> None:
            for line in proc.stdout:
                sink.write(line)
                found = STEP.match(line)
                if found:
                    marks.append((found["step"], time.monotonic() - started))

        reader = threading.Thread(target=follow, daemon=True)
        reader.start()
        ready = None
        try:
            while time.monotonic() - started < LIMIT_S and proc.poll() is None:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/login/", timeout=2).status_code == 200:
                        ready = time.monotonic() - started
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        finally:
            stopped_cleanly = _stop(proc)
            reader.join(timeout=10)
    if ready is None:
        raise RuntimeError(f"the login page never answered (make exited {proc.returncode}); see {log}")
    steps = {name: round(((marks[i + 1][1] if i + 1 < len(marks) else ready) - at), 1)
             for i, (name, at) in enumerate(marks)}
    return {"s": round(ready, 1), "steps": steps, "cpu_s": round(_children_cpu() - cpu_before, 1),
            "stopped_cleanly": stopped_cleanly}


def _stop(proc: subprocess.Popen) -> bool:
    """Ctrl-C in the terminal: SIGINT to the whole group; True when everything exited within 30 s."""
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
        clean = True
    except subprocess.TimeoutExpired:
        clean = False
    except ProcessLookupError:
        return True
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left (nothing, when the stop was clean)
    except ProcessLookupError:
        pass
    proc.wait()
    return clean


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="skip the second fresh clone")
    args = parser.parse_args()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    load = os.getloadavg()[0]
    result = {"bench": "first_run", "metric": "cold_s", "unit": "s", "target": TARGET_S, "commit": head,
              "cpus": os.cpu_count(), "load_avg_1m": round(load, 1)}
    with tempfile.TemporaryDirectory(prefix="first-run-") as tmp:
        tmp = Path(tmp)
        cache, log = tmp / "uv-cache", tmp / "make-run.log"
        try:
            first = tmp / "clone"
            subprocess.run(["git", "clone", "-q", str(ROOT), str(first)], check=True)
            cold = make_run(first, cache, log)
            warm = make_run(first, cache, log)
            result |= {"value": cold["s"], "ok": cold["s"] <= TARGET_S and cold["stopped_cleanly"],
                       "cold": cold, "warm_s": warm["s"], "warm": warm}
            if not args.quick:
                second = tmp / "clone2"
                subprocess.run(["git", "clone", "-q", str(ROOT), str(second)], check=True)
                result["recloned"] = make_run(second, cache, log)
                result["recloned_s"] = result["recloned"]["s"]
        except (RuntimeError, subprocess.CalledProcessError) as exc:
            result |= {"value": None, "ok": False, "error": str(exc),
                       "log_tail": log.read_text()[-1500:] if log.exists() else ""}
    result["load_avg_1m_after"] = round(os.getloadavg()[0], 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
