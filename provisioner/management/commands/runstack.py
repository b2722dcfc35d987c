"""Run web + Celery worker + beat together (the embedded default of ``make run``).

Ctrl-C stops all three cleanly.
"""

import os
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Start the web server, a Celery worker and beat; stop them all on Ctrl-C."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000")

    def handle(self, *args, addr, **options):
        py = sys.executable
        env = dict(os.environ)
        procs = {
            "web": [py, "manage.py", "runserver", addr, "--noreload"],
            "worker": [py, "-m", "celery", "-A", "provisioner", "worker", "--beat", "-l", "INFO",
                       "--concurrency", "2", "--without-gossip", "--without-mingle"],
        }
        running = {name: subprocess.Popen(cmd, env=env) for name, cmd in procs.items()}
        self.stdout.write(self.style.SUCCESS(f"\n  AI Cloud Provisioner is up: http://{addr}/\n  (Ctrl-C stops web, worker and beat)\n"))

        def stop(*_):
            for p in running.values():
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            deadline = time.time() + 15
            for p in running.values():
                try:
                    p.wait(timeout=max(0.1, deadline - time.time()))
                except subprocess.TimeoutExpired:
                    p.kill()
            self.stdout.write("stopped.")
            sys.exit(0)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        while True:
            for name, p in running.items():
                if p.poll() is not None:
                    self.stderr.write(f"{name} exited with {p.returncode}; stopping the rest")
                    stop()
            time.sleep(1)
