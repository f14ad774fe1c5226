"""Claims taken at fetch: a worker process claims each fetched batch in one round trip,
releases what it will not start, and answers a cancel truthfully. Real Redis (the
suite's database)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from dramatiq.middleware import SkipMessage

from jobs.broker import BuzzerRedisBroker
from jobs.claims import CancelListener, ClaimInterrupted, RedisClaims, StartGate, job_key, start_gate
from jobs.middleware import JobTracking
from tests.support.brokers import redis_broker
from tests.support.keys import key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def tracking() -> JobTracking:
    return JobTracking()


@pytest.fixture
def broker(settings: Any, tracking: JobTracking) -> Iterator[BuzzerRedisBroker]:
    with redis_broker():  # flushes the suite's Redis before and after
        broker = BuzzerRedisBroker(url=settings.BROKER_URL, middleware=[tracking])
        broker.declare_queue("default")
        yield broker
        if tracking._writer is not None:
            tracking.after_worker_shutdown(broker, None)
        broker.close()


def message(n: int) -> dramatiq.Message:
    return dramatiq.Message(queue_name="default", actor_name="update_inventory", args=(), kwargs={"n": n}, options={})


def claim_of(broker: BuzzerRedisBroker, sent: dramatiq.Message) -> bytes | None:
    return broker.client.get(key(f"buzzer:claim:{job_key(sent.message_id, 0)}"))


def beat(broker: BuzzerRedisBroker, worker: str) -> None:
    broker.client.zadd(key("__heartbeats__"), {worker: time.time() * 1000})


def test_a_fetched_batch_is_claimed_at_once_and_its_jobs_start_without_a_claim_of_their_own(broker, tracking):
    sent = [broker.enqueue(message(n)) for n in range(3)]
    consumer = broker.consume("default", prefetch=10, timeout=100)
    first = next(consumer)  # fetches all three

    mine = f"1|{broker.broker_id}".encode()
    assert [claim_of(broker, m) for m in sent] == [mine, mine, mine]
    assert first._buzzer_claim_outcome is True
    assert first._buzzer_claimed == (job_key(first.message_id, 0), 1, broker.broker_id)
    gate = start_gate(broker)
    assert all(gate.drop(job_key(m.message_id, 0)) for m in sent if m.message_id != first.message_id)

    class NoRoundTrip:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"claims.{name} called at the start of a job claimed at fetch")

    tracking._tools(broker)
    tracking._claims = NoRoundTrip()
    tracking.before_process_message(broker, first)  # starts: no claim call, no skip
    assert first._buzzer_attempt == 1
    second = next(consumer)  # cancelled while it waited here: it never starts
    with pytest.raises(SkipMessage, match="cancelled"):
        tracking.before_process_message(broker, second)
    consumer.close()


def test_a_restarted_consumer_releases_what_it_fetched_but_never_handed_over(broker):
    sent = {m.message_id: m for m in (broker.enqueue(message(n)) for n in range(3))}
    first = broker.consume("default", prefetch=3, timeout=100)
    running = next(first)  # a worker thread has this one; the other two are in memory only

    # The connection broke: Dramatiq drops that consumer and makes a new one, which puts
    # back everything this worker had fetched. The two that no thread got must run; the
    # one a thread holds must not run twice.
    second = broker.consume("default", prefetch=3, timeout=100)
    again = {m.message_id: m for m in (next(second) for _ in range(3))}

    assert set(again) == set(sent)
    assert again[running.message_id]._buzzer_claim_outcome is False  # skipped: it runs in its thread
    others = [m for i, m in again.items() if i != running.message_id]
    assert [m._buzzer_claim_outcome for m in others] == [True, True]
    second.close()


def test_a_claim_call_whose_reply_was_lost_is_settled_by_what_redis_recorded(broker):
    claims = RedisClaims(broker, ttl_seconds=60, dead_after_seconds=20)
    worker = broker.broker_id
    claims.claim("held-elsewhere:0", 2, "another-worker")  # a later attempt holds it
    requests = [("a:0", 1, worker), ("held-elsewhere:0", 1, worker), ("b:0", 1, worker)]

    assert claims.claim_all(requests, record=("w:default", "7")) == [True, False, True]
    assert claims.settle("w:default", "7") == [0, 2]  # what that call took, told again

    # A call never seen (its bytes were lost, or are still on their way): settling it
    # fences it, and should it run after all, it takes nothing.
    assert claims.settle("w:default", "8") == []
    with pytest.raises(ClaimInterrupted):
        claims.claim_all([("c:0", 1, worker)], record=("w:default", "8"))
    assert broker.client.get(key("buzzer:claim:c:0")) is None
    assert claims.claim_all([("c:0", 1, worker)], record=("w:default", "9")) == [True]


def test_messages_put_back_unstarted_give_their_claims_back(broker):
    sent = [broker.enqueue(message(n)) for n in range(3)]
    consumer = broker.consume("default", prefetch=10, timeout=100)
    handed = [next(consumer), next(consumer)]  # the third stays in the consumer's cache

    consumer.requeue(handed[1:])  # Dramatiq's Worker.stop puts back what waits in its work queue
    consumer.close()  # and closing drops the cache

    free = b"1|free"
    by_id = {m.message_id: m for m in sent}
    assert claim_of(broker, by_id[handed[0].message_id]) == f"1|{broker.broker_id}".encode()
    assert claim_of(broker, by_id[handed[1].message_id]) == free
    third = next(m for m in sent if m.message_id not in {h.message_id for h in handed})
    assert claim_of(broker, third) == free
    # Another worker's delivery of the same attempt claims the released ones.
    claims = RedisClaims(broker, ttl_seconds=60, dead_after_seconds=20)
    assert claims.claim(job_key(third.message_id, 0), 1, "another-worker") is True


def test_the_start_gate_lets_exactly_one_of_start_and_cancel_win():
    gate = StartGate()
    gate.hold(["a:0", "b:0", "c:0"])
    assert gate.drop("a:0") is True
    assert gate.start("a:0") is False  # dropped first: it never starts
    assert gate.drop("a:0") is True  # asked again: the same answer
    assert gate.start("b:0") is True
    assert gate.drop("b:0") is False  # started first: running
    gate.let_go(["c:0"])  # put back unstarted: no longer this process's to drop
    assert gate.drop("c:0") is False
    assert gate.drop("never-fetched-here:0") is False

    # Many threads racing on many keys: every key gets one consistent verdict.
    keys = [f"k{i}:0" for i in range(2000)]
    gate.hold(keys)
    started: set[str] = set()
    dropped: set[str] = set()

    def starter() -> None:
        for k in keys:
            if gate.start(k):
                started.add(k)

    def canceller() -> None:
        for k in reversed(keys):
            if gate.drop(k):
                dropped.add(k)

    threads = [threading.Thread(target=starter), threading.Thread(target=canceller)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert started | dropped == set(keys) and not started & dropped


def test_a_cancel_asks_the_worker_that_fetched_the_job_and_gets_the_truth(broker):
    gate = start_gate(broker)
    listener = CancelListener(broker, gate)
    claims = RedisClaims(broker, ttl_seconds=60, dead_after_seconds=20)
    try:
        beat(broker, broker.broker_id)
        gate.hold(["waiting:0", "running:0"])
        assert claims.ask_holder("waiting:0", broker.broker_id) is True
        assert gate.start("waiting:0") is False  # it never starts here

        assert gate.start("running:0") is True
        assert claims.ask_holder("running:0", broker.broker_id) is False

        began = time.monotonic()
        assert claims.ask_holder("elsewhere:0", "a-worker-with-no-heartbeat") is False
        assert time.monotonic() - began < 0.5  # a dead holder is not waited for
    finally:
        listener.stop()


def test_with_claims_at_start_a_cancel_gets_its_answer_at_once(broker, tracking):
    broker.claim_at_fetch = False  # each job claimed at its start: nothing waits in the gate
    tracking._tools(broker)  # the process's tools: heartbeat, cancel listener, writer
    claims = RedisClaims(broker, ttl_seconds=60, dead_after_seconds=20)
    beat(broker, broker.broker_id)
    claims.claim("running-here:0", 1, broker.broker_id)

    asked_at = time.monotonic()
    assert claims.ask_holder("running-here:0", broker.broker_id) is False  # it started here
    # The listener answered "started"; without one, the ask waits out its ASK_SECONDS (2 s).
    assert time.monotonic() - asked_at < 1.0
