"""Events reach webhooks through the outbox: a job in the order's own transaction, only
while an endpoint wants the event; it writes the event and one delivery per endpoint."""

import pytest
from django.core.management import call_command
from django.db import transaction

from jobs.effects import set_current_job
from jobs.models import Job
from jobs.services import jobs_for
from orders.models import Order
from orders.serializers import order_document
from orders.services import place_order
from webhooks import services
from webhooks.models import Delivery, Endpoint, Event

pytestmark = pytest.mark.django_db

FAN_OUT = "publish_webhook:order.placed"


def place(products, priority="standard"):
    return place_order(
        email="ada@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242", priority=priority
    )


def test_without_endpoints_an_order_writes_no_webhook_job(products):
    order = place(products)
    assert sorted(jobs_for(order).values_list("actor_name", flat=True)) == [
        "record_analytics",
        "send_confirmation_email",
        "update_inventory",
    ]


def test_with_an_endpoint_the_order_writes_one_webhook_job_on_the_webhooks_queue(products, endpoint):
    for priority in ("standard", "premium"):
        order = place(products, priority)
        job = Job.objects.get(object_id=str(order.id), actor_name=FAN_OUT)
        assert job.queue_name == "webhooks" and job.kwargs == {"order_id": str(order.id)}


def test_a_paused_endpoint_wants_nothing(products, endpoint):
    services.pause(endpoint)
    order = place(products)
    assert not Job.objects.filter(object_id=str(order.id), actor_name=FAN_OUT).exists()


def test_an_endpoint_saved_elsewhere_is_seen_after_the_cache_expires(products, settings):
    settings.BUZZER_WEBHOOK_ENDPOINTS_CACHE_SECONDS = 0
    assert not services.wanted("order.placed")
    Endpoint.objects.bulk_create([Endpoint(url="http://127.0.0.1:9/", secret="whsec_AAAA")])  # no signal
    assert services.wanted("order.placed")


def test_a_rolled_back_order_writes_no_webhook_job(products, endpoint):
    with pytest.raises(RuntimeError), transaction.atomic():
        order = Order.objects.create(email="x@example.com", total=1)
        import jobs

        jobs.publish("order.placed", obj=order, order_id=str(order.id))
        raise RuntimeError("rolled back")
    assert Job.objects.count() == 0


def test_fan_out_writes_the_order_document_and_one_delivery_per_endpoint_once(products, endpoint, receiver):
    other = services.create_endpoint(receiver.url + "/other", events=["order.placed"])
    order = place(products)
    job = Job.objects.get(object_id=str(order.id), actor_name=FAN_OUT)
    set_current_job(job.pk)
    try:
        services.fan_out("order.placed", job.kwargs)
        services.fan_out("order.placed", job.kwargs)  # a second run writes nothing more
    finally:
        set_current_job(None)

    event = Event.objects.get()
    assert event.id == job.pk and event.type == "order.placed"
    assert event.data["id"] == str(order.id) and event.data["items"] == order_document(order)["items"]
    assert set(Delivery.objects.values_list("endpoint", flat=True)) == {endpoint.pk, other.pk}
    # The delivery jobs name the order: its admin page shows them in its job timeline.
    attempts = jobs_for(order).filter(actor_name="deliver_webhook")
    assert attempts.count() == 2 and set(attempts.values_list("queue_name", flat=True)) == {"webhooks"}


def test_create_webhook_endpoint_prints_its_id_and_secret(capsys):
    call_command("create_webhook_endpoint", "http://127.0.0.1:8001/hooks", "--event", "order.placed")
    out = capsys.readouterr().out
    endpoint = Endpoint.objects.get()
    assert f"id: {endpoint.pk}" in out and f"secret: {endpoint.secret}" in out
    assert endpoint.events == ["order.placed"]


def test_create_webhook_endpoint_refuses_an_unknown_event_type():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown event type"):
        call_command("create_webhook_endpoint", "http://127.0.0.1:8001/hooks", "--event", "order.shipped")
