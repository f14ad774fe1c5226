"""The order admin shows what customers and API clients typed, and what jobs reported
back: all of it escaped, on every order page."""

from decimal import Decimal

import pytest
from django.utils import timezone

from jobs.models import Job
from orders.models import ApiKey, Order, OrderItem, Product

pytestmark = pytest.mark.django_db

XSS = '<script>alert("x")</script>'


def test_order_pages_escape_order_fields_and_job_errors(admin_client):
    product = Product.objects.create(sku=f"SKU{XSS}", name=f"Name{XSS}", price=Decimal("1.00"), stock=5)
    key, _ = ApiKey.issue(f"key{XSS}")
    order = Order.objects.create(email=f"a{XSS}@example.com", total=Decimal("1.00"), api_key=key)
    OrderItem.objects.create(order=order, product=product, sku=product.sku, name=product.name, quantity=1, unit_price=1)
    Job.objects.create(
        actor_name=f"send{XSS}",
        kwargs={"order_id": XSS},
        status="dead",
        last_error=XSS,
        object_type="orders.order",
        object_id=str(order.pk),
        finished_at=timezone.now(),
    )

    pages = [
        "/admin/orders/order/",
        f"/admin/orders/order/{order.pk}/change/",
        f"/admin/orders/order/?q={XSS}",
        "/admin/orders/product/",
        f"/admin/orders/product/{product.pk}/change/",
        "/admin/orders/apikey/",
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        assert "<script>alert" not in response.content.decode(), url
    change = admin_client.get(f"/admin/orders/order/{order.pk}/change/").content.decode()
    assert "&lt;script&gt;" in change  # shown, escaped (the job timeline and the items)
