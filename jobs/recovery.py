"""Stalled jobs: put back in the queue what a dead worker was holding.

Dramatiq requeues a dead worker's unacknowledged messages only after its 60 s heartbeat
timeout and then only on a random maintenance roll (0.1% of broker calls, for the queue
of that call), so on a quiet queue they can wait for many minutes. The scheduler runs
this every few seconds instead: a worker silent for BUZZER_WORKER_DEAD_AFTER_SECONDS
(worker processes beat every BUZZER_HEARTBEAT_SECONDS, busy or not) is dead, its
messages go back to their queues at once, and a job left `running` on it whose message
is gone is re-sent from its row. The claim in Redis then lets exactly one delivery run
it again, and sends it to the dead-letter queue if it keeps killing its workers.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import dramatiq
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from jobs.claims import workers_key
from jobs.models import Job
from jobs.services import build_message

logger = logging.getLogger(__name__)

# KEYS: the dead worker's acks set, the queue list, the queue's payload hash.
# Moves every unacknowledged message back to the queue; returns the moved ids.
_REQUEUE_SCRIPT = """
local ids = redis.call('SMEMBERS', KEYS[1])
local moved = {}
for _, id in ipairs(ids) do
  if redis.call('HEXISTS', KEYS[3], id) == 1 then
    redis.call('RPUSH', KEYS[2], id)
    table.insert(moved, id)
  end
