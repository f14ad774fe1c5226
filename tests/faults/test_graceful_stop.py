"""SIGTERM to a busy worker: it starts nothing more, finishes what it runs, exits 0, and
the rest of its queue runs on the other worker, each effect once."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest

from jobs.models import Job
from orders import services
from orders.models import Order
from tests.faults.conftest import FaultStack, wait_for_effects
from tests.support import email
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

SLOW_JOBS = 200


def test_sigterm_stops_a_worker_gracefully(stack: FaultStack, stocked: dict) -> None:
    orders: list[Order] = [
        services.place_order(
            email=f"buyer{i}@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
        )
        for i in range(SLOW_JOBS)
    ]
    email.delay_every(2.0)  # each confirmation email takes 2 s: 200 jobs of 2 s
    stack.scheduler()
    leaving = stack.workers(processes=1, threads=8)
    staying = stack.workers(processes=1, threads=8)
    leaving_pid = leaving.worker_pids()[0]
    leaving_id = stack.broker_id_of(leaving_pid)
    wait_until(lambda: len(email.sent()) >= 16, timeout=60, what="the first emails")

    os.kill(leaving.proc.pid, signal.SIGTERM)  # to runworkers, which passes it on
    signalled = time.time()
    code = leaving.proc.wait(60)
    stopped_in = time.time() - signalled

    effects = wait_for_effects(orders, timeout=180)
    sent = email.sent()
    on_leaving = [m for m in sent if m["pid"] == leaving_pid]
    try:
        wait_until(
            lambda: order_jobs().filter(status=Job.Status.SUCCEEDED).count() == 3 * SLOW_JOBS,
            timeout=90,
            what="every row succeeded",
        )
    except AssertionError as exc:
        left = order_jobs().exclude(status=Job.Status.SUCCEEDED)
        fields = ("id", "actor_name", "status", "attempts", "worker", "started_at", "last_error")
        raise AssertionError(f"{exc}: {list(left.values_list(*fields)[:10])}") from exc
    # The worker process logs when the signal reached it (runworkers, then Dramatiq's main
    # process pass it on: that takes a moment, during which a job may still start).
    received = [float(m) for m in re.findall(r"from now on \(at ([0-9.]+)\)", leaving.output_all())]
    assert received, leaving.output()
    got_it = min(received)
    ran_on_leaving = Job.objects.filter(worker=leaving_id)
    started_after = [job.pk for job in ran_on_leaving if job.started_at and job.started_at.timestamp() > got_it]
    finished_after = [m for m in on_leaving if m["finished"] > got_it]
    assert code == 0, leaving.output()
    assert started_after == []  # nothing started on it after the signal reached it
    assert finished_after  # what it was running when signalled, it finished
    assert len(sent) == SLOW_JOBS and effects["duplicate_emails"] == 0
    assert staying.proc.poll() is None
    record(
        f"SIGTERM: reached the worker process {got_it - signalled:.2f} s after it was sent to runworkers; "
        f"exit code {code} after {stopped_in:.1f} s; {len(finished_after)} running emails finished on the "
        f"stopping worker, 0 started there after the signal, {len(sent) - len(on_leaving)} ran on the other worker; "
        f"{effects['emails']}/{SLOW_JOBS} emails, 0 duplicates"
    )
