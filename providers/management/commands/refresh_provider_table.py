"""Refresh the bundled provider table the wizard's recommendation falls back on.

Recomputes each provider's per-country spot availability from the fresh (non-stale) offers
that connected accounts of every organization reported — aggregated, so nothing identifies an
organization — and keeps the bundled rows of providers nobody has connected yet.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from django.core.management.base import BaseCommand

from providers.adapters.registry import ADAPTERS, provider_info
from providers.models import Offer
from providers.recommend import TABLE_PATH, load_table, table_from_offers
from provisioner import clock


class Command(BaseCommand):
    help = "Recompute providers/data/provider_table.json from connected accounts' offers."

    def add_arguments(self, parser):
        parser.add_argument("--output", default=str(TABLE_PATH), help="where to write the table")
        parser.add_argument("--max-age-minutes", type=int, default=120,
                            help="ignore offers fetched longer ago than this")
        parser.add_argument("--include-sandbox", action="store_true", help="also tabulate the simulated Sandbox")

    def handle(self, *args, output: str, max_age_minutes: int, include_sandbox: bool, **options):
        now = clock.now()
        offers = Offer.objects.filter(stale=False, provider_account__enabled=True,
                                      fetched_at__gte=now - timedelta(minutes=max_age_minutes))
        if not include_sandbox:
            offers = offers.exclude(kind="sandbox")
        computed = table_from_offers(offers)
        table = load_table(output)
        providers = table.setdefault("providers", {})
        for kind, countries in sorted(computed.items()):
            n_accounts = offers.filter(kind=kind).values("provider_account").distinct().count()
            try:
                info = provider_info(kind) if kind in ADAPTERS else None
            except Exception:  # an adapter module that fails to import must not stop the refresh
                info = None
            old = providers.get(kind, {})
            providers[kind] = {
                "label": info.label if info else old.get("label", kind),
                "supports_spot": info.supports_spot if info else old.get("supports_spot", False),
                "source": f"computed from {n_accounts} connected account(s)",
                "generated_at": now.isoformat(),
                "countries": dict(sorted(countries.items())),
            }
        table["version"] = 1
        table["generated_at"] = now.isoformat()
        Path(output).write_text(json.dumps(table, indent=2, sort_keys=False) + "\n", encoding="utf-8")
        kept = sorted(set(providers) - set(computed))
        self.stdout.write(f"Provider table written to {output}: recomputed {', '.join(sorted(computed)) or 'none'}; "
                          f"kept bundled rows for {', '.join(kept) or 'none'}.")
