"""Report test helpers: orders on given days, reports without the request path, CSVs."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from decimal import Decimal
from typing import Any

from orders.models import Order, OrderItem, Product
from reports.models import Report
from reports.services import fingerprint


def order_at(when: datetime, *lines: tuple[Product, int], email: str = "ada@example.com") -> Order:
    total = sum((product.price * quantity for product, quantity in lines), Decimal("0"))
    order = Order.objects.create(email=email, total=total, created_at=when)
    OrderItem.objects.bulk_create(
        OrderItem(order=order, product=p, sku=p.sku, name=p.name, quantity=q, unit_price=p.price) for p, q in lines
    )
    return order


def many_items(product: Product, count: int, when: datetime, per_order: int = 10) -> None:
    """`count` order items (in orders of `per_order`), fast."""
    orders = [
        Order(email=f"bulk{i}@example.com", total=Decimal(product.price) * per_order, created_at=when)
        for i in range(0, count, per_order)
    ]
    Order.objects.bulk_create(orders, batch_size=500)
    items = [
        OrderItem(
            order=order, product=product, sku=product.sku, name=product.name, quantity=1, unit_price=product.price
        )
        for order in orders
        for _ in range(per_order)
    ][:count]
    OrderItem.objects.bulk_create(items, batch_size=1000)


def new_report(owner: Any, kind: str, **parameters: Any) -> Report:
    """A queued report written directly (no job): for calling the generator by hand."""
    return Report.objects.create(
        owner=owner, kind=kind, parameters=parameters, fingerprint=fingerprint(kind, parameters)
    )


def csv_text(report: Report) -> str:
    report.refresh_from_db()
    with report.file.open("rb") as handle:
        return handle.read().decode()


def csv_rows(content: str | bytes) -> list[list[str]]:
    if isinstance(content, bytes):
        content = content.decode()
    return list(csv.reader(io.StringIO(content)))
