"""The jobs API: write jobs in the caller's transaction (the outbox), dispatch them to
the broker after commit, and sweep up whatever a crash or a Redis outage left behind."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import redis
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from dramatiq.brokers.redis import RedisBroker
from redis.backoff import NoBackoff
from redis.retry import Retry

from config import logging as _logging
from jobs.events import subscribers
from jobs.models import Job

logger = logging.getLogger(__name__)

SWEEP_BATCH = 500
# After a send to Redis failed, sends after commit skip Redis for this long (the jobs wait
# in the outbox for the sweep, which always tries): an order with three jobs would
# otherwise wait out the dispatch timeout three times, and every request after it too.
_redis_refused_until = 0.0


def _actor_name(actor: Any) -> str:
    return actor if isinstance(actor, str) else actor.actor_name


def _object_ref(obj: models.Model | None) -> tuple[str, str]:
    if obj is None:
        return "", ""
    return obj._meta.label_lower, str(obj.pk)


def enqueue(
    actor: Any,
    *args: Any,
    key: str | None = None,
    queue: str | None = None,
    obj: models.Model | None = None,
    event: str = "",
    options: dict[str, Any] | None = None,
    delay: timedelta | float | None = None,
    eta: datetime | None = None,
    **kwargs: Any,
) -> Job:
    """Write a job for `actor` and dispatch it once the current transaction commits.

    Arguments must be JSON values (ids, not model instances). With `key`, asking twice
    for the same job returns the first one instead of writing a second. `options` are
    Dramatiq message options for this job only (e.g. `max_retries`, `min_backoff`).
    Outside a transaction the job is dispatched at once.

    `delay` (a timedelta or seconds) or `eta` (an aware datetime) make it a delayed job:
    it is written `scheduled` with its due time and handed to the broker at that time by
    the scheduler (`release_due`), so it runs once, not before, and Redis losing its
    contents meanwhile loses nothing.
    """
    due_at = _due_at(delay, eta)
    name = _actor_name(actor)
    options = dict(options or {})
    request_id = _logging.bound().get("request_id")
    if request_id and "buzzer_request_id" not in options:
        options["buzzer_request_id"] = request_id  # the request's id follows its jobs into the logs
    broker_actor = dramatiq.get_broker().get_actor(name)  # fails fast on a typo
    object_type, object_id = _object_ref(obj)
    fields = {
        "actor_name": name,
        "queue_name": queue or broker_actor.queue_name,
        "args": list(args),
        "kwargs": kwargs,
        "event": event,
        "object_type": object_type,
        "object_id": object_id,
        "options": options,
    }
    if due_at is not None:
        fields.update(status=Job.Status.SCHEDULED, due_at=due_at)
    if key is not None:
        job, created = Job.objects.get_or_create(key=key, defaults=fields)
        if not created:
            return job
    else:
        job = Job.objects.create(**fields)
    if due_at is None:
        transaction.on_commit(lambda: dispatch([job]))
    return job


def _due_at(delay: timedelta | float | None, eta: datetime | None) -> datetime | None:
    if delay is not None and eta is not None:
        raise ValueError("Give a delay or an eta, not both.")
    if eta is not None:
        if timezone.is_naive(eta):
            raise ValueError("eta must be an aware datetime (e.g. timezone.now() + timedelta(hours=1)).")
        return eta if eta > timezone.now() else None
    if delay is None:
        return None
    seconds = delay.total_seconds() if isinstance(delay, timedelta) else float(delay)
    if seconds < 0:
        raise ValueError("delay must not be negative.")
    return timezone.now() + timedelta(seconds=seconds) if seconds > 0 else None


def release_due(limit: int = SWEEP_BATCH) -> int:
    """Hand delayed jobs whose time has come to the broker (the scheduler calls this
    several times a second). Each is moved `scheduled` → `pending` by a conditional
    update, so two callers never send one job twice; what Redis refuses stays pending
    for the outbox sweep. Returns how many were released."""
    now = timezone.now()
    total = 0
    while True:
        ids = list(
            Job.objects.filter(status=Job.Status.SCHEDULED, due_at__lte=now)
            .order_by("due_at")
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return total
        mine = []
        for pk in ids:  # one winner per job, whoever else releases at the same time
            if Job.objects.filter(pk=pk, status=Job.Status.SCHEDULED).update(status=Job.Status.PENDING):
                mine.append(pk)
        if mine:
            dispatch(Job.objects.filter(pk__in=mine, status=Job.Status.PENDING).order_by("due_at"), force=True)
        total += len(mine)
        if len(ids) < limit:
            return total


def next_due() -> datetime | None:
    """When the next delayed job is due (None: none is waiting)."""
    return Job.objects.filter(status=Job.Status.SCHEDULED).order_by("due_at").values_list("due_at", flat=True).first()


def publish(event: str, *, obj: models.Model | None = None, queue: str | None = None, **payload: Any) -> list[Job]:
    """Write one job per subscriber of `event`, with the payload as keyword arguments.

    Each job has a key made of the event, the subscriber and the object, so publishing
    the same event for the same object twice writes no second set of jobs.
    """
    jobs = []
    for name in subscribers(event):
        key = None
        if obj is not None:
            key = f"{event}:{name}:{obj._meta.label_lower}:{obj.pk}"
        jobs.append(enqueue(name, key=key, queue=queue, obj=obj, event=event, **payload))
    return jobs


def send_without_outbox(actor: Any, *args: Any, delay_ms: int = 0, **kwargs: Any) -> bool:
    """Send a job straight to Redis, with no Job row first: only for work that must be
    scheduled while the database cannot be written (the row is written when the job
    starts). False when Redis refused it too."""
    broker_actor = dramatiq.get_broker().get_actor(_actor_name(actor))
    message = broker_actor.message(*args, **kwargs)
    try:
        sender().enqueue(message, delay=delay_ms or None)
    except Exception:  # Redis down as well: the caller decides what to do instead
        logger.warning("Could not send %s without the outbox", message.actor_name, exc_info=True)
        return False
    return True


def build_message(job: Job) -> dramatiq.Message:
    return dramatiq.Message(
        queue_name=job.queue_name,
        actor_name=job.actor_name,
        args=tuple(job.args),
        kwargs=dict(job.kwargs),
        options=dict(job.options),
        message_id=str(job.id),
        message_timestamp=int(time.time() * 1000),
    )


_senders: dict[int, dramatiq.Broker] = {}


def sender() -> dramatiq.Broker:
    """The broker to send through: the configured one, but for Redis a twin whose socket
    gives up after BUZZER_DISPATCH_TIMEOUT_SECONDS, so that a stalled Redis cannot hold a
    request (or the sweep) for long; what it refuses waits in the outbox."""
    broker = dramatiq.get_broker()
    if not isinstance(broker, RedisBroker):
        return broker
    twin = _senders.get(id(broker))
    if twin is None:
        params = dict(broker.client.connection_pool.connection_kwargs)
        timeout = settings.BUZZER_DISPATCH_TIMEOUT_SECONDS
        # One try: redis-py would otherwise try a timed-out command again, doubling the wait.
        params.update(socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
        params.pop("retry_on_timeout", None)
        params.pop("retry_on_error", None)
        pool = redis.ConnectionPool(connection_class=broker.client.connection_pool.connection_class, **params)
        client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        twin = RedisBroker(client=client, namespace=broker.namespace, middleware=[])
        _senders.clear()  # tests swap brokers: keep only the current one's twin
        _senders[id(broker)] = twin
    return twin


def dispatch(jobs: Iterable[Job], *, force: bool = False) -> int:
    """Send pending jobs to the broker and mark them enqueued. Returns how many were sent.

    A job the broker refuses (Redis down or stalled) stays pending for the sweep; the
    caller is never failed for it, and for BUZZER_DISPATCH_BACKOFF_SECONDS after such a
    refusal this process leaves new jobs to the sweep without trying (`force` tries
    anyway: the sweep). A job sent twice (this and the sweep racing) is run once: the
    tracking middleware skips a job that is not waiting.
    """
    global _redis_refused_until
    if not force and time.monotonic() < _redis_refused_until:
        return 0
    broker = sender()
    sent = []
    for job in jobs:
        try:
            broker.enqueue(build_message(job))
        except Exception as exc:  # noqa: BLE001 - any broker failure leaves it to the sweep
            logger.warning("Could not dispatch job %s (%s); the sweep will retry: %s", job.id, job.actor_name, exc)
            _redis_refused_until = time.monotonic() + settings.BUZZER_DISPATCH_BACKOFF_SECONDS
            break
        sent.append(job.id)
    if sent:
        Job.objects.filter(id__in=sent, status=Job.Status.PENDING).update(
            status=Job.Status.ENQUEUED, enqueued_at=timezone.now()
        )
    return len(sent)


def sweep_outbox(older_than: float | None = None, limit: int = SWEEP_BATCH) -> int:
    """Dispatch jobs that stayed pending: their process died between COMMIT and the
    send, or Redis was down. Returns how many were sent."""
    if older_than is None:
        older_than = settings.BUZZER_SWEEP_AFTER_SECONDS
    cutoff = timezone.now() - timedelta(seconds=older_than)
    total = 0
    while True:
        batch = list(
            Job.objects.filter(status=Job.Status.PENDING, created_at__lte=cutoff).order_by("created_at")[:limit]
        )
        if not batch:
            break
        sent = dispatch(batch, force=True)
        total += sent
        if sent < len(batch):
            break
    if total:
        logger.info("Outbox sweep dispatched %d jobs", total)
    return total


def jobs_for(obj: models.Model) -> models.QuerySet[Job]:
    object_type, object_id = _object_ref(obj)
    return Job.objects.filter(object_type=object_type, object_id=object_id).order_by("created_at")
