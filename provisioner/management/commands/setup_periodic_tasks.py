from django.core.management.base import BaseCommand

from provisioner.schedule import sync_periodic_tasks


class Command(BaseCommand):
    help = "Create or update the product's periodic tasks (never deletes others)."

    def handle(self, *args, **options):
        for name in sync_periodic_tasks():
            self.stdout.write(f"  periodic task: {name}")
