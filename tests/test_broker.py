"""Buzzer's Redis broker (the suite's real Redis): undecodable messages are quarantined,
a restarted consumer puts back what its worker had fetched, and jobs taken over after a
crash run alone."""

import os
import signal
import threading
import time
from queue import PriorityQueue

import dramatiq
import pytest
from dramatiq.worker import ConsumerThread

from jobs.broker import UNDECODABLE_ACTOR, BuzzerRedisBroker
from jobs.middleware import Isolation, JobTracking
from jobs.models import Job
from tests.support.brokers import redis_broker
from tests.support.keys import key
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_until

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


def test_acks_leave_the_worker_thread_and_go_out_in_batches_as_dramatiq_sends_them(broker, settings):
    settings.BUZZER_BATCHED_ACKS = True
    for n in range(5):
        broker.enqueue(message(n))
    consumer = broker.consume("default", prefetch=10, timeout=100)
    fetched = [next(consumer) for _ in range(5)]
    acks = key(f"__acks__.{broker.broker_id}.default")
    assert broker.client.scard(acks) == 5
    broker.client.zrem(key("__heartbeats__"), broker.broker_id)

    for delivered in fetched[:3]:
        consumer.ack(delivered)  # returns at once: the sender thread sends them
    assert consumer.outstanding_message_count == 2  # no longer counted against the prefetch
    assert broker.ack_sender().flush(5)

    remaining = {i.decode() for i in broker.client.smembers(acks)}
    assert remaining == {m.options["redis_message_id"] for m in fetched[3:]}
    bodies = broker.client.hkeys(key("default.msgs"))
    assert {b.decode() for b in bodies} == remaining  # an acked message's body is gone, as with Dramatiq's ack
    assert broker.client.zscore(key("__heartbeats__"), broker.broker_id) is not None  # and the worker beats

    consumer.ack(fetched[3])
    consumer.close()  # a closing consumer sends what is waiting
    assert broker.client.smembers(acks) == {fetched[4].options["redis_message_id"].encode()}


def test_a_consumer_whose_prefetch_is_full_fetches_again_as_soon_as_acks_make_room(broker, settings):
    settings.BUZZER_BATCHED_ACKS = True
    for n in range(12):
        broker.enqueue(message(n))
    consumer = broker.consume("default", prefetch=8, timeout=1000)  # fetches again once 2 are free
    handed = [next(consumer) for _ in range(8)]
    consumer.misses = 10  # after many looks that found no room, Dramatiq's back-off is 0.5-1 s
    consumer.ack(handed[0])  # one free: not yet worth a round trip

    began = time.monotonic()
    threading.Timer(0.1, consumer.ack, args=(handed[1],)).start()
    assert next(consumer) is None  # it waited for room, and the second ack woke it
    waited = time.monotonic() - began
    assert 0.08 <= waited < 0.4, waited
    fetched = [next(consumer), next(consumer)]  # the two free places, filled by one fetch
    assert all(m is not None for m in fetched)
    assert broker.client.llen(key("default")) == 2
    consumer.close()


def test_a_delay_queue_consumer_fetches_at_each_free_place(broker, settings):
    settings.BUZZER_BATCHED_ACKS = True
    for n in range(10):
        broker.enqueue(message(n), delay=60_000)
    consumer = broker.consume("default.DQ", prefetch=8, timeout=1000)  # a quarter would be 2
    held = [next(consumer) for _ in range(8)]
    consumer.misses = 10  # a wait for room would last 0.5-1 s
    consumer.ack(held[0])  # one place free: a message due soon must not wait for a second

    began = time.monotonic()
    fetched = next(consumer)
    assert fetched is not None and time.monotonic() - began < 0.4
    assert broker.client.llen(key("default.DQ")) == 1
    consumer.close()


def test_a_consumer_thread_lives_on_when_redis_is_gone_as_a_delayed_message_falls_due(tmp_path, settings):
    """A worker's delay-queue consumer holds a retry until its time, then moves it to its
    queue. With Redis gone at that moment the move fails, and so does, as the thread
    closes its consumer, the put-back of what it holds: a put-back that raised anything
    but a lost connection ended the thread, and the retry stayed in the live worker's
    fetched set (Redis still held it, so the lost-message scan left it alone) until the
    process restarted. The thread lives on, and once Redis is back the retry reaches its
    queue and the one not due yet is held again."""
    settings.BUZZER_BATCHED_ACKS = False
    server = RedisServer(tmp_path / "redis").start()
    broker = BuzzerRedisBroker(url=f"{server.url()}?socket_connect_timeout=1&socket_timeout=5", middleware=[])
    broker.declare_queue("default")
    # Prefetch 2: holding two retries, the consumer fetches nothing more and only sleeps,
    # so its first call to Redis after the kill is the move of the first to its queue.
    thread = ConsumerThread(
        broker=broker, queue_name="default.DQ", prefetch=2, work_queue=PriorityQueue(), worker_timeout=100
    )
    try:
        broker.enqueue(message(1), delay=3000)
        broker.enqueue(message(2), delay=600_000)  # still held when the first falls due
        thread.start()
        wait_until(lambda: thread.delay_queue.qsize() == 2, timeout=10, what="the retries held by the consumer")
        time.sleep(1.2)  # on disk (appendfsync everysec) before the kill
        server.kill()
        time.sleep(3)  # its time comes while Redis is away
        assert thread.is_alive()
        server.restart()
        wait_until(lambda: broker.client.llen(key("default")) == 1, timeout=20, what="the retry on its queue")
        assert thread.is_alive()
        wait_until(lambda: thread.delay_queue.qsize() == 1, timeout=10, what="the later retry held again")
        assert broker.client.scard(key(f"__acks__.{broker.broker_id}.default.DQ")) == 1
    finally:
        thread.stop()
        thread.join(10)
        broker.close()
        server.stop()


