"""Buzzer's Redis broker (the suite's real Redis): undecodable messages are quarantined,
a restarted consumer puts back what its worker had fetched, and jobs taken over after a
crash run alone."""

import threading
import time

import dramatiq
import pytest

from jobs.broker import UNDECODABLE_ACTOR, BuzzerRedisBroker
from jobs.middleware import Isolation
from jobs.models import Job
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


def test_an_undecodable_message_is_quarantined_and_its_batch_still_delivered(broker):
    broker.enqueue(message(1))
    broker.client.hset(key("default.msgs"), "bad", b"\xff not json")
    broker.client.rpush(key("default"), "bad")
    broker.enqueue(message(2))

    consumer = broker.consume("default", prefetch=10, timeout=100)
    delivered = [next(consumer), next(consumer)]

    assert [m.kwargs["n"] for m in delivered] == [1, 2]
    assert broker.client.zscore(key("default.XQ"), "bad") is not None
    assert not broker.client.hexists(key("default.msgs"), "bad")
    row = Job.objects.get(actor_name=UNDECODABLE_ACTOR)
    assert row.status == "dead" and row.broker_message_id == "bad"


def test_a_restarted_consumer_puts_back_what_its_worker_had_fetched(broker):
    for n in range(3):
        broker.enqueue(message(n))
    first = broker.consume("default", prefetch=3, timeout=100)
    next(first)  # fetches all three; the other two stay in its memory only
    acks = key(f"__acks__.{broker.broker_id}.default")
    assert broker.client.scard(acks) == 3 and broker.client.llen(key("default")) == 0

    # The connection broke: Dramatiq drops that consumer and makes a new one.
    second = broker.consume("default", prefetch=3, timeout=100)
    redelivered = [next(second) for _ in range(3)]

    assert sorted(m.kwargs["n"] for m in redelivered) == [0, 1, 2]
    assert broker.client.scard(acks) == 3  # fetched again, by the new consumer


def test_suspects_run_one_at_a_time_in_a_worker_process():
    isolation = Isolation()
    events: list[str] = []

    def suspect(name: str) -> None:
        isolation.acquire()
        events.append(f"{name} starts")
        time.sleep(0.1)
        events.append(f"{name} ends")
        isolation.release()

    threads = [threading.Thread(target=suspect, args=(name,)) for name in ("a", "b", "c")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(events) == 6
    for start in range(0, 6, 2):  # never two suspects at once: each start is followed by its own end
        assert events[start].split()[0] == events[start + 1].split()[0]
        assert events[start].endswith("starts") and events[start + 1].endswith("ends")
    isolation.release()  # releasing without holding it does nothing
