"""`manage.py seed_orders N`: N random orders with items over the last days."""

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from orders.management.commands.seed_demo import PRODUCTS
from orders.models import Order, OrderItem, Product

pytestmark = pytest.mark.django_db


def test_it_creates_the_orders_with_items_in_the_last_days(products):
    out = io.StringIO()

    call_command("seed_orders", "120", "--days", "30", "--seed", "1", stdout=out)

    assert Order.objects.count() == 120
    assert Order.objects.filter(items__isnull=True).count() == 0
    assert not Order.objects.filter(created_at__lt=timezone.now() - timedelta(days=30)).exists()
    items = OrderItem.objects.count()
    assert 120 <= items <= 360
    assert f"Created 120 orders with {items} items" in out.getvalue()
    order = Order.objects.prefetch_related("items").first()
    assert order.total == sum(item.line_total for item in order.items.all())


def test_without_products_it_loads_the_demo_ones_first(db):
    call_command("seed_orders", "5", stdout=io.StringIO())

    assert Product.objects.count() == len(PRODUCTS)
    assert OrderItem.objects.count() >= 5
