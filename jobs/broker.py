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
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import redis
from dramatiq.brokers.redis import RedisBroker, _RedisConsumer
from dramatiq.errors import ConnectionClosed, DecodeError

logger = logging.getLogger(__name__)

UNDECODABLE_ACTOR = "(undecodable message)"


REQUEUE_CHUNK = 1000


class BuzzerConsumer(_RedisConsumer):
    def __init__(self, broker: Any, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        made = broker.consumers_made
        self._put_back_fetched = made.get(queue_name, 0) > 0  # a restart, not the first consumer
        made[queue_name] = made.get(queue_name, 0) + 1

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
                return super().__next__()
            except DecodeError as error:
                self._quarantine(error.data, error)

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

    @property
    def consumer_class(self) -> type[_RedisConsumer]:
        return BuzzerConsumer


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
