"""The embedded stack under the three journeys, in short form (the full hour is `make soak`)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.soak
def test_embedded_stack_survives_a_minute_of_journeys_with_no_crash_and_no_lost_task():
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_TASK_ALWAYS_EAGER",
                        "PROVISIONER_TESTING", "SANDBOX_BOOT_SECONDS", "CACHE_URL")}
    proc = subprocess.run([sys.executable, "manage.py", "soak", "--minutes", "1"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=420)
    assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["crashes"] == 0 and report["lost_tasks"] == 0 and report["http_5xx"] == 0
    assert report["launches"] >= 5 and report["requests"] >= 100  # the load really ran
    assert set(report["peak_rss_mb"]) == {"web", "worker", "beat", "gateway"}  # .ci/run installs caddy
