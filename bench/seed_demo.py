#!/usr/bin/env python
"""`make run`'s seed step: ``manage.py seed_demo --with-history`` on a fresh database (issue 15 §3).

Migrates a temporary SQLite file, then times the command as `make run` runs it (its own
process, Django start-up included): the first run, which writes the living demo's history,
and a second one, which must find it there and change nothing. Prints one JSON line; the
target is the first run's wall time under 10 s. ``--quick``: one measured pair (the full
form takes the best of three fresh databases).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET_S = 10.0


def _manage(env: dict[str, str], *args: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def one_pair() -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
        env.update(SQLITE_PATH=str(Path(tmp) / "db.sqlite3"), LOG_LEVEL="WARNING",
                   EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend")
        _manage(env, "migrate", "--noinput")
        first = _manage(env, "seed_demo", "--with-history")
        second = _manage(env, "seed_demo", "--with-history")
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    pairs = [one_pair() for _ in range(1 if args.quick else 3)]
    first, second = min(p[0] for p in pairs), min(p[1] for p in pairs)
    print(json.dumps({"bench": "seed_demo", "metric": "seed_demo --with-history wall time (fresh database)",
                      "value": round(first, 2), "unit": "s", "target": TARGET_S, "ok": first < TARGET_S,
                      "second_run_s": round(second, 2), "runs": len(pairs)}))


if __name__ == "__main__":
    main()
