"""A worker process SIGKILLed while it holds hundreds of jobs: nothing is lost, nothing
happens twice, and the dead worker's unacknowledged set is emptied."""

from __future__ import annotations

import os
import signal
import time

import pytest

from jobs.models import Job
from jobs.services import flush_marks
from orders import services
from orders.models import Order
from tests.faults.conftest import FaultStack, all_effects_once, order_effects, wait_for_effects
from tests.support import email
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

ORDERS = 1000


def place_orders(count: int) -> list[Order]:
    placed = [
        services.place_order(
            email=f"buyer{i}@example.com", items=[{"sku": "BUZ-001", "quantity": 1 + i % 3}], card="4242424242424242"
        )
        for i in range(count)
    ]
    assert flush_marks()  # the marker thread has marked them enqueued
    return placed


def test_sigkill_of_a_busy_worker_loses_nothing_and_doubles_nothing(stack: FaultStack, stocked: dict) -> None:
    orders = place_orders(ORDERS)
    assert Job.objects.filter(status=Job.Status.ENQUEUED).count() == 3 * ORDERS
    email.delay_every(1.0)  # a slow mail server keeps many jobs running at once
    stack.scheduler()  # recovery of dead workers runs there
    victim = stack.workers(processes=1, threads=64)
    survivor = stack.workers(processes=1, threads=64)

    wait_until(
        lambda: Job.objects.filter(status=Job.Status.RUNNING).count() >= 100,
        timeout=120,
        interval=0.05,
        what="100 jobs running",
    )
    victim_pid = victim.worker_pids()[0]
    victim_id = stack.broker_id_of(victim_pid)
    running = Job.objects.filter(status=Job.Status.RUNNING).count()
    running_on_victim = Job.objects.filter(status=Job.Status.RUNNING, worker=victim_id).count()
    os.kill(victim_pid, signal.SIGKILL)
    killed_at = time.monotonic()

    email.delay_every(0.05)
    wait_for_effects(orders, timeout=20 + 60)
    recovered = time.monotonic() - killed_at
    # The rows follow the effects: those the victim's batch writer had not written yet are
    # repaired by the lost-message scan (BUZZER_LOST_AFTER_SECONDS after they were sent,
    # then one suspect at a time per process).
    wait_until(
        lambda: order_jobs().filter(status=Job.Status.SUCCEEDED).count() == 3 * ORDERS,
        timeout=60,
        what="every job row succeeded",
    )

    effects = order_effects(orders)
    assert all_effects_once(effects), effects
    client = stack.redis.client()
    leftover = [key for key in client.scan_iter(key(f"__acks__.{victim_id}.*")) if client.scard(key)]
    assert leftover == []
    assert survivor.proc.poll() is None
    record(
        f"SIGKILL: {effects['emails']}/{ORDERS} emails, stock {effects['stock_taken']}/{effects['stock_expected']}, "
        f"sales {effects['sales_orders']}/{ORDERS}, {effects['duplicate_emails']} duplicates; killed with {running} "
        f"running ({running_on_victim} on the victim); everything done {recovered:.0f} s after the kill "
        f"(bar: heartbeat timeout 20 s + 60 s); victim's unacked set empty; {email.times_asked()}"
    )
