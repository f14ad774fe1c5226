"""Orders whose transaction fails after every row (order, items, outbox jobs) is written:
nothing of them survives, nothing is sent, no effect happens, and the charge is refunded."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.models import Effect, Job
from orders import payments, services
from orders.models import DailySales, Order, OrderItem, Product
from tests.faults.conftest import STOCK, FaultStack, wait_for_effects
from tests.support import email
from tests.support.data import order_jobs
from tests.support.figures import record
from tests.support.keys import key
from tests.support.waiting import wait_until

pytestmark = pytest.mark.faults

ORDERS = 1000


class Boom(Exception):
    pass


def test_a_thousand_rolled_back_orders_leave_nothing_behind(
    stack: FaultStack, stocked: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    refunds: list[Any] = []
    real_refund = payments.FakeGateway.refund

    def refund(self: payments.FakeGateway, charge: Any) -> None:
        refunds.append(charge)
        real_refund(self, charge)

    monkeypatch.setattr(payments.FakeGateway, "refund", refund)
    written: list[int] = []

    def fail_after_writing(order: Order, items: list[OrderItem], jobs: list[Job]) -> None:
        # Inside the transaction: the order, its items and its three outbox jobs exist.
        written.append(Order.objects.filter(pk=order.pk).count() + Job.objects.filter(object_id=str(order.pk)).count())
        raise Boom

    stack.scheduler()  # the outbox sweep runs there: it must find nothing to send
    worker = stack.workers(processes=1, threads=8)
    for i in range(ORDERS):
        with pytest.raises(Boom):
            services.place_order(
                email=f"buyer{i}@example.com",
                items=[{"sku": "BUZ-001", "quantity": 1}],
                card="4242424242424242",
                on_created=fail_after_writing,
            )
    assert written == [4] * ORDERS  # the order row and 3 job rows were there before the failure

    # A control order whose jobs only the scheduler's outbox sweep can send (its own send
    # after commit is switched off): once its effects are done, the sweep has run over
    # everything written before it, and the worker has had every message there was.
    monkeypatch.setattr("jobs.services.dispatch", lambda jobs: 0)
    control = services.place_order(
        email="control@example.com", items=[{"sku": "MUG-001", "quantity": 1}], card="4242424242424242"
    )
    wait_for_effects([control], timeout=60)
    client = stack.redis.client()
    wait_until(lambda: not _messages(client), timeout=10, what="the control order's messages acked")

    assert list(Order.objects.values_list("pk", flat=True)) == [control.pk]
    assert OrderItem.objects.count() == 1
    assert order_jobs().exclude(object_id=str(control.pk)).count() == 0
    assert Effect.objects.count() == 3  # the control order's email, stock and sales
    assert [m["id"] for m in email.sent()] == [email.confirmation_id(control.pk)]
    assert DailySales.objects.get().orders == 1
    assert Product.objects.get(sku="BUZ-001").stock == STOCK
    assert len(refunds) == ORDERS
    assert worker.proc.poll() is None
    record(
        f"Rollback: {ORDERS} orders failed after writing order, items and 3 jobs each: 0 of their orders, "
        f"jobs, messages or effects remain, BUZ-001 stock unchanged, {len(refunds)}/{ORDERS} charges refunded "
        "(a later control order went through the sweep and the worker)"
    )


def _messages(client: Any) -> int:
    return sum(client.hlen(key) for key in client.scan_iter(key("*.msgs")))
