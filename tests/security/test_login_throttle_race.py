"""Issue 16 §6: the login throttle holds under parallel requests (20 parallel failures let 9
through against a limit of 5 with check-then-increment). Run against Redis, the cache production
uses (REDIS_TEST_URL, default db 8 on the local server); skipped only when no Redis answers."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from django.core.cache import caches
from django.test import Client
from django.urls import reverse

from provisioner.security import LOGIN_MAX_FAILURES

REDIS_URL = os.environ.get("REDIS_TEST_URL", "redis://127.0.0.1:6379/8")

# one xdist worker for both, one after the other: they count failures of the same IP and username
pytestmark = pytest.mark.xdist_group("redis-login-throttle")


def _redis_up() -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5).ping())
    except Exception:
        return False


@pytest.fixture
def redis_cache(settings):
    """The default cache on Redis, under a key prefix of this test's own: counters left by
    another test (a request thread of the parallel test still finishing) cannot reach it, and
    nothing is flushed (FLUSHDB would also empty whatever else uses that Redis database, e.g.
    the broker of tests/workloads/test_lost_claims.py running on the other worker)."""
    if not _redis_up():
        pytest.skip(f"no Redis at {REDIS_URL}")
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                                   "KEY_PREFIX": f"throttle-test-{uuid.uuid4().hex}"}}
    yield caches["default"]
    caches["default"].delete_many(["login-fail:ip:127.0.0.1", "login-fail:user:owner"])


def _parallel_posts(n: int, data: dict) -> list[int]:
    barrier = threading.Barrier(n)
    codes: list[int] = []
    lock = threading.Lock()

    def one():
        c = Client()
        barrier.wait()
        code = c.post(reverse("login"), data).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return codes


@pytest.mark.django_db(transaction=True)
def test_parallel_failures_never_pass_the_limit(redis_cache, owner):
    codes = _parallel_posts(20, {"username": "owner", "password": "wrong"})
    assert len(codes) == 20
    assert codes.count(200) == LOGIN_MAX_FAILURES  # the login form again, "wrong password"
    assert codes.count(429) == 20 - LOGIN_MAX_FAILURES
    # the right password is refused too while the window lasts
    assert Client().post(reverse("login"), {"username": "owner", "password": "pw-test-123"}).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_a_success_clears_the_counters(redis_cache, owner):
    c = Client()
    for _ in range(LOGIN_MAX_FAILURES - 1):
        assert c.post(reverse("login"), {"username": "owner", "password": "wrong"}).status_code == 200
    assert c.post(reverse("login"), {"username": "owner", "password": "pw-test-123"}).status_code == 302
    assert Client().post(reverse("login"), {"username": "owner", "password": "wrong"}).status_code == 200
