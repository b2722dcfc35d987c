"""Hardening: production settings, deploy checks, headers, login throttling, logs without secrets."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]
PROD_ENV = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "prod-secret-key-" + "x" * 50,
    "CRYPTOGRAPHY_KEY": "prod-crypto-key-" + "y" * 40,
    "ALLOWED_HOSTS": "provisioner.example.com",
    "DEBUG": "0",
    "PUBLIC_BASE_URL": "https://provisioner.example.com",
}


def _manage(*args, env_overrides):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "PROVISIONER_TESTING", "DJANGO_ALLOW_ASYNC_UNSAFE")}
    env.update(env_overrides)
    env["PROVISIONER_VAR_DIR"] = "/tmp/provisioner-deploy-check"
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_check_deploy_is_clean_under_production_settings():
    proc = _manage("check", "--deploy", "--fail-level", "WARNING", env_overrides=PROD_ENV)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no issues" in proc.stdout


@pytest.mark.parametrize("missing", ["SECRET_KEY", "CRYPTOGRAPHY_KEY"])
def test_production_refuses_default_or_missing_keys(missing):
    env = dict(PROD_ENV)
    env.pop(missing)
    proc = _manage("check", env_overrides=env)
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr


@pytest.mark.parametrize("value", [None, "http://127.0.0.1:8000", "https://localhost", "http://[::1]:8000", "not a url"])
def test_production_refuses_a_missing_or_loopback_public_base_url(value):
    """Pods on a provider's machines cannot reach a loopback URL: their heartbeats would be lost."""
    env = dict(PROD_ENV)
    env.pop("PUBLIC_BASE_URL")
    if value is not None:
        env["PUBLIC_BASE_URL"] = value
    proc = _manage("check", env_overrides=env)
    assert proc.returncode != 0
    assert "ImproperlyConfigured" in proc.stderr and "PUBLIC_BASE_URL" in proc.stderr


@pytest.mark.django_db
def test_security_headers(client, owner):
    client.force_login(owner)
    resp = client.get(reverse("workloads:pod_list"))
    assert resp["X-Frame-Options"] == "DENY"
    assert resp["X-Content-Type-Options"] == "nosniff"
    assert "frame-ancestors 'none'" in resp["Content-Security-Policy"]
    assert resp["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_login_is_rate_limited(client, owner):
    cache.clear()
    url = reverse("login")
    for _ in range(5):
        assert client.post(url, {"username": "owner", "password": "wrong"}).status_code == 200
    blocked = client.post(url, {"username": "owner", "password": "pw-test-123"})
    assert blocked.status_code == 429
    cache.clear()
    assert client.post(url, {"username": "owner", "password": "pw-test-123"}).status_code == 302


@pytest.mark.django_db
def test_csrf_is_enforced(owner):
    from django.test import Client

    c = Client(enforce_csrf_checks=True)
    c.force_login(owner)
    resp = c.post(reverse("workloads:launch"), {"name": "x"})
    assert resp.status_code == 403


@pytest.mark.django_db
def test_secrets_never_reach_the_logs(tenant, caplog):
    from providers.models import ProviderAccount
    from providers.services import adapter_for
    from provisioner.security import RedactSecretsFilter

    secret = "rpa_LOGLEAK_abcdef123456"
    acct = ProviderAccount.objects.create(tenant=tenant, kind="sandbox", name="s", credentials={"api_key": secret})
    adapter_for(acct)  # registers the decrypted values with the filter
    logger = logging.getLogger("providers.test")
    handler_filter = RedactSecretsFilter()
    caplog.handler.addFilter(handler_filter)
    try:
        with caplog.at_level(logging.INFO):
            logger.info("calling provider with key %s", secret)
            logger.info("headers: {'Authorization': 'Bearer %s'}", "tok_" + "z" * 20)
            logger.info("url https://api.example/x?api_key=%s&a=1", "qqqqqqqqqqqq")
            try:
                raise RuntimeError(f"provider refused {secret}")
            except RuntimeError:
                logger.exception("launch failed")
    finally:
        caplog.handler.removeFilter(handler_filter)
    text = caplog.text
    assert secret not in text
    assert "zzzzzzzzzzzzzzzzzzzz" not in text
    assert "qqqqqqqqqqqq" not in text
    assert text.count("[REDACTED]") >= 4


def test_logging_config_attaches_the_filter():
    from django.conf import settings

    assert "redact_secrets" in settings.LOGGING["handlers"]["console"]["filters"]


@pytest.mark.django_db
def test_nul_bytes_are_refused_before_any_view(owner_client):
    resp = owner_client.post(reverse("workloads:launch"), {"name": "a\x00b"})
    assert resp.status_code == 400
    assert owner_client.get(reverse("workloads:placement_preview") + "?countries=DE%00").status_code == 400


def test_one_deploy_command_serves_make_run_procfile_and_compose():
    """make run, the Procfile's release step and docker-compose run the same command."""
    release = (ROOT / "Procfile").read_text().split("release:", 1)[1].splitlines()[0]
    assert release.strip() == "python manage.py deploy"
    assert "python manage.py deploy &&" in (ROOT / "docker-compose.yml").read_text()
    migrate_target = (ROOT / "Makefile").read_text().split("\nmigrate:", 1)[1].split("\n\n", 1)[0]
    assert "manage.py deploy" in migrate_target and "migrate --noinput" not in migrate_target


def test_production_deploy_leaves_cache_table_periodic_tasks_and_recipe_catalog(tmp_path):
    """Without CACHE_URL production caches in the database (login throttling, heartbeat rate
    limits, the spend dashboard), and a fresh deployment must offer the built-in recipes: the one
    deploy command does both (production once ran neither install_recipes nor createcachetable)."""
    env = {**PROD_ENV, "SQLITE_PATH": str(tmp_path / "release.sqlite3")}
    proc = _manage("deploy", env_overrides=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "[deploy 4/5] install the built-in recipes: done" in proc.stdout
    check = (
        "from django.core.cache import cache; cache.set('k', 41); print(cache.get('k') + 1);"
        "from workloads.models import Recipe; print(Recipe.objects.filter(tenant__isnull=True).count());"
        "from django_celery_beat.models import PeriodicTask; print(PeriodicTask.objects.filter(enabled=True).count())"
    )
    proc = _manage("shell", "-c", check, env_overrides=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    answer, recipes, periodic = proc.stdout.strip().splitlines()[-3:]
    assert answer == "42"
    assert int(recipes) >= 5, "the built-in recipe catalog is missing after a production deploy"
    assert int(periodic) >= 10
