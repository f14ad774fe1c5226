"""Queue health read from Dramatiq's Redis keys, samples, and pruning (real Redis)."""

import time
import uuid
from datetime import timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from django.utils import timezone

import jobs
from jobs import monitoring, stats
from jobs.claims import Heartbeat, workers_key
from jobs.management.commands.runscheduler import add_queue_health_jobs
from jobs.models import Job, QueueSample
from jobs.writer import Finished

pytestmark = pytest.mark.django_db


@jobs.actor(max_retries=0, time_limit=1_000)
def monitored(n: int) -> None:
    """Never run here: the tests only put its messages in Redis."""


@jobs.actor(max_retries=0, time_limit=1_000, queue_name="premium")
def monitored_premium(n: int) -> None:
    """Never run here either."""


def health(broker):
    return {q.name: q for q in monitoring.queue_health(broker.client, broker.namespace, ["default", "premium"])}


def send_aged(broker, seconds_ago: float, n: int = 0):
    message = monitored.message(n).copy(message_timestamp=int((time.time() - seconds_ago) * 1000))
    return broker.enqueue(message)


def test_depth_counts_waiting_messages_per_queue(real_broker):
    for n in range(3):
        monitored.send(n)
    monitored_premium.send(1)

    result = health(real_broker)

    assert result["default"].depth == 3
    assert result["premium"].depth == 1


def test_oldest_age_is_read_from_the_next_message_out(real_broker):
    send_aged(real_broker, 120)  # sent first: the head of the list, fetched first
    send_aged(real_broker, 1)

    age = health(real_broker)["default"].oldest_age

    assert 119 <= age < 130


def test_an_empty_queue_has_no_oldest_age(real_broker):
    assert health(real_broker)["default"].oldest_age is None


def test_fetched_unacked_messages_are_in_flight_not_waiting(real_broker):
    for n in range(3):
        monitored.send(n)
    consumer = real_broker.consume("default", prefetch=2, timeout=100)
    fetched = [next(consumer), next(consumer)]

    result = health(real_broker)

    assert (result["default"].depth, result["default"].in_flight) == (1, 2)
    assert result["premium"].in_flight == 0
    for message in fetched:
        consumer.ack(message)
    assert health(real_broker)["default"].in_flight == 0


def test_delayed_messages_are_counted_apart(real_broker):
    monitored.send_with_options(args=(1,), delay=60_000)
    monitored.send(2)

    result = health(real_broker)["default"]

    assert (result.depth, result.delayed) == (1, 1)


def test_a_delayed_message_held_by_a_worker_still_counts_as_delayed(real_broker):
    monitored.send_with_options(args=(1,), delay=60_000)
    consumer = real_broker.consume("default.DQ", prefetch=1, timeout=100)
    held = next(consumer)  # workers keep delayed messages in memory, unacked, until due

    result = health(real_broker)["default"]

    assert (result.delayed, result.in_flight, result.depth) == (1, 0, 0)
    consumer.ack(held)


def test_dead_letters_in_redis_and_dead_jobs_in_the_database(real_broker):
    monitored.send(1)
    consumer = real_broker.consume("default", prefetch=1, timeout=100)
    consumer.nack(next(consumer))
    Job.objects.create(actor_name="x", queue_name="default", status=Job.Status.DEAD)
    Job.objects.create(actor_name="x", queue_name="default", status=Job.Status.DEAD)
    Job.objects.create(actor_name="x", queue_name="default", status=Job.Status.SUCCEEDED)

    result = health(real_broker)

    assert result["default"].dead_letters == 1
    assert result["default"].dead_jobs == 2
    assert (result["premium"].dead_letters, result["premium"].dead_jobs) == (0, 0)


def test_a_beating_worker_is_alive_and_a_silent_one_is_not(real_broker, settings):
    settings.BUZZER_WORKER_DEAD_AFTER_SECONDS = 20
    heartbeat = Heartbeat(real_broker, interval=0.05)
    try:
        silent_ms = (time.time() - 60) * 1000
        real_broker.client.zadd(workers_key(real_broker.namespace), {"gone-broker|old-host|4242": silent_ms})
        deadline = time.monotonic() + 5
        while len(monitoring.workers(real_broker.client, real_broker.namespace)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)

        beats = monitoring.workers(real_broker.client, real_broker.namespace)
    finally:
        heartbeat.stop()

    alive = {(w.host, w.alive) for w in beats}
    assert ("old-host", False) in alive
    assert sum(w.alive for w in beats) == 1
    mine = next(w for w in beats if w.alive)
    assert mine.broker_id == real_broker.broker_id and mine.pid.isdigit()


