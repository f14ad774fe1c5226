"""Reports publish `report.succeeded` and `report.failed` webhook events, with the report's
status URL, in the transaction that finishes the report."""

from datetime import datetime, timezone

import pytest

from jobs.models import Job
from reports import services
from reports.models import Report
from tests.support.reports import many_items, new_report
from webhooks import registry
from webhooks import services as webhooks

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def endpoint(db):
    webhooks.forget_endpoints()
    yield webhooks.create_endpoint("http://127.0.0.1:9/hooks", events=["report.succeeded", "report.failed"])
    webhooks.forget_endpoints()


def test_a_finished_report_publishes_report_succeeded(user, products, settings):
    settings.BUZZER_BASE_URL = "https://shop.example.com"
    many_items(products["BUZ-001"], 3, datetime(2026, 11, 5, 12, tzinfo=timezone.utc))
    report = new_report(user, "orders", start="2026-11-01", end="2026-11-30")
    services.generate_report(str(report.id))

    job = Job.objects.get(actor_name="publish_webhook:report.succeeded")
    assert job.queue_name == "webhooks" and job.object_id == str(report.id)
    data = registry.document("report.succeeded", job.kwargs)
    assert data["id"] == str(report.id) and data["kind"] == "orders" and data["status"] == "succeeded"
    assert data["parameters"] == Report.objects.get(pk=report.pk).parameters
    assert data["status_url"] == f"https://shop.example.com/api/reports/{report.id}/"


def test_a_report_whose_job_died_publishes_report_failed_once(user):
    report = new_report(user, "orders", start="2026-11-01", end="2026-11-30")
    assert services.fail_for_dead_job(Report.objects.filter(pk=report.pk), "boom") == 1
    assert services.fail_for_dead_job(Report.objects.filter(pk=report.pk), "boom") == 0
    job = Job.objects.get(actor_name="publish_webhook:report.failed")
    assert registry.document("report.failed", job.kwargs)["error"] == "boom"
