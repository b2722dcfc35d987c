"""What every browser journey does the same way: log in through the form, and run beat's periodic
work in a thread while the browser drives the app."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def log_in(page, base_url: str, username: str, password: str, path: str = "/login/") -> None:
    """Open ``path`` (the login page, or a page that redirects there) and submit the login form."""
    page.goto(base_url + path)
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")


@contextmanager
def every(seconds: float, *tasks: Callable[[], object], join_timeout: float = 10) -> Iterator[None]:
    """Run ``tasks`` every ``seconds`` in a thread, as celery-beat would, until the block ends. A
    tick that fails (a table locked by the request the browser is making) does not stop the loop."""
    stop = threading.Event()

    def loop() -> None:
        from django.db import connection

        while not stop.wait(seconds):
            for task in tasks:
                try:
                    task()
                except Exception:  # noqa: BLE001 - the next tick tries again
                    pass
        connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
