"""A webhook receiver that hangs never slows the orders: their email, stock and analytics
jobs finish as fast as without webhooks, and one hanging endpoint does not hold back
the deliveries to another."""

from __future__ import annotations

import time

import pytest

from jobs.models import Job
from orders import services as orders
from tests.faults.conftest import FaultStack
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.receiver import Receiver
from tests.support.waiting import wait_until
from webhooks import services
from webhooks.models import Delivery

pytestmark = pytest.mark.faults

ORDERS = 200
OTHERS = 50


def orders_done_in(count: int) -> float:
    """Place `count` orders; seconds until all their order jobs (not webhooks) succeeded."""
    started = time.monotonic()
    placed = [
        orders.place_order(
            email=f"b{i}@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242"
        )
        for i in range(count)
    ]
    ids = [str(order.id) for order in placed]
    order_side = order_jobs().filter(object_id__in=ids, queue_name="default")
    wait_until(
        lambda: order_side.filter(status=Job.Status.SUCCEEDED).count() == 3 * count,
        timeout=120,
        interval=0.1,
        what=f"{3 * count} order jobs",
    )
    return time.monotonic() - started


def test_a_hanging_receiver_does_not_slow_the_orders_or_another_endpoint(stack: FaultStack, stocked: dict) -> None:
    stack.scheduler()
    stack.workers(processes=1, threads=8, queues=["default", "premium"])
    # As production should: the webhooks group has twice the per-endpoint limit in threads.
    stack.workers(processes=1, threads=8, queues=["webhooks"], BUZZER_WEBHOOK_ENDPOINT_CONCURRENCY="4")
    without = orders_done_in(ORDERS)

    hanging, healthy = Receiver(default="hang").start(), Receiver().start()
    try:
        services.create_endpoint(hanging.url)
        with_hanging = orders_done_in(ORDERS)
        # Then a healthy endpoint next to the hanging one: its deliveries are not held back.
        good = services.create_endpoint(healthy.url)
        orders_done_in(OTHERS)
        started = time.monotonic()
        # Events of the earlier orders whose fan-out had not run yet go to it as well.
        to_good = Delivery.objects.filter(endpoint=good)
        wait_until(
            lambda: to_good.filter(status="succeeded").count() >= OTHERS and not to_good.exclude(status="succeeded"),
            timeout=30,
            interval=0.2,
            what="every delivery to the healthy endpoint",
        )
        healthy_after = time.monotonic() - started
        in_flight = Delivery.objects.exclude(endpoint=good).filter(attempts__gt=0).count()
    finally:
        hanging.stop()
        healthy.stop()

    record(
        f"Hanging webhook receiver: {ORDERS} orders' jobs done in {without:.1f} s without webhooks, "
        f"{with_hanging:.1f} s with a hanging endpoint; a healthy endpoint added next to it had all its "
        f"{to_good.count()} deliveries {healthy_after:.1f} s after their orders' jobs "
        f"({in_flight} attempts on the hanging one meanwhile)"
    )
    assert with_hanging <= without * 1.5 + 2.0
    assert len({r.headers["webhook-id"] for r in healthy.requests()}) == to_good.count()
