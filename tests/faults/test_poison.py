"""Messages that break workers: one that kills its worker process every time, and one
that cannot even be decoded. Both end in the dead-letter queue; their neighbours flow."""

from __future__ import annotations

import json
import time

import pytest

from jobs.broker import UNDECODABLE_ACTOR
from jobs.models import Job, JobAction
from orders import services
from orders.models import Order
from tests.faults.conftest import FaultStack, job_counts, wait_for_effects
from tests.support import email
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

# Dead after 3 s without a heartbeat, beats every 0.5 s: a death is noticed in seconds.
FAST = {"BUZZER_WORKER_DEAD_AFTER_SECONDS": "3", "BUZZER_HEARTBEAT_SECONDS": "0.5"}
POISON = "poison@example.com"


def place(count: int, prefix: str) -> list[Order]:
    return [
        services.place_order(
            email=f"{prefix}{i}@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
        )
        for i in range(count)
    ]


def test_a_job_that_kills_its_worker_is_dead_lettered_and_its_neighbours_complete(
    stack: FaultStack, stocked: dict
) -> None:
    email.kill_workers_on_send(to=POISON)
    before = place(166, "before")
    poison = services.place_order(email=POISON, items=[{"sku": "MUG-001", "quantity": 1}], card="4242424242424242")
    after = place(167, "after")
    neighbours = before + after  # 333 orders: 999 jobs around the poison one
    poison_job = Job.objects.get(object_id=str(poison.pk), actor_name="send_confirmation_email")

    stack.scheduler(BUZZER_RECOVERY_INTERVAL_SECONDS="0.5", **FAST)
    first = stack.workers(processes=1, threads=8, **FAST)
    second = stack.workers(processes=1, threads=8, **FAST)
    started = time.monotonic()
    wait_until(lambda: Job.objects.get(pk=poison_job.pk).status == "dead", timeout=120, what="the poison job dead")
    effects = wait_for_effects(neighbours, timeout=120)
    took = time.monotonic() - started

    poison_job.refresh_from_db()
    deaths = email.worker_deaths()
    deliveries = deaths + 1  # each death was a delivery; the last delivery found the crash loop
    assert deliveries <= 3
    assert "died 2 times" in poison_job.last_error
    assert JobAction.objects.filter(job=poison_job, kind="crash_loop").count() == 1
    # The poison order's other jobs (stock, sales) ran; its email never went out.
    wait_until(
        lambda: Job.objects.filter(object_id=str(poison.pk), status="succeeded").count() == 2,
        timeout=90,
        what="the poison order's stock and sales jobs succeeded",
    )
    assert email.confirmation_id(poison.pk) not in {m["id"] for m in email.sent()}
    neighbour_jobs = order_jobs().exclude(object_id=str(poison.pk))
    assert neighbour_jobs.count() == 999
    # A row can trail its effect: a worker that died after acking lost its unwritten rows, and
    # the job is re-sent (and found done) once Redis is seen to hold no message for it.
    try:
        wait_until(lambda: neighbour_jobs.filter(status="succeeded").count() == 999, timeout=90, what="999 rows")
    except AssertionError:
        stuck = list(
            neighbour_jobs.exclude(status="succeeded").values_list(
                "id", "actor_name", "status", "worker", "attempts", "enqueued_at", "started_at"
            )[:5]
        )
        claims = {str(j[0]): stack.redis.client().get(key(f"buzzer:claim:{j[0]}:0")) for j in stuck}
        raise AssertionError(f"{job_counts()} {stuck} {claims}") from None
    # Each supervisor restarted its rundramatiq after every death and is still running.
    restarts = sum(w.log_path.read_text().count("runworkers: rundramatiq exited unexpectedly") for w in (first, second))
    assert restarts == deaths
    assert first.proc.poll() is None and second.proc.poll() is None
    wait_until(lambda: first.worker_pids() and second.worker_pids(), timeout=60, what="both workers back")
    record(
        f"Poison message: dead-lettered at delivery {deliveries} ({deaths} killed their worker; "
        f"{restarts} restarts by runworkers); 999/999 neighbouring jobs succeeded, "
        f"{effects['emails']}/{len(neighbours)} neighbour emails once, in {took:.0f} s; {email.times_asked()}"
    )


def test_an_undecodable_message_is_quarantined_and_the_worker_keeps_going(stack: FaultStack, stocked: dict) -> None:
    before = place(50, "before")
    client = stack.redis.client()
    garbage = b'{"queue_name": "default", "actor_name": \xff\xfe not json'
    client.hset(key("default.msgs"), "garbage-1", garbage)
    client.rpush(key("default"), "garbage-1")
    after = place(50, "after")

    worker = stack.workers(processes=1, threads=8)
    effects = wait_for_effects(before + after, timeout=90)
    quarantined = wait_until(
        lambda: Job.objects.filter(actor_name=UNDECODABLE_ACTOR).first(), timeout=30, what="the quarantined row"
    )

    assert quarantined.status == "dead"
    assert quarantined.broker_message_id == "garbage-1"
    assert "could not be decoded" in quarantined.last_error
    # In Dramatiq's dead-letter set, out of the queue and out of the worker's fetched set.
    assert client.zscore(key("default.XQ"), "garbage-1") is not None
    assert client.hget(key("default.XQ.msgs"), "garbage-1") == garbage
    assert not client.hexists(key("default.msgs"), "garbage-1")
    assert not [k for k in client.scan_iter(key("__acks__.*")) if client.sismember(k, "garbage-1")]
    # The worker never restarted and logged no consumer crash.
    log = worker.output()
    assert "exited unexpectedly" not in log and "Consumer encountered an unexpected error" not in log
    assert worker.proc.poll() is None
    assert json.loads(json.dumps(quarantined.kwargs))["payload"]
    record(
        f"Undecodable message: quarantined as dead (row + Dramatiq's XQ), {effects['emails']}/100 neighbouring "
        "orders got all their effects once, 0 worker restarts"
    )
