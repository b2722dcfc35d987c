from django.apps import AppConfig


class WorkloadsConfig(AppConfig):
    name = "workloads"
    verbose_name = "Workloads"

    def ready(self) -> None:
        # registers the telemetry/auto-shutdown Celery tasks and their beat entries
        from . import tasks_telemetry  # noqa: F401
