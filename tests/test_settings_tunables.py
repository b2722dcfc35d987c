"""Every tunable is read once, in settings.py through provisioner/env.py (issue 17 §3)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from provisioner.env import env_int_map, public_base_url

ROOT = Path(__file__).resolve().parents[1]
TUNABLES = {
    "PROVIDER_ATTEMPT_TIMEOUT_SECONDS": 60, "LAUNCH_MAX_ATTEMPTS": 5, "LAUNCH_TOTAL_SECONDS": 300,
    "PROVIDER_POLL_TIMEOUTS": {}, "BILLING_RESERVATION_HOURS": 1, "AGENT_INTERVAL_SECONDS": 30,
    "AGENT_HEARTBEAT_LIMIT_PER_MINUTE": 12, "TELEMETRY_POLL_WORKERS": 8, "UTILIZATION_RETENTION_DAYS": 14,
    "IDLE_TELEMETRY_STALE_MINUTES": 5, "IDLE_MAX_GAP_SECONDS": 180, "IDLE_DELETE_AFTER_STOPPED_DEFAULT_MINUTES": 10080,
}
APP_DIRS = ("providers", "workloads", "billing", "tenants", "provisioner")


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" and getattr(node.value, "id", "") == "os"


def _reads_environment(node: ast.AST) -> bool:
    """``os.environ.get(..)``, ``os.environ[..]`` or ``os.getenv(..)`` (setting DJANGO_SETTINGS_MODULE is not a read)."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "get" and _is_environ(node.func.value):
            return True
        if node.func.attr == "getenv" and getattr(node.func.value, "id", "") == "os":
            return True
    return isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value)


def test_every_tunable_is_a_setting_with_its_documented_default():
    for name, default in TUNABLES.items():
        assert getattr(settings, name) == default, name


def test_no_app_code_reads_settings_with_a_getattr_default_or_the_environment():
    """``getattr(settings, "X", default)`` hides a second default; ``os.environ`` a second reader."""
    offenders = []
    for directory in APP_DIRS:
        for path in (ROOT / directory).rglob("*.py"):
            if path.name in ("settings.py", "env.py") or "migrations" in path.parts or "agent" in path.parts:
                continue  # the in-pod agent runs on the pod, outside Django
            if "management" in path.parts and path.name == "refresh_aws_prices.py":
                continue  # AWS credentials for an operator command, not a tunable
            for node in ast.walk(ast.parse(path.read_text())):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                        and node.args and isinstance(node.args[0], ast.Name) and node.args[0].id.endswith("settings")):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} getattr(settings, ...)")
                if _reads_environment(node):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} reads the environment")
    assert offenders == []


def test_int_map_parses_and_refuses_malformed(monkeypatch):
    monkeypatch.setenv("X_TIMEOUTS", "aws=60, hetzner=120")
    assert env_int_map("X_TIMEOUTS") == {"aws": 60, "hetzner": 120}
    monkeypatch.setenv("X_TIMEOUTS", "aws:60")
    with pytest.raises(ImproperlyConfigured):
        env_int_map("X_TIMEOUTS")


def test_public_base_url_outside_production_keeps_the_local_default(monkeypatch):
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    assert public_base_url("PUBLIC_BASE_URL", production=False) == "http://127.0.0.1:8000"
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://gpu.example.com/")
    assert public_base_url("PUBLIC_BASE_URL", production=True) == "https://gpu.example.com"
