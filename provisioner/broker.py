"""The embedded default's broker file (kombu's SQLAlchemy transport on SQLite).

Only used when ``settings.EMBEDDED_BROKER`` is on; with Redis none of this runs.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta

from django.conf import settings
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine, event

# Transport options that are kombu's own; everything else goes to SQLAlchemy's create_engine.
# (kombu's Channel forwards polling_interval to create_engine, which refuses it.)
_KOMBU_OPTIONS = {"polling_interval", "queue_tablename", "message_tablename", "callback", "errback",
                  "max_retries", "interval_start", "interval_step", "interval_max", "retry_errors"}


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    """Every broker connection as the app's own SQLite (settings.DATABASES' init_command): WAL and
    synchronous=NORMAL. Without them each publish waits for fsync several times (rollback journal,
    synchronous=FULL): ~30 ms a message here, 247 of them while `make run` seeds the demo.
    SQLite, "Pragma statements", synchronous: in WAL mode NORMAL syncs at checkpoints, not at every
    commit; a power loss may roll back the last messages, never corrupt the file."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self):
        conninfo = self.connection.client
        engine_options = {k: v for k, v in conninfo.transport_options.items() if k not in _KOMBU_OPTIONS}
        engine = create_engine(conninfo.hostname, **engine_options)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        return engine


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel


# kombu's SQLAlchemy transport keeps delivered messages (visible = 0) for ever; beat alone
# publishes a few thousand a day, and every fetch scans past them. An hour is far beyond any
# task's run time, so nothing still being worked on is removed.
KEEP_DELIVERED = timedelta(hours=1)


def _connect() -> sqlite3.Connection:
    settings.EMBEDDED_BROKER_PATH.parent.mkdir(parents=True, exist_ok=True)
    return sqlite3.connect(settings.EMBEDDED_BROKER_PATH, timeout=30)


def prepare_embedded_broker() -> None:
    """WAL lets the worker read while web and beat publish (the mode persists in the file)."""
    if not settings.EMBEDDED_BROKER:
        return
    with _connect() as db:
        db.execute("PRAGMA journal_mode=WAL")


def prune_delivered_messages() -> int:
    """Delete messages delivered more than ``KEEP_DELIVERED`` ago; returns how many."""
    if not settings.EMBEDDED_BROKER:
        return 0
    with _connect() as db:
        exists = db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='kombu_message'").fetchone()
        if not exists:
            return 0
        # kombu stamps rows with the naive local clock (datetime.now, also on delivery) and
        # SQLAlchemy stores them as 'YYYY-MM-DD HH:MM:SS.ffffff', which compares as text
        cutoff = (datetime.now() - KEEP_DELIVERED).strftime("%Y-%m-%d %H:%M:%S.%f")
        cur = db.execute("DELETE FROM kombu_message WHERE visible = 0 AND timestamp < ?", (cutoff,))
        return cur.rowcount
