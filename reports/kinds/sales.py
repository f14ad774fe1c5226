"""Sales by day and product over a date range."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.db.models import Count, DecimalField, ExpressionWrapper, F, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from orders.models import OrderItem
from reports.kinds import DateRangeForm, Kind, day_bounds, register


class SalesForm(DateRangeForm):
    pass


def query(parameters: dict[str, Any]) -> QuerySet:
    start, end = day_bounds(parameters)
    line_total = ExpressionWrapper(
        F("quantity") * F("unit_price"), output_field=DecimalField(max_digits=14, decimal_places=2)
    )
    return (
        OrderItem.objects.filter(order__created_at__gte=start, order__created_at__lt=end)
        .annotate(day=TruncDate("order__created_at", tzinfo=timezone.get_current_timezone()))
        .values("day", "sku", "name")
        .annotate(order_count=Count("order_id", distinct=True), units=Sum("quantity"), revenue=Sum(line_total))
        .order_by("day", "sku", "name")
        .values_list("day", "sku", "name", "order_count", "units", "revenue")
    )


CENTS = Decimal("0.01")


def convert(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    # SQLite sums the products in floating point (74.7000000000000): back to cents.
    return [(*row[:5], row[5].quantize(CENTS)) for row in rows]


register(
    Kind(
        name="sales",
        title="Sales by day and product",
        description="For each day and product: orders, units sold and revenue.",
        form=SalesForm,
        columns=["date", "sku", "product", "orders", "quantity", "revenue"],
        query=query,
        convert=convert,
        order=10,
    )
)
