"""Dead jobs: kept with their whole message, retried or discarded once, grouped."""

import threading

import pytest
from django.db import connection

import jobs
from jobs import dlq
from jobs.broker import UNDECODABLE_ACTOR
from jobs.models import Job, JobAction, JobAttempt
from tests.support.stub import drain

pytestmark = pytest.mark.django_db(transaction=True)

broken = {"on": True}


@jobs.actor(max_retries=2, min_backoff=10, max_backoff=20, time_limit=5_000)
def fragile(label: str) -> None:
    if broken["on"]:
        raise ConnectionError(f"downstream for {label} is down")


@pytest.fixture(autouse=True)
def _broken():
    broken["on"] = True


def dead_job(stub_broker, stub_worker, label="a"):
    job = jobs.enqueue(fragile, label)
    drain(stub_broker, stub_worker)
    job.refresh_from_db()
    assert job.status == "dead"
    return job


def test_job_out_of_retries_keeps_every_failed_attempt(stub_broker, stub_worker):
    job = dead_job(stub_broker, stub_worker)

    attempts = list(JobAttempt.objects.filter(job=job).order_by("number"))
    assert [(a.number, a.status) for a in attempts] == [(1, "retrying"), (2, "retrying"), (3, "dead")]
    assert all("downstream for a is down" in a.error and "Traceback" in a.traceback for a in attempts)
    assert (job.actor_name, job.queue_name, job.args) == ("fragile", "default", ["a"])


def test_retried_dead_job_runs_again_with_the_same_id_and_arguments(stub_broker, stub_worker, operator):
    job = dead_job(stub_broker, stub_worker)
    broken["on"] = False

    assert dlq.retry(job.pk, user=operator, reason="downstream is back") is True
    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert (job.status, job.attempts, job.args) == ("succeeded", 1, ["a"])
    assert job.options["buzzer_generation"] == 1
    action = JobAction.objects.get(job=job)
    assert (action.kind, action.user, action.reason) == ("retry", operator, "downstream is back")


def test_retry_of_a_job_that_is_not_dead_sends_nothing(stub_broker):
    job = jobs.enqueue(fragile, "fine")
    sent = stub_broker.queues["default"].qsize()

    assert dlq.retry(job.pk) is False
    assert stub_broker.queues["default"].qsize() == sent
    assert JobAction.objects.count() == 0


def test_concurrent_retries_of_one_job_resend_it_once(stub_broker, stub_worker):
    job = dead_job(stub_broker, stub_worker)
    stub_worker.stop()
    stub_broker.flush_all()
    results: list[bool] = []
    barrier = threading.Barrier(10)

    def click():
        barrier.wait()
        try:
            results.append(dlq.retry(job.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=click) for _ in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 9 + [True]
    assert stub_broker.queues["default"].qsize() == 1
    assert JobAction.objects.filter(kind="retry").count() == 1
    stub_worker.start()


def test_discard_keeps_the_reason_and_takes_the_job_out_of_the_queue(stub_broker, stub_worker, operator):
    job = dead_job(stub_broker, stub_worker)

    assert dlq.discard(job.pk, user=operator, reason="customer cancelled") is True
    assert dlq.discard(job.pk, user=operator, reason="again") is False

    job.refresh_from_db()
    assert job.status == "discarded"
    assert list(JobAction.objects.values_list("kind", "reason")) == [("discard", "customer cancelled")]
    assert dlq.retry(job.pk) is False


def test_same_failure_many_times_is_one_group(stub_broker, stub_worker):
    for label in ("x", "x", "x"):
        jobs.enqueue(fragile, label)
    jobs.enqueue(fragile, "y")
    drain(stub_broker, stub_worker)

    groups = {(g.signature.actor_name, g.example.last_error): g.count for g in dlq.with_examples(dlq.groups())}
    assert groups == {
        ("fragile", "ConnectionError: downstream for x is down"): 3,
        ("fragile", "ConnectionError: downstream for y is down"): 1,
    }


def test_retry_many_resends_each_dead_job_once(stub_broker, stub_worker):
    for label in ("p", "q", "r"):
        jobs.enqueue(fragile, label)
    drain(stub_broker, stub_worker)
    broken["on"] = False

    assert dlq.retry_many(Job.objects.all()) == 3
    assert dlq.retry_many(Job.objects.all()) == 0
    drain(stub_broker, stub_worker)
    assert set(Job.objects.values_list("status", flat=True)) == {"succeeded"}


def test_a_quarantined_job_whose_actor_does_not_exist_can_be_discarded(operator):
    job = Job.objects.create(actor_name=UNDECODABLE_ACTOR, queue_name="default", status=Job.Status.DEAD)

    assert dlq.retry(job.pk, user=operator) is False  # nothing here could run it
    assert dlq.discard(job.pk, user=operator, reason="garbage payload") is True

    job.refresh_from_db()
    assert job.status == "discarded"
    assert list(JobAction.objects.values_list("kind", "reason")) == [("discard", "garbage payload")]
