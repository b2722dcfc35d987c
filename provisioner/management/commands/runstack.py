"""Run web + Celery worker + beat together (the embedded default of ``make run``).

Each is supervised: one that crashes is restarted with backoff while the others keep serving
(provisioner/supervise.py). Ctrl-C stops all of them cleanly.
"""

import signal
import sys
import time

from django.core.management.base import BaseCommand

from provisioner.broker import prepare_embedded_broker
from provisioner.supervise import Child, Supervisor

# the default queue and the Hetzner bootstrap queue (the Procfile runs a worker for each)
WORKER_QUEUES = ("celery", "bootstrap")


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and beat, restart any that dies; stop them all on Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, addr, **options):
        py = sys.executable
        celery = [py, "-m", "celery", "-A", "provisioner"]
        prepare_embedded_broker()
        supervisor = Supervisor(
            children=[
                Child("web", [py, "manage.py", "runserver", addr, "--noreload"]),
                # one embedded worker consumes every queue production splits across workers
                Child("worker", [*celery, "worker", "-Q", ",".join(WORKER_QUEUES), "-l", "INFO",
                                 "--concurrency", "2", "--without-gossip", "--without-mingle"]),
                Child("beat", [*celery, "beat", "-l", "INFO"]),
            ],
            log=lambda line: self.stderr.write(f"[runstack] {line}"),
        )
        supervisor.start_all()
        self.stdout.write(self.style.SUCCESS(
            f"\n  AI Cloud Provisioner is up: http://{addr}/\n  (Ctrl-C stops web, worker and beat)\n"))

        def stop(*_):
            supervisor.stop_all()
            self.stdout.write("stopped.")
            sys.exit(0)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while True:
            supervisor.tick()
            time.sleep(0.5)
