"""The web process dies between COMMIT and the send to Redis, a hundred times: the outbox
still gets every order all its effects. And it dies between the send and the mark: every
job is sent twice (by the request, then by the sweep), and each runs once."""

from __future__ import annotations

import http.client
import json
import time

import pytest

from jobs.models import Job
from orders.models import Order
from tests.faults.conftest import FaultStack, job_counts, order_effects, wait_for_effects
from tests.support.data import order_body, order_jobs
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until
from tests.support.workers import ROOT

pytestmark = pytest.mark.faults

ORDERS = 100
CONFIG = "tests/faults/crash_after_commit.py"
CONFIG_AFTER_SEND = "tests/faults/crash_after_send.py"


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


def place_orders_each_killing_its_process(port: int, api_key: str) -> None:
    """ORDERS orders, one at a time: each request's process dies before it can answer,
    after its order was committed."""
    answers = []
    for i in range(ORDERS):
        answers.append(post_order(port, api_key, order_body(email=f"buyer{i}@example.com")))
        time.sleep(0.05)  # gunicorn forks a new worker for the one that died
    assert answers == [None] * ORDERS
    assert Order.objects.count() == ORDERS


def test_a_crash_after_every_commit_loses_no_order(stack: FaultStack, stocked: dict, api_key: str) -> None:
    web = stack.web(config=ROOT / CONFIG)
    place_orders_each_killing_its_process(web.port, api_key)
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


def test_a_crash_between_send_and_mark_runs_each_job_once(stack: FaultStack, stocked: dict, api_key: str) -> None:
    web = stack.web(config=ROOT / CONFIG_AFTER_SEND)
    place_orders_each_killing_its_process(web.port, api_key)
    assert Job.objects.filter(status=Job.Status.PENDING).count() == 3 * ORDERS  # sent, never marked
    client = stack.redis.client()
    assert client.llen(key("default")) == 3 * ORDERS

    stack.scheduler()  # its sweep sends every job a second time (they look never sent); its own jobs queue too
    try:
        wait_until(lambda: client.llen(key("default")) >= 6 * ORDERS, timeout=60, what="the sweep to send them again")
    except AssertionError as exc:
        raise AssertionError(f"{exc}: {client.llen(key('default'))} queued, jobs {job_counts()}") from None
    assert order_jobs().filter(status=Job.Status.ENQUEUED).count() == 3 * ORDERS  # the sweep marked them

    started = time.monotonic()
    stack.workers(processes=1, threads=8)
    effects = wait_for_effects(list(Order.objects.all()), timeout=120)
    wait_until(lambda: client.llen(key("default")) == 0, timeout=60, what="both copies to be delivered")
    took = time.monotonic() - started
    assert order_jobs().exclude(status=Job.Status.SUCCEEDED).count() == 0
    assert effects == order_effects(list(Order.objects.all()))  # the second copies changed nothing
    record(
        f"Crash between send and mark: {ORDERS}/{ORDERS} web processes killed after sending, before marking; "
        f"{6 * ORDERS} messages for {3 * ORDERS} jobs; {effects['emails']}/{ORDERS} emails, "
        f"stock {effects['stock_taken']}/{effects['stock_expected']}, sales {effects['sales_orders']}/{ORDERS}, "
        f"0 duplicates, {took:.0f} s after the workers started"
    )
