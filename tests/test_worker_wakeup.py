"""Idle workers wake at a send instead of at their next poll (jobs/broker.py): every send
nudges the queue's wake-up list in its own round trip, an idle consumer with room waits
on that list, and a consumer with no room leaves the nudge to one that has some."""

import threading
import time

import dramatiq
import pytest
from django.db import transaction

import jobs
from jobs.broker import WAKE_BACKLOG, BuzzerRedisBroker
from tests.support.brokers import redis_broker
from tests.support.keys import key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def broker(settings):
    with redis_broker():  # flushes the suite's Redis before and after
        broker = BuzzerRedisBroker(url=settings.BROKER_URL, middleware=[])
        broker.declare_queue("default")
        yield broker
        broker.close()


def message(n: int) -> dramatiq.Message:
    return dramatiq.Message(queue_name="default", actor_name="update_inventory", args=(), kwargs={"n": n}, options={})


def idle(consumer, poll_ms: int):
    """As a consumer that found nothing for a while: its back-off has grown to the poll."""
    consumer.timeout = poll_ms
    consumer.misses = 20
    return consumer


def test_the_outbox_nudges_each_queue_once_per_send_and_the_nudges_stay_few(real_broker):
    jobs.enqueue("prune_idempotency_keys")  # Redis learns the send script (a send it refused is nudged again)
    real_broker.client.delete(key("default.wake"))

    with transaction.atomic():
        for _ in range(5):
            jobs.enqueue("prune_idempotency_keys")
    assert real_broker.client.llen(key("default.wake")) == 1  # one send, one nudge

    for _ in range(2 * WAKE_BACKLOG):
        jobs.enqueue("prune_idempotency_keys")  # outside a transaction: one send each
    assert real_broker.client.llen(key("default.wake")) == WAKE_BACKLOG
    assert 0 < real_broker.client.ttl(key("default.wake")) <= 60


def test_an_idle_consumer_wakes_at_a_send_not_at_its_next_poll(broker):
    consumer = idle(broker.consume("default", prefetch=4, timeout=4000), 4000)
    returned: list[float] = []
    waiting = threading.Thread(target=lambda: (next(consumer), returned.append(time.monotonic())))
    waiting.start()
    time.sleep(0.3)  # it fetched nothing and waits

    sent = time.monotonic()
    broker.enqueue(message(1))
    waiting.join(5)

    assert returned and returned[0] - sent < 1.0  # the poll alone would take 2-4 s
    assert next(consumer).kwargs == {"n": 1}


def test_a_consumer_with_no_room_leaves_the_nudge_to_one_with_room(broker):
    consumer = idle(broker.consume("default", prefetch=1, timeout=200), 200)
    consumer.queued_message_ids.add("a message its worker still runs")  # prefetch used up
    broker.client.lpush(key("default.wake"), 1)

    assert next(consumer) is None  # slept its back-off instead
    assert broker.client.llen(key("default.wake")) == 1


def test_with_the_wake_up_off_sends_leave_no_nudge(settings, real_broker):
    settings.BUZZER_WORKER_WAKEUP = False

    jobs.enqueue("prune_idempotency_keys")

    assert real_broker.client.llen(key("default")) == 1
    assert not real_broker.client.exists(key("default.wake"))
