"""Browser journeys: a live server, Debian Chromium through Playwright, and a stand-in for
celery-beat (a thread that runs the pod sync, as beat would every few seconds)."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from tests.e2e.helpers import every


@pytest.fixture
def demo(transactional_db):
    call_command("seed_demo", verbosity=0)


@pytest.fixture
def beat(transactional_db):
    """Run the periodic pod sync every 0.5 s while the test drives the browser."""
    from workloads.lifecycle.services import pods_sync

    with every(0.5, pods_sync, join_timeout=5):
        yield
