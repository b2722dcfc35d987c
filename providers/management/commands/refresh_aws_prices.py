"""Rewrite the bundled AWS on-demand price table from the AWS Price List API.

The AWS adapter quotes from ``providers/data/aws_prices.json`` whenever the Price List API is
not reachable from the running app; run this where it is (any IAM key with
``pricing:GetProducts``), then commit the file::

    manage.py refresh_aws_prices --regions us-east-1,us-west-2,eu-central-1
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import boto3
from django.core.management.base import BaseCommand, CommandError

from providers.adapters import aws_pricing
from providers.adapters.aws import DEFAULT_REGIONS, GPU_TYPE_PATTERNS
from provisioner import clock

GPU_PREFIXES = tuple(p.rstrip("*") for p in GPU_TYPE_PATTERNS)


def pricing_client(*, access_key_id: str | None = None, secret_access_key: str | None = None,
                   endpoint_url: str | None = None):
    """A Price List API client (credentials from the options, else boto3's usual chain)."""
    return boto3.client("pricing", region_name=aws_pricing.PRICING_REGION, endpoint_url=endpoint_url,
                        aws_access_key_id=access_key_id, aws_secret_access_key=secret_access_key)


class Command(BaseCommand):
    help = "Refresh providers/data/aws_prices.json (GPU instance on-demand USD/hour) from the AWS Price List API."

    def add_arguments(self, parser):
        parser.add_argument("--regions", default="", help="comma-separated; default: the regions already in the table")
        parser.add_argument("--output", default=str(aws_pricing.PRICE_TABLE_PATH))
        parser.add_argument("--endpoint-url", default="", help="a Price List API stand-in")

    def handle(self, *args, **options):
        output = Path(options["output"])
        current = aws_pricing.load_table(output) if output.exists() else {}
        regions = [r.strip() for r in options["regions"].split(",") if r.strip()] or sorted(set(current) | set(DEFAULT_REGIONS))
        client = pricing_client(access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
                                secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
                                endpoint_url=options["endpoint_url"] or None)
        prices: dict[str, dict[str, Decimal]] = {}
        for region in regions:
            try:
                found = aws_pricing.fetch_region_prices(client, region)
            except Exception as exc:  # one bad region must not lose the others' fresh prices
                raise CommandError(f"{region}: the Price List API failed: {exc}") from exc
            prices[region] = {t: p for t, p in found.items() if t.startswith(GPU_PREFIXES)}
            self.stdout.write(f"{region}: {len(prices[region])} GPU instance types")
        # keep regions not asked for this time
        merged = {**{r: t for r, t in current.items() if r not in prices}, **prices}
        aws_pricing.write_table(merged, path=output, updated=clock.now().date().isoformat(),
                                source="AWS Price List API (pricing.get_products, AmazonEC2, Linux, shared tenancy, "
                                       "no pre-installed software), refreshed by manage.py refresh_aws_prices.")
        self.stdout.write(self.style.SUCCESS(f"wrote {sum(len(t) for t in merged.values())} prices to {output}"))