def test_a_sample_per_queue_takes_the_counts_since_the_previous_one(real_broker, settings):
    monitored.send(1)
    done = [
        Finished(uuid.uuid4(), 1, status, timezone.now(), actor_name="a", queue_name="default")
        for status in ("succeeded", "dead")
    ]
    stats.record(real_broker.client, real_broker.namespace, done)

    first = {s.queue_name: s for s in monitoring.record_sample(real_broker.client, real_broker.namespace)}
    second = {s.queue_name: s for s in monitoring.record_sample(real_broker.client, real_broker.namespace)}

    assert set(first) == set(settings.BUZZER_QUEUES) == {"default", "premium", "reports", "webhooks"}
    assert (first["default"].depth, first["default"].processed, first["default"].failed) == (1, 2, 1)
    assert (second["default"].processed, second["default"].failed) == (0, 0)
    assert QueueSample.objects.count() == 2 * len(settings.BUZZER_QUEUES)


def test_a_sample_beats_for_the_scheduler(real_broker, settings):
    settings.BUZZER_SAMPLE_SECONDS = 5
    assert monitoring.scheduler_beat(real_broker.client, real_broker.namespace) is None

    monitoring.record_sample(real_broker.client, real_broker.namespace)

    beat = monitoring.scheduler_beat(real_broker.client, real_broker.namespace)
    assert monitoring.scheduler_alive(beat)
    assert not monitoring.scheduler_alive(beat, now=beat + timedelta(seconds=16))  # 3 × 5 s missed


def test_two_schedulers_take_one_sample_per_interval(real_broker, settings):
    monitoring.sample_and_check()
    monitoring.sample_and_check()

    assert QueueSample.objects.count() == len(settings.BUZZER_QUEUES)  # one per queue, once


def test_samples_older_than_two_days_are_pruned(settings):
    now = timezone.now()
    QueueSample.objects.create(queue_name="default", at=now - timedelta(days=2, minutes=1))
    kept = QueueSample.objects.create(queue_name="default", at=now - timedelta(days=1, hours=23))

    assert monitoring.prune_samples(now) == 1
    assert list(QueueSample.objects.all()) == [kept]


def test_old_finished_jobs_are_pruned_in_batches_and_dead_ones_kept(settings, monkeypatch):
    settings.BUZZER_JOB_RETENTION_DAYS = 14
    monkeypatch.setattr(monitoring, "PRUNE_BATCH", 2)
    old = timezone.now() - timedelta(days=15)
    for status in ("succeeded", "succeeded", "discarded", "cancelled", "succeeded"):
        Job.objects.create(actor_name="x", status=status, created_at=old, finished_at=old)
    dead = Job.objects.create(actor_name="x", status="dead", created_at=old, finished_at=old)
    recent = Job.objects.create(actor_name="x", status="succeeded", finished_at=timezone.now() - timedelta(days=13))
    waiting = Job.objects.create(actor_name="x", status="enqueued", created_at=old)
    delayed = Job.objects.create(actor_name="x", status="scheduled", created_at=old, due_at=timezone.now())

    assert monitoring.prune_finished_jobs() == 5
    assert set(Job.objects.values_list("pk", flat=True)) == {dead.pk, recent.pk, waiting.pk, delayed.pk}


def test_pruning_a_job_keeps_its_audit_trail(settings, operator):
    from jobs.models import JobAction

    settings.BUZZER_JOB_RETENTION_DAYS = 14
    old = timezone.now() - timedelta(days=15)
    job = Job.objects.create(actor_name="x", status="discarded", created_at=old, finished_at=old)
    JobAction.objects.create(job=job, kind=JobAction.Kind.DISCARD, user=operator, reason="refunded by phone")

    assert monitoring.prune_finished_jobs() == 1

    action = JobAction.objects.get()
    assert (action.job_id, action.job_ref, action.user, action.reason) == (None, job.pk, operator, "refunded by phone")


def test_the_scheduler_samples_every_interval_and_prunes_hourly(settings):
    settings.BUZZER_SAMPLE_SECONDS = 5
    scheduler = BackgroundScheduler()

    add_queue_health_jobs(scheduler)

    triggers = {job.id: job.trigger.interval for job in scheduler.get_jobs()}
    assert triggers == {"queue-health-sample": timedelta(seconds=5), "queue-health-prune": timedelta(hours=1)}
