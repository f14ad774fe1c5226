"""Finished files are deleted after the retention period; the report says so."""

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from reports import services, tasks
from reports.models import Report

pytestmark = pytest.mark.django_db


def age(report, days):
    Report.objects.filter(pk=report.pk).update(finished_at=timezone.now() - timedelta(days=days))


def test_files_older_than_the_retention_are_deleted_and_their_reports_expired(finished, settings):
    settings.BUZZER_REPORT_RETENTION_DAYS = 3
    path = finished.file.path
    age(finished, 4)

    assert services.expire_reports() == 1

    finished.refresh_from_db()
    assert finished.status == "expired"
    assert not finished.file
    assert not os.path.exists(path)


def test_younger_files_are_kept(finished, settings):
    settings.BUZZER_REPORT_RETENTION_DAYS = 3
    age(finished, 2)

    assert services.expire_reports() == 0
    assert Report.objects.get(pk=finished.pk).status == "succeeded"


def test_an_expired_report_says_so_and_has_no_download(user_client, finished):
    age(finished, 30)
    services.expire_reports()

    page = user_client.get(f"/reports/{finished.id}/").content.decode()

    assert "The file was deleted after the retention period" in page
    assert user_client.get(f"/reports/{finished.id}/download").status_code == 404
    assert user_client.get(f"/reports/{finished.id}/status").json()["download_url"] is None


def test_the_expiry_runs_every_hour_from_the_scheduler():
    from jobs.periodic import registered

    assert ("expire_reports", 3600) in [(entry.actor_name, entry.seconds) for entry in registered()]
    assert tasks.expire_reports.options["max_retries"] == 3