def test_acks_wait_for_redis_when_it_is_away_and_go_out_when_it_is_back(broker, settings):
    settings.BUZZER_BATCHED_ACKS = True
    broker.enqueue(message(1))
    consumer = broker.consume("default", prefetch=10, timeout=100)
    delivered = next(consumer)
    sender = broker.ack_sender()
    original = sender._script
    calls = {"n": 0}

    def flaky(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("Redis went away")
        return original(**kwargs)

    sender._script = flaky
    consumer.ack(delivered)
    assert sender.flush(10)
    assert calls["n"] == 2
    assert broker.client.scard(key(f"__acks__.{broker.broker_id}.default")) == 0


def test_without_batched_acks_the_consumer_acks_as_dramatiq_does(broker, settings):
    settings.BUZZER_BATCHED_ACKS = False
    broker.enqueue(message(1))
    consumer = broker.consume("default", prefetch=10, timeout=100)
    consumer.ack(next(consumer))
    assert broker.ack_sender() is None
    assert broker.client.scard(key(f"__acks__.{broker.broker_id}.default")) == 0


def test_a_paused_queue_is_not_fetched_from_until_it_is_resumed(broker, settings):
    from jobs import queues

    for n in range(3):
        broker.enqueue(message(n))
    broker.client.sadd(queues.paused_key(broker.namespace), "default")
    consumer = broker.consume("default", prefetch=10, timeout=100)

    assert next(consumer) is None  # paused: nothing fetched
    assert broker.client.llen(key("default")) == 3

    broker.client.srem(queues.paused_key(broker.namespace), "default")
    consumer._pause_checked -= queues.PAUSE_CHECK_SECONDS  # as a second later
    delivered = next(consumer)
    assert delivered is not None and delivered.kwargs["n"] == 0


def test_a_signal_that_comes_while_a_thread_waits_for_its_claim_hands_the_job_back(broker):
    """SIGTERM reached the worker process after a thread had passed the stop check but
    before its claim came back: the job does not start there; it goes back to its queue,
    its claim released, for another worker."""
    from dramatiq.middleware import SkipMessage

    from jobs.claims import RedisClaims, job_key
    from jobs.middleware import JobTracking

    tracking = JobTracking()
    tracking._tools(broker)
    real = RedisClaims(broker, ttl_seconds=60, dead_after_seconds=20)

    class SignalDuringClaim:
        def __getattr__(self, name):
            return getattr(real, name)

        def claim(self, *args):
            outcome = real.claim(*args)
            tracking._stopping.set()  # the signal arrives while the answer is on its way
            return outcome

    tracking._claims = SignalDuringClaim()
    sent = broker.enqueue(message(1))
    consumer = broker.consume("default", prefetch=10, timeout=100)
    fetched = next(consumer)
    acks = key(f"__acks__.{broker.broker_id}.default")
    assert broker.client.scard(acks) == 1
    try:
        with pytest.raises(SkipMessage, match="handed back"):
            tracking.before_process_message(broker, fetched)
        assert broker.client.scard(acks) == 0
        assert broker.client.lrange(key("default"), 0, -1) == [fetched.options["redis_message_id"].encode()]
        # Released: another worker's delivery of the same attempt claims it.
        assert real.claim(job_key(sent.message_id, 0), 1, "another-worker") is True
    finally:
        consumer.close()
        tracking._writer.close()
        if tracking._heartbeat is not None:
            tracking._heartbeat.stop()


def test_a_second_sighup_while_stopping_is_not_taken_for_kill_now():
    """A reload's watcher sends a SIGHUP per file event, and one save is often two.
    Dramatiq's worker process takes a second signal for "kill now" (sys.exit from its
    handler, amid the graceful stop); the tracking's handler passes on the first SIGHUP
    only. A second SIGTERM still reaches Dramatiq (an operator's "kill now")."""
    seen: list[int] = []

    def dramatiq_handler(number, frame):
        seen.append(number)

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGHUP, signal.SIGTERM)}
    try:
        for signum in saved:
            signal.signal(signum, dramatiq_handler)
        tracking = JobTracking()
        tracking._watch_for_stop()
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGHUP)
        assert tracking._stopping.is_set()
        assert seen == [signal.SIGHUP]
        for _ in range(2):
            os.kill(os.getpid(), signal.SIGTERM)
        assert seen == [signal.SIGHUP, signal.SIGTERM, signal.SIGTERM]
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
