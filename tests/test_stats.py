"""Per-actor counters in Redis, recorded from the batch writer's committed finishes, and
the run time and queue wait histograms /metrics exports."""

import dataclasses
import time
import uuid
from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone

import jobs
from jobs import services, stats, waits
from jobs.models import Job
from jobs.writer import Finished, JobWriter, Started
from tests.support.waiting import wait_until


def finished(actor="shop.send_email", status="succeeded", seconds=0.02, queue="default", ago=0.0, waited=None):
    at = timezone.now() - timedelta(seconds=ago)
    started_at = at - timedelta(seconds=seconds) if seconds is not None else None
    return Finished(
        uuid.uuid4(),
        1,
        status,
        at,
        actor_name=actor,
        queue_name=queue,
        started_at=started_at,
        enqueued_ms=round((started_at.timestamp() - waited) * 1000) if waited is not None and started_at else 0,
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


def histograms(broker):
    return stats.histograms(broker.client, broker.namespace)


def test_run_time_and_queue_wait_histograms_count_per_actor_and_queue_since_the_beginning(record, real_broker):
    record([finished(seconds=0.02, waited=0.3), finished(seconds=3.0, waited=40.0)])
    record([finished(seconds=0.02, waited=0.3, queue="premium"), finished(seconds=700.0, waited=7200.0)])

    result = histograms(real_broker)

    run = result[("run", "shop.send_email", "default")]
    assert run.count == 3
    assert run.sum == pytest.approx(703.02)
    cumulative = dict(run.cumulative())
    assert (cumulative[0.01], cumulative[0.025], cumulative[2.5], cumulative[5.0], cumulative[600.0]) == (0, 1, 1, 2, 2)
    wait = result[("wait", "shop.send_email", "default")]
    assert wait.count == 3  # the one slower than the last bound is only in +Inf
    assert wait.sum == pytest.approx(7240.3, abs=0.01)
    assert (dict(wait.cumulative())[0.5], dict(wait.cumulative())[60.0], dict(wait.cumulative())[3600.0]) == (1, 2, 2)
    assert result[("run", "shop.send_email", "premium")].count == 1


def test_a_time_on_a_bound_falls_in_that_bucket_as_le_says():
    assert stats.bucket_of(0.05) == stats.BUCKETS.index(0.05)
    assert stats.bucket_of(0.0500001) == stats.BUCKETS.index(0.05) + 1
    assert stats.bucket_of(601.0) == len(stats.BUCKETS)
    assert stats.bucket_of(30.0, stats.WAIT_BUCKETS) == stats.WAIT_BUCKETS.index(30.0)


def test_an_attempt_that_never_started_or_has_no_send_time_has_no_queue_wait(record, real_broker):
    record([finished(status="dead", seconds=None), finished(waited=None)])

    result = histograms(real_broker)

    assert result[("run", "shop.send_email", "default")].count == 1
    assert ("wait", "shop.send_email", "default") not in result


def test_a_start_before_the_send_by_a_skewed_clock_waited_zero(record, real_broker):
    record([finished(waited=-2.0)])

    wait = histograms(real_broker)[("wait", "shop.send_email", "default")]
    assert (wait.count, wait.sum, wait.counts[0]) == (1, 0.0, 1)


def test_histogram_fields_survive_actor_names_with_separators(record, real_broker):
    record([finished(actor="odd|name|sum", waited=1.0)])

    assert histograms(real_broker)[("run", "odd|name|sum", "default")].count == 1
    assert histograms(real_broker)[("wait", "odd|name|sum", "default")].sum == pytest.approx(1.0, abs=0.002)


class CountingClient:
    """A Redis client that only lets pipelines through, and counts them."""

    def __init__(self, client):
        self.client = client
        self.pipelines = 0

    def pipeline(self, *args, **kwargs):
        self.pipelines += 1
        return self.client.pipeline(*args, **kwargs)


def test_the_histograms_ride_in_the_batchs_one_round_trip(real_broker):
    client = CountingClient(real_broker.client)

    stats.record(client, real_broker.namespace, [finished(waited=0.5) for _ in range(50)])

    assert client.pipelines == 1
    assert histograms(real_broker)[("wait", "shop.send_email", "default")].count == 50


CALLS: list[str] = []


@jobs.actor(max_retries=1, min_backoff=10, max_backoff=20, time_limit=5_000)
def fails_once(label: str) -> None:
    CALLS.append(label)
    if len(CALLS) == 1:
        raise RuntimeError("first attempt fails")


@pytest.mark.django_db(transaction=True)
def test_a_worker_records_each_attempts_wait_from_its_send_or_its_retry_eta(real_broker, monkeypatch):
    CALLS.clear()
    build_message = services.build_message
    monkeypatch.setattr(
        services,
        "build_message",
        lambda job, **options: dataclasses.replace(
            build_message(job, **options), message_timestamp=int(time.time() * 1000) - 3000
        ),
    )
    job = jobs.enqueue(fails_once, "x")  # sent on commit, stamped as if 3 s ago
    worker = dramatiq.Worker(real_broker, worker_timeout=50, worker_threads=1)
    worker.start()
    try:
        wait_until(
            lambda: getattr(histograms(real_broker).get(("wait", "fails_once", "default")), "count", 0) == 2,
            timeout=30,
            what="both attempts' queue waits",
        )
    finally:
        worker.stop()

    assert CALLS == ["x", "x"]
    wait = dict(histograms(real_broker)[("wait", "fails_once", "default")].cumulative())
    # The first waited 3 s from its send; the retry only from the end of its backoff.
    assert (wait[2.5], wait[5.0]) == (1, 2)
    job.refresh_from_db()
    assert job.status == "succeeded"


def test_a_message_is_stamped_ready_at_its_send_or_at_its_eta(stub_broker):
    before = int(time.time() * 1000)
    now = stub_broker.enqueue(dramatiq.Message("default", "anything", (), {}, {}, message_timestamp=1))
    later = stub_broker.enqueue(dramatiq.Message("default", "anything", (), {}, {}, message_timestamp=1), delay=60_000)

    assert before <= waits.ready_ms(now) <= int(time.time() * 1000)
    assert before + 60_000 <= waits.ready_ms(later) <= int(time.time() * 1000) + 60_000
    assert waits.ready_ms(dramatiq.Message("default", "anything", (), {}, {}, message_timestamp=42)) == 42
