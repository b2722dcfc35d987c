"""Run the service gateway (Caddy) with the app's base config, then fill it with every route.

The Procfile's and docker-compose's ``gateway`` process, and the embedded stack's (``runstack``).
Caddy is started with the layout from the settings (``GATEWAY_LISTEN``, ``GATEWAY_ADMIN_LISTEN``);
once its admin API answers, one reconcile writes every routed workload's route, so a restarted
gateway serves again at once (the periodic ``gateway.reconcile`` would within 10 s anyway).
"""

import signal
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from gateway import services
from gateway.caddy import GatewayError
from gateway.process import start_caddy, stop_caddy


class Command(BaseCommand):
    help = "Run Caddy as the service gateway and load every service's route."

    def handle(self, *args, **options):
        if not settings.GATEWAY_ADMIN_URL:
            self.stderr.write("GATEWAY_ADMIN_URL is empty: the gateway is off")
            sys.exit(2)
        proc = start_caddy(services.gateway_config(), settings.GATEWAY_ADMIN_URL)
        try:
            summary = services.reconcile()
            self.stdout.write(f"gateway up on {settings.GATEWAY_LISTEN} ({summary['workloads']} routed workloads)")
        except GatewayError as exc:
            self.stderr.write(f"gateway up, first reconcile failed ({exc}); the periodic one will retry")

        def stop(*_):
            stop_caddy(proc)
            sys.exit(0)

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        sys.exit(proc.wait())
