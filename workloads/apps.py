from django.apps import AppConfig


class WorkloadsConfig(AppConfig):
    name = "workloads"
    verbose_name = "Workloads"

    def ready(self) -> None:
        from providers import pod_usage

        from .pods.selectors import POD_USAGE

        pod_usage.register(POD_USAGE)  # providers asks about pods without importing workloads
        # Celery's autodiscovery imports <app>.tasks only; the sub-areas' task modules are
        # imported here so that every worker registers each task under its stable name.
        from .autoshutdown import tasks as _autoshutdown_tasks  # noqa: F401
        from .lifecycle import tasks as _lifecycle_tasks  # noqa: F401
