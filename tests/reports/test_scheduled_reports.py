"""Recurring reports: a schedule's job makes one report and emails it once."""

import io
from datetime import date

import pytest
from django.core import mail
from django.core.management import call_command
from django.test import Client

from jobs.effects import set_current_job
from jobs.models import Schedule
from reports import scheduled
from reports.models import Report

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _mail(settings, tmp_path):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BUZZER_BASE_URL = "https://shop.example.com"


def test_relative_dates_resolve_against_today():
    params = {"start": "yesterday", "end": "today", "from": "-7d", "threshold": 5}
    assert scheduled.resolve_dates(params, date(2026, 3, 1)) == {
        "start": "2026-02-28",
        "end": "2026-03-01",
        "from": "2026-02-22",
        "threshold": 5,
    }


def test_a_fire_makes_one_report_and_emails_it_once_even_if_its_job_runs_twice(products):
    set_current_job("9b2f6f0e-0000-4000-8000-000000000001")
    try:
        for _ in range(2):  # the same job delivered twice
            scheduled.run_scheduled_report("low_stock", {}, ["ops@example.com"], "Hourly")
    finally:
        set_current_job(None)

    report = Report.objects.get()
    assert (report.status, report.schedule) == ("succeeded", "Hourly@9b2f6f0e-0000-4000-8000-000000000001")
    assert report.owner.username == "scheduled-reports" and not report.owner.is_active
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ops@example.com"]
    assert mail.outbox[0].attachments[0][0].endswith(".csv")
    assert "CAP-001" in str(mail.outbox[0].attachments[0][1])


def test_a_big_report_is_emailed_as_a_signed_link_that_works_without_an_account(products, settings):
    settings.BUZZER_REPORT_ATTACH_MAX_BYTES = 10
    scheduled.run_scheduled_report("low_stock", {}, ["ops@example.com"], "Hourly")

    body = mail.outbox[0].body
    assert not mail.outbox[0].attachments
    link = body[body.index("https://shop.example.com") :].split()[0]
    path = link.removeprefix("https://shop.example.com")
    response = Client().get(path)
    assert response.status_code == 200
    assert b"CAP-001" in b"".join(response.streaming_content)
    assert Client().get(path[:-3] + "xyz").status_code == 404  # a tampered token


def test_a_dead_scheduled_report_job_fails_its_report_and_a_retry_brings_it_back(products, operator, stub_broker):
    from jobs import dlq, lifecycle
    from jobs.models import Job

    job = Job.objects.create(
        actor_name="run_scheduled_report",
        kwargs={"kind": "low_stock", "parameters": {}, "recipients": ["ops@example.com"], "schedule": "Hourly"},
        status=Job.Status.DEAD,
        last_error="OSError: disk full",
    )
    set_current_job(job.pk)
    try:
        report = scheduled.report_for_fire("low_stock", {}, ["ops@example.com"], "Hourly")
    finally:
        set_current_job(None)
    assert lifecycle.hooks_for("run_scheduled_report", "dead")

    lifecycle.run("dead", job)
    report.refresh_from_db()
    assert (report.status, report.error) == ("failed", "OSError: disk full")

    assert dlq.retry(job.pk, user=operator) is True
    report.refresh_from_db()
    assert report.status == "queued"


def test_a_schedule_with_a_bad_kind_is_a_permanent_error():
    import jobs

    with pytest.raises(jobs.PermanentError, match="no report kind"):
        scheduled.run_scheduled_report("nope", {}, [], "Broken")
    assert Report.objects.count() == 0


def test_demo_schedules_are_seeded_once():
    call_command("seed_report_schedules", stdout=io.StringIO())
    call_command("seed_report_schedules", stdout=io.StringIO())

    names = set(Schedule.objects.values_list("name", "cron", "actor_name"))
    assert names == {
        ("Daily sales report", "0 6 * * *", "run_scheduled_report"),
        ("Hourly low-stock check", "0 * * * *", "run_scheduled_report"),
    }
