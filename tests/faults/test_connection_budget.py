"""The connection budget: two worker processes with 64 threads each and a scheduler
against a PostgreSQL that allows 40 connections. Each process borrows from a pool of
its own (DATABASE_POOL_MAX_SIZE, 8) -- or, the other way the README describes, they
connect through PgBouncer in transaction mode with Buzzer's pools off. Either way the
server never runs out and all 1,000 orders' jobs complete, each effect once."""

from __future__ import annotations

import threading
import time

import pytest

from jobs.models import Job
from tests.faults.conftest import FaultStack, job_counts, wait_for_effects
from tests.faults.test_worker_kill import place_orders
from tests.support import email, pgbouncer
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.postgres_server import PostgresServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.faults, pytest.mark.postgres_server(max_connections=40)]

ORDERS = 1000
MAX_CONNECTIONS = 40
POOL = 8
BOUNCER_POOL = 20


def run_1000_orders(database: PostgresServer, stack: FaultStack, **env: str) -> dict[str, float]:
    """Place the orders, run 2 x 64 worker threads and a scheduler with `env`, wait for
    every effect; returns the figures (fails on any shortfall or refused connection)."""
    orders = place_orders(ORDERS)
    email.delay_every(0.1)  # a slow mail server: many jobs in flight at once
    stack.scheduler(**env)
    workers = stack.workers(processes=2, threads=64, **env)
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
    logs = workers.output() + "".join(path.read_text(errors="replace") for path in stack.logs.glob("*.log"))
    assert logs.count("too many clients") == 0, "the server ran out of connections"
    assert order_jobs().filter(status=Job.Status.SUCCEEDED).count() == 3 * ORDERS
    return {"seconds": time.monotonic() - started, "peak": peak[0], "emails": effects["emails"]}


def test_128_worker_threads_fit_in_40_connections(
    private_postgres: PostgresServer, stack: FaultStack, stocked: dict
) -> None:
    figures = run_1000_orders(private_postgres, stack, DATABASE_POOL_MAX_SIZE=str(POOL))

    # 3 processes x their pool, and the test's own connection (and the sampler's).
    assert figures["peak"] <= 3 * POOL + 2, figures
    record(
        f"Connection budget: 2 worker processes x 64 threads + scheduler, pool {POOL} each, server max_connections "
        f"{MAX_CONNECTIONS}: {3 * ORDERS}/{3 * ORDERS} jobs succeeded in {figures['seconds']:.0f} s, "
        f"{figures['emails']}/{ORDERS} emails, 0 duplicates; peak {figures['peak']} client connections, "
        "0 'too many clients'"
    )


def test_behind_pgbouncer_in_transaction_mode(
    private_postgres: PostgresServer, stack: FaultStack, stocked: dict
) -> None:
    if not pgbouncer.available():
        pytest.skip(f"PgBouncer is not installed ({pgbouncer.BINARY}): make test installs it where it may")
    bouncer = pgbouncer.PgBouncer(private_postgres, "buzzer", pool_mode="transaction", pool_size=BOUNCER_POOL)
    try:
        # Buzzer's own pools off (no pooling twice): every thread holds a client connection
        # to PgBouncer, which shares BOUNCER_POOL server connections between transactions.
        figures = run_1000_orders(
            private_postgres, stack, DATABASE_URL=bouncer.url(), DATABASE_POOL="0", DATABASE_SERVER_SIDE_CURSORS="0"
        )
    finally:
        bouncer.stop()

    assert figures["peak"] <= BOUNCER_POOL + 2, figures
    record(
        f"PgBouncer (transaction mode, pool {BOUNCER_POOL}), Buzzer's pools off: 2 worker processes x 64 threads + "
        f"scheduler against max_connections {MAX_CONNECTIONS}: {3 * ORDERS}/{3 * ORDERS} jobs succeeded in "
        f"{figures['seconds']:.0f} s, {figures['emails']}/{ORDERS} emails, 0 duplicates; peak {figures['peak']} "
        "server connections"
    )
