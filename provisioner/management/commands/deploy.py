"""The one deploy command: every step a fresh or upgraded installation needs, in order.

``make run``, the Procfile's release step and docker-compose all call it, so the embedded
default and production can never drift apart (production once lacked the recipe catalog
because only ``make run`` installed it).
"""

import time

from django.core.management import call_command
from django.core.management.base import BaseCommand

STEPS = (
    ("migrate the database", "migrate", {"interactive": False}),
    ("create the cache table", "createcachetable", {}),
    ("register the periodic tasks", "setup_periodic_tasks", {}),
    ("install the built-in recipes", "install_recipes", {}),
    ("collect static files", "collectstatic", {"interactive": False}),
)


class Command(BaseCommand):
    help = "Migrate, create the cache table, register periodic tasks, install recipes, collect static files."

    def handle(self, *args, verbosity=1, **options):
        for number, (title, command, kwargs) in enumerate(STEPS, 1):
            started = time.monotonic()
            self.stdout.write(f"[deploy {number}/{len(STEPS)}] {title} ...")
            call_command(command, verbosity=max(0, verbosity - 1), **kwargs)
            self.stdout.write(f"[deploy {number}/{len(STEPS)}] {title}: done in {time.monotonic() - started:.1f} s")
