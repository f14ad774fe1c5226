"""The web process dies between COMMIT and the send to Redis, a hundred times: the outbox
still gets every order all its effects."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from jobs.models import Job
from orders.models import Order
from tests.faults.conftest import FaultStack, wait_for_effects
from tests.support.data import order_body, order_jobs
from tests.support.figures import record
from tests.support.workers import ROOT

pytestmark = pytest.mark.faults

ORDERS = 100
CONFIG = "tests/faults/crash_after_commit.py"


def post_order(port: int, key: str, body: dict) -> int | None:
    """POST an order; the status, or None when the server died before answering."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            "/api/orders/",
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        return connection.getresponse().status
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return None
    finally:
        connection.close()


def test_a_crash_after_every_commit_loses_no_order(stack: FaultStack, stocked: dict, api_key: str) -> None:
    web = stack.web(config=ROOT / CONFIG)
    answers = []
    for i in range(ORDERS):
        answers.append(post_order(web.port, api_key, order_body(email=f"buyer{i}@example.com")))
        time.sleep(0.05)  # gunicorn forks a new worker for the one that died
    assert answers == [None] * ORDERS  # every request's process died before it could answer
    assert Order.objects.count() == ORDERS
    assert Job.objects.filter(status=Job.Status.PENDING).count() == 3 * ORDERS  # committed, never sent

    started = time.monotonic()
    stack.scheduler()
    stack.workers(processes=1, threads=8)
    effects = wait_for_effects(list(Order.objects.all()), timeout=120)
    took = time.monotonic() - started
    assert order_jobs().exclude(status=Job.Status.SUCCEEDED).count() == 0
    record(
        f"Crash after COMMIT: {ORDERS}/{ORDERS} web processes killed between commit and send; "
        f"{effects['emails']}/{ORDERS} emails, stock {effects['stock_taken']}/{effects['stock_expected']}, "
        f"sales {effects['sales_orders']}/{ORDERS}, 0 duplicates, all sent by the outbox sweep "
        f"{took:.0f} s after the scheduler started"
    )
