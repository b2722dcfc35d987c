"""The embedded default's broker hands over whole messages while they are being published.

With kombu's filesystem transport (the old default) the producer creates the message file, then
serializes and writes it; a consumer that polls in between moves the empty file away, reads it and
the worker dies with an unrecoverable JSONDecodeError (seen a few minutes after `make run`). Here
the producer, in another process, is made slow to serialize (as a large message or a descheduled
process would be): the consumer must still receive every message whole.
"""

import multiprocessing
import sqlite3
import sys
import time
import uuid

from django.conf import settings as django_settings
from kombu import Connection

import provisioner.celery  # noqa: F401  (registers the embedded broker's transport)

MESSAGES = 40


def _connection(url: str) -> Connection:
    return Connection(url, transport_options=django_settings.EMBEDDED_BROKER_TRANSPORT_OPTIONS)


def _publish_slowly(url: str, queue: str, body: str) -> None:
    with _connection(url) as conn:
        q = conn.SimpleQueue(queue)
        transport_module = sys.modules[type(conn.default_channel)._put.__module__]
        serialize = transport_module.dumps

        def slow_dumps(obj):
            time.sleep(0.02)
            return serialize(obj)

        transport_module.dumps = slow_dumps
        for n in range(MESSAGES):
            q.put({"n": n, "body": body})


def test_consumer_polling_while_another_process_publishes_gets_every_message_whole(tmp_path, settings):
    # the embedded default's broker, in a file of this test's own (CI's broker is Redis)
    settings.EMBEDDED_BROKER, settings.EMBEDDED_BROKER_PATH = True, tmp_path / "broker.sqlite3"
    scheme = django_settings.EMBEDDED_BROKER_URL.split(":///", 1)[0]
    url = f"{scheme}:///{settings.EMBEDDED_BROKER_PATH}"
    from provisioner.broker import prepare_embedded_broker

    prepare_embedded_broker()
    queue, body = f"torn-read-{uuid.uuid4().hex}", "x" * 2000
    received, errors = [], []
    with _connection(url) as conn:
        q = conn.SimpleQueue(queue)
        producer = multiprocessing.get_context("fork").Process(target=_publish_slowly, args=(url, queue, body))
        producer.start()
        while len(received) < MESSAGES:
            try:
                message = q.get(timeout=20)
            except q.Empty:
                break
            except Exception as exc:  # a torn message surfaces here as a decode error
                errors.append(repr(exc))
                break
            received.append(message.payload)
            message.ack()
        producer.join(timeout=30)
        q.clear()
        q.close()
    assert errors == []
    assert sorted(m["n"] for m in received) == list(range(MESSAGES))
    assert all(m["body"] == body for m in received)


def test_the_broker_file_is_in_wal_mode_and_commits_without_waiting_for_fsync(tmp_path, settings):
    """A publish is a commit: in the default rollback-journal mode with synchronous=FULL each one
    waits for fsync several times (~30 ms each here, 247 while `make run` seeds the demo, before
    runstack switched the file to WAL). The broker's connections use the app's own SQLite settings."""
    settings.EMBEDDED_BROKER, settings.EMBEDDED_BROKER_PATH = True, tmp_path / "broker.sqlite3"
    scheme = django_settings.EMBEDDED_BROKER_URL.split(":///", 1)[0]
    with _connection(f"{scheme}:///{settings.EMBEDDED_BROKER_PATH}") as conn:
        conn.SimpleQueue("pragmas").put({"n": 1})
        engine = conn.default_channel._open()[0]
        with engine.connect() as db:
            synchronous = db.exec_driver_sql("PRAGMA synchronous").scalar()
    with sqlite3.connect(settings.EMBEDDED_BROKER_PATH) as db:  # the mode is stored in the file
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert synchronous == 1  # NORMAL
