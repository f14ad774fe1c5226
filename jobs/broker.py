"""Buzzer's Redis broker: Dramatiq's, with undecodable messages quarantined and nothing
stranded by a lost connection.

Dramatiq's Redis consumer fetches a batch of messages and decodes them one at a time. A
payload that does not decode (written by hand, by another program, or cut short) raises
out of the consumer: Dramatiq logs "unexpected error", drops the rest of the batch from
memory and starts a new consumer — while the whole batch stays fetched in Redis under
this worker, so its neighbours wait there until the worker dies, and then the same
payload breaks the next worker. This consumer moves such a payload to Dramatiq's
dead-letter set instead (Redis keeps it, as for any dead message), records it as a dead
job for the operator (jobs admin, dead letters: it can be discarded, not retried), and
goes on with the batch.

When the connection to Redis breaks (Redis restarted, a network cut), Dramatiq's consumer
thread starts a new consumer and forgets the messages it had fetched but not yet handed
to a worker thread. They stay fetched in Redis under this worker, which is alive and
beating, so nothing would ever put them back. The new consumer first puts back every
message this worker had fetched on its queue. Those a worker thread still holds get a
second delivery, which the job's claim skips (or which finds its effects done).

Acknowledgements leave the worker threads: Dramatiq's consumer acks each finished message
with a round trip of its own, in the worker thread, before that thread takes its next
message. Here a thread per process sends them (`AckSender`), all that have gathered
while the previous batch was on its way in one pipeline, and a worker thread goes on at
once. A process that dies with acks unsent leaves those messages fetched under its id:
they are put back on their queues like the rest of a dead worker's messages, and their
jobs' claims (or the finished rows) skip them. `BUZZER_BATCHED_ACKS=0` turns it off.

An idle consumer does not only sleep between polls: it waits on its queue's wake-up
list (`<namespace>:<queue>.wake`, a blocking `BLPOP` bounded by the same back-off), onto
which every send pushes a nudge in the same round trip as the message. A job sent to an
idle worker starts within milliseconds, while the idle poll stays at
BUZZER_WORKER_POLL_MS (bench/idle_latency.py measures both). A lost nudge costs nothing
but that poll interval. Only a consumer with room for more messages waits on the list,
so a busy worker never takes a nudge meant for an idle one; delay queues (`.DQ`) poll as
before.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff, current_millis
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

from jobs import redis_client
from jobs.claims import job_key, start_gate

logger = logging.getLogger(__name__)

UNDECODABLE_ACTOR = "(undecodable message)"


REQUEUE_CHUNK = 1000
PAUSE_CHECK = 3600.0  # "long ago": the first fetch reads the paused queues

# Nudges kept on a wake-up list while no consumer waits (its workers are all busy): a
# few, so that a burst can wake several idle processes, never an unbounded pile.
WAKE_BACKLOG = 8
WAKE_TTL_SECONDS = 60
# Back-offs shorter than this (the first few after a message) are plain sleeps: a
# blocking call would cost a round trip for a wait that ends almost at once anyway.
MIN_BLOCKING_WAIT_MS = 50


def wake_key(namespace: str, queue_name: str) -> str:
    return f"{namespace}:{queue_name}.wake"


def add_nudges(pipe: Any, namespace: str, queue_names: Iterable[str]) -> int:
    """Queue on `pipe` one nudge for each queue (delay queues excepted: their consumers
    poll). Returns how many commands were added."""
    added = 0
    for queue_name in sorted(set(queue_names)):
        if queue_name.endswith(".DQ"):
            continue
        key = wake_key(namespace, queue_name)
        pipe.lpush(key, 1)
        pipe.ltrim(key, 0, WAKE_BACKLOG - 1)
        pipe.expire(key, WAKE_TTL_SECONDS)
        added += 3
    return added


class BuzzerConsumer(_RedisConsumer):
    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        made = broker.consumers_made
        self._put_back_fetched = made.get(queue_name, 0) > 0  # a restart, not the first consumer
        made[queue_name] = made.get(queue_name, 0) + 1
        # A consumer whose prefetch is full waits for room, woken by the acks that make it
        # (`_wait_for_room`), and fetches once a quarter of its prefetch is free. A delay
        # queue's consumer holds messages until they are due and fetches at each free
        # place, as Dramatiq's does: a message due soon must not wait for a quarter.
        self._room = threading.Event()
        self._fetch_at = 1 if ".DQ" in queue_name else max(1, prefetch // 4)
        self._pause_checked = -PAUSE_CHECK
        self._paused = False
        # Claims taken at fetch for messages not yet handed to a worker thread, by message
        # id (kept on the broker: a consumer that restarts after a lost connection leaves
        # them to the next one, which releases them before it puts anything back).
        self._claim_at_fetch = broker.claims_at_fetch() and ".DQ" not in queue_name
        self._held: dict[str, tuple[str, int, str]] = broker.held_at_fetch.setdefault(queue_name, {})
        self._record = f"{broker.broker_id}:{queue_name}"  # where Redis records this queue's claim calls
        self._outcomes: dict[str, bool | str] = {}
        self._claims_store: Any = None
        self._wake_key = wake_key(broker.namespace, queue_name) if broker.wakeup and ".DQ" not in queue_name else ""
        # A blocking call must end before the client's read timeout would cut it off.
        socket_timeout = broker.client.connection_pool.connection_kwargs.get("socket_timeout")
        self._max_block_s = max(0.05, socket_timeout - 0.5) if socket_timeout else 60.0

    def _requeue_fetched(self) -> None:
        acks = f"{self.broker.namespace}:__acks__.{self.broker.broker_id}.{self.queue_name}"
        try:
            self._release_held()  # else this worker's claims would skip them when fetched again
            ids = [i.decode() for i in self.broker.client.smembers(acks)]
            for start in range(0, len(ids), REQUEUE_CHUNK):
                self.broker.do_requeue(self.queue_name, *ids[start : start + REQUEUE_CHUNK])
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        if ids:
            logger.warning("Consumer of %s restarted: put back %d fetched messages", self.queue_name, len(ids))

    def requeue(self, messages: Iterable[Any]) -> None:
        """Dramatiq's requeue, with any Redis error reported as a lost connection, as its
        fetch does. Dramatiq's consumer thread, closing a consumer after an error (a
        delayed message that could not be moved to its queue, Redis gone), puts back the
        delayed messages it holds and expects nothing else: any other error ended the
        thread, and what it had fetched waited in the live worker's fetched set until the
        process restarted. Put back or not, they are still in that set: the next consumer
        puts them back when Redis answers (`_requeue_fetched`)."""
        messages = list(messages)
        try:
            self._release_claims([m._buzzer_claimed for m in messages if getattr(m, "_buzzer_claimed", None)])
            super().requeue(messages)
        except redis.RedisError as error:
            raise ConnectionClosed(error) from None

    def ack(self, message: Any) -> None:
        sender = self.broker.ack_sender()
        if sender is None:
            super().ack(message)
            return
        # As Dramatiq's ack: on the queue this consumer reads (a delayed message's is the
        # delay queue), and the message no longer counts against the prefetch.
        self.queued_message_ids.discard(message.message_id)
        sender.put(self.queue_name, message.options["redis_message_id"])
        self._freed()

    def nack(self, message: Any) -> None:
        super().nack(message)
        self._freed()

    def _freed(self) -> None:
        """After an ack (each job's path): wake a consumer that waits for room."""
        if not self._room.is_set() and self._has_room():
            self._room.set()

    def _has_room(self) -> bool:
        return self.prefetch - self.outstanding_message_count >= self._fetch_at

    def close(self) -> None:
        sender = self.broker.ack_sender(create=False)
        if sender is not None:
            sender.flush()  # the worker threads have stopped: what they acked goes now
        try:
            self._release_held()
        except redis.RedisError as error:  # the next consumer (if any) releases them
            logger.info("Could not release the claims of %d fetched messages yet: %s", len(self._held), error)
        super().close()

    def _claim_fetched(self, payloads: list[bytes]) -> list[bytes | Message]:
        """Claim every message of a fetched batch in one round trip (`jobs.claims`), so that
        a worker thread starts its job without waiting for Redis. A message that does not
        decode, or carries no job id, is left to the worker thread as before. Returns the
        batch with each message decoded once, here, or as fetched when it does not decode
        (`__next__` quarantines it)."""
        worker = self.broker.broker_id
        requests: list[tuple[str, int, str]] = []
        ids: list[str] = []
        batch: list[bytes | Message] = []
        for data in payloads:
            try:
                message = Message.decode(data)
            except DecodeError:
                batch.append(data)
                continue
            batch.append(message)
            try:
                uuid.UUID(message.message_id)
            except (ValueError, TypeError, AttributeError):
                continue
            options = message.options
            requests.append(
                (
                    job_key(message.message_id, options.get("buzzer_generation", 0)),
                    options.get("retries", 0) + 1,
                    worker,
                )
            )
            ids.append(message.message_id)
        if not requests:
            return batch
        # Should the reply be lost, the next consumer settles the call before it puts these
        # messages back (`_release_held`): otherwise the claims it took, this worker's,
        # would have every later delivery of these jobs skipped for as long as it lives.
        call = f"{next(self.broker.claim_calls)}"
        self.broker.unsettled_at_fetch[self.queue_name] = (call, requests)
        outcomes = self._claims().claim_all(requests, record=(self._record, call))
        del self.broker.unsettled_at_fetch[self.queue_name]
        held = []
        for message_id, request, outcome in zip(ids, requests, outcomes, strict=True):
            self._outcomes[message_id] = outcome
            if outcome is True:
                self._held[message_id] = request
                held.append(request[0])
        start_gate(self.broker).hold(held)
        return batch

    def _handed_over(self, proxy: MessageProxy) -> MessageProxy:
        """The claim taken at fetch goes with the message to its worker thread."""
        outcome = self._outcomes.pop(proxy.message_id, None)
        if outcome is not None:
            proxy._buzzer_claim_outcome = outcome
            claimed = self._held.pop(proxy.message_id, None)
            if claimed is not None:
                proxy._buzzer_claimed = claimed
        return proxy

    def _release_held(self) -> None:
        """Release the claims of fetched messages that no worker thread got, and those a
        claim call took whose reply never came."""
        unsettled = self.broker.unsettled_at_fetch.get(self.queue_name)
        if unsettled is not None:
            call, requests = unsettled
            taken = self._claims().settle(self._record, call)
            if taken:
                logger.warning("Released %d claims on %s whose call's reply was lost", len(taken), self.queue_name)
            self._release_claims([requests[i] for i in taken])
            del self.broker.unsettled_at_fetch[self.queue_name]
        if self._held:
            self._release_claims(list(self._held.values()))
            self._held.clear()
        self._outcomes.clear()

    def _release_claims(self, claims: list[tuple[str, int, str]]) -> None:
        if claims:
            self._claims().release_many(claims)
            start_gate(self.broker).let_go([claim[0] for claim in claims])

    def _claims(self) -> Any:
        if self._claims_store is None:
            from jobs.claims import claims_for

            self._claims_store = claims_for(self.broker)
        return self._claims_store

    def _is_paused(self) -> bool:
        """Whether an operator paused this queue (jobs.queues), read at most every
        PAUSE_CHECK_SECONDS; a Redis error counts as not paused (the fetch then fails as
        it would have)."""
        from jobs.queues import PAUSE_CHECK_SECONDS, paused_key

        now = time.monotonic()
        if now - self._pause_checked >= PAUSE_CHECK_SECONDS:
            self._pause_checked = now
            base = self.queue_name.removesuffix(".DQ")
            try:
                self._paused = bool(self.broker.client.sismember(paused_key(self.broker.namespace), base))
            except redis.RedisError:
                self._paused = False
        return self._paused

    def __next__(self) -> Any:
        if self._put_back_fetched:
            self._requeue_fetched()
            self._put_back_fetched = False
        if not self.message_cache and self._is_paused():
            time.sleep(min(self.timeout, 1000) / 1000)
            return None  # idle: nothing fetched while the queue is paused
        while True:
            try:
                return self._next_message()
            except DecodeError as error:
                self._quarantine(error.data, error)

    def _next_message(self) -> MessageProxy | None:
        """Dramatiq 2.2.1's `_RedisConsumer.__next__`, but for its waits: with its prefetch
        full it waits for room (`_wait_for_room`), and idle for work (`_wait_for_work`),
        instead of a plain sleep."""
        try:
            while True:
                try:
                    data = self.message_cache.pop(0)
                    if data is None:
                        logger.warning("Found 'None' message in message cache for queue %r", self.queue_name)
                        continue
                    self.misses = 0
                    message = data if isinstance(data, Message) else Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return self._handed_over(MessageProxy(message)) if self._outcomes else MessageProxy(message)
                except IndexError:
                    messages = []
                    if self._has_room():
                        self.message_cache = messages = self.broker.do_fetch(
                            self.queue_name, self.prefetch - self.outstanding_message_count
                        )
                        if messages and self._claim_at_fetch:
                            self.message_cache = self._claim_fetched(messages)
                    if not messages:
                        self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                        if self._has_room():
                            self._wait_for_work(backoff_ms)
                        else:
                            self._wait_for_room(backoff_ms)
                        return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _wait_for_room(self, backoff_ms: float) -> None:
        """Wait until the worker threads have finished enough of what this consumer
        fetched (at most `backoff_ms`). Dramatiq's consumer sleeps its back-off here, a
        few milliseconds doubling with each look that finds no room, while the threads
        run dry: at its default prefetch (twice the threads), no-op jobs left the threads
        idle 94% of a drain, and every round trip the consumer added per fetch (the
        claim) cost throughput in proportion (docs/BENCHMARKS.md, goal 2, eighth look)."""
        self._room.clear()
        if not self._has_room():  # an ack between the look and the clear set it already
            self._room.wait(backoff_ms / 1000)

    def _wait_for_work(self, backoff_ms: float) -> None:
        """Sleep `backoff_ms`, or less when a nudge says that work has been sent. Only a
        consumer with room for more messages gets here (`_next_message`) to take a nudge:
        one that could not fetch would swallow it, and an idle worker elsewhere would
        sleep on."""
        if not self._wake_key or backoff_ms < MIN_BLOCKING_WAIT_MS:
            time.sleep(backoff_ms / 1000)
            return
        self.broker.client.blpop([self._wake_key], timeout=min(backoff_ms / 1000, self._max_block_s))

    def _quarantine(self, data: bytes, error: Exception) -> None:
        redis_id = self._find_redis_id(data)
        if redis_id is None:
            logger.error("Undecodable message on %s not found among this worker's fetched messages", self.queue_name)
            return
        self.broker.do_nack(self.queue_name, redis_id)  # to the dead-letter set, as Dramatiq does for dead ones
        logger.error("Quarantined undecodable message %s on %s: %s", redis_id, self.queue_name, error)
        try:
            record_undecodable(self.queue_name.removesuffix(".DQ"), redis_id, data, error)
        except Exception:
            logger.exception("Could not record the undecodable message %s as a dead job", redis_id)

    def _find_redis_id(self, data: bytes) -> str | None:
        """Which of the messages this worker fetched on this queue is `data`."""
        namespace = self.broker.namespace
        client = self.broker.client
        acks = f"{namespace}:__acks__.{self.broker.broker_id}.{self.queue_name}"
        ids = list(client.smembers(acks))
        if not ids:
            return None
        payloads = client.hmget(f"{namespace}:{self.queue_name}.msgs", ids)
        for redis_id, payload in zip(ids, payloads, strict=True):
            if payload == data:
                return redis_id.decode()
        return None


class BuzzerRedisBroker(RedisBroker):
    def __init__(self, **kwargs: Any) -> None:
        from django.conf import settings

        # Every key in the installation's namespace, not Dramatiq's shared "dramatiq".
        kwargs.setdefault("namespace", settings.BUZZER_NAMESPACE)
        url = kwargs.pop("url", None)
        if url and kwargs.get("client") is None:
            kwargs["client"] = redis_client.client(url)  # REDIS_URL's server, or Sentinel's master
        super().__init__(**kwargs)
        self.consumers_made: dict[str, int] = {}
        self.wakeup: bool = settings.BUZZER_WORKER_WAKEUP

        self._acks: AckSender | None = None
        self._acks_lock = threading.Lock()
        self.claim_at_fetch: bool = settings.BUZZER_CLAIM_AT_FETCH
        self.held_at_fetch: dict[str, dict[str, tuple[str, int, str]]] = {}
        # A claim call at fetch whose reply has not come (yet), per queue: its id and requests.
        self.unsettled_at_fetch: dict[str, tuple[str, list[tuple[str, int, str]]]] = {}
        self.claim_calls = itertools.count(1)

    def claims_at_fetch(self) -> bool:
        """Whether this process's consumers claim jobs as they fetch them: with the
        setting on, in a process that tracks jobs (its JobTracking middleware claims
        them otherwise, at their start)."""
        from jobs.middleware import JobTracking

        return self.claim_at_fetch and any(isinstance(m, JobTracking) for m in self.middleware)

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return BuzzerConsumer

    def enqueue(self, message: Message, *, delay: int | None = None) -> Message:
        """Dramatiq's enqueue, then a nudge for the queue's idle consumers (the outbox's
        sends put theirs in their own pipeline: `jobs.services`). A failed nudge fails
        nothing: the message is in Redis, and is fetched at the next poll."""
        sent = super().enqueue(message, delay=delay)
        if self.wakeup and delay is None:
            pipe = self.client.pipeline(transaction=False)
            add_nudges(pipe, self.namespace, [sent.queue_name])
            try:
                pipe.execute()
            except redis.RedisError as error:
                logger.info("Could not nudge the consumers of %s: %s", sent.queue_name, error)
        return sent

    def ack_sender(self, create: bool = True) -> AckSender | None:
        """The process's ack sender (None when acks are sent one by one)."""
        from django.conf import settings

        if self._acks is None and create and settings.BUZZER_BATCHED_ACKS:
            with self._acks_lock:
                if self._acks is None:
                    self._acks = AckSender(self)
        return self._acks

    def close(self) -> None:
        if self._acks is not None:
            self._acks.flush()
        super().close()


# KEYS: the namespace. ARGV: worker id, now ms, then per queue its name, how many
# message ids follow, and the ids. As Dramatiq's dispatch script names its keys.
_ACK_SCRIPT = """
local namespace, worker_id = KEYS[1], ARGV[1]
redis.call('zadd', namespace .. ':__heartbeats__', ARGV[2], worker_id)
local i = 3
while i <= #ARGV do
  local queue_name, count = ARGV[i], tonumber(ARGV[i + 1])
  local queue_acks = namespace .. ':__acks__.' .. worker_id .. '.' .. queue_name
  local queue_messages = namespace .. ':' .. queue_name .. '.msgs'
  for j = i + 2, i + 1 + count do
    if redis.call('srem', queue_acks, ARGV[j]) > 0 then redis.call('hdel', queue_messages, ARGV[j]) end
  end
  i = i + 2 + count
end
return 1
"""


class AckSender:
    """Sends a worker process's acknowledgements in batches, from a thread of its own:
    one script call per batch (see the module's text).
    A batch Redis refuses is tried again, with a growing pause, until it goes through."""

    BATCH_LIMIT = 1000

    def __init__(self, broker: BuzzerRedisBroker) -> None:
        self.broker = broker
        self._script = broker.client.register_script(_ACK_SCRIPT)
        self._queue: queue.SimpleQueue[tuple[str, str] | threading.Event] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="buzzer-acks", daemon=True)
        self._thread.start()

    def put(self, queue_name: str, redis_message_id: str) -> None:
        self._queue.put((queue_name, redis_message_id))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every ack put before this call has been sent."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < self.BATCH_LIMIT:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            acks = [item for item in batch if isinstance(item, tuple)]
            failures = 0
            while acks:
                try:
                    self._send(acks)
                    break
                except Exception:  # Redis away: the acks wait for it
                    failures += 1
                    logger.warning("Could not send %d acks (try %d)", len(acks), failures, exc_info=failures == 1)
                    time.sleep(min(5.0, 0.1 * 2**failures))
            for item in batch:
                if isinstance(item, threading.Event):
                    item.set()

    def _send(self, acks: list[tuple[str, str]]) -> None:
        """One script call for the whole batch: what Dramatiq's "ack" does for each
        message (forget it as fetched by this worker, drop its body), and the heartbeat
        every dispatch call gives."""
        by_queue: dict[str, list[str]] = {}
        for queue_name, redis_message_id in acks:
            by_queue.setdefault(queue_name, []).append(redis_message_id)
        args: list[Any] = [self.broker.broker_id, current_millis()]
        for queue_name, ids in by_queue.items():
            args += (queue_name, len(ids), *ids)
        self._script(keys=[self.broker.namespace], args=args)


def record_undecodable(queue_name: str, redis_id: str, data: bytes, error: Exception) -> None:
    from django.db import close_old_connections
    from django.utils import timezone

    from jobs.fingerprints import fingerprint
    from jobs.models import Job

    close_old_connections()  # the consumer thread is no worker thread: mind its connection
    now = timezone.now()
    last_error = f"The message could not be decoded and was quarantined: {error}"[:2000]
    Job.objects.create(
        id=uuid.uuid4(),
        actor_name=UNDECODABLE_ACTOR,
        queue_name=queue_name,
        kwargs={"payload": data[:2000].decode(errors="replace")},
        status=Job.Status.DEAD,
        attempts=1,
        last_error=last_error,
        error_fingerprint=fingerprint(UNDECODABLE_ACTOR, last_error),
        broker_message_id=redis_id,
        created_at=now,
        enqueued_at=now,
        finished_at=now,
    )
