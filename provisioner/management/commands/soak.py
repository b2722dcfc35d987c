"""Soak the embedded stack: ``runstack`` under the three journeys plus every periodic task.

It starts ``deploy``, ``seed_demo`` and ``runstack`` in a fresh folder of its own (never your
``var/``), drives the admin, finance and developer journeys over HTTP for ``--minutes``, and
checks at the end:

- crashes: lines where runstack had to restart a child, and "Unrecoverable error" from Celery;
- lost tasks: a launch whose pod never ran, a stop whose pods never ended, a periodic task that
  beat sent and the worker never received;
- HTTP 5xx answers.

It prints one JSON line with the figures and exits non-zero when any of them is not zero.
``make soak`` runs the full hour; the test suite runs a short form (tests/provisioner/test_soak.py).
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import httpx
from django.core.management.base import BaseCommand, CommandError

ROOT = Path(__file__).resolve().parents[3]
USERS = {"admin": "admin-demo-2026", "finance": "finance-demo-2026", "dev": "dev-demo-2026"}
PAGES = {
    "admin": ["/providers/", "/providers/capacity/", "/providers/connect/", "/org/members/", "/org/audit/"],
    "finance": ["/spend/", "/spend/?period=monthly", "/spend/export.csv", "/spend/budgets/", "/spend/alerts/"],
    "dev": ["/recipes/", "/workloads/", "/pods/"],
}
RECIPE = "whisper-batch"
ENDED = ("terminated", "failed", "interrupted")
SENT = re.compile(r"^\[(?P<at>[\d-]+ [\d:,]+): INFO/MainProcess\] Scheduler: Sending due task .* \((?P<task>[\w.]+)\)$")
RECEIVED = re.compile(r"^\[(?P<at>[\d-]+ [\d:,]+): INFO/MainProcess\] Task (?P<task>[\w.]+)\[[\w-]+\] received$")


class _FormFields(HTMLParser):
    """The values a browser would submit from the first form whose id is ``form`` or whose
    action starts with it (defaults as shown), and that form's action."""

    def __init__(self, form: str):
        super().__init__()
        self.form, self.inside, self.fields, self._select, self.action = form, False, {}, None, None
        self.first_radio: dict[str, str] = {}  # a person answers a required choice with no default

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.inside = a.get("id") == self.form or (a.get("action") or "").startswith(self.form)
            if self.inside:
                self.action = a.get("action") or ""
        if not self.inside or "name" not in a and tag != "option":
            return
        if tag == "input" and a.get("type") == "radio":
            self.first_radio.setdefault(a["name"], a.get("value", "on"))
        if tag == "input" and a.get("type") in ("checkbox", "radio"):
            if "checked" in a:
                self.fields[a["name"]] = a.get("value", "on")
        elif tag == "input":
            self.fields[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self._select = a["name"]
        elif tag == "option" and self._select:
            if self._select not in self.fields or "selected" in a:
                self.fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        if tag == "form":
            self.inside = False


def form_fields(html: str, form: str) -> tuple[dict, str | None]:
    parser = _FormFields(form)
    parser.feed(html)
    return {**parser.first_radio, **parser.fields}, parser.action


# what the admin chooses on each wizard step; every other field keeps the form's default
WIZARD_CHOICES = {"provider": {"kind": "sandbox"}, "credentials": {"name": "Sandbox"}, "regions": {"preset": "any"}}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _csrf(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


class Soak:
    def __init__(self, base: str, db: Path):
        self.base, self.db = base, db
        self.clients = {u: httpx.Client(base_url=base, follow_redirects=True, timeout=30) for u in USERS}
        self.requests, self.errors = 0, Counter()
        self.launched: list[str] = []  # workload ids
        self.stopped: list[str] = []

    def get(self, user: str, url: str) -> httpx.Response:
        r = self.clients[user].get(url)
        self._count(url, r)
        return r

    def post(self, user: str, url: str, data: dict) -> httpx.Response:
        r = self.clients[user].post(url, data=data, headers={"Referer": self.base + url})
        self._count(url, r)
        return r

    def _count(self, url, r):
        self.requests += 1
        if r.status_code >= 500:
            self.errors[f"{r.status_code} {url}"] += 1

    def login_all(self):
        for user, password in USERS.items():
            page = self.get(user, "/login/")
            r = self.post(user, "/login/", {"username": user, "password": password, "csrfmiddlewaretoken": _csrf(page.text)})
            if "/login/" in str(r.url):
                raise CommandError(f"could not log in as {user}")

    def connect_sandbox(self) -> None:
        """The admin journey's first step: the wizard, over HTTP, as a browser would post it."""
        r = self.get("admin", "/providers/connect/")
        for _ in range(12):
            if "/providers/connect/" not in str(r.url):
                return
            step = re.search(r'data-step="(\w+)"', r.text)
            fields, action = form_fields(r.text, "/providers/connect/")
            if not step or not action:
                break
            fields.update(WIZARD_CHOICES.get(step[1], {}), _nav="next")
            r = self.post("admin", action, fields)
        raise CommandError(f"the wizard did not connect the Sandbox (last page {r.url})")

    def gpu_class(self) -> str:
        """A class the Sandbox offers one GPU of, so launches test the stack, not the catalogue."""
        with sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=30) as db:
            row = db.execute("SELECT gpu_class FROM providers_offer WHERE gpu_count = 1 AND spot = 0 "
                             "ORDER BY price_usd_per_hour LIMIT 1").fetchone()
        if not row:
            raise CommandError("the Sandbox offers nothing after connecting")
        return row[0]

    def launch(self, n: int, gpu_class: str) -> None:
        page = self.get("dev", f"/recipes/{RECIPE}/")
        data, _ = form_fields(page.text, "launch-form")
        data.update(name=f"soak-{n}", gpu_class=gpu_class, max_duration_minutes="30")
        data.pop("idle_enabled", None)
        r = self.post("dev", f"/recipes/{RECIPE}/", data)
        m = re.search(r"/workloads/([0-9a-f-]{36})/", str(r.url)) or re.search(r'href="/workloads/([0-9a-f-]{36})/"', r.text)
        if not m:
            self.errors["launch refused"] += 1
            return
        self.launched.append(m.group(1))

    def stop(self, workload_id: str) -> None:
        page = self.get("dev", f"/workloads/{workload_id}/")
        self.post("dev", f"/workloads/{workload_id}/stop/", {"csrfmiddlewaretoken": _csrf(page.text)})
        self.stopped.append(workload_id)


def _pods(db_path: Path, workload_ids: list[str]) -> list[tuple[str, str, bool]]:
    """(workload id, state, ever started) of each pod, read from the soak's own SQLite file
    (this command's ORM points at the caller's database, not the soak's)."""
    if not workload_ids:
        return []
    hexes = {uuid.UUID(w).hex: w for w in workload_ids}  # Django keeps UUIDs as 32 hex digits on SQLite
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30) as db:
        rows = db.execute(
            f"SELECT workload_id, state, started_at IS NOT NULL FROM workloads_pod WHERE workload_id IN ({','.join('?' * len(hexes))})",
            list(hexes),
        ).fetchall()
    return [(hexes[w], state, bool(ran)) for w, state, ran in rows]


