"""One lifecycle, on real workers over real Redis: cancel (waiting, fetched, running),
a dead report's Retry from the console, and Requeue now for a stalled job."""

import json
import os
import re
import signal
import time
from datetime import datetime
from datetime import timezone as tz

import pytest
import redis
from django.conf import settings as django_settings
from django.db import transaction
from django.test import Client

import jobs
from jobs.models import Job, JobAction
from orders.models import Product
from reports import services
from reports.models import Report
from tests.support import email
from tests.support.data import QUICK_RETRIES, email_job
from tests.support.keys import key
from tests.support.reports import csv_rows, many_items
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

DAY = "2026-11-05"


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return str(settings.MEDIA_ROOT)


@pytest.fixture
def buzzer(db):
    return Product.objects.create(sku="BUZ-001", name="Buzzer", price="24.90", stock=1000)


@pytest.fixture
def owner(django_user_model):
    return django_user_model.objects.create_user("ada", password="pw-for-tests-only")


def console(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/admin/jobs/job/").content.decode()
    return client, re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def status_of(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def fetched_by_a_worker(job: Job) -> bool:
    """Is the job's message in some worker's fetched-but-unacknowledged set?"""
    r = redis.Redis.from_url(django_settings.REDIS_URL)
    for acks in r.scan_iter(key("__acks__.*")):
        for redis_id in r.smembers(acks):
            payload = r.hget(key("default.msgs"), redis_id)
            if payload and json.loads(payload)["message_id"] == str(job.pk):
                return True
    return False


def report_job(report: Report) -> Job:
    return Job.objects.get(actor_name="generate_report", object_id=str(report.pk))


def test_a_job_a_worker_already_fetched_never_runs_once_cancelled(products, worker_factory, operator):
    operator.user_permissions.add(*_perms("cancel_job"))
    worker_factory(processes=1, threads=1)
    email.delay_next(4)  # the only thread is busy with the first email for 4 s...
    first = email_job(products)
    wait_until(lambda: status_of(first) == "running", timeout=30, what="the first job to start")
    second = email_job(products)  # ...while the worker prefetches this one
    wait_until(lambda: fetched_by_a_worker(second), timeout=10, what="the worker to fetch the second job")
    assert status_of(second) == "enqueued"
    # The worker claimed it as it fetched it: only its answer can say it has not started.
    claim = redis.Redis.from_url(django_settings.REDIS_URL).get(key(f"buzzer:claim:{second.pk}:0"))
    assert claim is not None and claim.startswith(b"1|"), claim

    client, token = console(operator)
    response = client.post(f"/admin/jobs/job/{second.pk}/cancel/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    assert status_of(second) == "cancelled"

    wait_until(lambda: status_of(first) == "succeeded", timeout=30, what="the first job to finish")
    wait_until(lambda: not fetched_by_a_worker(second), timeout=10, what="the fetched message to be dropped")
    time.sleep(1)
    assert status_of(second) == "cancelled"
    assert len(email.sent()) == 1  # the first order's email only
    assert JobAction.objects.get(job=second).kind == "cancel"
    assert JobAction.objects.get(job=second).user == operator


def _perms(*codenames: str):
    from django.contrib.auth.models import Permission

    return Permission.objects.filter(content_type__app_label="jobs", codename__in=codenames)


def test_a_running_report_cancelled_from_the_console_stops_and_its_job_ends_cancelled(
    owner, operator, buzzer, worker_factory, media
):
    operator.user_permissions.add(*_perms("cancel_job"))
    many_items(buzzer, 200, datetime(2026, 11, 5, 12, tzinfo=tz.utc))
    worker_factory(
        processes=1,
        threads=2,
        MEDIA_ROOT=media,
        BUZZER_REPORT_CHUNK_SIZE="10",
        BUZZER_REPORT_CHUNK_DELAY_MS="200",
        BUZZER_REPORT_PROGRESS_SECONDS="0.2",
    )
    report, _ = services.request_report("orders", {"start": DAY, "end": DAY}, owner=owner)
    wait_until(lambda: Report.objects.get(pk=report.pk).rows_done > 0, timeout=30, what="progress")
    job = report_job(report)
    assert status_of(job) == "running"

    client, token = console(operator)
    client.post(f"/admin/jobs/job/{job.pk}/cancel/", {"csrfmiddlewaretoken": token, "reason": "too big"})
    wait_until(lambda: status_of(job) == "cancelled", timeout=15, what="the job to stop at its checkpoint")

    report.refresh_from_db()
    assert report.status == "cancelled"  # the report followed its job (on_cancel)
    assert 0 < report.rows_done < 200
    assert not report.file
    assert list(JobAction.objects.filter(job=job).values_list("kind", "reason")) == [("cancel_request", "too big")]
    assert Job.objects.get(pk=job.pk).attempts == 1  # not retried
    print(f"Running report cancelled from the console: stopped at {report.rows_done} of 200 rows, job cancelled")


def test_a_report_cancelled_by_its_owner_takes_its_job_with_it(owner, buzzer, worker_factory, media):
    many_items(buzzer, 200, datetime(2026, 11, 5, 12, tzinfo=tz.utc))
    worker_factory(
        processes=1,
        threads=2,
        MEDIA_ROOT=media,
        BUZZER_REPORT_CHUNK_SIZE="10",
        BUZZER_REPORT_CHUNK_DELAY_MS="200",
        BUZZER_REPORT_PROGRESS_SECONDS="0.2",
    )
    client = Client()
    client.force_login(owner)
    detail = client.post("/reports/", {"kind": "orders", "start": DAY, "end": DAY})["Location"]
    report = Report.objects.get()
    wait_until(lambda: Report.objects.get(pk=report.pk).rows_done > 0, timeout=30, what="progress")

    client.post(detail + "cancel")
    job = report_job(report)
    wait_until(lambda: status_of(job) == "cancelled", timeout=15, what="the report's job to end cancelled")
    assert Report.objects.get(pk=report.pk).status == "cancelled"


def test_a_dead_report_job_retried_in_the_console_brings_the_report_to_its_owner(
    owner, operator, buzzer, worker_factory, media, tmp_path
):
    many_items(buzzer, 30, datetime(2026, 11, 5, 12, tzinfo=tz.utc))
    broken = tmp_path / "not-a-directory"
    broken.write_text("the worker cannot store files under a file")
    failing = worker_factory(processes=1, threads=2, MEDIA_ROOT=str(broken))
    with transaction.atomic():
        report = Report.objects.create(
            owner=owner,
            kind="orders",
            parameters={"start": DAY, "end": DAY},
            fingerprint=services.fingerprint("orders", {"start": DAY, "end": DAY}),
        )
        jobs.enqueue("generate_report", str(report.id), obj=report, options=QUICK_RETRIES)
    job = report_job(report)
    wait_until(lambda: status_of(job) == "dead", timeout=60, what="the report's job to die")
    wait_until(lambda: Report.objects.get(pk=report.pk).status == "failed", timeout=30, what="the report to follow it")
    failing.stop()

    client, token = console(operator)
    response = client.post(f"/admin/jobs/job/{job.pk}/retry/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    # Read before a worker runs: a running one starts the re-sent job within milliseconds.
    assert Report.objects.get(pk=report.pk).status == "queued"  # back with its job, in the same transaction
    worker_factory(processes=1, threads=2, MEDIA_ROOT=media)  # the cause is fixed

    wait_until(lambda: status_of(job) == "succeeded", timeout=60, what="the retried job to succeed")
    report.refresh_from_db()
    assert (report.status, report.row_count) == ("succeeded", 30)
    mine = Client()
    mine.force_login(owner)
    download = mine.get(f"/reports/{report.pk}/download")
    assert download.status_code == 200
    rows = csv_rows(b"".join(download.streaming_content))
    assert len(rows) == 31


def test_a_stalled_job_is_found_by_the_filter_and_requeued_now(products, worker_factory, operator, settings):
    operator.user_permissions.add(*_perms("requeue_job"))
    fast = {"BUZZER_WORKER_DEAD_AFTER_SECONDS": "2", "BUZZER_HEARTBEAT_SECONDS": "0.5"}
    doomed = worker_factory(processes=1, threads=1, **fast)
    email.delay_next(60)  # the send hangs: the job is mid-flight when its worker dies
    job = email_job(products)
    wait_until(lambda: status_of(job) == "running", timeout=30, what="the job to start")
    os.killpg(doomed.proc.pid, signal.SIGKILL)
    settings.BUZZER_WORKER_DEAD_AFTER_SECONDS = 2
    time.sleep(3)  # silent past the threshold; no scheduler runs: nothing recovers it by itself

    client, token = console(operator)
    listing = client.get("/admin/jobs/job/?stalled=yes").content.decode()
    assert f'<span title="{job.pk}">' in listing and "running · stalled" in listing
    assert "Requeue now" in client.get(f"/admin/jobs/job/{job.pk}/change/").content.decode()

    worker_factory(processes=1, threads=1, **fast)
    response = client.post(f"/admin/jobs/job/{job.pk}/requeue/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    wait_until(lambda: status_of(job) == "succeeded", timeout=30, what="the requeued job to finish")
    assert len(email.sent()) == 1
    assert JobAction.objects.filter(job=job, kind="requeue", user=operator).count() == 1
    assert f'<span title="{job.pk}">' not in client.get("/admin/jobs/job/?stalled=yes").content.decode()
