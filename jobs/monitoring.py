"""Queue health read straight from Dramatiq's Redis keys, and its history.

Dramatiq 2.2's keys (brokers/redis/dispatch.lua), for a queue Q in namespace ns:

- `ns:Q`: list of waiting message ids; `enqueue` RPUSHes, `fetch` LPOPs, so index 0 is
  the next message out. A requeue (worker shutdown, dead worker) RPUSHes too, so the
  head is the oldest of the messages sent in order, not always the oldest overall.
- `ns:Q.msgs`: payloads of every message of Q not yet acked (waiting or in flight).
- `ns:__acks__.<broker id>.Q`: fetched, not yet acked ids per worker process: in flight
  (prefetched or running); the broker ids are those of `ns:__heartbeats__`.
- `ns:Q.DQ.msgs`: payloads of delayed messages (retries waiting for their backoff); a
  worker that fetched one holds it in memory until due, still unacked, so the hash
  counts them whether they sit in Redis or in a worker.
- `ns:Q.XQ`: dead letters, a sorted set by time (delayed queues dead-letter into it too).

The scheduler records a `QueueSample` per queue every BUZZER_SAMPLE_SECONDS (the charts
and the alerts read them) and beats in `ns:buzzer:scheduler`, which /healthz watches.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

import dramatiq
import redis
from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from jobs import redis_client, stats
from jobs.claims import workers_key
from jobs.models import Job, QueueSample

logger = logging.getLogger(__name__)

SAMPLE_RETENTION = timedelta(days=2)
PRUNE_BATCH = 500

# KEYS: the queue list, its payload hash. The head's payload, read atomically so that a
# worker popping it between two commands cannot leave us an id without a payload.
_HEAD_SCRIPT = """
local id = redis.call('LINDEX', KEYS[1], 0)
if not id then return false end
return redis.call('HGET', KEYS[2], id)
"""


def redis_connection(broker: Any = None) -> tuple[Any, str]:
    """The Redis client and key namespace of the configured broker.

    A stub broker (tests, development without Redis) has no client: the Redis at
    BROKER_URL is read instead, with the installation's namespace.
    """
    broker = broker or dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        client = _client_for(settings.BROKER_URL)
    return client, getattr(broker, "namespace", settings.BUZZER_NAMESPACE)


@functools.lru_cache(maxsize=4)
def _client_for(url: str) -> redis.Redis:
    return redis_client.client(url)


def scheduler_key(namespace: str) -> str:
    return f"{namespace}:buzzer:scheduler"


def _sample_slot_key(namespace: str) -> str:
    return f"{namespace}:buzzer:sample-slot"


@dataclass
class QueueHealth:
    name: str
    depth: int = 0
    oldest_age: float | None = None  # seconds the head of the queue has waited
    in_flight: int = 0
    delayed: int = 0
    dead_letters: int = 0  # in Redis' dead-letter set (expires after 7 days)
    dead_jobs: int = 0  # Job rows in the DLQ (what the DLQ admin shows)


@dataclass
class WorkerBeat:
    broker_id: str
    host: str
    pid: str
    last_beat: datetime
    alive: bool


@dataclass
class Snapshot:
    queues: list[QueueHealth]
    workers: list[WorkerBeat]
    actors: list[stats.ActorStats]
    scheduler_beat: datetime | None
    taken_at: datetime = field(default_factory=timezone.now)

    @property
    def workers_alive(self) -> int:
        return sum(1 for w in self.workers if w.alive)

    @property
    def scheduler_alive(self) -> bool:
        return scheduler_alive(self.scheduler_beat, self.taken_at)


def _waiting_since(payload: bytes | None) -> float | None:
    """When the message became ready to run (its eta for a retry), in epoch seconds."""
    if not payload:
        return None
    try:
        message = dramatiq.Message.decode(payload)
    except Exception:  # noqa: BLE001 - a foreign or damaged payload must not break the page
        return None
    ready_ms = max(message.message_timestamp, int(message.options.get("eta") or 0))
    return ready_ms / 1000


def in_flight_counts(client: Any, namespace: str, queues: list[str]) -> dict[str, int]:
    """Fetched-but-unacked messages per queue, over the acks set of every broker in
    Dramatiq's heartbeats.

    Every process that fetches beats there first (dispatch.lua), and its entry leaves
    only once its acks are requeued (Dramatiq's maintenance, jobs.recovery), so naming
    the keys from it finds them all. Walking the keyspace instead (even with SCAN rather
    than the blocking KEYS) would step through every job's claim key at each sample.
    """
    brokers = client.zrange(f"{namespace}:__heartbeats__", 0, -1)
    if not brokers:
        return {}
    names = [(b.decode() if isinstance(b, bytes) else b, q) for b in brokers for q in queues]
    with client.pipeline(transaction=False) as pipe:
        for broker_id, queue_name in names:
            pipe.scard(f"{namespace}:__acks__.{broker_id}.{queue_name}")
        sizes = pipe.execute()
    counts = dict.fromkeys(queues, 0)
    for (_, queue_name), size in zip(names, sizes, strict=True):
        counts[queue_name] += int(size)
    return counts


def dead_job_counts(queues: list[str]) -> dict[str, int]:
    # Only status in the WHERE clause and COUNT(*): the dead rows' partial index
    # (status, error_fingerprint, finished_at, queue_name) answers it without reading a
    # row. With `queue_name IN (...)` SQLite, which has no statistics, walked the
    # (queue_name, created_at) index instead: every job of those queues.
    rows = Job.objects.filter(status=Job.Status.DEAD).order_by().values("queue_name").annotate(n=Count("*"))
    return {row["queue_name"]: row["n"] for row in rows if row["queue_name"] in queues}


def queue_health(client: Any, namespace: str, queues: list[str], now: float | None = None) -> list[QueueHealth]:
    """Depth, age of the head, in flight, delayed and dead letters of each queue."""
    now = time.time() if now is None else now
    head = client.register_script(_HEAD_SCRIPT)
    with client.pipeline(transaction=False) as pipe:
        for name in queues:
            base = f"{namespace}:{name}"
            pipe.llen(base)
            head(keys=[base, f"{base}.msgs"], client=pipe)
            pipe.hlen(f"{base}.DQ.msgs")
            pipe.zcard(f"{base}.XQ")
        results = pipe.execute()
    in_flight = in_flight_counts(client, namespace, queues)
    dead_jobs = dead_job_counts(queues)
    health = []
    for index, name in enumerate(queues):
        depth, payload, delayed, dead_letters = results[index * 4 : index * 4 + 4]
        since = _waiting_since(payload) if depth else None
        health.append(
            QueueHealth(
                name=name,
                depth=int(depth),
                oldest_age=max(0.0, now - since) if since is not None else None,
                in_flight=in_flight.get(name, 0),
                delayed=int(delayed),
                dead_letters=int(dead_letters),
                dead_jobs=dead_jobs.get(name, 0),
            )
        )
    return health


def workers(client: Any, namespace: str, now: float | None = None) -> list[WorkerBeat]:
    """Worker processes that beat recently (the recovery forgets long-dead ones), newest first."""
    now = time.time() if now is None else now
    dead_after = settings.BUZZER_WORKER_DEAD_AFTER_SECONDS
    result = []
    for raw, score in client.zrevrange(workers_key(namespace), 0, -1, withscores=True):
        text = raw.decode() if isinstance(raw, bytes) else raw
        broker_id, _, rest = text.partition("|")
        host, _, pid = rest.rpartition("|")
        beat = score / 1000
        result.append(
            WorkerBeat(
                broker_id=broker_id,
                host=host,
                pid=pid,
                last_beat=datetime.fromtimestamp(beat, tz=dt_timezone.utc),
                alive=now - beat <= dead_after,
            )
        )
    return result


def scheduler_beat(client: Any, namespace: str) -> datetime | None:
    raw = client.get(scheduler_key(namespace))
    if raw is None:
        return None
    return datetime.fromtimestamp(int(raw) / 1000, tz=dt_timezone.utc)


def scheduler_alive(beat: datetime | None, now: datetime | None = None) -> bool:
    """The scheduler samples every BUZZER_SAMPLE_SECONDS: three missed beats mean it is gone."""
    if beat is None:
        return False
    now = now or timezone.now()
    return (now - beat).total_seconds() <= 3 * settings.BUZZER_SAMPLE_SECONDS


def snapshot(client: Any, namespace: str) -> Snapshot:
    """Everything the dashboard, /healthz and /metrics show, read once."""
    now = time.time()
    return Snapshot(
        queues=queue_health(client, namespace, list(settings.BUZZER_QUEUES), now),
        workers=workers(client, namespace, now),
        actors=stats.actor_stats(client, namespace, minutes=60, now=now),
        scheduler_beat=scheduler_beat(client, namespace),
    )


def record_sample(client: Any, namespace: str, now: datetime | None = None) -> list[QueueSample]:
    """Write one QueueSample per queue and beat for the scheduler."""
    now = now or timezone.now()
    epoch = now.timestamp()
    health = queue_health(client, namespace, list(settings.BUZZER_QUEUES), epoch)
    alive = sum(1 for w in workers(client, namespace, epoch) if w.alive)
    counts = stats.take_queue_counts(client, namespace)
    samples = QueueSample.objects.bulk_create(
        QueueSample(
            at=now,
            queue_name=q.name,
            depth=q.depth,
            delayed=q.delayed,
            in_flight=q.in_flight,
            # The DLQ the operators act on; Redis' dead letters expire on their own.
            dead=q.dead_jobs,
            processed=counts.get(q.name, stats.QueueCounts()).processed,
            failed=counts.get(q.name, stats.QueueCounts()).failed,
            workers=alive,
        )
        for q in health
    )
    client.set(scheduler_key(namespace), int(epoch * 1000), ex=86_400)
    return samples


def take_sample_slot(client: Any, namespace: str, interval: float) -> bool:
    """True for one caller per sample interval, so that two schedulers (a safe set-up
    for the outbox sweep) do not write every sample twice nor open an alert twice."""
    return bool(client.set(_sample_slot_key(namespace), "1", nx=True, px=max(1, int(interval * 900))))


def sample_and_check() -> None:
    """The scheduler's job: record this interval's samples, then open or close alerts."""
    from jobs.alerts import check_alerts

    try:
        client, namespace = redis_connection()
        if not take_sample_slot(client, namespace, settings.BUZZER_SAMPLE_SECONDS):
            return
        record_sample(client, namespace)
    except redis.RedisError as exc:
        # The health check reports Redis down; a traceback every few seconds adds nothing.
        logger.warning("Queue sample skipped: Redis unavailable (%s)", exc)
        return
    check_alerts()


def _delete_in_batches(queryset: Any, batch: int = PRUNE_BATCH) -> int:
    """Delete in short transactions so the batch writer is never locked out for long."""
    model = queryset.model
    deleted = 0
    while True:
        ids = list(queryset.order_by().values_list("pk", flat=True)[:batch])
        if not ids:
            return deleted
        model.objects.filter(pk__in=ids).delete()
        deleted += len(ids)


def prune_samples(now: datetime | None = None) -> int:
    cutoff = (now or timezone.now()) - SAMPLE_RETENTION
    return _delete_in_batches(QueueSample.objects.filter(at__lt=cutoff))


def prune_finished_jobs(now: datetime | None = None) -> int:
    """Delete succeeded, discarded and cancelled jobs older than BUZZER_JOB_RETENTION_DAYS.

    Dead jobs stay until an operator retries or discards them: they are the DLQ. The
    audit rows of the deleted jobs stay (`JobAction.job_ref`).
    """
    cutoff = (now or timezone.now()) - timedelta(days=settings.BUZZER_JOB_RETENTION_DAYS)
    done = (Job.Status.SUCCEEDED, Job.Status.DISCARDED, Job.Status.CANCELLED)
    old = Q(finished_at__lt=cutoff) | Q(finished_at__isnull=True, created_at__lt=cutoff)
    return _delete_in_batches(Job.objects.filter(old, status__in=done))


def prune_history() -> None:
    """The scheduler's hourly job."""
    samples = prune_samples()
    finished = prune_finished_jobs()
    if samples or finished:
        logger.info("Pruned %d queue samples and %d finished jobs", samples, finished)