def _states(db_path: Path, workload_ids: list[str]) -> dict[str, list[str]]:
    states: dict[str, list[str]] = {w: [] for w in workload_ids}
    for wid, state, _ in _pods(db_path, workload_ids):
        states[wid].append(state)
    return states


def lost_periodic_tasks(log: str, until: float) -> dict[str, int]:
    """Per task: how many beat sent before ``until`` that the worker never said it received."""
    from datetime import datetime

    def at(s):
        return datetime.strptime(s, "%Y-%m-%d %H:%M:%S,%f").timestamp()

    sent, received = Counter(), Counter()
    for line in log.splitlines():
        if (m := SENT.match(line)) and at(m["at"]) <= until:
            sent[m["task"]] += 1
        elif m := RECEIVED.match(line):
            received[m["task"]] += 1
    return {t: n - received[t] for t, n in sent.items() if n > received[t]}


class Command(BaseCommand):
    help = "Run the embedded stack under scripted journeys and periodic tasks; report crashes and lost tasks."

    def add_arguments(self, parser):
        parser.add_argument("--minutes", type=float, default=60.0)
        parser.add_argument("--keep", action="store_true", help="keep the soak folder (logs, database)")

    def handle(self, *args, minutes, keep, **options):
        logging.getLogger("httpx").setLevel(logging.WARNING)
        folder = Path(tempfile.mkdtemp(prefix="soak-"))
        port = _free_port()
        env = {**os.environ, "PROVISIONER_VAR_DIR": str(folder), "SANDBOX_BOOT_SECONDS": "3"}
        # a gateway of its own beside any `make run` on this machine (its pod servers end with the folder)
        gateway_admin, gateway_port = _free_port(), _free_port()
        env.update(GATEWAY_ADMIN_URL=f"http://127.0.0.1:{gateway_admin}", GATEWAY_LISTEN=f"127.0.0.1:{gateway_port}")
        for var in ("GATEWAY_ADMIN_LISTEN", "GATEWAY_PUBLIC_URL", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_TASK_ALWAYS_EAGER",
                    "PROVISIONER_TESTING", "SQLITE_PATH", "CACHE_URL"):
            env.pop(var, None)
        manage = [sys.executable, str(ROOT / "manage.py")]
        for step in ("deploy", "seed_demo"):
            subprocess.run([*manage, step], cwd=ROOT, env=env, check=True, capture_output=True)
        log_path = folder / "runstack.log"
        with open(log_path, "w") as log:
            stack = subprocess.Popen([*manage, "runstack", "--addr", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
                                     stdout=log, stderr=subprocess.STDOUT)
        try:
            report = self._drive(Soak(f"http://127.0.0.1:{port}", folder / "provisioner.sqlite3"), minutes, stack.pid)
        finally:
            stack.terminate()
            stack.wait(timeout=30)
        log_text = log_path.read_text(errors="replace")
        report["crashes"] = log_text.count("[runstack]") - log_text.count(": restarting (") + log_text.count("Unrecoverable error")
        report["lost_periodic"] = lost_periodic_tasks(log_text, report.pop("_beat_until"))
        report["lost_tasks"] = report["lost_launches"] + report["lost_stops"] + sum(report["lost_periodic"].values())
        report["folder"] = str(folder) if keep else None
        self.stdout.write(json.dumps(report))
        if not keep:
            subprocess.run(["rm", "-rf", str(folder)], check=False)
        if report["crashes"] or report["lost_tasks"] or report["http_5xx"]:
            raise CommandError("soak failed: " + json.dumps(report))

    def _drive(self, soak: Soak, minutes: float, stack_pid: int) -> dict:
        for _ in range(120):
            try:
                if soak.clients["admin"].get("/login/").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        soak.login_all()
        soak.connect_sandbox()
        gpu_class = soak.gpu_class()
        started = time.monotonic()
        end = started + minutes * 60
        n = 0
        peaks: dict[str, int] = {}
        while time.monotonic() < end:
            for user, urls in PAGES.items():
                for url in urls:
                    soak.get(user, url)
            if n % 3 == 0:
                soak.launch(n, gpu_class)
            live = [w for w in soak.launched if w not in soak.stopped]
            ran = _states(soak.db, live)
            for wid in live:
                if "running" in ran[wid] and len(live) > 2:
                    soak.stop(wid)
                    break
            _peak_rss(stack_pid, peaks)
            n += 1
            time.sleep(2)
        beat_until = time.time() - 15  # what beat sent in the last seconds may still be in flight
        # the last launches get their boot time before the final stop; a launch is lost when its
        # pod never ran by then (stopping a pod still booting would hide that)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            pods = _pods(soak.db, soak.launched)
            if all(ran or state in ENDED for _, state, ran in pods):
                break
            time.sleep(1)
        for w in soak.launched:
            if w not in soak.stopped:
                soak.stop(w)
        states = _wait_settled(soak.db, soak.launched, timeout=90)
        ever_ran = _ever_ran(soak.db, soak.launched)
        return {
            "minutes": round((time.monotonic() - started) / 60, 2),
            "requests": soak.requests,
            "http_5xx": sum(soak.errors.values()),
            "errors": dict(soak.errors),
            "launches": len(soak.launched),
            "lost_launches": sum(1 for w in soak.launched if w not in ever_ran),
            "lost_stops": sum(1 for w, s in states.items() if any(x not in ENDED for x in s)),
            "peak_rss_mb": {k: round(v / 1024, 1) for k, v in peaks.items()},
            "_beat_until": beat_until,
        }


def _ever_ran(db_path: Path, workload_ids: list[str]) -> set[str]:
    return {wid for wid, _, ran in _pods(db_path, workload_ids) if ran}


def _wait_settled(db_path: Path, workload_ids: list[str], timeout: float) -> dict[str, list[str]]:
    deadline = time.monotonic() + timeout
    while True:
        states = _states(db_path, workload_ids)
        done = all(x in ENDED for s in states.values() for x in s)
        if done or time.monotonic() > deadline:
            return states
        time.sleep(1)


def _peak_rss(root_pid: int, peaks: dict[str, int]) -> None:
    """Peak resident memory (VmHWM, kB) of web, worker, beat and the gateway's supervisor (Caddy
    itself is its child), from /proc (Linux only)."""
    try:
        children = Path(f"/proc/{root_pid}/task/{root_pid}/children").read_text().split()
    except OSError:
        return
    for pid in children:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " ")
        except OSError:
            continue
        name = ("web" if "runserver" in cmd else "beat" if " beat" in cmd
                else "gateway" if "rungateway" in cmd else "worker")
        hwm = int(re.search(r"VmHWM:\s+(\d+)", status).group(1))
        peaks[name] = max(peaks.get(name, 0), hwm)
