"""Every order in a date range, one row per order item."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from orders.models import OrderItem
from reports.kinds import DateRangeForm, Kind, day_bounds, register


class OrdersForm(DateRangeForm):
    pass


def query(parameters: dict[str, Any]) -> QuerySet:
    start, end = day_bounds(parameters)
    return (
        OrderItem.objects.filter(order__created_at__gte=start, order__created_at__lt=end)
        .order_by("order__created_at", "order_id", "id")
        .values_list(
            "order_id",
            "order__created_at",
            "order__email",
            "order__priority",
            "sku",
            "name",
            "quantity",
            "unit_price",
            "order__total",
        )
    )


register(
    Kind(
        name="orders",
        title="All orders",
        description="Every order placed in the range, one row per item.",
        form=OrdersForm,
        columns=["order", "placed_at", "email", "priority", "sku", "product", "quantity", "unit_price", "order_total"],
        query=query,
        order=20,
    )
)
