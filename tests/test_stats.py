"""Per-actor counters in Redis, recorded from the batch writer's committed finishes."""

import time
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import stats
from jobs.models import Job
from jobs.writer import Finished, JobWriter, Started


def finished(actor="shop.send_email", status="succeeded", seconds=0.02, queue="default", ago=0.0):
    at = timezone.now() - timedelta(seconds=ago)
    return Finished(
        uuid.uuid4(),
        1,
        status,
        at,
        actor_name=actor,
        queue_name=queue,
        started_at=at - timedelta(seconds=seconds) if seconds is not None else None,
    )


@pytest.fixture
def record(real_broker):
    recorder = stats.recorder_for(real_broker)
    assert recorder is not None
    return recorder


def by_actor(broker, minutes=60):
    return {s.actor_name: s for s in stats.actor_stats(broker.client, broker.namespace, minutes=minutes)}


def test_a_broker_without_redis_gets_no_recorder(stub_broker):
    assert stats.recorder_for(stub_broker) is None


def test_finishes_are_counted_per_actor_and_status(record, real_broker):
    record([finished(), finished(), finished(status="retrying"), finished(actor="shop.update_stock")])

    result = by_actor(real_broker)

    assert set(result) == {"shop.send_email", "shop.update_stock"}
    email = result["shop.send_email"]
    assert (email.succeeded, email.retrying, email.dead, email.finished) == (2, 1, 0, 3)
    assert email.throughput == pytest.approx(3 / 60)
    assert result["shop.update_stock"].finished == 1


def test_failure_rate_is_retrying_and_dead_over_all_attempts(record, real_broker):
    record([finished(status="succeeded")] * 2 + [finished(status="retrying"), finished(status="dead")])

    assert by_actor(real_broker)["shop.send_email"].failure_rate == pytest.approx(0.5)


def test_p50_and_p95_are_estimated_from_the_run_time_histogram(record, real_broker):
    record([finished(seconds=0.02) for _ in range(90)] + [finished(seconds=3.0) for _ in range(10)])

    email = by_actor(real_broker)["shop.send_email"]

    assert 0.01 < email.p50 <= 0.025  # the 10-25 ms bucket
    assert 2.5 < email.p95 <= 5.0  # the 2.5-5 s bucket


def test_a_job_that_never_ran_is_counted_without_a_run_time(record, real_broker):
    record([finished(status="dead", seconds=None)])

    email = by_actor(real_broker)["shop.send_email"]
    assert email.dead == 1
    assert email.p50 is None


def test_finishes_before_the_window_are_left_out(record, real_broker):
    record([finished(ago=2 * 3600), finished()])

    assert by_actor(real_broker, minutes=60)["shop.send_email"].finished == 1
    assert by_actor(real_broker, minutes=180)["shop.send_email"].finished == 2


def test_minute_buckets_expire_after_about_a_day(record, real_broker):
    record([finished()])

    minute = int(time.time() // 60)
    ttl = max(real_broker.client.ttl(stats.minute_key(real_broker.namespace, m)) for m in (minute - 1, minute))
    assert 24 * 3600 < ttl <= 25 * 3600


def test_actor_names_with_separators_survive_the_round_trip(record, real_broker):
    record([finished(actor="odd|name|dead")])

    assert by_actor(real_broker)["odd|name|dead"].succeeded == 1
    assert stats.totals(real_broker.client, real_broker.namespace) == {("odd|name|dead", "succeeded"): 1}


def test_queue_counts_are_handed_out_once(record, real_broker):
    record([finished(), finished(status="retrying"), finished(status="dead", queue="premium")])

    counts = stats.take_queue_counts(real_broker.client, real_broker.namespace)

    assert (counts["default"].processed, counts["default"].failed) == (2, 1)
    assert (counts["premium"].processed, counts["premium"].failed) == (1, 1)
    assert stats.take_queue_counts(real_broker.client, real_broker.namespace) == {}


def test_totals_keep_counting_across_batches(record, real_broker):
    record([finished()])
    record([finished(), finished(status="dead")])

    assert stats.totals(real_broker.client, real_broker.namespace) == {
        ("shop.send_email", "succeeded"): 2,
        ("shop.send_email", "dead"): 1,
    }


def test_the_overflow_bucket_answers_its_lower_bound():
    histogram = [0] * (len(stats.BUCKETS) + 1)
    histogram[-1] = 4  # four jobs slower than ten minutes
    assert stats.quantile(histogram, 0.5) == stats.BUCKETS[-1]
    assert stats.quantile([0] * (len(stats.BUCKETS) + 1), 0.5) is None


@pytest.mark.django_db(transaction=True)
def test_the_batch_writer_records_what_it_committed(real_broker):
    job = Job.objects.create(actor_name="shop.send_email", status=Job.Status.ENQUEUED)
    writer = JobWriter(on_written=stats.recorder_for(real_broker))
    start = timezone.now()
    try:
        writer.started(Started(job.id, 1, "w1", start, "shop.send_email", "default", [], {}))
        writer.finished(
            Finished(
                job.id,
                1,
                "succeeded",
                start + timedelta(milliseconds=40),
                actor_name="shop.send_email",
                queue_name="default",
                started_at=start,
            )
        )
        assert writer.flush()
    finally:
        writer.close()

    job.refresh_from_db()
    assert job.status == "succeeded"
    email = by_actor(real_broker)["shop.send_email"]
    assert email.succeeded == 1
    assert 0.025 < email.p50 <= 0.05
