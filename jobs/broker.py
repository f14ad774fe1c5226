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

import logging
import time
import uuid
from collections.abc import Iterable
from typing import Any

import redis
from dramatiq.broker import MessageProxy
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.common import compute_backoff
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.message import Message

logger = logging.getLogger(__name__)

UNDECODABLE_ACTOR = "(undecodable message)"


REQUEUE_CHUNK = 1000

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
        self._wake_key = wake_key(broker.namespace, queue_name) if broker.wakeup and ".DQ" not in queue_name else ""
        # A blocking call must end before the client's read timeout would cut it off.
        socket_timeout = broker.client.connection_pool.connection_kwargs.get("socket_timeout")
        self._max_block_s = max(0.05, socket_timeout - 0.5) if socket_timeout else 60.0

    def _requeue_fetched(self) -> None:
        acks = f"{self.broker.namespace}:__acks__.{self.broker.broker_id}.{self.queue_name}"
        try:
            ids = [i.decode() for i in self.broker.client.smembers(acks)]
            for start in range(0, len(ids), REQUEUE_CHUNK):
                self.broker.do_requeue(self.queue_name, *ids[start : start + REQUEUE_CHUNK])
        except redis.ConnectionError as error:
            raise ConnectionClosed(error) from None
        if ids:
            logger.warning("Consumer of %s restarted: put back %d fetched messages", self.queue_name, len(ids))

    def __next__(self) -> Any:
        if self._put_back_fetched:
            self._requeue_fetched()
            self._put_back_fetched = False
        while True:
            try:
                return self._next_message()
            except DecodeError as error:
                self._quarantine(error.data, error)

    def _next_message(self) -> MessageProxy | None:
        """Dramatiq 2.2.1's `_RedisConsumer.__next__`, but for the idle wait
        (`_wait_for_work` instead of a plain sleep)."""
        try:
            while True:
                try:
                    data = self.message_cache.pop(0)
                    if data is None:
                        logger.warning("Found 'None' message in message cache for queue %r", self.queue_name)
                        continue
                    self.misses = 0
                    message = Message.decode(data)
                    self.queued_message_ids.add(message.message_id)
                    return MessageProxy(message)
                except IndexError:
                    messages = []
                    if self.outstanding_message_count < self.prefetch:
                        self.message_cache = messages = self.broker.do_fetch(
                            self.queue_name, self.prefetch - self.outstanding_message_count
                        )
                    if not messages:
                        self.misses, backoff_ms = compute_backoff(self.misses, max_backoff=self.timeout)
                        self._wait_for_work(backoff_ms)
                        return None
        except redis.ConnectionError as e:
            raise ConnectionClosed(e) from None

    def _wait_for_work(self, backoff_ms: float) -> None:
        """Sleep `backoff_ms`, or less when a nudge says that work has been sent. Only a
        consumer with room for more messages takes a nudge: one that could not fetch
        would swallow it, and an idle worker elsewhere would sleep on."""
        if not self._wake_key or backoff_ms < MIN_BLOCKING_WAIT_MS or self.outstanding_message_count >= self.prefetch:
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
        super().__init__(**kwargs)
        self.consumers_made: dict[str, int] = {}
        self.wakeup: bool = settings.BUZZER_WORKER_WAKEUP

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
