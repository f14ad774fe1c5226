"""jobs.cancel: a waiting job never runs, a running one stops at its checkpoint, and
concurrent cancels and retries leave one consistent state."""

import threading
from datetime import timedelta

import dramatiq
import pytest
from django.core import mail
from django.db import connections, transaction

import jobs
from jobs import dlq, lifecycle
from jobs.claims import claims_for, job_key
from jobs.models import Job, JobAction
from jobs.services import flush_marks, release_due
from tests.support.data import email_job
from tests.support.stub import drain

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def cancel_hook():
    """Records the jobs whose `on_cancel` hooks ran (for send_confirmation_email)."""
    seen: list[str] = []

    def hook(job: Job) -> None:
        seen.append(str(job.pk))

    jobs.on_cancel("send_confirmation_email")(hook)
    yield seen
    lifecycle._hooks[("send_confirmation_email", "cancel")].remove(hook)


@pytest.fixture
def later_worker(stub_broker):
    """A stub worker started only when the test asks (messages wait in the broker)."""
    started = []

    def start() -> dramatiq.Worker:
        worker = dramatiq.Worker(stub_broker, worker_timeout=50, worker_threads=2)
        worker.start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def test_a_cancelled_enqueued_job_never_runs_and_its_hook_runs_once(
    stub_broker, later_worker, products, operator, cancel_hook
):
    job = email_job(products)
    assert flush_marks()
    assert Job.objects.get(pk=job.pk).status == "enqueued"  # its message is in the broker

    assert jobs.cancel(job, by=operator, reason="customer asked") == "cancelled"
    assert jobs.cancel(job, by=operator) is None  # a second cancel changes nothing
    worker = later_worker()
    drain(stub_broker, worker)  # the delivery is refused...
    drain(stub_broker, worker)  # ...and writes no second run of the hooks

    job.refresh_from_db()
    assert job.status == "cancelled"
    assert job.finished_at is not None
    assert mail.outbox == []  # it never ran
    assert cancel_hook == [str(job.pk)]
    (action,) = JobAction.objects.filter(job=job)
    assert (action.kind, action.user, action.reason) == ("cancel", operator, "customer asked")


def test_a_cancelled_delayed_job_is_never_released(stub_broker, later_worker, products):
    with transaction.atomic():
        job = jobs.enqueue("send_confirmation_email", order_id="x", delay=timedelta(seconds=30))
    assert jobs.cancel(job.pk) == "cancelled"
    Job.objects.filter(pk=job.pk).update(due_at=job.due_at - timedelta(minutes=1))  # due now

    assert release_due() == 0
    drain(stub_broker, later_worker())
    assert Job.objects.get(pk=job.pk).status == "cancelled"


def test_finished_or_unknown_jobs_cannot_be_cancelled(stub_broker, stub_worker, products):
    job = email_job(products)
    drain(stub_broker, stub_worker)
    assert Job.objects.get(pk=job.pk).status == "succeeded"

    assert jobs.cancel(job) is None
    assert jobs.cancel("00000000-0000-0000-0000-000000000000") is None
    assert Job.objects.get(pk=job.pk).status == "succeeded"
    assert not JobAction.objects.exists()


def test_a_delivery_that_claimed_first_makes_the_cancel_a_request(real_broker, products):
    """Claim and cancel mark meet in Redis: a delivery that holds the claim is running, so
    the cancel only asks it to stop; a delivery after the mark is refused."""
    job = email_job(products)
    claims = claims_for(real_broker)
    key = job_key(str(job.pk), 0)
    assert claims.claim(key, 1, "worker-a") is True  # a worker started it; the row still says enqueued

    assert jobs.cancel(job, reason="stop") == "requested"
    assert jobs.cancel(job, reason="again") == "requested"
    job.refresh_from_db()
    assert job.status == "enqueued"  # not a lie: it is running, it ends as it really ends
    assert job.options["buzzer_cancel_requested"] is True
    assert list(JobAction.objects.filter(job=job).values_list("kind", "reason")) == [("cancel_request", "stop")]
    assert claims.cancel_requested(key)
    assert claims.claim(key, 2, "worker-b") == "cancelled"  # its retry never runs


