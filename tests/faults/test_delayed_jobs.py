"""Delayed jobs outlive Redis: a job waiting for its time while Redis is flushed, killed
and restarted still runs once, at its time (not before, within a second after)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.db import transaction

import jobs
from jobs.models import Job
from orders.models import Order, OrderItem
from tests.faults.conftest import FaultStack
from tests.support import email
from tests.support.figures import record
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

DELAY = 20  # seconds; an hour behaves the same: until its time the job lives only in its row


def test_a_delayed_job_runs_once_on_time_after_redis_was_flushed_and_killed(stack: FaultStack, stocked: dict) -> None:
    stack.scheduler()
    # The production idle poll (runworkers' default), not the suite's faster one.
    stack.workers(processes=1, threads=2, dramatiq_worker_timeout="250")
    with transaction.atomic():
        order = Order.objects.create(email="later@example.com", total="24.90")
        OrderItem.objects.create(
            order=order, product=stocked["BUZ-001"], sku="BUZ-001", name="Buzzer", quantity=1, unit_price="24.90"
        )
        job = jobs.enqueue("send_confirmation_email", obj=order, delay=timedelta(seconds=DELAY), order_id=str(order.pk))
    assert Job.objects.get(pk=job.pk).status == "scheduled"

    time.sleep(3)
    stack.redis.client().flushall()  # everything Redis held is gone...
    stack.redis.kill()  # ...and then Redis itself, for a while
    time.sleep(4)
    stack.redis.restart()

    wait_until(
        lambda: Job.objects.get(pk=job.pk).status == "succeeded", timeout=DELAY + 60, what="the delayed job to run"
    )
    time.sleep(2)  # a second delivery, if there were one, would show by now
    job.refresh_from_db()
    late = (job.started_at - job.due_at).total_seconds()
    mails = [m for m in email.sent() if "later@example.com" in m.get("to", [])]
    assert job.attempts == 1
    assert len(mails) == 1, mails
    assert 0 <= late < 1.0, f"started {late:+.3f} s after its due time"
    record(
        f"Delayed job: due {DELAY} s after it was written, Redis flushed and SIGKILLed (4 s) meanwhile: "
        f"ran once, {late * 1000:.0f} ms after its due time"
    )
