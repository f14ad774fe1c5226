"""Jobs are written with the business change and dispatched after commit; whatever the
broker refuses stays pending for the sweep, and the request never fails for it."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

import jobs
from jobs.models import Job
from jobs.services import sweep_outbox
from orders.models import Order
from tests.support.data import order_body

pytestmark = pytest.mark.django_db(transaction=True)


class BrokerDown(ConnectionError):
    pass


def refuse(*args, **kwargs):
    raise BrokerDown("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


def place_while_broker_refuses(stub_broker, monkeypatch) -> Order:
    monkeypatch.setattr(stub_broker, "enqueue", refuse)
    with transaction.atomic():
        order = Order.objects.create(email="a@example.com", total=1)
        jobs.publish("order.placed", obj=order, order_id=str(order.id))
    return order


def test_order_is_accepted_while_the_broker_refuses_and_jobs_stay_pending(api, products, stub_broker, monkeypatch):
    monkeypatch.setattr(stub_broker, "enqueue", refuse)

    response = api.post("/api/orders/", order_body())

    assert response.status_code == 201
    assert Order.objects.count() == 1
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}


def test_sweep_dispatches_jobs_left_pending(products, stub_broker, monkeypatch):
    place_while_broker_refuses(stub_broker, monkeypatch)
    monkeypatch.undo()
    Job.objects.update(created_at=timezone.now() - timedelta(seconds=30))

    assert sweep_outbox() == 3

    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}
    assert stub_broker.queues["default"].qsize() == 3
    assert sweep_outbox() == 0  # nothing is sent twice by the sweep


def test_sweep_leaves_fresh_pending_jobs_to_their_own_dispatch(products, stub_broker, monkeypatch):
    place_while_broker_refuses(stub_broker, monkeypatch)
    monkeypatch.undo()

    assert sweep_outbox(older_than=60) == 0
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}


def test_sweep_stops_while_the_broker_still_refuses(products, stub_broker, monkeypatch):
    place_while_broker_refuses(stub_broker, monkeypatch)

    assert sweep_outbox(older_than=0) == 0
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}


def test_after_a_refused_send_new_jobs_skip_redis_for_a_while_but_the_sweep_tries(products, stub_broker, monkeypatch):
    attempts = []

    def count_and_refuse(*args, **kwargs):
        attempts.append(1)
        refuse()

    monkeypatch.setattr(stub_broker, "enqueue", count_and_refuse)
    with transaction.atomic():
        order = Order.objects.create(email="a@example.com", total=1)
        jobs.publish("order.placed", obj=order, order_id=str(order.id))
    assert len(attempts) == 1  # the first of the three sends failed; the other two did not wait on Redis

    with transaction.atomic():
        second = Order.objects.create(email="b@example.com", total=1)
        jobs.publish("order.placed", obj=second, order_id=str(second.id))
    assert len(attempts) == 1  # within BUZZER_DISPATCH_BACKOFF_SECONDS: straight to the outbox

    monkeypatch.undo()
    assert sweep_outbox(older_than=0) == 6  # the sweep always tries
    assert set(Job.objects.values_list("status", flat=True)) == {"enqueued"}


def test_publishing_the_same_event_twice_for_one_object_writes_one_set_of_jobs(products, stub_broker):
    with transaction.atomic():
        order = Order.objects.create(email="a@example.com", total=1)
        jobs.publish("order.placed", obj=order, order_id=str(order.id))
        jobs.publish("order.placed", obj=order, order_id=str(order.id))

    assert Job.objects.count() == 3
    assert stub_broker.queues["default"].qsize() == 3


def test_enqueue_of_an_unknown_actor_fails_at_once(db):
    import dramatiq

    with pytest.raises(dramatiq.errors.ActorNotFound):
        jobs.enqueue("no_such_actor", 1)
    assert Job.objects.count() == 0


def test_periodic_job_is_written_once_per_slot_however_many_schedulers_ask(stub_broker):
    from jobs.periodic import enqueue_due, registered

    entry = next(e for e in registered() if e.actor_name == "prune_idempotency_keys")
    first = enqueue_due(entry, now=7200.0)
    again = enqueue_due(entry, now=7201.0)  # a second scheduler, same hour
    later = enqueue_due(entry, now=10800.0)  # the next hour

    assert first.pk == again.pk != later.pk
    assert Job.objects.filter(actor_name="prune_idempotency_keys").count() == 2


def test_a_stalled_redis_holds_the_order_request_only_briefly(api, products, real_broker, monkeypatch):
    """A server that accepts connections and never answers (CLIENT PAUSE, a hung Redis)."""
    import socket
    import time

    from django.conf import settings

    from jobs import services

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)  # the kernel accepts; nobody ever reads or answers
    kwargs = real_broker.client.connection_pool.connection_kwargs
    monkeypatch.setitem(kwargs, "host", "127.0.0.1")
    monkeypatch.setitem(kwargs, "port", listener.getsockname()[1])
    services._senders.clear()
    try:
        started = time.monotonic()
        response = api.post("/api/orders/", order_body())
        elapsed = time.monotonic() - started
    finally:
        services._senders.clear()
        listener.close()

    assert response.status_code == 201
    assert elapsed < 1.0, f"the request waited {elapsed:.2f}s"
    assert settings.BUZZER_DISPATCH_TIMEOUT_SECONDS < 1
    assert set(Job.objects.values_list("status", flat=True)) == {"pending"}  # the sweep sends them later