def test_a_cancel_without_redis_changes_nothing(stub_broker, products):
    from dramatiq.brokers.redis import RedisBroker

    job = email_job(products)
    away = RedisBroker(url="redis://127.0.0.1:1/0?socket_connect_timeout=0.2", middleware=[])  # nothing listens
    dramatiq.set_broker(away)
    try:
        with pytest.raises(jobs.CancelUnavailable):
            jobs.cancel(job)
    finally:
        dramatiq.set_broker(stub_broker)
    assert Job.objects.get(pk=job.pk).status == "enqueued"
    assert not JobAction.objects.exists()


def test_twenty_concurrent_cancels_and_retries_leave_one_consistent_state(real_broker, products, operator):
    job = email_job(products)
    Job.objects.filter(pk=job.pk).update(status="dead", attempts=3, last_error="RuntimeError: boom")
    barrier = threading.Barrier(20)
    outcomes: dict[str, list] = {"retry": [], "cancel": []}
    errors: list[BaseException] = []

    def act(kind: str) -> None:
        try:
            barrier.wait(10)
            if kind == "retry":
                outcomes["retry"].append(dlq.retry(job.pk, user=operator))
            else:
                outcomes["cancel"].append(jobs.cancel(job.pk, by=operator))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's: a test database is not dropped while they are open

    threads = [threading.Thread(target=act, args=("retry" if i % 2 else "cancel",)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors

    job.refresh_from_db()
    retries = JobAction.objects.filter(job=job, kind="retry").count()
    cancels = JobAction.objects.filter(job=job, kind="cancel").count()
    assert outcomes["retry"].count(True) == retries == 1  # one retry won
    assert outcomes["cancel"].count("cancelled") == cancels <= 1
    assert "requested" not in outcomes["cancel"]  # nothing ran meanwhile
    if cancels:
        # Cancelled after the retry: the new generation is marked, so its message never runs.
        assert job.status == "cancelled"
        assert claims_for(real_broker).claim(job_key(str(job.pk), 1), 1, "w") == "cancelled"
    else:
        assert job.status in ("pending", "enqueued")
    print(f"20 concurrent: {retries} retry, {cancels} cancel; final {job.status}")


STEPS: dict[str, threading.Event] = {"started": threading.Event(), "go_on": threading.Event()}


@jobs.actor(max_retries=3, min_backoff=10, max_backoff=20, time_limit=10_000)
def long_task(steps: int) -> None:
    STEPS["started"].set()
    for _ in range(steps):
        STEPS["go_on"].wait(5)
        jobs.checkpoint()


def test_a_running_job_stops_at_its_checkpoint_ends_cancelled_and_is_not_retried(stub_broker, stub_worker):
    STEPS["started"].clear()
    STEPS["go_on"].clear()
    seen: list[str] = []
    jobs.on_cancel(long_task)(lambda job: seen.append(job.status))
    with transaction.atomic():
        job = jobs.enqueue(long_task, 3)
    assert STEPS["started"].wait(5)

    assert jobs.cancel(job, reason="enough") == "requested"
    STEPS["go_on"].set()
    drain(stub_broker, stub_worker)  # the job stops...
    drain(stub_broker, stub_worker)  # ...and its on_cancel hooks run as a job of their own

    job.refresh_from_db()
    assert (job.status, job.attempts) == ("cancelled", 1)
    assert not job.failed_attempts.exists()
    assert seen == ["cancelled"]
    assert list(JobAction.objects.filter(job=job).values_list("kind", flat=True)) == ["cancel_request"]
    lifecycle._hooks.pop(("long_task", "cancel"))
