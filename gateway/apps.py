from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "gateway"
    verbose_name = "Service gateway"

    def ready(self) -> None:
        from . import receivers  # noqa: F401  (connects the workloads hooks)
