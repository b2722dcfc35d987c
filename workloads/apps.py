from django.apps import AppConfig


class WorkloadsConfig(AppConfig):
    name = "workloads"
    verbose_name = "Workloads"

    def ready(self) -> None:
        # Celery's autodiscovery imports <app>.tasks only; the sub-areas' task modules are
        # imported here so that every worker registers each task under its stable name.
        from .autoshutdown import tasks as _autoshutdown_tasks  # noqa: F401
        from .lifecycle import tasks as _lifecycle_tasks  # noqa: F401
