from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"

    def ready(self) -> None:
        import dramatiq
        from django.conf import settings

        # Jobs may be sent to any configured queue (premium orders use their own), so
        # every process declares them all: workers then consume each one.
        broker = dramatiq.get_broker()
        for queue_name in settings.BUZZER_QUEUES:
            broker.declare_queue(queue_name)

        from django.contrib import admin

        from jobs import (
            dashboard,
            tasks,  # noqa: F401 - its actors (lifecycle hooks) exist in every process
        )

        dashboard.install(admin.site)  # /admin/jobs/dashboard/
