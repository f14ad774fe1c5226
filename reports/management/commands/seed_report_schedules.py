"""The demo's recurring reports (idempotent): yesterday's sales every day at 06:00 and
the low-stock check every hour, emailed to ADMIN_EMAILS (or the demo admin)."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.models import Schedule

SCHEDULES = [
    ("Daily sales report", "0 6 * * *", {"kind": "sales", "parameters": {"start": "yesterday", "end": "yesterday"}}),
    ("Hourly low-stock check", "0 * * * *", {"kind": "low_stock", "parameters": {}}),
]


class Command(BaseCommand):
    help = "Create the demo's recurring report schedules unless they exist."

    def handle(self, *args: Any, **options: Any) -> None:
        recipients = [email for _, email in settings.ADMINS] or ["admin@buzzer.localhost"]
        created = 0
        for name, cron, kwargs in SCHEDULES:
            _, new = Schedule.objects.get_or_create(
                name=name,
                defaults={
                    "actor_name": "run_scheduled_report",
                    "cron": cron,
                    "timezone": settings.TIME_ZONE,
                    "kwargs": {**kwargs, "recipients": recipients, "schedule": name},
                },
            )
            created += new
        self.stdout.write(f"Report schedules: {created} created, {len(SCHEDULES) - created} already there.")
