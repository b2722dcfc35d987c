"""Create the demo organization and its three logins (idempotent)."""

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from tenants.models import Role, Tenant
from tenants.services import membership_set, project_create, tenant_create

DEMO_USERS = [
    # username, password, role, description
    ("admin", "admin-demo-2026", Role.OWNER, "owner/admin: connects providers, manages everything"),
    ("finance", "finance-demo-2026", Role.FINANCE, "finance: spend dashboard and budgets, cannot launch"),
    ("dev", "dev-demo-2026", Role.DEVELOPER, "developer: launches recipes and pods"),
]


class Command(BaseCommand):
    help = ("Seed the demo organization (Acme AI) with an admin, a finance user and a developer; "
            "--with-history adds its past (make run): provisioner/demo_history.py")

    def add_arguments(self, parser):
        parser.add_argument("--with-history", action="store_true",
                            help="also seed a connected Sandbox and three months of workloads, spend and budgets")

    @transaction.atomic
    def handle(self, *args, **options):
        User = get_user_model()
        tenant = Tenant.objects.filter(slug="acme").first()
        if tenant is None:
            tenant = tenant_create(name="Acme AI", slug="acme", home_country="DE")
            project_create(tenant=tenant, name="Research")
        for username, password, role, _ in DEMO_USERS:
            user, created = User.objects.get_or_create(username=username, defaults={"email": f"{username}@acme.example"})
            if created:
                user.set_password(password)
                if role == Role.OWNER:
                    user.is_staff = True
                    user.is_superuser = True
                user.save()
            membership_set(tenant=tenant, user=user, role=role)
        from workloads.recipes.services import builtin_catalog_install

        builtin_catalog_install()  # the recipe catalog (idempotent)
        if options.get("with_history"):
            self._history(tenant)
        self.stdout.write("Demo organization: Acme AI")
        for username, password, _, desc in DEMO_USERS:
            self.stdout.write(f"  {username:8} / {password:18} {desc}")

    def _history(self, tenant) -> None:
        from provisioner.demo_history import seed_history

        users = {u.username: u for u in get_user_model().objects.filter(username__in=("admin", "dev"))}
        summary = seed_history(tenant=tenant, owner=users["admin"], developer=users["dev"])
        if summary is None:
            self.stdout.write("Demo history: already seeded (nothing changed)")
        else:
            self.stdout.write(f"Demo history: {summary.pods} pods, ${summary.ledger_usd:,.2f} booked, "
                              f'budget "{summary.budget}" with its first alert')
