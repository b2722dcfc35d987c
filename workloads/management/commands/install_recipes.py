from django.core.management.base import BaseCommand

from workloads.recipes.services import builtin_catalog_install


class Command(BaseCommand):
    help = "Install or update the built-in recipe catalog (idempotent; a new version only when a recipe changed)."

    def handle(self, *args, **options):
        for line in builtin_catalog_install():
            self.stdout.write(f"  recipe {line}")
