"""Run web + Celery worker + beat + the service gateway together (the embedded default of ``make run``).

Each is supervised: one that crashes is restarted with backoff while the others keep serving
(provisioner/supervise.py). Ctrl-C stops all of them cleanly.
"""

import os
import signal
import socket
import sys
import time

from django.core.management.base import BaseCommand

from provisioner.broker import prepare_embedded_broker
from provisioner.supervise import Child, Supervisor

# the default queue and the Hetzner bootstrap queue (the Procfile runs a worker for each)
WORKER_QUEUES = ("celery", "bootstrap")
DEFAULT_GATEWAY_ADMIN_URL = "http://127.0.0.1:2019"


def _accepts(addr: str) -> bool:
    """True once something listens on ``host:port`` (the web server is up)."""
    host, _, port = addr.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]") or "127.0.0.1", int(port)), timeout=0.5):
            return True
    except OSError:
        return False


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and beat, restart any that dies; stop them all on Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def _gateway(self, py: str) -> Child | None:
        """The service gateway (Caddy, ``manage.py rungateway``), supervised like the others, with
        Sandbox pods serving real HTTP behind it. The children get ``GATEWAY_ADMIN_URL`` (default
        ``http://127.0.0.1:2019``) and ``SANDBOX_HTTP=1`` unless set; ``GATEWAY_IN_STACK=0`` or Caddy
        not installed (said once): the stack runs without a gateway, as before."""
        import shutil

        from django.conf import settings

        if not settings.GATEWAY_IN_STACK:
            return None
        if shutil.which("caddy") is None:
            self.stderr.write("note: caddy is not installed (apt-get install -y caddy): no service gateway; "
                              "stable service URLs will not answer")
            return None
        os.environ.setdefault("GATEWAY_ADMIN_URL", DEFAULT_GATEWAY_ADMIN_URL)
        os.environ.setdefault("SANDBOX_HTTP", "1")
        self.stdout.write(f"  service gateway: {settings.GATEWAY_PUBLIC_URL}/s/<service>/")
        return Child("gateway", [py, "manage.py", "rungateway"])

    def handle(self, *args, addr, **options):
        py = sys.executable
        celery = [py, "-m", "celery", "-A", "provisioner"]
        prepare_embedded_broker()
        children = [
            Child("web", [py, "manage.py", "runserver", addr, "--noreload"], ready=lambda: _accepts(addr)),
            # one embedded worker consumes every queue production splits across workers
            Child("worker", [*celery, "worker", "-Q", ",".join(WORKER_QUEUES), "-l", "INFO",
                             "--concurrency", "2", "--without-gossip", "--without-mingle"]),
            Child("beat", [*celery, "beat", "-l", "INFO"]),
        ]
        if gateway := self._gateway(py):
            children.append(gateway)
        supervisor = Supervisor(children=children, log=lambda line: self.stderr.write(f"[runstack] {line}"))

        def stop(*_):
            supervisor.stop_all()
            self.stdout.write("stopped.")
            sys.exit(0)

        # before starting: start_all waits for the web server, and Ctrl-C may come meanwhile
        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        supervisor.start_all()
        self.stdout.write(self.style.SUCCESS(
            f"\n  AI Cloud Provisioner is up: http://{addr}/\n  (Ctrl-C stops web, worker, beat and the gateway)\n"))
        while True:
            supervisor.tick()
            time.sleep(0.5)
