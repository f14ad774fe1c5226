"""The connection budget: two worker processes with 64 threads each, a scheduler and the
test itself against a PostgreSQL that allows 40 connections. Every process borrows from
a pool of its own (DATABASE_POOL_MAX_SIZE, 8), so the server never runs out and all
1,000 orders' jobs complete, each effect once."""

from __future__ import annotations

import threading
import time

import pytest

from jobs.models import Job
from tests.faults.conftest import FaultStack, job_counts, wait_for_effects
from tests.faults.test_worker_kill import place_orders
from tests.support import email
from tests.support.figures import record
from tests.support.postgres_server import PostgresServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

ORDERS = 1000
MAX_CONNECTIONS = 40
POOL = 8


@pytest.mark.postgres_server(max_connections=MAX_CONNECTIONS)
def test_128_worker_threads_fit_in_40_connections(
    private_postgres: PostgresServer, stack: FaultStack, stocked: dict
) -> None:
    database = private_postgres
    orders = place_orders(ORDERS)
    email.delay_every(0.1)  # a slow mail server: many jobs in flight at once
    stack.scheduler(DATABASE_POOL_MAX_SIZE=str(POOL))
    workers = stack.workers(processes=2, threads=64, DATABASE_POOL_MAX_SIZE=str(POOL))

    peak = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], database.client_connections("buzzer"))
            except Exception:  # noqa: BLE001 - a sample missed is no failure
                pass
            stop.wait(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.monotonic()
    try:
        effects = wait_for_effects(orders, timeout=180)
        wait_until(
            lambda: set(job_counts()) == {Job.Status.SUCCEEDED},
            timeout=60,
            what=f"every job succeeded ({job_counts()})",
        )
    finally:
        stop.set()
        sampler.join()
    took = time.monotonic() - started

    logs = workers.output() + "".join(path.read_text(errors="replace") for path in stack.logs.glob("*.log"))
    refused = logs.count("too many clients")
    assert refused == 0, "the server ran out of connections"
    # 3 processes x their pool, and the test's own connection (and the sampler's).
    assert peak[0] <= 3 * POOL + 2, peak[0]
    assert Job.objects.filter(status=Job.Status.SUCCEEDED).count() == 3 * ORDERS
    record(
        f"Connection budget: 2 worker processes x 64 threads + scheduler, pool {POOL} each, server max_connections "
        f"{MAX_CONNECTIONS}: {3 * ORDERS}/{3 * ORDERS} jobs succeeded in {took:.0f} s, {effects['emails']}/{ORDERS} "
        f"emails, 0 duplicates; peak {peak[0]} client connections, 0 'too many clients'"
    )
