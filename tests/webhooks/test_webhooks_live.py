"""Webhooks end to end: orders placed here, deliveries on a real `rundramatiq` consuming
only the `webhooks` queue, retries released by a real `runscheduler`, a real receiver."""

import pytest
from standardwebhooks.webhooks import Webhook

from orders.services import place_order
from tests.support.receiver import Receiver, free_port
from tests.support.waiting import wait_until
from tests.support.workers import scheduler_process
from webhooks import services
from webhooks.models import Attempt, Delivery

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

QUICK = {"BUZZER_WEBHOOK_RETRY_SCHEDULE": "0.3s,0.5s,1s,1s,2s,2s,2s,2s,2s,2s"}


def place(n: int = 0):
    return place_order(email=f"c{n}@example.com", items=[{"sku": "BUZ-001", "quantity": 1}], card="4242424242424242")


def test_500_twice_then_200_is_delivered_once_with_three_attempts_and_one_webhook_id(
    products, worker_factory, receiver
):
    endpoint = services.create_endpoint(receiver.url)
    receiver.answer_next("500", "500")
    worker_factory(processes=1, threads=2, queues=["webhooks"], **QUICK)
    with scheduler_process(**QUICK):
        order = place()
        wait_until(
            lambda: Delivery.objects.filter(status="succeeded").exists(), timeout=60, what="the delivery to succeed"
        )
    delivery = Delivery.objects.select_related("event").get()
    assert delivery.event.data["id"] == str(order.id) and delivery.attempts == 3
    assert list(Attempt.objects.order_by("number").values_list("status_code", flat=True)) == [500, 500, 200]
    got = receiver.requests()
    assert [r.answer for r in got] == ["500", "500", "200"]
    assert {r.headers["webhook-id"] for r in got} == {delivery.event.webhook_id}
    assert Webhook(endpoint.secret).verify(got[-1].body, got[-1].headers)["data"]["id"] == str(order.id)


def test_a_receiver_down_for_a_while_gets_every_event_once_it_is_up(products, worker_factory):
    receiver = Receiver(port=free_port())  # not listening yet: connections are refused
    services.create_endpoint(receiver.url)
    worker_factory(processes=1, threads=4, queues=["webhooks"], **QUICK)
    with scheduler_process(**QUICK):
        orders = [place(n) for n in range(10)]
        wait_until(
            lambda: Delivery.objects.filter(status="retrying", attempts__gte=2).count() == 10,
            timeout=60,
            what="every delivery to fail twice",
        )
        receiver.start()
        try:
            wait_until(
                lambda: Delivery.objects.filter(status="succeeded").count() == 10,
                timeout=60,
                what="every delivery once the receiver is up",
            )
        finally:
            receiver.stop()
    delivered = {r.headers["webhook-id"] for r in receiver.requests()}
    assert delivered == {d.event.webhook_id for d in Delivery.objects.select_related("event")}
    assert {d.event.data["id"] for d in Delivery.objects.select_related("event")} == {str(o.id) for o in orders}
