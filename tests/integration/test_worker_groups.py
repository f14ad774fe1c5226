"""The worker topology `make run` starts (`runworkers` with worker groups): premium jobs
and reports have workers of their own, so a standard backlog or long reports never hold
them up. Real Redis, real `runworkers` processes."""

from __future__ import annotations

import os
import signal
from datetime import datetime, timezone

import pytest
import redis
from django.conf import settings

from jobs.claims import workers_key
from jobs.models import Job
from orders import services
from orders.models import Order
from reports import services as report_services
from reports.models import Report
from tests.support import email
from tests.support.reports import many_items
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# The default topology's shape (BUZZER_WORKER_GROUPS), sized down for the test.
GROUPS = "*:1x2,premium:1x2,reports:1x1"
SLOW_EMAIL_SECONDS = 20.0


def place(priority: str, i: int) -> Order:
    return services.place_order(
        email=f"buyer{i}@example.com",
        items=[{"sku": "BUZ-001", "quantity": 1}],
        card="4242424242424242",
        priority=priority,
    )


def broker_ids_of(pids: list[int]) -> set[str]:
    """The Dramatiq broker ids of worker processes, from the beats they write."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    entries = [entry.decode().split("|") for entry in client.zrange(workers_key(settings.BUZZER_NAMESPACE), 0, -1)]
    return {broker_id for broker_id, _host, pid in entries if int(pid) in pids}


def test_a_premium_job_starts_at_once_while_every_standard_thread_is_busy(products, worker_factory):
    email.delay_every(SLOW_EMAIL_SECONDS)  # every confirmation email takes 20 s
    workers = worker_factory(groups=GROUPS)
    standard = [place("standard", i) for i in range(4)]
    emails = Job.objects.filter(actor_name="send_confirmation_email", object_id__in=[str(o.pk) for o in standard])
    wait_until(lambda: emails.filter(status="running").count() == 2, timeout=60, what="both standard threads busy")

    premium = place("premium", 99)
    premium_jobs = Job.objects.filter(object_id=str(premium.pk))
    wait_until(
        lambda: premium_jobs.filter(started_at__isnull=False).count() == 3, timeout=30, what="the premium jobs to start"
    )

    waits = [(job.started_at - job.created_at).total_seconds() for job in premium_jobs]
    assert {job.queue_name for job in premium_jobs} == {"premium"}
    assert max(waits) < 1.5, waits  # the idle poll is 250 ms; a shared pool would wait ~20 s here
    # Meanwhile both standard threads were still busy with their first 20 s email.
    assert emails.filter(status="succeeded").count() == 0
    assert emails.filter(status="running").count() == 2
    assert set(emails.filter(status="running").values_list("worker", flat=True)) <= broker_ids_of(
        workers.group_pids("default")
    )


def test_a_report_runs_on_the_reports_workers_not_on_a_standard_one(
    products, worker_factory, django_user_model, settings, tmp_path
):
    settings.MEDIA_ROOT = tmp_path / "media"
    many_items(products["BUZ-001"], 50, datetime(2026, 11, 5, 12, tzinfo=timezone.utc))
    workers = worker_factory(groups=GROUPS, MEDIA_ROOT=str(settings.MEDIA_ROOT))
    owner = django_user_model.objects.create_user("ada", password="pw-for-tests-only")

    report, _ = report_services.request_report("orders", {"start": "2026-11-05", "end": "2026-11-05"}, owner=owner)

    job = Job.objects.get(object_id=str(report.pk))
    wait_until(lambda: Report.objects.get(pk=report.pk).status == "succeeded", timeout=60, what="the report")
    wait_until(lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=30, what="its job's row")
    job.refresh_from_db()
    assert job.queue_name == "reports"
    assert job.worker in broker_ids_of(workers.group_pids("reports"))
    assert job.worker not in broker_ids_of(workers.group_pids("default") + workers.group_pids("premium"))


def test_a_group_whose_worker_dies_is_restarted_alone_while_the_others_go_on(db, worker_factory):
    workers = worker_factory(groups=GROUPS)
    standard_before = set(workers.group_pids("default"))
    [victim] = workers.group_pids("reports")

    os.kill(victim, signal.SIGKILL)  # Dramatiq's main process then stops its group and exits

    wait_until(
        lambda: workers.output_all().count("started rundramatiq (group reports,") == 2,
        timeout=60,
        what="the reports group to be started again",
    )
    wait_until(lambda: workers.group_pids("reports"), timeout=60, what="its new worker process")
    assert "exited unexpectedly (group reports," in workers.output_all()
    assert "exited unexpectedly (group default," not in workers.output_all()
    assert set(workers.group_pids("default")) == standard_before
    assert workers.stop() == 0  # SIGTERM reaches every group: all stop gracefully, exit code 0
