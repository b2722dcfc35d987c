#!/usr/bin/env python
"""Run every benchmark in bench/ (files not starting with "_"), each in its own process.

Each benchmark prints one JSON line: {"bench", "metric", "value", "unit", "target", "ok", ...}.
Exit status is non-zero if a benchmark crashed (a missed target is reported, not fatal).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="quick mode (a few minutes in total)")
    parser.add_argument("only", nargs="*", help="bench names to run (default: all)")
    args = parser.parse_args()
    crashed = 0
    for path in sorted(HERE.glob("*.py")):
        if path.name.startswith("_") or path.name == "run_all.py":
            continue
        if args.only and path.stem not in args.only:
            continue
        cmd = [sys.executable, str(path)] + (["--quick"] if args.quick else [])
        proc = subprocess.run(cmd, cwd=HERE.parent, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            crashed += 1
            print(json.dumps({"bench": path.stem, "ok": False, "error": (proc.stderr or proc.stdout)[-800:]}))
            continue
        for ln in lines:
            print(ln, flush=True)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
