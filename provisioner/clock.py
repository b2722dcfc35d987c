"""The one clock the app reads. Tests freeze or advance it with ``provisioner.clock.frozen``."""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta

from django.utils import timezone

_override: list[datetime] = []


def now() -> datetime:
    return _override[-1] if _override else timezone.now()


@contextlib.contextmanager
def frozen(at: datetime | None = None):
    """Freeze ``now()`` at ``at`` (default: the real now). Yields an ``advance(**kw)`` helper."""
    _override.append(at or timezone.now())

    def advance(**delta) -> datetime:
        _override[-1] = _override[-1] + timedelta(**delta)
        return _override[-1]

    try:
        yield advance
    finally:
        _override.pop()
