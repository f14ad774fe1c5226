"""The dead-letter queue and stalled-job recovery with real Redis and real workers."""

import os
import re
import signal
import time

import pytest
import redis
from django.conf import settings
from django.test import Client

from jobs.models import Job, JobAction
from tests.support import email
from tests.support.data import QUICK_RETRIES, email_job
from tests.support.keys import key
from tests.support.waiting import wait_until
from tests.support.workers import scheduler_process

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def status_of(job: Job) -> str:
    return Job.objects.get(pk=job.pk).status


def operator_client(user) -> tuple[Client, str]:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get("/admin/jobs/job/dead-letters/").content.decode()
    return client, re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)


def test_always_failing_job_goes_dead_and_admin_retry_runs_it_once_fixed(products, worker_factory, operator):
    worker_factory(processes=1, threads=2)
    email.fail_next(1_000)
    job = email_job(products, QUICK_RETRIES)

    wait_until(lambda: status_of(job) == "dead", timeout=30, what="the job to die")
    job.refresh_from_db()
    assert job.attempts == 3
    assert job.failed_attempts.count() == 3
    r = redis.Redis.from_url(settings.REDIS_URL)
    assert r.zcard(key("default.XQ")) == 1  # Dramatiq's own dead-letter set holds it too
    client, token = operator_client(operator)
    assert "injected failure" in client.get("/admin/jobs/job/dead-letters/").content.decode()

    email.fail_next(0)  # the cause is fixed
    response = client.post(f"/admin/jobs/job/{job.id}/retry/", {"csrfmiddlewaretoken": token})
    assert response.status_code == 302

    wait_until(lambda: status_of(job) == "succeeded", timeout=30, what="the retried job to succeed")
    job.refresh_from_db()
    assert job.attempts == 1
    assert len(email.sent()) == 1
    assert r.zcard(key("default.XQ")) == 0  # and it left Dramatiq's dead-letter set
    assert JobAction.objects.get(job=job, kind="retry").user == operator


def test_job_of_a_worker_killed_mid_job_is_finished_by_another_within_seconds(products, worker_factory):
    fast = {"BUZZER_WORKER_DEAD_AFTER_SECONDS": "3", "BUZZER_HEARTBEAT_SECONDS": "0.5"}
    doomed = worker_factory(processes=1, threads=1, **fast)
    email.delay_next(60)  # the first send hangs: the job is mid-flight when the worker dies
    job = email_job(products)
    wait_until(lambda: status_of(job) == "running", timeout=30, what="the job to start")
    time.sleep(0.5)

    os.killpg(doomed.proc.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    worker_factory(processes=1, threads=1, **fast)
    with scheduler_process(BUZZER_RECOVERY_INTERVAL_SECONDS="0.5", **fast):
        wait_until(lambda: status_of(job) == "succeeded", timeout=60, what="another worker to finish the job")
        recovered_in = time.monotonic() - killed_at

    assert recovered_in < 30, f"recovered in {recovered_in:.1f}s"
    assert len(email.sent()) == 1
    assert JobAction.objects.filter(job=job, kind="recover").count() == 1
    r = redis.Redis.from_url(settings.REDIS_URL)
    assert [k for k in r.scan_iter(key("__acks__.*")) if r.scard(k)] == []  # nothing left unacked
    print(f"SIGKILL recovery: job finished {recovered_in:.1f}s after the kill")


def test_a_job_that_keeps_killing_its_worker_is_dead_lettered_after_three_deliveries(products, worker_factory):
    fast = {"BUZZER_WORKER_DEAD_AFTER_SECONDS": "3", "BUZZER_HEARTBEAT_SECONDS": "0.5"}
    email.kill_workers_on_send()
    job = email_job(products)
    try:
        with scheduler_process(BUZZER_RECOVERY_INTERVAL_SECONDS="0.5", **fast):
            worker = worker_factory(processes=1, threads=1, wait_ready=False, **fast)
            deadline = time.monotonic() + 90
            while status_of(job) != "dead" and time.monotonic() < deadline:
                if worker.proc.poll() is not None:  # Dramatiq exits when its worker died: restart it
                    worker = worker_factory(processes=1, threads=1, wait_ready=False, **fast)
                time.sleep(0.2)
    finally:
        email.kill_workers_on_send(False)

    job.refresh_from_db()
    assert job.status == "dead"
    assert email.worker_deaths() <= 3
    assert "died 2 times" in job.last_error
    assert JobAction.objects.filter(job=job, kind="crash_loop").count() == 1
    print(f"Poison message: dead-lettered after {email.worker_deaths()} worker deaths")
