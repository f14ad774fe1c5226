"""Each order side effect happens once per order, however often its service runs."""

import pytest
from django.core import mail
from django.db import transaction

import jobs
from orders import services
from orders.models import DailySales, Order, OrderItem, Product

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def order(products, stub_broker):
    with transaction.atomic():
        order = Order.objects.create(email="ada@example.com", total="74.70")
        OrderItem.objects.create(
            order=order, product=products["BUZ-001"], sku="BUZ-001", name="Buzzer", quantity=3, unit_price="24.90"
        )
    return order


def test_confirmation_email_is_sent_once(order, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert services.send_confirmation(str(order.id)) is True
    assert services.send_confirmation(str(order.id)) is False

    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["ada@example.com"]
    assert "74.70" in mail.outbox[0].body


def test_confirmation_email_failure_can_be_retried(order, settings):
    settings.DEMO_FAIL_EMAILS = True
    with pytest.raises(jobs.PermanentError, match="outage"):
        services.send_confirmation(str(order.id))
    settings.DEMO_FAIL_EMAILS = False
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    assert services.send_confirmation(str(order.id)) is True
    assert len(mail.outbox) == 1


def test_inventory_is_decremented_once(order, products):
    services.update_inventory(str(order.id))
    services.update_inventory(str(order.id))

    assert Product.objects.get(sku="BUZ-001").stock == products["BUZ-001"].stock - 3


def test_low_stock_is_logged(order, caplog):
    Product.objects.filter(sku="BUZ-001").update(stock=5)
    services.update_inventory(str(order.id))
    assert "Low stock: BUZ-001 has 2 left" in caplog.text


def test_analytics_count_the_order_once(order):
    services.record_analytics(str(order.id))
    services.record_analytics(str(order.id))

    sales = DailySales.objects.get()
    assert (sales.orders, sales.items, str(sales.revenue)) == (1, 3, "74.70")


def test_a_deleted_order_is_logged_and_skipped(order, caplog):
    order_id = str(order.id)
    order.delete()
    assert services.update_inventory(order_id) is False
    assert "no longer exists" in caplog.text


def test_mail_outage_switch_fails_the_email_until_switched_off(order, settings):
    from orders.models import DemoSwitch

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    switch = DemoSwitch.objects.create(name=DemoSwitch.MAIL_OUTAGE, on=True)
    with pytest.raises(jobs.PermanentError, match="550"):
        services.send_confirmation(str(order.id))
    switch.on = False
    switch.save()

    assert services.send_confirmation(str(order.id)) is True
    assert len(mail.outbox) == 1
