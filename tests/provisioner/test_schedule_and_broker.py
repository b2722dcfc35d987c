"""The one periodic-task registry, and the embedded broker's housekeeping."""

import re
import sqlite3
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.test import override_settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from provisioner import broker
from provisioner.schedule import MANAGED_MARK, SCHEDULE, sync_periodic_tasks


@pytest.mark.django_db
def test_every_periodic_task_is_listed_in_the_one_registry_and_names_a_real_task():
    from provisioner.celery import app

    app.loader.import_default_modules()
    tasks = {e.task for e in SCHEDULE}
    assert {"workloads.reap_idle", "workloads.poll_telemetry", "workloads.purge_samples",
            "provisioner.prune_broker"} <= tasks
    assert tasks <= set(app.tasks), tasks - set(app.tasks)


def test_no_other_module_registers_periodic_tasks():
    """The product's beat entries come from provisioner/schedule.py alone: no beat schedule in
    settings, no add_periodic_task hook, no interval entry written elsewhere (the per-workload cron
    entries of workloads/lifecycle/scheduling.py are a workload's data, not product entries)."""
    root = Path(__file__).resolve().parents[2]
    packages = [d for d in root.iterdir() if (d / "__init__.py").exists() and d.name != "tests"]
    offenders = []
    for path in (p for d in packages for p in d.rglob("*.py") if "migrations" not in p.parts):
        rel = path.relative_to(root).as_posix()
        if rel != "provisioner/schedule.py" and re.search(
                r"beat_schedule\b|add_periodic_task|on_after_configure|IntervalSchedule", path.read_text(), re.I):
            offenders.append(rel)
    assert packages and offenders == []


@pytest.mark.django_db
def test_an_entry_removed_from_the_registry_is_disabled_on_deploy_and_others_are_left_alone():
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="Old product task", task="x.gone", interval=every, description=MANAGED_MARK)
    PeriodicTask.objects.create(name="workload cron entry", task="workloads.run_scheduled", interval=every)
    names = sync_periodic_tasks()
    assert len(names) == len(SCHEDULE)
    assert not PeriodicTask.objects.get(name="Old product task").enabled
    assert PeriodicTask.objects.get(name="workload cron entry").enabled
    assert PeriodicTask.objects.filter(name__in=names, enabled=True, description=MANAGED_MARK).count() == len(SCHEDULE)


def _kombu_table(path):
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE kombu_message (id INTEGER PRIMARY KEY, visible BOOLEAN, timestamp DATETIME, payload TEXT)")
    fmt = "%Y-%m-%d %H:%M:%S.%f"
    now = datetime.now()
    rows = [(0, now - timedelta(hours=3)), (0, now - timedelta(minutes=5)), (1, now - timedelta(hours=3))]
    db.executemany("INSERT INTO kombu_message (visible, timestamp, payload) VALUES (?, ?, '{}')",
                   [(v, t.strftime(fmt)) for v, t in rows])
    db.commit()
    db.close()


def test_prune_removes_only_messages_delivered_long_ago(tmp_path):
    path = tmp_path / "broker.sqlite3"
    _kombu_table(path)
    with override_settings(EMBEDDED_BROKER=True, EMBEDDED_BROKER_PATH=path):
        broker.prepare_embedded_broker()
        assert broker.prune_delivered_messages() == 1
    left = sqlite3.connect(path).execute("SELECT visible FROM kombu_message ORDER BY id").fetchall()
    assert left == [(0,), (1,)]  # the recent delivery and the pending message stay
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_prune_is_a_no_op_on_redis(tmp_path):
    with override_settings(EMBEDDED_BROKER=False, EMBEDDED_BROKER_PATH=tmp_path / "none.sqlite3"):
        assert broker.prune_delivered_messages() == 0
    assert not (tmp_path / "none.sqlite3").exists()
