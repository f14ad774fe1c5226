from django.apps import AppConfig


class ReportsConfig(AppConfig):
    name = "reports"

    def ready(self) -> None:
        # The web process enqueues `generate_report` by name, and the scheduler needs the
        # periodic expiry registered: every process needs the actors declared.
        from reports import tasks  # noqa: F401
