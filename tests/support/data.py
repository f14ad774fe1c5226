from typing import Any

from django.db import transaction

QUICK_RETRIES = {"max_retries": 2, "min_backoff": 100, "max_backoff": 200}


def order_jobs() -> Any:
    """The jobs of orders: a scheduler also writes its @periodic jobs when it starts."""
    from jobs.models import Job

    return Job.objects.filter(object_type="orders.order")


def order_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "email": "ada@example.com",
        "items": [{"sku": "BUZ-001", "quantity": 2}],
        "card": "4242424242424242",
        "priority": "standard",
    }
    body.update(overrides)
    return body


def email_job(products: dict[str, Any], options: dict[str, Any] | None = None) -> Any:
    """An order with one item and only its confirmation email job (committed, and marked
    enqueued once sent)."""
    import jobs
    from jobs.services import flush_marks
    from orders.models import Order, OrderItem

    with transaction.atomic():
        order = Order.objects.create(email="ops@example.com", total="24.90")
        OrderItem.objects.create(
            order=order, product=products["BUZ-001"], sku="BUZ-001", name="Buzzer", quantity=1, unit_price="24.90"
        )
        job = jobs.enqueue("send_confirmation_email", obj=order, options=options, order_id=str(order.id))
    flush_marks()
    return job