end
redis.call('DEL', KEYS[1])
return moved
"""


def dead_workers(client: Any, namespace: str) -> list[str]:
    cutoff = int((time.time() - settings.BUZZER_WORKER_DEAD_AFTER_SECONDS) * 1000)
    return [w.decode() for w in client.zrangebyscore(f"{namespace}:__heartbeats__", 0, cutoff)]


def alive_workers(client: Any, namespace: str) -> set[str]:
    cutoff = int((time.time() - settings.BUZZER_WORKER_DEAD_AFTER_SECONDS) * 1000)
    return {w.decode() for w in client.zrangebyscore(f"{namespace}:__heartbeats__", cutoff, "+inf")}


_alive_cache: tuple[float, frozenset[str] | None] = (0.0, None)


def alive_workers_now() -> frozenset[str] | None:
    """Worker ids with a recent heartbeat (cached for 2 s; None without Redis or while
    Redis does not answer): what the admin uses to show a running job as stalled."""
    global _alive_cache
    checked_at, alive = _alive_cache
    if time.monotonic() - checked_at < 2:
        return alive
    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    try:
        alive = frozenset(alive_workers(client, broker.namespace)) if client is not None else None
    except Exception:  # noqa: BLE001 - the page still renders, without the stalled mark
        alive = None
    _alive_cache = (time.monotonic(), alive)
    return alive


def is_stalled(job: Job, alive: frozenset[str] | None) -> bool:
    """Running on a worker that no longer beats."""
    return alive is not None and job.status == Job.Status.RUNNING and job.worker not in alive


_last_lost_scan = 0.0


def recover_stalled(broker: dramatiq.Broker | None = None) -> dict[str, int]:
    """Requeue dead workers' messages, re-send jobs stranded on them, and (every
    BUZZER_LOST_SCAN_SECONDS, or at once after a worker died) re-send jobs whose message
    Redis lost."""
    global _last_lost_scan
    broker = broker or dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if client is None:
        return {"requeued": 0, "resent": 0, "lost": 0}
    namespace = broker.namespace
    requeue = client.register_script(_REQUEUE_SCRIPT)
    requeued_jobs: set[str] = set()
    moved_total = 0
    dead = dead_workers(client, namespace)
    for worker in dead:
        for acks_key in client.scan_iter(f"{namespace}:__acks__.{worker}.*"):
            queue_name = acks_key.decode().removeprefix(f"{namespace}:__acks__.{worker}.")
            moved = requeue(keys=[acks_key, f"{namespace}:{queue_name}", f"{namespace}:{queue_name}.msgs"])
            if moved:
                payloads = client.hmget(f"{namespace}:{queue_name}.msgs", moved)
                requeued_jobs.update(dramatiq.Message.decode(p).message_id for p in payloads if p)
                moved_total += len(moved)
                logger.warning("Requeued %d messages of dead worker %s on %s", len(moved), worker, queue_name)
        client.zrem(f"{namespace}:__heartbeats__", worker)
    resent = _resend_stranded(broker, alive_workers(client, namespace), requeued_jobs)
    _forget_dead_worker_entries(client, namespace)
    lost = 0
    if dead or time.monotonic() - _last_lost_scan >= settings.BUZZER_LOST_SCAN_SECONDS:
        lost = resend_lost(broker)
        _last_lost_scan = time.monotonic()
    return {"requeued": moved_total, "resent": resent, "lost": lost}


def messages_in_redis(client: Any, namespace: str, queue_names: set[str]) -> set[str]:
    """The job ids of every message Redis holds for these queues: waiting, delayed, or
    fetched by a worker and not yet acknowledged (all of them keep their payload in the
    queue's hash until the ack)."""
    found: set[str] = set()
    for queue_name in queue_names:
        for key in (f"{namespace}:{queue_name}.msgs", f"{namespace}:{queue_name}.DQ.msgs"):
            for _redis_id, payload in client.hscan_iter(key, count=1000):
                try:
                    found.add(json.loads(payload)["message_id"])
                except (ValueError, KeyError, TypeError):
                    continue  # an undecodable payload names no job
    return found


def waiting_since_before(cutoff: Any) -> Q:
    """Sent (or first written) before `cutoff`. A job a worker started before the process
    that sent it marked it enqueued (the mark comes after the send, from a thread of its
    own: `jobs.services.dispatch`) never gets its `enqueued_at`, as the mark moves pending
    rows only; its creation time stands in for it."""
    return Q(enqueued_at__lt=cutoff) | Q(enqueued_at__isnull=True, created_at__lt=cutoff)


def resend_lost(broker: dramatiq.Broker) -> int:
    """Re-send jobs that have waited or run for BUZZER_LOST_AFTER_SECONDS while Redis
    holds no message for them anywhere: the message went with a Redis crash (AOF keeps
    up to a second less than was written), or a worker acknowledged it and died before
    its batch writer recorded the outcome. A re-send of a job that did run is harmless:
    its claim skips it, or it finds its effects already done."""
    cutoff = timezone.now() - timedelta(seconds=settings.BUZZER_LOST_AFTER_SECONDS)
    waiting = (Job.Status.ENQUEUED, Job.Status.RETRYING, Job.Status.RUNNING)
    candidates = Job.objects.filter(waiting_since_before(cutoff), status__in=waiting).filter(
        Q(started_at__isnull=True) | Q(started_at__lt=cutoff)
    )
    queue_names = set(candidates.values_list("queue_name", flat=True).distinct())
    if not queue_names:
        return 0
    client = broker.client
    present = messages_in_redis(client, broker.namespace, queue_names)
    count = 0
    resent: list[str] = []
    for job in candidates.iterator(chunk_size=500):
        if str(job.id) in present:
            continue
        resent.append(f"{job.id} ({job.status}, attempt {job.attempts})")
        message = build_message(job)
        # The lost message was the next attempt of a retrying job, the current one otherwise.
        message.options["retries"] = job.attempts if job.status == Job.Status.RETRYING else max(job.attempts - 1, 0)
        broker.enqueue(message)
        Job.objects.filter(pk=job.pk, status=job.status, attempts=job.attempts).update(
            status=Job.Status.ENQUEUED, enqueued_at=timezone.now()
        )
        count += 1
    if count:
        logger.warning("Re-sent %d jobs whose message Redis no longer had: %s", count, ", ".join(resent[:20]))
    return count


def _resend_stranded(broker: dramatiq.Broker, alive: set[str], requeued: set[str]) -> int:
    """Jobs still `running` on a dead worker whose message is nowhere: send them again
    as the same attempt (the claim lets one delivery take it over)."""
    cutoff = timezone.now() - timedelta(seconds=settings.BUZZER_WORKER_DEAD_AFTER_SECONDS)
    stranded = Job.objects.filter(status=Job.Status.RUNNING, started_at__lt=cutoff).exclude(worker__in=alive)
    count = 0
    for job in stranded.iterator(chunk_size=200):
        if str(job.id) in requeued:
            continue
        message = build_message(job)
        message.options["retries"] = max(job.attempts - 1, 0)
        broker.enqueue(message)
        # Waiting again: the next round must not send it once more.
        Job.objects.filter(pk=job.pk, status=Job.Status.RUNNING, worker=job.worker).update(
            status=Job.Status.ENQUEUED, enqueued_at=timezone.now()
        )
        count += 1
        logger.warning("Re-sent job %s left running on dead worker %s", job.id, job.worker)
    return count


def _forget_dead_worker_entries(client: Any, namespace: str) -> None:
    cutoff = int((time.time() - 10 * settings.BUZZER_WORKER_DEAD_AFTER_SECONDS) * 1000)
    client.zremrangebyscore(workers_key(namespace), 0, cutoff)


# --- Stalled and lost jobs, on an operator's request ------------------------------------

STALLED_SCAN_LIMIT = 10_000


def lost_job_ids(broker: dramatiq.Broker | None = None, limit: int = STALLED_SCAN_LIMIT) -> set[Any]:
    """Ids of jobs waiting (enqueued or retrying) for longer than
    BUZZER_LOST_AFTER_SECONDS whose message Redis holds nowhere (the oldest `limit`)."""
    broker = broker or dramatiq.get_broker()
    if getattr(broker, "client", None) is None:
        return set()
    cutoff = timezone.now() - timedelta(seconds=settings.BUZZER_LOST_AFTER_SECONDS)
    candidates = (
        Job.objects.filter(waiting_since_before(cutoff), status__in=(Job.Status.ENQUEUED, Job.Status.RETRYING))
        .order_by("enqueued_at")
        .only("pk", "queue_name")
    )
    return lost_job_ids_among(list(candidates[:limit]), broker)


def lost_job_ids_among(jobs: list[Job], broker: dramatiq.Broker | None = None) -> set[Any]:
    """Which of these jobs have no message anywhere in Redis."""
    broker = broker or dramatiq.get_broker()
    client = getattr(broker, "client", None)
    if client is None or not jobs:
        return set()
    present = messages_in_redis(client, broker.namespace, {job.queue_name for job in jobs})
    return {job.pk for job in jobs if str(job.pk) not in present}


def stalled_filter() -> Q | None:
    """The condition for the admin's Stalled filter: running on a worker that stopped
    beating, or waiting with no message anywhere in Redis. None when Redis does not
    answer (nothing can be told apart then)."""
    alive = alive_workers_now()
    if alive is None:
        return None
    try:
        lost = lost_job_ids()
    except Exception:  # noqa: BLE001 - Redis went away between the two calls
        return None
    return (Q(status=Job.Status.RUNNING) & ~Q(worker__in=alive)) | Q(pk__in=lost)


def requeue_now(job_id: Any, *, user: Any = None, reason: str = "") -> bool:
    """Send a stalled or lost job again now instead of waiting for the automatic
    recovery. True when it was re-sent (False: it is neither stalled nor lost any more).
    The claim lets one delivery run it (a delivery of it still running elsewhere wins)."""
    from jobs.models import JobAction

    broker = dramatiq.get_broker()
    client = getattr(broker, "client", None)
    job = Job.objects.filter(pk=job_id).first()
    if job is None or client is None:
        return False
    if job.status == Job.Status.RUNNING:
        if job.worker in alive_workers(client, broker.namespace):
            return False
        retries = max(job.attempts - 1, 0)  # the same attempt, taken over from the dead worker
    elif job.status in (Job.Status.ENQUEUED, Job.Status.RETRYING):
        if str(job.pk) in messages_in_redis(client, broker.namespace, {job.queue_name}):
            return False
        retries = job.attempts if job.status == Job.Status.RETRYING else max(job.attempts - 1, 0)
    else:
        return False
    if not Job.objects.filter(pk=job.pk, status=job.status, attempts=job.attempts, worker=job.worker).update(
        status=Job.Status.ENQUEUED, enqueued_at=timezone.now()
    ):
        return False  # it moved meanwhile
    message = build_message(job)
    message.options["retries"] = retries
    broker.enqueue(message)
    who = user if getattr(user, "is_authenticated", False) else None
    JobAction.objects.create(
        job=job,
        kind=JobAction.Kind.REQUEUE,
        user=who,
        reason=reason or f"{job.status} on {job.worker or 'no worker'}, attempt {job.attempts}: sent again now",
    )
    logger.warning("Job %s (%s) requeued now by %s", job.pk, job.status, user or "the system")
    return True


def retry_now(job_id: Any, *, user: Any = None) -> bool:
    """Run a retrying job's next attempt now rather than at the end of its backoff
    (Sidekiq's Retries › Retry now). True when it was sent. The delayed delivery still
    waiting for its time later finds that attempt claimed, and is skipped."""
    from jobs.models import JobAction

    job = Job.objects.filter(pk=job_id, status=Job.Status.RETRYING).first()
    if job is None or dramatiq.get_broker() is None:
        return False
    due = job.due_at
    if not Job.objects.filter(pk=job.pk, status=Job.Status.RETRYING, attempts=job.attempts).update(
        status=Job.Status.ENQUEUED, enqueued_at=timezone.now(), due_at=None
    ):
        return False  # it moved meanwhile (ran, was cancelled, retried by someone else)
    message = build_message(job)
    message.options["retries"] = job.attempts  # its next attempt, as the delayed delivery carries it
    dramatiq.get_broker().enqueue(message)
    who = user if getattr(user, "is_authenticated", False) else None
    when = f", instead of {due:%Y-%m-%d %H:%M:%S %Z}" if due else ""
    JobAction.objects.create(
        job=job, kind=JobAction.Kind.REQUEUE, user=who, reason=f"Attempt {job.attempts + 1} run now{when}."
    )
    logger.info("Job %s: attempt %d run now by %s", job.pk, job.attempts + 1, user or "the system")
    return True
