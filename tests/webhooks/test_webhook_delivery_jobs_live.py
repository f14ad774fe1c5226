"""A delivery's job tells the truth in the console, on real workers: a failed attempt
leaves it `retrying` with the error and its next attempt's time, out of attempts it is
dead in the DLQ, and the DLQ's Retry and Discard act on the delivery."""

import pytest

from jobs import dlq
from jobs.models import Job, JobAttempt
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until
from tests.support.workers import scheduler_process
from tests.webhooks.helpers import delivery_job
from webhooks import services
from webhooks.models import Delivery

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_a_failed_attempt_leaves_its_job_retrying_with_the_error_and_the_next_time(worker_factory, receiver):
    receiver.default = "500"
    endpoint = services.create_endpoint(receiver.url)
    worker_factory(processes=1, threads=2, queues=["webhooks"], BUZZER_WEBHOOK_RETRY_SCHEDULE="1h")
    delivery = services.send_test(endpoint)
    wait_until(lambda: delivery_job(delivery).status == Job.Status.RETRYING, timeout=30, what="the job to be retrying")
    job, delivery = delivery_job(delivery), Delivery.objects.get(pk=delivery.pk)
    assert "HTTP 500: answer 500 (attempt 1 of 2; next at" in job.last_error
    assert delivery.status == "retrying" and job.due_at is not None
    assert abs((job.due_at - delivery.next_attempt_at).total_seconds()) < 2
    assert 3500 < (job.due_at - job.finished_at).total_seconds() < 3600 * 1.1 + 5
    assert JobAttempt.objects.get(job=job).error == job.last_error


def test_out_of_attempts_it_is_dead_and_the_dlqs_retry_really_redelivers(worker_factory, receiver):
    receiver.default = "500"
    endpoint = services.create_endpoint(receiver.url)
    quick = {"BUZZER_WEBHOOK_RETRY_SCHEDULE": "0.2s,0.2s"}
    worker_factory(processes=1, threads=2, queues=["webhooks", "default"], **quick)
    with scheduler_process(**quick):
        delivery = services.send_test(endpoint)
        wait_until(lambda: delivery_job(delivery).status == Job.Status.DEAD, timeout=30, what="a dead job")
        job = delivery_job(delivery)
        assert job.attempts == 3 and job.last_error == "PermanentError: HTTP 500 after 3 attempts: answer 500"
        # Its dead hook (on a worker) has run: the delivery failed with its job.
        hook = Job.objects.filter(key=f"lifecycle:dead:{job.pk}:0")
        wait_until(lambda: hook.filter(status=Job.Status.SUCCEEDED).exists(), timeout=30, what="the dead hook")
        assert Delivery.objects.get(pk=delivery.pk).status == "failed" and hook.get().queue_name == "webhooks"

        receiver.default = "200"
        assert dlq.retry(job.pk, reason="the receiver is fixed")
        assert Delivery.objects.get(pk=delivery.pk).status == "pending"  # on its way again (on_retry)
        wait_until(lambda: delivery_job(delivery).status == Job.Status.SUCCEEDED, timeout=30, what="redelivered")
    delivery.refresh_from_db()
    assert delivery.status == "succeeded" and [r.answer for r in receiver.requests()] == ["500"] * 3 + ["200"]


def test_discarding_the_dead_job_fails_its_delivery_for_good(worker_factory, receiver):
    receiver.default = "500"
    endpoint = services.create_endpoint(receiver.url)
    quick = {"BUZZER_WEBHOOK_RETRY_SCHEDULE": "0.2s"}
    worker_factory(processes=1, threads=2, queues=["webhooks", "default"], **quick)
    with scheduler_process(**quick):
        delivery = services.send_test(endpoint)
        wait_until(lambda: delivery_job(delivery).status == Job.Status.DEAD, timeout=30, what="a dead job")
        assert dlq.discard(delivery_job(delivery).pk, reason="the receiver is retired")
    delivery.refresh_from_db()
    assert delivery.status == "failed" and "discarded" in delivery.last_error
    assert len(receiver.requests()) == 2


def test_waiting_behind_a_full_endpoint_is_one_quiet_log_line_not_an_error(worker_factory):
    slow = Receiver(default="hang").start()
    try:
        endpoint = services.create_endpoint(slow.url)
        worker = worker_factory(
            processes=1,
            threads=4,
            queues=["webhooks"],
            BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY="1",
            BUZZER_WEBHOOK_TIMEOUT_SECONDS="2",
            BUZZER_WEBHOOK_RETRY_SCHEDULE="1h",
        )
        deliveries = [services.send_test(endpoint) for _ in range(3)]
        wait_until(
            lambda: Delivery.objects.filter(pk__in=[d.pk for d in deliveries], attempts=1).count() == 3,
            timeout=60,
            what="each delivery to have made its attempt, one at a time",
        )
    finally:
        slow.stop()
    log = worker.output_all()
    waits = [line for line in log.splitlines() if "waits" in line and "runs again as the same attempt" in line]
    assert waits, log[-3000:]
    assert all("deliveries in flight" in line for line in waits)
    assert "Traceback" not in log and "unhandled" not in log.lower(), log[-3000:]
