"""The report's job on a (stub) worker: the outbox job generates the file; a report
that cannot be generated ends failed and its job dead together."""

import pytest
from django.db import transaction

import jobs
from jobs.models import Job
from reports import services
from tests.support.reports import new_report

pytestmark = pytest.mark.django_db(transaction=True)


def run(stub_broker, stub_worker):
    # Report jobs run on their own queue; their lifecycle hooks on the default one.
    for queue_name in ("reports", "default"):
        stub_broker.join(queue_name, fail_fast=False)
    stub_worker.join()
    for middleware in stub_broker.middleware:
        if hasattr(middleware, "flush"):
            middleware.flush()


def test_the_requested_report_is_generated_by_its_job(stub_broker, stub_worker, user, products):
    report, _ = services.request_report("low_stock", {"threshold": 10}, owner=user)

    run(stub_broker, stub_worker)

    report.refresh_from_db()
    assert (report.status, report.row_count) == ("succeeded", 1)
    assert Job.objects.get().status == "succeeded"


def test_a_report_that_cannot_be_generated_ends_failed_and_its_job_dead(stub_broker, stub_worker, user):
    report = new_report(user, "vanished-kind")
    with transaction.atomic():
        jobs.enqueue("generate_report", str(report.id), obj=report)  # dispatched on commit

    run(stub_broker, stub_worker)  # dead at once (a PermanentError)...
    run(stub_broker, stub_worker)  # ...and its on_dead hook, a job written with the dead row

    report.refresh_from_db()
    assert report.status == "failed"
    assert "Unknown report kind" in report.error
    assert Job.objects.get(actor_name="generate_report").status == "dead"
    assert Job.objects.get(actor_name="run_lifecycle_hooks").status == "succeeded"
