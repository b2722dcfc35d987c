"""Browser journeys: a live server, Debian Chromium through Playwright, and a stand-in for
celery-beat (a thread that runs the pod sync, as beat would every few seconds)."""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", verbosity=0)


@pytest.fixture
def beat(transactional_db):
    """Run the periodic pod sync every 0.5 s while the test drives the browser."""
    from workloads.lifecycle.services import pods_sync

    stop = threading.Event()

    def loop():
        from django.db import connection

        while not stop.wait(0.5):
            try:
                pods_sync()
            except Exception:  # a locked table in one tick must not kill the loop
                pass
        connection.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield
    stop.set()
    t.join(timeout=5)
