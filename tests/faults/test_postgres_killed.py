"""PostgreSQL SIGKILLed while orders are placed over HTTP and processed, restarted 10 s
later: order requests during the outage fail fast with 503 and Retry-After, every order
the database accepted gets all its effects exactly once, and no job is dead or stuck
because of the outage (it waited without using a retry)."""

from __future__ import annotations

import time

import pytest
from django.db import connection

from jobs.models import Job, JobAttempt
from orders.models import Order
from tests.faults.conftest import FaultStack, OrderLoad, job_counts, wait_for_effects
from tests.support import email
from tests.support.figures import record
from tests.support.postgres_server import PostgresServer
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

CLIENTS = 4
OUTAGE_SECONDS = 10


def test_orders_and_jobs_survive_a_postgresql_crash(
    private_postgres: PostgresServer, stack: FaultStack, stocked: dict, api_key: str
) -> None:
    database = private_postgres
    email.delay_every(0.05)
    stack.scheduler()
    stack.workers(processes=1, threads=8)
    stack.workers(processes=1, threads=8)
    web = stack.web()
    load = OrderLoad(web, api_key, CLIENTS, pause=0.02)
    wait_until(lambda: len(email.sent()) >= 30, timeout=60, what="orders flowing through the workers")

    database.kill()
    killed_at = time.monotonic()
    time.sleep(OUTAGE_SECONDS)
    database.restart()
    restarted_at = time.monotonic()
    wait_until(
        lambda: any(r.status == 201 and r.sent > restarted_at for r in load.results),
        timeout=30,
        what="an order accepted after the restart",
    )
    first_accepted_after = min(r.sent + r.seconds for r in load.results if r.status == 201 and r.sent > restarted_at)
    time.sleep(3)
    results = load.stop()

    during = [r for r in results if killed_at + 0.5 <= r.sent < restarted_at]
    refused = [r for r in results if r.status != 201]
    assert during, "no order request was made while PostgreSQL was down"
    # Refused clearly and fast: 503 with Retry-After and a JSON code; nothing else.
    assert all(r.status == 503 for r in refused), sorted({(r.status, str(r.body)[:80]) for r in refused})
    assert all(r.retry_after and r.body["error"]["code"] == "database_unavailable" for r in refused)
    slowest_refusal = max(r.seconds for r in refused)
    assert slowest_refusal < 5.0, slowest_refusal

    connection.close()  # the test's own connection died with the server
    accepted_ids = {r.body["id"] for r in results if r.status == 201}
    orders = list(Order.objects.all())
    assert accepted_ids <= {str(o.id) for o in orders}
    effects = wait_for_effects(orders, timeout=90)
    wait_until(
        lambda: set(job_counts()) == {Job.Status.SUCCEEDED},
        timeout=60,
        what=f"every job succeeded (now {job_counts()})",
    )
    recovered = time.monotonic() - restarted_at
    counted_failures = JobAttempt.objects.count()
    assert counted_failures == 0, list(JobAttempt.objects.values_list("error", flat=True)[:5])
    waited = Job.objects.exclude(last_error="").count()
    first_201 = first_accepted_after - restarted_at
    record(
        f"PostgreSQL SIGKILL ({OUTAGE_SECONDS} s down): {len(accepted_ids)} orders accepted (201), "
        f"{len(orders)} in the database; {len(during)} requests during the outage -> {len(refused)} x 503 "
        f"with Retry-After (slowest {slowest_refusal:.2f} s), 0 other errors; first 201 {first_201:.1f} s after "
        f"the restart; {effects['emails']}/{len(orders)} emails, stock {effects['stock_taken']}/"
        f"{effects['stock_expected']}, sales {effects['sales_orders']}/{len(orders)}, 0 duplicates; every job "
        f"succeeded {recovered:.0f} s after the restart ({waited} jobs waited for the database, 0 retries used)"
    )
