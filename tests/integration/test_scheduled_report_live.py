"""Run now on a report schedule: a real worker makes the report and emails it."""

import pytest

from jobs import schedules
from jobs.models import Job, Schedule
from reports.models import Report
from tests.support import email
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_run_now_produces_the_report_and_emails_it(products, worker_factory, tmp_path):
    worker_factory(processes=1, threads=2, MEDIA_ROOT=str(tmp_path / "media"))
    schedule = Schedule.objects.create(
        name="Hourly low-stock check",
        actor_name="run_scheduled_report",
        cron="0 * * * *",
        kwargs={"kind": "low_stock", "parameters": {}, "recipients": ["ops@example.com"], "schedule": "Hourly"},
    )

    job = schedules.run_now(schedule)

    wait_until(lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=60, what="the scheduled report job")
    report = Report.objects.get()
    assert report.status == "succeeded" and report.schedule == f"Hourly@{job.pk}"
    assert [m["to"] for m in email.sent()] == [["ops@example.com"]]
