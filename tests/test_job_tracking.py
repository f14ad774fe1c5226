"""The tracking middleware keeps each Job row true (stub broker, in-process worker)."""

import pytest
from django.db import transaction

import jobs
from jobs.models import Job
from jobs.services import build_message
from tests.support.stub import drain

pytestmark = pytest.mark.django_db(transaction=True)

calls: list[str] = []


@jobs.actor(max_retries=3, min_backoff=10, max_backoff=20, time_limit=5_000)
def flaky(label: str, failures: int) -> None:
    calls.append(label)
    if calls.count(label) <= failures:
        raise RuntimeError(f"attempt {calls.count(label)} of {label} failed")


@jobs.actor(max_retries=3, min_backoff=10, max_backoff=20, time_limit=5_000)
def permanent(label: str) -> None:
    calls.append(label)
    raise jobs.PermanentError(f"{label} cannot work")


@pytest.fixture(autouse=True)
def _reset():
    calls.clear()


def test_successful_job_ends_succeeded_with_one_attempt(stub_broker, stub_worker):
    with transaction.atomic():
        job = jobs.enqueue(flaky, "ok", 0)

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert job.status == "succeeded"
    assert job.attempts == 1
    assert job.started_at <= job.finished_at
    assert calls == ["ok"]


def test_job_failing_twice_then_succeeding_has_three_attempts(stub_broker, stub_worker):
    job = jobs.enqueue(flaky, "twice", 2)

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 3)
    assert "attempt 2 of twice failed" in job.last_error
    assert calls == ["twice"] * 3


def test_job_out_of_retries_is_dead_with_its_error(stub_broker, stub_worker):
    job = jobs.enqueue(flaky, "always", 99)

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert job.status == "dead"
    assert job.attempts == 4  # the first run and 3 retries
    assert job.last_error == "RuntimeError: attempt 4 of always failed"
    assert "Traceback" in job.traceback


def test_permanent_error_goes_straight_to_dead(stub_broker, stub_worker):
    job = jobs.enqueue(permanent, "nope")

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 1)
    assert job.last_error == "PermanentError: nope cannot work"
    assert calls == ["nope"]


def test_finished_job_is_not_run_again(stub_broker, stub_worker):
    job = jobs.enqueue(flaky, "once", 0)
    drain(stub_broker, stub_worker)

    stub_broker.enqueue(build_message(Job.objects.get(pk=job.pk)))  # a duplicate delivery
    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert calls == ["once"]


def test_message_sent_without_a_job_row_is_tracked(stub_broker, stub_worker):
    message = flaky.send("adhoc", 0)

    drain(stub_broker, stub_worker)

    job = Job.objects.get(pk=message.message_id)
    assert (job.actor_name, job.status, job.args) == ("flaky", "succeeded", ["adhoc", 0])


def test_rolled_back_transaction_leaves_no_job_and_no_message(stub_broker):
    with pytest.raises(RuntimeError), transaction.atomic():
        jobs.enqueue(flaky, "never", 0)
        raise RuntimeError("rollback")

    assert Job.objects.count() == 0
    assert stub_broker.queues["default"].qsize() == 0


def test_enqueue_with_a_key_writes_one_job(stub_broker):
    with transaction.atomic():
        first = jobs.enqueue(flaky, "k", 0, key="flaky:k")
        second = jobs.enqueue(flaky, "k", 0, key="flaky:k")

    assert first.pk == second.pk
    assert Job.objects.count() == 1
    assert stub_broker.queues["default"].qsize() == 1


def test_duplicate_delivery_while_the_first_runs_is_skipped(stub_broker, stub_worker):
    job = jobs.enqueue(flaky, "dup", 0)
    stub_broker.enqueue(build_message(job))  # the sweep and the after-commit send raced

    drain(stub_broker, stub_worker)

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert calls == ["dup"]


def test_a_late_report_never_overwrites_a_newer_attempt():
    from django.utils import timezone

    from jobs.writer import Finished, Started, write

    job = Job.objects.create(actor_name="flaky")
    start = Started(job.id, 2, "w", timezone.now(), "flaky", "default", [], {})
    write([start, Finished(job.id, 2, "succeeded", timezone.now())])
    write([Finished(job.id, 1, "retrying", timezone.now(), error="stale")])

    job.refresh_from_db()
    assert (job.status, job.attempts, job.last_error) == ("succeeded", 2, "")


def test_an_attempt_that_waited_and_ran_again_in_one_batch_ends_with_its_last_outcome():
    from django.utils import timezone

    from jobs.writer import Finished, Started, write

    job = Job.objects.create(actor_name="flaky")
    first = Started(job.id, 1, "w", timezone.now(), "flaky", "default", [], {})
    waited = Finished(job.id, 1, "retrying", timezone.now(), error="OperationalError: refused", counted=False)
    again = Started(job.id, 1, "w", timezone.now(), "flaky", "default", [], {})
    write([first, waited, again, Finished(job.id, 1, "succeeded", timezone.now())])

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)
    assert not job.failed_attempts.exists()  # a wait is no failed attempt

    later = Job.objects.create(actor_name="flaky")
    start = Started(later.id, 1, "w", timezone.now(), "flaky", "default", [], {})
    write([start])
    write([Finished(later.id, 1, "retrying", timezone.now(), error="refused", counted=False), start])
    later.refresh_from_db()
    assert later.status == "running"  # ran again after the wait; its outcome is still to come


def test_a_late_wait_from_another_process_never_overwrites_the_outcome_of_the_same_attempt():
    from django.utils import timezone

    from jobs.writer import Finished, Started, write

    job = Job.objects.create(actor_name="flaky")
    # Process B ran the attempt again after the wait and wrote its success first...
    write([Started(job.id, 1, "b", timezone.now(), "flaky", "default", [], {})])
    write([Finished(job.id, 1, "succeeded", timezone.now())])
    # ...then process A's writer, back from the outage, writes the wait it reported first.
    start = Started(job.id, 1, "a", timezone.now(), "flaky", "default", [], {})
    write([start, Finished(job.id, 1, "retrying", timezone.now(), error="refused", counted=False)])
    write([Finished(job.id, 1, "retrying", timezone.now(), error="refused", counted=False)])

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("succeeded", 1)


def test_an_age_limited_message_ends_dead_with_its_reason(stub_broker):
    import time

    import dramatiq

    job = jobs.enqueue(flaky, "too-old", 0, options={"max_age": 50})  # sent at once: no transaction
    time.sleep(0.2)  # no worker yet: it waits past its age limit
    worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        drain(stub_broker, worker)
    finally:
        worker.stop()

    job.refresh_from_db()
    assert job.status == "dead"
    assert "age limit (50 ms)" in job.last_error
    assert calls == []


def test_a_retrying_job_row_says_when_its_next_attempt_is_due():
    from datetime import timedelta

    from django.utils import timezone

    from jobs.writer import Finished, Started, write

    job = jobs.enqueue(flaky, "later", 5)
    now = timezone.now()
    due = now + timedelta(seconds=40)
    started = Started(job.pk, 1, "w1", now, "flaky", "default", [], {})
    write([started, Finished(job.pk, 1, "retrying", now, error="RuntimeError: no", next_at=due)])
    job.refresh_from_db()
    assert (job.status, job.attempts, job.due_at) == ("retrying", 1, due)

    write([Finished(job.pk, 2, "dead", now, error="RuntimeError: no", next_at=None)])
    job.refresh_from_db()
    assert (job.status, job.due_at) == ("dead", None)  # a dead job is due never
