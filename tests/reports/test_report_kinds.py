"""Each report kind on a few rows: the exact CSV it produces."""

from datetime import datetime, timezone

import pytest

from reports import services
from tests.support.reports import csv_text, new_report, order_at

pytestmark = pytest.mark.django_db


def at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=timezone.utc)


@pytest.fixture
def november(products):
    buzzer, mug = products["BUZ-001"], products["MUG-001"]
    return [
        order_at(at(1, 10), (buzzer, 2), (mug, 1), email="a@example.com"),
        order_at(at(1, 15), (buzzer, 1), email="b@example.com"),
        order_at(at(2, 9), (mug, 3), email="c@example.com"),
        order_at(at(4, 0), (buzzer, 5), email="outside@example.com"),  # after the range
        order_at(datetime(2026, 10, 31, 23, 59, tzinfo=timezone.utc), (mug, 1)),  # before it
    ]


def generate(report):
    services.generate_report(str(report.id))
    report.refresh_from_db()
    assert report.status == "succeeded", report.error
    return csv_text(report)


def test_sales_sums_each_day_and_product_in_the_range(user, november):
    report = new_report(user, "sales", start="2026-11-01", end="2026-11-03")

    assert generate(report) == (
        "date,sku,product,orders,quantity,revenue\r\n"
        "2026-11-01,BUZ-001,Buzzer,2,3,74.70\r\n"
        "2026-11-01,MUG-001,Mug,1,1,12.50\r\n"
        "2026-11-02,MUG-001,Mug,1,3,37.50\r\n"
    )
    assert (report.row_count, report.file_size) == (3, len(csv_text(report).encode()))


def test_orders_lists_every_item_of_the_orders_in_the_range_in_time_order(user, november):
    first, second, third = november[:3]
    report = new_report(user, "orders", start="2026-11-01", end="2026-11-02")

    lines = generate(report).splitlines()

    assert lines[0] == "order,placed_at,email,priority,sku,product,quantity,unit_price,order_total"
    first_items = sorted(lines[1:3])  # one order's items come in id order; compare as a set
    assert first_items == sorted(
        [
            f"{first.id},2026-11-01 10:00:00+00:00,a@example.com,standard,BUZ-001,Buzzer,2,24.90,62.30",
            f"{first.id},2026-11-01 10:00:00+00:00,a@example.com,standard,MUG-001,Mug,1,12.50,62.30",
        ]
    )
    assert lines[3:] == [
        f"{second.id},2026-11-01 15:00:00+00:00,b@example.com,standard,BUZ-001,Buzzer,1,24.90,24.90",
        f"{third.id},2026-11-02 09:00:00+00:00,c@example.com,standard,MUG-001,Mug,3,12.50,37.50",
    ]
    assert report.row_count == 4


def test_low_stock_lists_active_products_under_the_threshold_lowest_first(user, products):
    report = new_report(user, "low_stock", threshold=11)

    # CAP-001 has 3, OLD-001 has 10 but is retired, BUZ-001 and MUG-001 have plenty.
    assert generate(report) == "sku,product,stock,price\r\nCAP-001,Cap,3,15.00\r\n"


def test_a_range_without_orders_gives_a_file_with_only_the_header(user, products):
    report = new_report(user, "sales", start="2025-01-01", end="2025-01-31")

    assert generate(report) == "date,sku,product,orders,quantity,revenue\r\n"
    assert report.row_count == 0
