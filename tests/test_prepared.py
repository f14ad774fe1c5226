"""INSERTs built before the transaction and run inside it (`jobs.prepared`,
`jobs.services.prepare_publish`), as an order's write path does."""

from __future__ import annotations

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from jobs.models import Job
from jobs.prepared import prepare_insert
from jobs.services import flush_marks, prepare_publish
from orders.models import Order, OrderItem

pytestmark = pytest.mark.django_db(transaction=True)


def new_order(email: str = "p@example.com") -> Order:
    return Order(email=email, total="24.90")


def test_rows_built_before_the_transaction_are_written_by_it_with_their_ids(products, stub_broker):
    order = new_order()
    items = [
        OrderItem(order=order, product=products[sku], sku=sku, name=sku, quantity=n, unit_price="1.00")
        for n, sku in enumerate(["BUZ-001", "MUG-001"], start=1)
    ]
    inserts = [prepare_insert(Order, [order]), prepare_insert(OrderItem, items)]
    placed = prepare_publish("order.placed", obj=order, order_id=str(order.id))

    with CaptureQueriesContext(connection) as queries, transaction.atomic():
        for insert in inserts:
            insert.run()
        written = placed.write()

    sql = [q["sql"] for q in queries.captured_queries]
    assert [s.split()[0] for s in sql if not s.startswith(("BEGIN", "COMMIT"))] == ["INSERT"] * 3, sql
    saved = list(OrderItem.objects.filter(order=order).values_list("id", "quantity"))
    assert saved == [(item.id, item.quantity) for item in items]
    assert all(item.id is not None and not item._state.adding for item in items)
    assert {job.pk for job in written} == set(Job.objects.filter(object_id=str(order.id)).values_list("pk", flat=True))
    assert len(written) == 3
    assert flush_marks()
    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}  # sent after COMMIT
    assert stub_broker.queues["default"].qsize() == 3


def test_a_rolled_back_transaction_writes_and_sends_nothing(products, stub_broker):
    order = new_order()
    insert = prepare_insert(Order, [order])
    placed = prepare_publish("order.placed", obj=order, order_id=str(order.id))

    with pytest.raises(RuntimeError), transaction.atomic():
        insert.run()
        placed.write()
        raise RuntimeError("the order fails after its jobs")

    assert not Order.objects.exists() and not Job.objects.exists()
    assert stub_broker.queues["default"].qsize() == 0


def test_publishing_twice_for_one_object_returns_the_first_jobs(products, stub_broker):
    order = new_order()
    with transaction.atomic():
        prepare_insert(Order, [order]).run()
        first = prepare_publish("order.placed", obj=order, order_id=str(order.id)).write()
    again = prepare_publish("order.placed", obj=order, order_id=str(order.id)).write()

    assert [job.pk for job in again] == [job.pk for job in first]
    assert Job.objects.count() == 3
    assert stub_broker.queues["default"].qsize() == 3  # the second wrote nothing and sent nothing
