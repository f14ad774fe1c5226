"""A worker process running 100,000 tracked jobs keeps its memory: its resident set grows
by less than 10% between the end of the warm-up (10,000 jobs) and the last job."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest
from django.db.models import Count
from django.utils import timezone

from jobs.models import Job
from jobs.services import build_message
from tests.faults.conftest import FaultStack
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until
from tests.support.workers import database_url

pytestmark = [pytest.mark.faults, pytest.mark.timeout(900)]

JOBS = 100_000
WARM_UP = 10_000
BATCH = 5_000
MAX_GROWTH = 0.10
# The benchmark's no-op actor (bench/actors.py): what is measured is the worker and
# Buzzer's machinery around every job (claims, tracking, the batch writer, statistics),
# not the work; a real actor costs a few database queries per job and takes the run from
# about a minute to five here.
ACTOR = "noop"
WORKER_MODULE = "bench.actors"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for pid {pid}")


def enqueue_tracked(stack: FaultStack, count: int) -> None:
    """`count` tracked jobs, as `jobs.enqueue` leaves them after dispatch (a `Job` row
    each, `enqueued`, its message in Redis), written in bulk: rows with `bulk_create`,
    messages with the two commands Dramatiq's enqueue script runs, pipelined."""
    client = stack.redis.client()
    for start in range(0, count, BATCH):
        now = timezone.now()
        rows = [
            Job(
                id=uuid.uuid4(),
                actor_name=ACTOR,
                queue_name="default",
                args=[start + i],
                status=Job.Status.ENQUEUED,
                enqueued_at=now,
            )
            for i in range(min(BATCH, count - start))
        ]
        Job.objects.bulk_create(rows)
        with client.pipeline(transaction=False) as pipe:
            for job in rows:
                redis_id = str(uuid.uuid4())
                message = build_message(job).copy(options={"redis_message_id": redis_id})
                pipe.hset(key("default.msgs"), redis_id, message.encode())
                pipe.rpush(key("default"), redis_id)
            pipe.execute()


def succeeded(stack: FaultStack) -> int:
    """Finished attempts the worker has counted (its writer's counters in Redis)."""
    return int(stack.redis.client().hget(key("buzzer:stats:totals"), f"c|{ACTOR}|succeeded") or 0)


def test_a_worker_running_100k_jobs_grows_its_memory_by_less_than_10_percent(stack: FaultStack) -> None:
    filled_at = time.monotonic()
    enqueue_tracked(stack, JOBS)
    fill_seconds = time.monotonic() - filled_at
    assert stack.redis.client().llen(key("default")) == JOBS

    # As production runs it: DEBUG off (with DEBUG on, Django keeps the last 9,000 queries
    # of every thread's connection, which looks like a leak until the log is full) and
    # persistent database connections, as the settings give PostgreSQL.
    production = {"DEBUG": "0", "SECRET_KEY": "fault-suite-secret-key-" + "x" * 40}
    worker = stack.workers(
        processes=1,
        threads=8,
        supervised=False,
        module=WORKER_MODULE,
        DATABASE_URL=f"{database_url()}?conn_max_age=60",
        **production,
    )
    [pid] = worker.worker_pids()
    samples: list[tuple[int, int]] = [(0, rss_kib(pid))]

    def progress(target: int) -> bool:
        done = succeeded(stack)
        samples.append((done, rss_kib(pid)))
        return done >= target

    wait_until(lambda: progress(WARM_UP), timeout=120, interval=0.5, what=f"{WARM_UP} jobs")
    warm_done, warm_rss = samples[-1]
    warm_at = time.monotonic()
    wait_until(lambda: progress(JOBS), timeout=600, interval=0.5, what=f"{JOBS} jobs")
    rate = (JOBS - warm_done) / (time.monotonic() - warm_at)
    end_rss = rss_kib(pid)
    peak_rss = max(rss for _, rss in samples)

    assert worker.worker_pids() == [pid]  # the same process all along, never restarted
    wait_until(
        lambda: Job.objects.filter(status=Job.Status.SUCCEEDED).count() == JOBS, timeout=60, what="every row written"
    )
    assert dict(Job.objects.values_list("status").annotate(n=Count("id"))) == {Job.Status.SUCCEEDED: JOBS}
    assert set(Job.objects.values_list("attempts", flat=True).distinct()) == {1}
    growth = (end_rss - warm_rss) / warm_rss
    record(
        f"Memory: one worker process (8 threads), {JOBS:,} tracked {ACTOR} jobs at {rate:,.0f} jobs/s "
        f"(filled in {fill_seconds:.0f} s): RSS {warm_rss / 1024:.1f} MiB after {warm_done:,} jobs -> "
        f"{end_rss / 1024:.1f} MiB at the end (peak {peak_rss / 1024:.1f} MiB), growth {growth:+.1%} "
        f"(bar < {MAX_GROWTH:.0%})"
    )
    assert growth < MAX_GROWTH, samples[:: max(1, len(samples) // 20)]
